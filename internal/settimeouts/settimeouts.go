// Package settimeouts keeps the deadlines of the elements of sets with
// timeouts when a change re-runs the stored ruleset through nft.
//
// The maps of the running ruleset hold the deadlines of the live elements
// (codegen.TimeoutValue); the stored ruleset text, which nft re-parses for
// every command, only records the time each element had left when it was
// written. Sync brings the stored text up to date from the maps before a
// command (expired elements dropped, the time left taken from each
// deadline); after nft has applied the command, Keep gives every element
// the command left alone its map's deadline, so that neither element
// commands nor reloads restart a timer or bring back an expired element.
// An element the command did change (added anew, or re-added with another
// timeout or an expiry, which the kernel's nf_tables since Linux 6.10
// takes as an update) takes the time nft reports for it.
package settimeouts

import (
	"os"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/state"
	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
)

// expirySlack is how far apart, in milliseconds, the time left that nft
// reports for an element the command did not change may be from the time
// left written into the stored text, besides the time the command took:
// the kernel keeps expiry times in jiffies (up to 10 ms at HZ=100) and
// rounds both ways.
const expirySlack = 25

// stored is what the stored text was given for one element.
type stored struct {
	timeout, left uint64 // ms
	deadline      uint64 // CLOCK_MONOTONIC ns, 0: never
}

// Sync records the elements of sets with timeouts as Sync wrote them into
// the stored text. A nil *Sync keeps nothing.
type Sync struct {
	at    uint64 // CLOCK_MONOTONIC ns
	elems map[loader.SetID]map[string]stored
}

// Mentioned reports whether text (printed by ir.Ruleset.Print) may hold
// a set with timeouts.
func Mentioned(text string) bool {
	return strings.Contains(text, "timeout") || strings.Contains(text, "expires")
}

// Stored returns the stored ruleset text current with the elements of
// every set with timeouts as the maps of st's running ruleset hold them,
// and what it wrote (nil when nothing has timeouts). nft parses the text
// in a private namespace mirroring the interfaces of ns.
func Stored(st *state.Dir, current string, ns *os.File) (string, *Sync, error) {
	if !Mentioned(current) {
		return current, nil, nil
	}
	live, err := loader.LiveTimeouts(st)
	if err != nil || len(live) == 0 {
		return current, nil, err
	}
	msgs, err := nftfile.Parse("stored ruleset", strings.NewReader(current), nftfile.Options{TargetNetNS: ns})
	if err != nil {
		return "", nil, err
	}
	lifted, err := translate.Lift(msgs)
	if err != nil {
		return "", nil, err
	}
	s := &Sync{at: codegen.MonotonicNow(), elems: map[loader.SetID]map[string]stored{}}
	Apply(lifted.Ruleset, live, s.at, func(id loader.SetID, set *ir.Set, e ir.SetElement, v codegen.TimeoutValue) {
		if s.elems[id] == nil {
			s.elems[id] = map[string]stored{}
		}
		s.elems[id][string(e.Low)] = stored{timeout: set.ElementTimeout(e), left: e.Expires, deadline: v.Deadline}
	})
	var b strings.Builder
	if err := lifted.Ruleset.Print(&b); err != nil {
		return "", nil, err
	}
	return b.String(), s, nil
}

// Apply brings the elements of rs's sets with timeouts that live holds a
// map for (loader.LiveTimeouts) to the map's contents at now
// (codegen.MonotonicNow): elements the map does not hold live are
// dropped, the others take the map's timeout and the time left until its
// deadline, as nft lists them. seen, when not nil, is called for each
// element kept.
func Apply(rs *ir.Ruleset, live map[loader.SetID]map[string]codegen.TimeoutValue, now uint64, seen func(loader.SetID, *ir.Set, ir.SetElement, codegen.TimeoutValue)) {
	for _, tab := range rs.Tables {
		for _, s := range tab.Sets {
			id := loader.SetID{Family: tab.Family.String(), Table: tab.Name, Name: s.Name}
			values, ok := live[id]
			if !ok || !s.HasTimeouts() {
				continue
			}
			kept := s.Elements[:0]
			for _, e := range s.Elements {
				v, ok := values[string(e.Low)]
				if !ok || v.Expired(now) {
					continue
				}
				e.Timeout = v.Timeout
				if v.Timeout == s.Timeout {
					e.Timeout = 0 // the kernel omits a timeout equal to the set's
				}
				e.Expires = 0
				if v.Deadline != 0 {
					e.Expires = max(1, (v.Deadline-now+999999)/1000000)
				}
				e.Deadline = 0
				if seen != nil {
					seen(id, s, e, v)
				}
				kept = append(kept, e)
			}
			s.Elements = kept
		}
	}
}

// Keep gives every element of rs's sets with timeouts that the command
// left alone (same timeout, time left as written less the time since) the
// deadline its map holds.
func (s *Sync) Keep(rs *ir.Ruleset) {
	if s == nil {
		return
	}
	elapsed := (codegen.MonotonicNow()-s.at)/1000000 + 1
	for _, tab := range rs.Tables {
		for _, set := range tab.Sets {
			stored, ok := s.elems[loader.SetID{Family: tab.Family.String(), Table: tab.Name, Name: set.Name}]
			if !ok || !set.HasTimeouts() {
				continue
			}
			for i, e := range set.Elements {
				st, ok := stored[string(e.Low)]
				if !ok || st.deadline == 0 || set.ElementTimeout(e) != st.timeout {
					continue
				}
				if e.Expires <= st.left+expirySlack && e.Expires+elapsed+expirySlack >= st.left {
					set.Elements[i].Deadline = st.deadline
				}
			}
		}
	}
}

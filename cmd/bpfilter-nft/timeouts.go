package main

import (
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
)

// Sets with timeouts. The maps of the running ruleset hold the deadlines
// of the live elements; the stored ruleset text, which nft re-parses for
// every command, only records the time each element had left when it was
// written. Before a command the stored text is brought up to date from
// the maps (expired elements dropped, the time left taken from each
// deadline); after it, every element the command left alone keeps its
// map's deadline, so that neither element commands nor reloads restart a
// timer or bring back an expired element. An element the command did
// change (added anew, or re-added with another timeout or an expiry, which
// the kernel's nf_tables since Linux 6.10 takes as an update) takes the
// time nft reports for it.

// expirySlack is how far apart, in milliseconds, the time left that nft
// reports for an element the command did not change may be from the time
// left written into the stored text, besides the time the command took:
// the kernel keeps expiry times in jiffies (up to 10 ms at HZ=100) and
// rounds both ways.
const expirySlack = 25

// storedTimeout is what the stored text was given for one element.
type storedTimeout struct {
	timeout, left uint64 // ms
	deadline      uint64 // CLOCK_MONOTONIC ns, 0: never
}

// timeoutSync records the elements of sets with timeouts as the stored
// text was brought up to date from the maps.
type timeoutSync struct {
	at    uint64 // CLOCK_MONOTONIC ns
	elems map[loader.SetID]map[string]storedTimeout
}

// hasTimeouts reports whether text (printed by ir.Ruleset.Print) may
// hold a set with timeouts.
func hasTimeouts(text string) bool {
	return strings.Contains(text, "timeout") || strings.Contains(text, "expires")
}

// syncTimeouts returns the stored ruleset text current with the elements
// of every set with timeouts as the running ruleset's maps hold them, and
// what it wrote (nil when nothing has timeouts).
func (t *target) syncTimeouts(current string) (string, *timeoutSync, error) {
	if !hasTimeouts(current) {
		return current, nil, nil
	}
	live, err := loader.LiveTimeouts(t.st)
	if err != nil || len(live) == 0 {
		return current, nil, err
	}
	msgs, err := nftfile.Parse("stored ruleset", strings.NewReader(current), nftfile.Options{TargetNetNS: t.ns.File()})
	if err != nil {
		return "", nil, err
	}
	lifted, err := translate.Lift(msgs)
	if err != nil {
		return "", nil, err
	}
	sync := &timeoutSync{at: codegen.MonotonicNow(), elems: map[loader.SetID]map[string]storedTimeout{}}
	applyLiveTimeouts(lifted.Ruleset, live, sync.at, func(id loader.SetID, key []byte, s *ir.Set, e ir.SetElement, v codegen.TimeoutValue) {
		if sync.elems[id] == nil {
			sync.elems[id] = map[string]storedTimeout{}
		}
		sync.elems[id][string(key)] = storedTimeout{timeout: s.ElementTimeout(e), left: e.Expires, deadline: v.Deadline}
	})
	var b strings.Builder
	if err := lifted.Ruleset.Print(&b); err != nil {
		return "", nil, err
	}
	return b.String(), sync, nil
}

// applyLiveTimeouts brings the elements of rs's sets with timeouts that
// live holds a map for to the map's contents at now: elements the map
// does not hold live are dropped, the others take the map's timeout and
// the time left until its deadline, as nft lists them. seen, when not
// nil, is called for each element kept.
func applyLiveTimeouts(rs *ir.Ruleset, live map[loader.SetID]map[string]codegen.TimeoutValue, now uint64, seen func(loader.SetID, []byte, *ir.Set, ir.SetElement, codegen.TimeoutValue)) {
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
					seen(id, e.Low, s, e, v)
				}
				kept = append(kept, e)
			}
			s.Elements = kept
		}
	}
}

// keepDeadlines gives every element of rs's sets with timeouts that the
// command left alone (same timeout, time left as written less the time
// since) the deadline its map holds.
func (ts *timeoutSync) keepDeadlines(rs *ir.Ruleset) {
	if ts == nil {
		return
	}
	elapsed := (codegen.MonotonicNow()-ts.at)/1000000 + 1
	for _, tab := range rs.Tables {
		for _, s := range tab.Sets {
			stored, ok := ts.elems[loader.SetID{Family: tab.Family.String(), Table: tab.Name, Name: s.Name}]
			if !ok || !s.HasTimeouts() {
				continue
			}
			for i, e := range s.Elements {
				st, ok := stored[string(e.Low)]
				if !ok || st.deadline == 0 || s.ElementTimeout(e) != st.timeout {
					continue
				}
				if e.Expires <= st.left+expirySlack && e.Expires+elapsed+expirySlack >= st.left {
					s.Elements[i].Deadline = st.deadline
				}
			}
		}
	}
}

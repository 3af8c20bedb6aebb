// Package loader applies a translated ruleset to the kernel atomically and
// all-or-nothing, keeps it pinned so that it outlives the process, reads it
// back and removes it.
//
// API:
//
//	Apply(ns, st, res, opts)  load res (a pipeline.Result without errors)
//	                          into network namespace ns, replacing what st
//	                          records as running there
//	Load(st)                  the stored ruleset and its live counters
//	Flush(st)                 detach and unpin everything of st's namespace
//
// A caller that reads the running ruleset to compute the next one holds
// st.Lock() from the read to the end of the change and passes
// Options.Locked (or calls FlushLocked).
//
// Apply first builds everything: every program is loaded (so the verifier
// has accepted all of them), netfilter dispatchers are loaded, devices and
// cgroup paths are checked. Any failure returns an error naming the table,
// chain and attach point, and the running ruleset is left untouched. Only
// then are attach points switched: XDP, tcx and cgroup links are updated in
// place (link.Update) where a link of ours exists, and attached where new;
// a netfilter link (which cannot be updated) runs a small dispatcher that
// tail-calls slot 0 of a program array, and a reload replaces that slot.
// Either way every packet runs the old or the new chain program, never
// neither. Links of attach points that are gone are detached last. If
// attaching fails midway, the points already switched are switched back.
//
// Base chains sharing a hook keep nftables' order: netfilter links take the
// chain's priority; tcx links are anchored after the previous chain in
// priority order; cgroup links run in attach order (priority order). XDP
// takes one program per device: two netdev ingress chains on one device are
// refused (use the tcx backend).
//
// Counters: all programs of a namespace share one per-CPU counter map. A
// counter statement's slot is keyed by a stable identity of the rule
// (family, table, chain, the rule's nft text, its occurrence among equal
// rules of the chain, and the statement's position), not by its handle, so a
// reload keeps counting unchanged rules in the same slot without copying
// and without losing packets counted during the switch; new rules get
// zeroed slots. The IPv4 and IPv6 programs of an inet chain, and every base
// chain jumping to a user chain, count a rule in its one slot, as nftables
// does. Only when the map must grow are values copied to a larger map;
// packets counted by the old programs between that copy and the switch are
// lost.
//
// Named sets of exact keys are BPF hash maps (codegen.InMap), one per set,
// shared by every program that looks the set up and pinned with the
// ruleset. A reload keeps a set's map while the set's elements are
// unchanged; a load that changes nothing but the elements of such sets
// (same attach points, programs and counters: Manifest.Shape) updates the
// maps in place and keeps programs and links. UpdateSet changes one set's
// elements the same way.
//
// A ruleset that reads conntrack keys needs connection tracking running in
// its namespace; the loader keeps it running with a small nftables table
// (see ConntrackTable) for as long as the ruleset needs it.
//
// On-disk layout: see package state. A load writes new programs under
// generation-numbered names and the new manifest as "next" before it
// switches anything, and renames "next" over "state" once everything is
// switched; then it unpins what the new manifest does not name. After a
// crash, "state" still describes the previous ruleset (Load reports
// Interrupted), link pins are found by their attach-point names whatever
// manifest wrote them, and the next Apply or Flush removes every leftover.
package loader

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/hooks"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// Options configure Apply.
type Options struct {
	// CgroupPath is the cgroup directory cgroup_skb programs attach to,
	// as reachable from this process (resolve the requester's path
	// through /proc/PID/root).
	CgroupPath string
	// CounterCapacity is the minimum number of slots of a newly created
	// counter map; 0 means 1024.
	CounterCapacity uint32
	// Locked tells Apply that the caller holds st.Lock(), as it must to
	// read the running ruleset, compute a change from it and apply the
	// result as one step (a writer that reads before the lock can
	// overwrite a concurrent writer's change). Apply then does not take
	// the lock itself.
	Locked bool
	// Stats, when not nil, is filled with what Apply did and how long
	// each step took.
	Stats *Stats
	// Stored, when not nil, receives the ruleset text Apply stored
	// (state.Manifest.Ruleset).
	Stored *string
	// Keep names state entries of the caller's own that Apply leaves in
	// place (it removes every entry the new ruleset does not use).
	Keep []string
	// Committed, when not nil, receives the manifest Apply committed (what
	// Load would read back next).
	Committed **state.Manifest
}

// Stats describe one Apply: how many attach points kept their running
// program (see reuseRunning) and how many loaded a new one, and the time
// from the start of Apply to the end of each step.
type Stats struct {
	Kept, Loaded int
	// Prepared: counter, state and set maps ready, reuse decided.
	Prepared time.Duration
	// Built: every new program loaded (verified).
	Built time.Duration
	// Switched: attach points switched and the new state committed.
	Switched time.Duration
}

// Point kinds.
const (
	KindXDP           = "xdp"
	KindTCXIngress    = "tcx-ingress"
	KindTCXEgress     = "tcx-egress"
	KindNetfilter     = "netfilter"
	KindCgroupIngress = "cgroup-ingress"
	KindCgroupEgress  = "cgroup-egress"
)

// testHook, when set by a test, is called at each step of Apply; a non-nil
// return stops Apply on the spot, as if the process had been killed: no
// rollback, no cleanup, only the file descriptors are closed.
var testHook func(step string) error

func hook(step string) error {
	if testHook == nil {
		return nil
	}
	return testHook(step)
}

// point is one attach point of the new ruleset.
type point struct {
	state.Point
	cp    *pipeline.ChainProgram
	order int
	slots []uint32
	// stateSlots are the state map slots of the program's limits and
	// quotas (codegen.Program.StateSlots).
	stateSlots []uint32

	prog       *ebpf.Program
	array      *ebpf.Map     // netfilter
	tail       *ebpf.Map     // a split chain's program array (tailcall.go)
	dispatcher *ebpf.Program // netfilter, when the link is new
	link       link.Link     // after the switch
	// reused is true when the point keeps its running program and link
	// (see reuseRunning).
	reused bool
}

func pinID(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:8])
}

// Apply loads res into network namespace ns (nil: the calling thread's,
// which must be st's) and makes it the running ruleset recorded in st. See
// the package documentation for the guarantees.
func Apply(ns *nsctx.NetNS, st *state.Dir, res *pipeline.Result, opts Options) (err error) {
	start := time.Now()
	if err := res.Err(); err != nil {
		return fmt.Errorf("ruleset not applied: %w", err)
	}
	if ns != nil && ns.Inode() != st.NetNS() {
		return fmt.Errorf("state directory %s belongs to network namespace %d, not %d", st.Path(), st.NetNS(), ns.Inode())
	}
	if !opts.Locked {
		unlock, err := st.Lock()
		if err != nil {
			return err
		}
		defer unlock()
	}

	old, err := readManifest(st, state.StateName)
	if err != nil {
		return err
	}
	interrupted, _ := readManifest(st, state.NextName)
	gen := old.Generation + 1
	if interrupted.Generation >= gen {
		gen = interrupted.Generation + 1
	}

	points, err := plan(res, opts)
	if err != nil {
		return fmt.Errorf("ruleset not applied: %w", err)
	}
	man := &state.Manifest{Generation: gen}
	var text strings.Builder
	if err := res.Ruleset.PrintWith(&text, ir.PrintOptions{RuleText: res.RuleText}); err != nil {
		return err
	}
	man.Ruleset = text.String()
	if opts.Stored != nil {
		*opts.Stored = man.Ruleset
	}

	// Every fd opened from here on is closed on return; what must outlive
	// the process is pinned.
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()

	counters, fresh, created, err := prepareCounters(st, old, interrupted, res, points, man, opts)
	if err != nil {
		return fmt.Errorf("ruleset not applied: %w", err)
	}
	closers = append(closers, counters.Close)

	sm, err := prepareStateful(st, old, interrupted, res, points, man)
	if err != nil {
		return fmt.Errorf("ruleset not applied: %w", err)
	}
	closers = append(closers, sm.close)

	man.Shape = shape(points, opts)
	if done, err := updateSetsOnly(st, old, interrupted, res, points, man, fresh, created || sm.changed()); done || err != nil {
		if done && err == nil && opts.Committed != nil {
			*opts.Committed = man
		}
		if done && err == nil && opts.Stats != nil {
			// Every program and link stays.
			d := time.Since(start)
			*opts.Stats = Stats{Kept: len(points), Prepared: d, Built: d, Switched: d}
		}
		return err
	}

	sets, err := prepareSets(st, old, res, gen, man)
	if err != nil {
		return fmt.Errorf("ruleset not applied: %w", err)
	}
	closers = append(closers, func() error { sets.close(); return nil })

	// Points whose program would come out as the running one keep it.
	for _, p := range points {
		p.Fingerprint = fingerprint(p, man, opts)
	}
	kept, keptClosers := reuseRunning(st, old, interrupted, points, sm.eventsNew)
	closers = append(closers, keptClosers...)
	if opts.Stats != nil {
		opts.Stats.Kept, opts.Stats.Loaded = kept, len(points)-kept
		opts.Stats.Prepared = time.Since(start)
	}

	// Build: load every program and dispatcher before touching anything.
	for _, p := range points {
		if p.reused {
			continue
		}
		if p.tail, err = newTailCalls(p); err != nil {
			return fmt.Errorf("ruleset not applied: %s: %w", p.describe(), err)
		}
		if p.tail != nil {
			closers = append(closers, p.tail.Close)
		}
		p.prog, err = p.cp.Program.LoadWith(codegen.SharedMaps{
			Counters: counters, CounterSlots: p.slots, Sets: sets.maps,
			State: sm.state, StateSlots: p.stateSlots, Events: sm.events,
			TailCalls: p.tail,
		})
		if err != nil {
			return fmt.Errorf("ruleset not applied: %s: %w", p.describe(), err)
		}
		closers = append(closers, p.prog.Close)
		if p.Kind != KindNetfilter {
			continue
		}
		var created bool
		if p.array, created, err = loadOrNewArray(st, p); err != nil {
			return fmt.Errorf("ruleset not applied: %s: %w", p.describe(), err)
		}
		closers = append(closers, p.array.Close)
		// A link whose array pin is gone runs a cleared array: replace it.
		if created || !st.Exists(p.Link) {
			if p.dispatcher, err = newDispatcher(p.array); err != nil {
				return fmt.Errorf("ruleset not applied: %s: dispatcher: %w", p.describe(), err)
			}
			closers = append(closers, p.dispatcher.Close)
		}
	}
	if err := hook("built"); err != nil {
		return err
	}
	if opts.Stats != nil {
		opts.Stats.Built = time.Since(start)
	}

	// Pin the new generation's objects and write the intent.
	for i, p := range points {
		if !p.reused {
			p.Program = fmt.Sprintf("prog-%d-%s", gen, pinID(p.Key))
			if err := st.Pin(p.Program, p.prog); err != nil {
				return cleanupFailed(st, old, err)
			}
		}
		if err := pinTailCalls(st, gen, p); err != nil {
			return cleanupFailed(st, old, err)
		}
		if err := hook(fmt.Sprintf("pinned-%d", i)); err != nil {
			return err
		}
		man.Points = append(man.Points, p.Point)
	}
	if created {
		if err := st.Pin(man.Counters.Map, counters); err != nil {
			return cleanupFailed(st, old, err)
		}
	}
	for name, m := range sets.created {
		if err := st.Pin(name, m); err != nil {
			return cleanupFailed(st, old, err)
		}
	}
	if err := zeroSlots(counters, fresh); err != nil {
		return cleanupFailed(st, old, err)
	}
	if err := sm.pin(st, man); err != nil {
		return cleanupFailed(st, old, err)
	}
	if err := st.WriteManifest(state.NextName, man); err != nil {
		return cleanupFailed(st, old, err)
	}
	if err := hook("next"); err != nil {
		return err
	}

	// Conntrack must run before a program reading ct keys sees packets.
	ctFams := ConntrackFamilies(res.Ruleset)
	ctAdded, err := holdConntrack(ns, ctFams)
	if err != nil {
		return cleanupFailed(st, old, fmt.Errorf("ruleset not applied: %w", err))
	}

	// Switch.
	var undo []func() error
	for i, p := range points {
		if p.reused {
			continue
		}
		u, err := switchPoint(ns, st, p, points, opts)
		if err != nil {
			for j := len(undo) - 1; j >= 0; j-- {
				if uerr := undo[j](); uerr != nil {
					err = errors.Join(err, fmt.Errorf("rolling back: %w", uerr))
				}
			}
			if len(ctAdded) > 0 {
				if cerr := undoConntrack(ns, ctAdded); cerr != nil {
					err = errors.Join(err, fmt.Errorf("rolling back: %w", cerr))
				}
			}
			return cleanupFailed(st, old, fmt.Errorf("ruleset not applied, previous ruleset restored: %s: %w", p.describe(), err))
		}
		closers = append(closers, p.link.Close)
		undo = append(undo, u)
		if err := hook(fmt.Sprintf("switched-%d", i)); err != nil {
			return err
		}
	}

	// Detach what is gone, commit, and drop the previous generation.
	keep := map[string]bool{state.StateName: true, state.NextName: true, man.Counters.Map: true}
	for _, n := range opts.Keep {
		keep[n] = true
	}
	keepStateful(keep, man)
	keepTailCalls(keep, man.Points)
	for _, s := range man.Sets {
		keep[s.Map] = true
	}
	for _, p := range man.Points {
		keep[p.Link], keep[p.Program] = true, true
		if p.Array != "" {
			keep[p.Array] = true
		}
	}
	var errs []error
	if err := detachExcept(st, keep); err != nil {
		errs = append(errs, err)
	}
	if err := hook("detached"); err != nil {
		return err
	}
	if err := st.Rename(state.NextName, state.StateName); err != nil {
		return errors.Join(append(errs, err)...)
	}
	if opts.Stats != nil {
		opts.Stats.Switched = time.Since(start)
	}
	delete(keep, state.NextName)
	if err := removeExcept(st, keep); err != nil {
		errs = append(errs, err)
	}
	if err := dropConntrack(ns, ctFams); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("ruleset applied, but cleaning up failed: %w", errors.Join(errs...))
	}
	if opts.Committed != nil {
		*opts.Committed = man
	}
	return nil
}

// cleanupFailed removes what a failed Apply pinned before it switched
// anything: everything the running manifest does not name, except links
// (which may belong to an interrupted earlier load that is still running).
func cleanupFailed(st *state.Dir, old *state.Manifest, err error) error {
	keep := map[string]bool{state.StateName: true, old.Counters.Map: true}
	keepStateful(keep, old)
	keepTailCalls(keep, old.Points)
	for _, s := range old.Sets {
		keep[s.Map] = true
	}
	for _, p := range old.Points {
		keep[p.Link], keep[p.Program] = true, true
		if p.Array != "" {
			keep[p.Array] = true
		}
	}
	names, lerr := st.Entries()
	if lerr != nil {
		return errors.Join(err, lerr)
	}
	if dropsProgramArrays(names, keep) {
		// Points switched before the failure were switched back; packets
		// may still be in the new programs.
		waitForRunningPrograms()
	}
	for _, n := range names {
		if keep[n] || strings.HasPrefix(n, "link-") || strings.HasPrefix(n, "array-") {
			continue
		}
		if rerr := st.Remove(n); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

func readManifest(st *state.Dir, name string) (*state.Manifest, error) {
	m, err := st.ReadManifest(name)
	if errors.Is(err, os.ErrNotExist) {
		return &state.Manifest{}, nil
	}
	if err != nil {
		return &state.Manifest{}, err
	}
	return m, nil
}

func (p *point) describe() string {
	s := fmt.Sprintf("table %s %s, chain %s (%s", p.Family, p.Table, p.Chain, p.Kind)
	if p.Device != "" {
		s += " on " + p.Device
	}
	if p.ProtoFamily != "" && p.Kind != KindXDP {
		s += " " + p.ProtoFamily
	}
	return s + ")"
}

// plan lists the attach points of res in switch order (by kind and
// device, then priority, then ruleset order) and checks what can be
// checked before loading: devices, cgroup paths, one XDP chain per device.
func plan(res *pipeline.Result, opts Options) ([]*point, error) {
	var points []*point
	xdp := map[uint32]*point{}
	devIdx := map[*ir.Chain]int{}
	for i, cp := range res.Programs {
		t, c, tgt := cp.Table, cp.Chain, cp.Target
		p := &point{cp: cp, order: i, Point: state.Point{
			Family: t.Family.String(), Table: t.Name, Chain: c.Name, Hook: c.Base.Hook.String(), Priority: c.Base.Priority,
		}}
		switch tgt.Type {
		case codegen.XDP, codegen.TC:
			n := devIdx[c]
			devIdx[c]++
			if tgt.Device == nil {
				name := "(none)"
				if n < len(c.Base.Devices) {
					name = c.Base.Devices[n]
				}
				return nil, fmt.Errorf("table %s %s, chain %s: device %q not found in the network namespace", t.Family, t.Name, c.Name, name)
			}
			p.Device, p.Ifindex, p.Backend = tgt.Device.Name, tgt.Device.Index, cp.Backend
			if tgt.Type == codegen.XDP {
				p.Kind = KindXDP
				if q := xdp[p.Ifindex]; q != nil {
					return nil, fmt.Errorf("table %s %s, chain %s and table %s %s, chain %s both hook netdev ingress on %s: XDP runs one program per device; use the tcx backend",
						q.Family, q.Table, q.Chain, t.Family, t.Name, c.Name, p.Device)
				}
				xdp[p.Ifindex] = p
				p.Key = fmt.Sprintf("%s/%d", p.Kind, p.Ifindex)
			} else {
				p.Kind = KindTCXIngress
				if tgt.Egress {
					p.Kind = KindTCXEgress
				}
				p.Key = fmt.Sprintf("%s/%d/%d/%s/%s/%s", p.Kind, p.Ifindex, p.Priority, p.Family, p.Table, p.Chain)
			}
		case codegen.Netfilter:
			p.Kind = KindNetfilter
			p.ProtoFamily = tgt.ProtoFamily.String()
			p.Key = fmt.Sprintf("%s/%s/%s/%d/%s/%s/%s", p.Kind, p.ProtoFamily, p.Hook, p.Priority, p.Family, p.Table, p.Chain)
		case codegen.CgroupSKB:
			if opts.CgroupPath == "" {
				return nil, fmt.Errorf("table %s %s, chain %s: cgroup_skb programs need a cgroup path", t.Family, t.Name, c.Name)
			}
			if fi, err := os.Stat(opts.CgroupPath); err != nil || !fi.IsDir() {
				return nil, fmt.Errorf("table %s %s, chain %s: cgroup %s: not a directory (%v)", t.Family, t.Name, c.Name, opts.CgroupPath, err)
			}
			p.Kind = KindCgroupIngress
			if tgt.Egress {
				p.Kind = KindCgroupEgress
			}
			p.Cgroup = opts.CgroupPath
			p.ProtoFamily = tgt.ProtoFamily.String()
			p.Key = fmt.Sprintf("%s/%s/%s/%s/%s/%s", p.Kind, p.Cgroup, p.ProtoFamily, p.Family, p.Table, p.Chain)
		default:
			return nil, fmt.Errorf("table %s %s, chain %s: program type %s cannot be attached", t.Family, t.Name, c.Name, tgt.Type)
		}
		id := pinID(p.Key)
		p.Link = "link-" + id
		if p.Kind == KindNetfilter {
			p.Array = "array-" + id
		}
		points = append(points, p)
	}
	seen := map[string]*point{}
	for _, p := range points {
		if q := seen[p.Key]; q != nil {
			return nil, fmt.Errorf("%s and %s: same attach point", q.describe(), p.describe())
		}
		seen[p.Key] = p
	}
	sort.SliceStable(points, func(i, j int) bool {
		a, b := points[i], points[j]
		if a.group() != b.group() {
			return a.group() < b.group()
		}
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		return a.order < b.order
	})
	return points, nil
}

// group is what orders attach points among themselves: points of one
// group run in priority order.
func (p *point) group() string {
	return fmt.Sprintf("%s/%d/%s/%s/%s", p.Kind, p.Ifindex, p.Cgroup, p.ProtoFamily, p.Hook)
}

// Counter slots.

// counterID is the stable identity of a counter statement.
func counterID(fam ir.Family, table, chain, text string, occurrence, stmt int) string {
	b, _ := json.Marshal([]any{fam.String(), table, chain, occurrence, stmt, text})
	return string(b)
}

type ruleKey struct {
	fam          ir.Family
	table, chain string
	handle       uint64
}

// prepareCounters assigns counter slots (fills man.Rules and
// man.Counters and every point's slots) and returns the counter map to
// load against: the running one, or a new, larger one (then pinned by the
// caller under man.Counters.Map). fresh lists the slots that are new to
// this load and must be zeroed before the switch.
func prepareCounters(st *state.Dir, old, interrupted *state.Manifest, res *pipeline.Result, points []*point, man *state.Manifest, opts Options) (m *ebpf.Map, fresh []uint32, created bool, err error) {
	inUse := map[uint32]bool{}
	for _, m := range []*state.Manifest{old, interrupted} {
		for _, s := range m.Counters.Slots {
			inUse[s] = true
		}
	}
	man.Counters.Slots = map[string]uint32{}
	slotOf := map[ruleKey][]uint32{}
	next := uint32(0)
	var maxSlot uint32
	assign := func(id string) uint32 {
		if s, ok := old.Counters.Slots[id]; ok {
			return s
		}
		for inUse[next] {
			next++
		}
		inUse[next] = true
		fresh = append(fresh, next)
		return next
	}
	for _, t := range res.Ruleset.Tables {
		for _, c := range t.Chains {
			occ := map[string]int{}
			for _, r := range c.Rules {
				text := res.RuleText(t.Family, r)
				n := occ[text]
				occ[text]++
				rule := state.Rule{Family: t.Family.String(), Table: t.Name, Chain: c.Name, Handle: r.Handle, Text: text, Slots: []uint32{}}
				for i, s := range r.Stmts {
					if _, ok := s.(*ir.Counter); !ok {
						continue
					}
					id := counterID(t.Family, t.Name, c.Name, text, n, i)
					slot := assign(id)
					man.Counters.Slots[id] = slot
					rule.Slots = append(rule.Slots, slot)
					maxSlot = max(maxSlot, slot+1)
				}
				slotOf[ruleKey{t.Family, t.Name, c.Name, r.Handle}] = rule.Slots
				man.Rules = append(man.Rules, rule)
			}
		}
	}
	rules := ruleIndex{}
	for _, p := range points {
		fam, table := p.cp.Table.Family, p.cp.Table.Name
		for _, cs := range p.cp.Program.CounterSlots {
			slots := slotOf[ruleKey{fam, table, cs.Chain, cs.Handle}]
			idx := -1
			// Find the statement's position among the rule's counters.
			r := rules.find(p.cp.Table, cs.Chain, cs.Handle)
			if r == nil {
				return nil, nil, false, fmt.Errorf("%s: counter of unknown rule %s handle %d", p.describe(), cs.Chain, cs.Handle)
			}
			n := 0
			for i, s := range r.Stmts {
				if _, ok := s.(*ir.Counter); ok {
					if i == cs.Stmt {
						idx = n
					}
					n++
				}
			}
			if idx < 0 || idx >= len(slots) {
				return nil, nil, false, fmt.Errorf("%s: counter statement %d of rule %s handle %d has no slot", p.describe(), cs.Stmt, cs.Chain, cs.Handle)
			}
			p.slots = append(p.slots, slots[idx])
		}
	}

	capacity := max(opts.CounterCapacity, 1024)
	if old.Counters.Map != "" && old.Counters.Capacity >= maxSlot {
		m, err := ebpf.LoadPinnedMap(st.PinPath(old.Counters.Map), nil)
		if err == nil {
			man.Counters.Map, man.Counters.Capacity = old.Counters.Map, old.Counters.Capacity
			return m, fresh, false, nil
		}
		// The map is gone (a damaged state): start over with zeroes.
	}
	for capacity < maxSlot {
		capacity *= 2
	}
	m, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "bpfnft_counters", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: capacity,
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("counter map of %d slots: %w", capacity, err)
	}
	man.Counters.Map, man.Counters.Capacity = fmt.Sprintf("counters-%d", man.Generation), capacity
	// Carry the values of kept slots over from the previous map.
	if old.Counters.Map != "" {
		if prev, err := ebpf.LoadPinnedMap(st.PinPath(old.Counters.Map), nil); err == nil {
			defer prev.Close()
			for id, s := range man.Counters.Slots {
				if prevSlot, ok := old.Counters.Slots[id]; ok && prevSlot == s {
					var vals []codegen.CounterValue
					if err := prev.Lookup(s, &vals); err == nil {
						m.Update(s, vals, ebpf.UpdateAny)
					}
				}
			}
		}
	}
	return m, nil, true, nil
}

// ruleIndex finds rules by chain and handle, indexing each table's chain
// once.
type ruleIndex map[*ir.Table]map[string]map[uint64]*ir.Rule

func (x ruleIndex) find(t *ir.Table, chain string, handle uint64) *ir.Rule {
	chains, ok := x[t]
	if !ok {
		chains = map[string]map[uint64]*ir.Rule{}
		x[t] = chains
	}
	byHandle, ok := chains[chain]
	if !ok {
		byHandle = map[uint64]*ir.Rule{}
		if c := t.Chain(chain); c != nil {
			for _, r := range c.Rules {
				if _, dup := byHandle[r.Handle]; !dup {
					byHandle[r.Handle] = r
				}
			}
		}
		chains[chain] = byHandle
	}
	return byHandle[handle]
}

func zeroSlots(m *ebpf.Map, slots []uint32) error {
	if len(slots) == 0 {
		return nil
	}
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	zero := make([]codegen.CounterValue, n)
	for _, s := range slots {
		if err := m.Update(s, zero, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("zero counter slot %d: %w", s, err)
		}
	}
	return nil
}

// Netfilter dispatcher.

// newDispatcher loads the program a netfilter link runs: it tail-calls
// the chain program in slot 0 of array. If the tail call fails (the slot is
// empty) it drops: the slot is filled before the link is attached and only
// ever replaced, never emptied, while the link exists (Flush detaches the
// link before unpinning the array), so this cannot happen — but if the
// array were unpinned behind our back, the kernel would clear it, and a
// filter that silently let everything through would be worse than one that
// stops everything.
func newDispatcher(array *ebpf.Map) (*ebpf.Program, error) {
	spec := &ebpf.ProgramSpec{
		Name:       "nft_dispatch",
		Type:       ebpf.Netfilter,
		AttachType: ebpf.AttachNetfilter,
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.LoadMapPtr(asm.R2, array.FD()),
			asm.Mov.Imm(asm.R3, 0),
			asm.FnTailCall.Call(),
			asm.Mov.Imm(asm.R0, codegen.ReturnCode(codegen.Netfilter, false)),
			asm.Return(),
		},
	}
	return ebpf.NewProgram(spec)
}

func loadOrNewArray(st *state.Dir, p *point) (*ebpf.Map, bool, error) {
	if st.Exists(p.Array) {
		m, err := ebpf.LoadPinnedMap(st.PinPath(p.Array), nil)
		if err == nil && m.Type() == ebpf.ProgramArray {
			return m, false, nil
		}
		if m != nil {
			m.Close()
		}
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "bpfnft_dispatch", Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	return m, true, err
}

// switchPoint makes p run its new program and returns how to undo that.
func switchPoint(ns *nsctx.NetNS, st *state.Dir, p *point, all []*point, opts Options) (func() error, error) {
	if p.Kind == KindNetfilter {
		var prevID uint32
		hadPrev := p.array.Lookup(uint32(0), &prevID) == nil
		if err := p.array.Update(uint32(0), p.prog, ebpf.UpdateAny); err != nil {
			return nil, fmt.Errorf("dispatcher slot: %w", err)
		}
		restore := func() error {
			if !hadPrev {
				return nil
			}
			prev, err := ebpf.NewProgramFromID(ebpf.ProgramID(prevID))
			if err != nil {
				return err
			}
			defer prev.Close()
			return p.array.Update(uint32(0), prev, ebpf.UpdateAny)
		}
		if err := st.Pin(p.Array, p.array); err != nil {
			return nil, errors.Join(err, restore())
		}
		if p.dispatcher == nil {
			l, err := link.LoadPinnedLink(st.PinPath(p.Link), nil)
			if err != nil {
				return nil, errors.Join(fmt.Errorf("load pinned link: %w", err), restore())
			}
			p.link = l
			return restore, nil
		}
		l, err := hooks.Attach(ns, p.dispatcher, hooks.Point{Target: p.cp.Target, Priority: p.Priority})
		if err != nil {
			return nil, errors.Join(err, restore())
		}
		if err := st.Pin(p.Link, l); err != nil {
			l.Close()
			return nil, errors.Join(err, restore())
		}
		p.link = l
		return func() error {
			err := st.Remove(p.Link)
			return errors.Join(err, l.Close(), restore(), st.Remove(p.Array))
		}, nil
	}
	if l, err := link.LoadPinnedLink(st.PinPath(p.Link), nil); err == nil {
		info, err := l.Info()
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("link info: %w", err)
		}
		if err := l.Update(p.prog); err != nil {
			l.Close()
			return nil, fmt.Errorf("update link: %w", err)
		}
		p.link = l
		return func() error {
			prev, err := ebpf.NewProgramFromID(info.Program)
			if err != nil {
				return err
			}
			defer prev.Close()
			return l.Update(prev)
		}, nil
	}
	var l link.Link
	var err error
	if p.Kind == KindTCXIngress || p.Kind == KindTCXEgress {
		l, err = attachTCX(ns, p, all)
	} else {
		l, err = hooks.Attach(ns, p.prog, hooks.Point{Target: p.cp.Target, Priority: p.Priority, CgroupPath: opts.CgroupPath})
	}
	if err != nil {
		return nil, err
	}
	if err := st.Pin(p.Link, l); err != nil {
		l.Close()
		return nil, err
	}
	p.link = l
	return func() error { return errors.Join(st.Remove(p.Link), l.Close()) }, nil
}

// attachTCX attaches p's program after the link of the chain before it in
// priority order on the same device and direction, or before the next one,
// or last.
func attachTCX(ns *nsctx.NetNS, p *point, all []*point) (link.Link, error) {
	anchor := link.Tail()
	var prev *point
	for _, q := range all {
		if q == p {
			break
		}
		if q.group() == p.group() && q.link != nil {
			prev = q
		}
	}
	if prev != nil {
		anchor = link.AfterLink(prev.link)
	} else {
		found := false
		for _, q := range all {
			if q == p {
				found = true
				continue
			}
			if found && q.group() == p.group() && q.link != nil {
				anchor = link.BeforeLink(q.link)
				break
			}
		}
	}
	at := ebpf.AttachTCXIngress
	if p.Kind == KindTCXEgress {
		at = ebpf.AttachTCXEgress
	}
	var l link.Link
	err := ns.Do(func() error {
		var err error
		l, err = link.AttachTCX(link.TCXOptions{Program: p.prog, Interface: int(p.Ifindex), Attach: at, Anchor: anchor})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach tcx: %w", err)
	}
	return l, nil
}

// detachExcept unpins (and so detaches) every link not in keep, then every
// dispatcher array not in keep.
func detachExcept(st *state.Dir, keep map[string]bool) error {
	names, err := st.Entries()
	if err != nil {
		return err
	}
	var errs []error
	for _, prefix := range []string{"link-", "array-"} {
		if prefix == "array-" && dropsProgramArrays(names, keep) {
			waitForRunningPrograms()
		}
		for _, n := range names {
			if keep[n] || !strings.HasPrefix(n, prefix) {
				continue
			}
			if prefix == "link-" {
				detachPinned(st.PinPath(n))
			}
			if err := st.Remove(n); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// detachPinned detaches the link pinned at path right away. Removing the
// last pin alone is not enough: the kernel releases a link whose last
// reference was a pin from a work queue, so its program would go on
// filtering for a while after we return. Errors are left to the pin's
// removal that follows (a link that is already defunct, for one, because
// its device or cgroup went away, has nothing left to detach).
func detachPinned(path string) {
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return
	}
	defer l.Close()
	l.Detach()
}

// removeExcept unpins every entry not in keep, links and arrays first.
func removeExcept(st *state.Dir, keep map[string]bool) error {
	err := detachExcept(st, keep)
	names, lerr := st.Entries()
	if lerr != nil {
		return errors.Join(err, lerr)
	}
	for _, n := range names {
		if !keep[n] {
			err = errors.Join(err, st.Remove(n))
		}
	}
	return err
}

// Flush detaches and unpins everything recorded in st, including leftovers
// of an interrupted load, and removes the directory.
func Flush(st *state.Dir) error {
	unlock, err := st.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	return FlushLocked(st)
}

// FlushLocked is Flush for a caller that holds st.Lock().
func FlushLocked(st *state.Dir) error {
	if err := removeExcept(st, map[string]bool{}); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if err := st.Delete(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// Snapshot is a stored ruleset with its live counters.
type Snapshot struct {
	// Manifest is the running ruleset's record (empty when none is
	// loaded).
	Manifest *state.Manifest
	// Counters holds, for each of Manifest.Rules, the values of its
	// counter statements in order.
	Counters [][]codegen.CounterValue
	// States holds, for each of Manifest.Rules, the state of its limit
	// and quota statements in order (nil when no rule has any).
	States [][]codegen.StateValue
	// Objects holds the state of each named object, by ObjectStateID
	// (nil when there is none).
	Objects map[string]codegen.StateValue
	// Interrupted is true when a load was interrupted (the process died
	// in the middle of Apply): some attach points may run that load's
	// programs until the next Apply or Flush repairs the state.
	Interrupted bool
}

// Load reads the ruleset recorded in st and its counters.
func Load(st *state.Dir) (*Snapshot, error) {
	m, err := readManifest(st, state.StateName)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Manifest: m, Interrupted: st.Exists(state.NextName)}
	if len(m.Rules) == 0 {
		return s, nil
	}
	cm, err := ebpf.LoadPinnedMap(st.PinPath(m.Counters.Map), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("counter map: %w", err)
	}
	defer cm.Close()
	for _, r := range m.Rules {
		vals := make([]codegen.CounterValue, len(r.Slots))
		for i, slot := range r.Slots {
			var percpu []codegen.CounterValue
			if err := cm.Lookup(slot, &percpu); err != nil {
				return nil, fmt.Errorf("counter slot %d (%s %s chain %s handle %d): %w", slot, r.Family, r.Table, r.Chain, r.Handle, err)
			}
			for _, v := range percpu {
				vals[i].Packets += v.Packets
				vals[i].Bytes += v.Bytes
			}
		}
		s.Counters = append(s.Counters, vals)
	}
	if s.States, err = readStates(st, m); err != nil {
		return nil, err
	}
	if s.Objects, err = readObjectStates(st, m); err != nil {
		return nil, err
	}
	return s, nil
}

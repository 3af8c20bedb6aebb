package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// Stateful statements: every limit and quota of the ruleset has one slot
// in a state map all programs share (codegen.StateMapSpec), keyed like
// counters by the statement's stable identity, so that a reload keeps the
// bucket or the consumed bytes of unchanged rules, as nftables keeps the
// state of a rule it does not replace. Log statements write to one ring
// buffer per namespace, pinned as "events", which `bpfilter-nft monitor`
// reads; it survives reloads so that a running monitor keeps reading.

// eventsPin is the state directory entry of the log ring buffer.
const eventsPin = "events"

// statefulMaps are the state map and ring buffer a load uses.
type statefulMaps struct {
	state        *ebpf.Map
	stateCreated bool
	fresh        []uint32
	events       *ebpf.Map
	eventsNew    bool
}

func (s *statefulMaps) close() error {
	for _, m := range []*ebpf.Map{s.state, s.events} {
		if m != nil {
			m.Close()
		}
	}
	return nil
}

// changed reports whether the load creates or initialises anything, which
// rules out the set-elements-only path.
func (s *statefulMaps) changed() bool {
	return s.stateCreated || len(s.fresh) > 0 || s.eventsNew
}

// isStateful reports whether s keeps state in the state map.
func isStateful(s ir.Stmt) bool {
	switch s.(type) {
	case *ir.Limit, *ir.Quota:
		return true
	}
	return false
}

// stateID is the stable identity of a limit or quota statement.
func stateID(fam ir.Family, table, chain, text string, occurrence, stmt int) string {
	return "state:" + counterID(fam, table, chain, text, occurrence, stmt)
}

// prepareStateful assigns state slots (man.State, every point's
// stateSlots) and opens or creates the state map and the ring buffer.
func prepareStateful(st *state.Dir, old, interrupted *state.Manifest, res *pipeline.Result, points []*point, man *state.Manifest) (sm *statefulMaps, err error) {
	sm = &statefulMaps{}
	defer func() {
		if err != nil {
			sm.close()
		}
	}()
	inUse := map[uint32]bool{}
	for _, m := range []*state.Manifest{old, interrupted} {
		for _, s := range m.State.Slots {
			inUse[s] = true
		}
	}
	man.State.Slots = map[string]uint32{}
	byStmt := map[ruleKey]map[int]uint32{}
	ruleIdx := 0 // man.Rules lists the rules in this same order
	next := uint32(0)
	var maxSlot uint32
	logs := false
	byObj := map[objectKey]uint32{}
	for _, t := range res.Ruleset.Tables {
		for _, o := range t.Objects {
			id := ObjectStateID(t.Family, t.Name, o)
			slot, ok := old.State.Slots[id]
			if !ok {
				for inUse[next] {
					next++
				}
				slot = next
				inUse[slot] = true
				sm.fresh = append(sm.fresh, slot)
			}
			man.State.Slots[id] = slot
			byObj[objectKey{t.Family, t.Name, o.Identity()}] = slot
			maxSlot = max(maxSlot, slot+1)
		}
		for _, c := range t.Chains {
			occ := map[string]int{}
			for _, r := range c.Rules {
				text := res.RuleText(t.Family, r)
				n := occ[text]
				occ[text]++
				var rec *state.Rule
				if ruleIdx < len(man.Rules) {
					rec = &man.Rules[ruleIdx]
				}
				ruleIdx++
				for i, s := range r.Stmts {
					if _, ok := s.(*ir.Log); ok {
						logs = true
					}
					if !isStateful(s) {
						continue
					}
					id := stateID(t.Family, t.Name, c.Name, text, n, i)
					slot, ok := old.State.Slots[id]
					if !ok {
						for inUse[next] {
							next++
						}
						slot = next
						inUse[slot] = true
						sm.fresh = append(sm.fresh, slot)
					}
					man.State.Slots[id] = slot
					if rec != nil {
						rec.State = append(rec.State, slot)
					}
					k := ruleKey{t.Family, t.Name, c.Name, r.Handle}
					if byStmt[k] == nil {
						byStmt[k] = map[int]uint32{}
					}
					byStmt[k][i] = slot
					maxSlot = max(maxSlot, slot+1)
				}
			}
		}
	}
	for _, p := range points {
		fam, table := p.cp.Table.Family, p.cp.Table.Name
		p.stateSlots = nil
		for _, ss := range p.cp.Program.StateSlots {
			if ss.Object != "" {
				slot, ok := objectSlotOf(byObj, fam, table, ss)
				if !ok {
					return nil, fmt.Errorf("%s: object %s has no state slot", p.describe(), ss.Object)
				}
				p.stateSlots = append(p.stateSlots, slot)
				continue
			}
			slot, ok := byStmt[ruleKey{fam, table, ss.Chain, ss.Handle}][ss.Stmt]
			if !ok {
				return nil, fmt.Errorf("%s: statement %d of rule %s handle %d has no state slot", p.describe(), ss.Stmt, ss.Chain, ss.Handle)
			}
			p.stateSlots = append(p.stateSlots, slot)
		}
	}

	if maxSlot > 0 {
		if old.State.Map != "" && old.State.Capacity >= maxSlot {
			if m, err := ebpf.LoadPinnedMap(st.PinPath(old.State.Map), nil); err == nil {
				sm.state = m
				man.State.Map, man.State.Capacity = old.State.Map, old.State.Capacity
			}
		}
		if sm.state == nil {
			capacity := uint32(256)
			for capacity < maxSlot {
				capacity *= 2
			}
			m, err := ebpf.NewMap(codegen.StateMapSpec(capacity))
			if err != nil {
				return nil, fmt.Errorf("state map of %d slots: %w", capacity, err)
			}
			sm.state, sm.stateCreated = m, true
			man.State.Map, man.State.Capacity = fmt.Sprintf("state-%d", man.Generation), capacity
			// Carry kept slots over from the previous map.
			if old.State.Map != "" {
				if prev, err := ebpf.LoadPinnedMap(st.PinPath(old.State.Map), nil); err == nil {
					for id, s := range man.State.Slots {
						if ps, ok := old.State.Slots[id]; ok && ps == s {
							var v codegen.StateValue
							if prev.Lookup(s, &v) == nil {
								m.Update(s, v, ebpf.UpdateAny)
							}
						}
					}
					prev.Close()
				}
			}
		}
	}

	// Once created, the ring buffer stays while the namespace has a
	// ruleset, so that a running monitor keeps receiving.
	if logs || (old.Events == eventsPin && st.Exists(eventsPin)) {
		man.Events = eventsPin
		if old.Events == eventsPin && st.Exists(eventsPin) {
			m, err := ebpf.LoadPinnedMap(st.PinPath(eventsPin), nil)
			if err == nil && m.Type() == ebpf.RingBuf {
				sm.events = m
			} else if m != nil {
				m.Close()
			}
		}
		if sm.events == nil {
			m, err := ebpf.NewMap(codegen.EventsMapSpec())
			if err != nil {
				return nil, fmt.Errorf("log ring buffer: %w", err)
			}
			sm.events, sm.eventsNew = m, true
		}
	}
	return sm, nil
}

// pin pins what prepareStateful created and clears fresh slots (a slot
// may have served a rule that is gone).
func (sm *statefulMaps) pin(st *state.Dir, man *state.Manifest) error {
	if sm.stateCreated {
		if err := st.Pin(man.State.Map, sm.state); err != nil {
			return err
		}
	}
	if sm.eventsNew {
		if st.Exists(eventsPin) {
			if err := st.Remove(eventsPin); err != nil {
				return err
			}
		}
		if err := st.Pin(eventsPin, sm.events); err != nil {
			return err
		}
	}
	var errs []error
	for _, s := range sm.fresh {
		if err := sm.state.Update(s, codegen.StateValue{}, ebpf.UpdateAny); err != nil {
			errs = append(errs, fmt.Errorf("clear state slot %d: %w", s, err))
		}
	}
	return errors.Join(errs...)
}

// keepStateful adds the stateful maps m names to keep.
func keepStateful(keep map[string]bool, m *state.Manifest) {
	if m.State.Map != "" {
		keep[m.State.Map] = true
	}
	if m.Events != "" {
		keep[m.Events] = true
	}
}

// OpenEvents opens the log ring buffer of the ruleset recorded in st. It
// fails when no rule of the ruleset logs (and none has since it was
// loaded).
func OpenEvents(st *state.Dir) (*ebpf.Map, error) {
	m, err := readManifest(st, state.StateName)
	if err != nil {
		return nil, err
	}
	if m.Events == "" {
		return nil, fmt.Errorf("no rule of the ruleset in %s logs: there are no log events to read", st.Path())
	}
	rb, err := ebpf.LoadPinnedMap(st.PinPath(m.Events), nil)
	if err != nil {
		return nil, fmt.Errorf("log ring buffer: %w", err)
	}
	if rb.Type() != ebpf.RingBuf {
		rb.Close()
		return nil, fmt.Errorf("%s is a %s, not a ring buffer", st.PinPath(m.Events), rb.Type())
	}
	return rb, nil
}

// readStates reads the state slots of every rule of m (see
// Snapshot.States).
func readStates(st *state.Dir, m *state.Manifest) ([][]codegen.StateValue, error) {
	if m.State.Map == "" {
		return nil, nil
	}
	sm, err := ebpf.LoadPinnedMap(st.PinPath(m.State.Map), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("state map: %w", err)
	}
	defer sm.Close()
	out := make([][]codegen.StateValue, len(m.Rules))
	for i, r := range m.Rules {
		for _, slot := range r.State {
			var v codegen.StateValue
			if err := sm.Lookup(slot, &v); err != nil {
				return nil, fmt.Errorf("state slot %d (%s %s chain %s handle %d): %w", slot, r.Family, r.Table, r.Chain, r.Handle, err)
			}
			out[i] = append(out[i], v)
		}
	}
	return out, nil
}

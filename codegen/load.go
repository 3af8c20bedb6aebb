package codegen

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Loaded is a program and its maps in the kernel.
type Loaded struct {
	Program  *ebpf.Program
	Counters *ebpf.Map
	// Sets are the element maps of the program's sets as loaded, and
	// SetSlots the slots the program looks them up in (see NewSetSlot).
	Sets     map[*ir.Set]*ebpf.Map
	SetSlots map[*ir.Set]*ebpf.Map
	// Groups are the maps of Program.Groups, in order.
	Groups []*ebpf.Map
	// State holds limit and quota state (nil if the program has none).
	State *ebpf.Map
	// Events is the log ring buffer (nil if the program logs nothing).
	Events *ebpf.Map
	// TailCalls and Tail are the program array of a split chain and the
	// programs in it (Program.Tail); nil for a chain in one program.
	TailCalls *ebpf.Map
	Tail      []*ebpf.Program
}

// CounterValue is the sum of a counter over all CPUs.
type CounterValue struct {
	Packets, Bytes uint64
}

// Load creates the maps and the program in the kernel; set maps are
// filled with the sets' elements.
func (p *Program) Load() (*Loaded, error) {
	counters, err := ebpf.NewMap(p.Counters)
	if err != nil {
		return nil, fmt.Errorf("create counter map: %w", err)
	}
	l := &Loaded{Counters: counters, Sets: map[*ir.Set]*ebpf.Map{}, SetSlots: map[*ir.Set]*ebpf.Map{}}
	for s := range p.Sets {
		m, err := NewSetMap(s)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.Sets[s] = m
		slot, err := NewSetSlot(s, m)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.SetSlots[s] = slot
	}
	if p.State != nil {
		if l.State, err = ebpf.NewMap(p.State); err != nil {
			l.Close()
			return nil, fmt.Errorf("create state map: %w", err)
		}
	}
	if p.Events != nil {
		if l.Events, err = ebpf.NewMap(p.Events); err != nil {
			l.Close()
			return nil, fmt.Errorf("create log ring buffer: %w", err)
		}
	}
	spec := p.Spec.Copy()
	all, bounds := p.joinTail()
	if err := all.AssociateMap(counterMapSymbol, counters); err != nil && !errors.Is(err, asm.ErrUnreferencedSymbol) {
		l.Close()
		return nil, fmt.Errorf("associate counter map: %w", err)
	}
	if err := associateState(all, p, l.State, nil); err != nil {
		l.Close()
		return nil, err
	}
	if err := associateEvents(all, p, l.Events); err != nil {
		l.Close()
		return nil, err
	}
	id := func(i int) uint32 { return uint32(i) }
	if l.Groups, err = p.loadGroups(all, counters, l.State, id, id); err != nil {
		l.Close()
		return nil, err
	}
	if err := associateSets(all, p, l.SetSlots); err != nil {
		l.Close()
		return nil, err
	}
	if p.TailCalls != nil {
		if l.TailCalls, err = ebpf.NewMap(p.TailCalls); err != nil {
			l.Close()
			return nil, fmt.Errorf("create program array: %w", err)
		}
	}
	if l.Tail, err = p.loadTail(all, bounds, l.TailCalls); err != nil {
		l.Close()
		return nil, err
	}
	spec.Instructions = all[:bounds[1]]
	prog, err := ebpf.NewProgramWithOptions(spec, ebpf.ProgramOptions{LogSizeStart: 1 << 20})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("load %s program: %w", spec.Type, err)
	}
	l.Program = prog
	return l, nil
}

// Close frees the program and its maps.
func (l *Loaded) Close() error {
	var errs []error
	if l.Program != nil {
		errs = append(errs, l.Program.Close())
	}
	if l.Counters != nil {
		errs = append(errs, l.Counters.Close())
	}
	for _, m := range l.Sets {
		errs = append(errs, m.Close())
	}
	for _, m := range l.SetSlots {
		errs = append(errs, m.Close())
	}
	for _, m := range l.Groups {
		errs = append(errs, m.Close())
	}
	for _, t := range l.Tail {
		errs = append(errs, t.Close())
	}
	for _, m := range []*ebpf.Map{l.State, l.Events, l.TailCalls} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}

// ReadCounters sums per-CPU values per slot.
func (l *Loaded) ReadCounters() ([]CounterValue, error) {
	n := l.Counters.MaxEntries()
	out := make([]CounterValue, n)
	for i := uint32(0); i < n; i++ {
		var vals []CounterValue
		if err := l.Counters.Lookup(i, &vals); err != nil {
			return nil, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, v := range vals {
			out[i].Packets += v.Packets
			out[i].Bytes += v.Bytes
		}
	}
	return out, nil
}

// loadGroups creates the program's group maps, filled with counter slots
// slots(i) for counter index i and state slots state(j) for state index
// j, and points insns at them, at the counter map and at the state map
// (nil if the program keeps no state). On error it closes what it
// created.
func (p *Program) loadGroups(insns asm.Instructions, counters, stateMap *ebpf.Map, slots, state func(int) uint32) ([]*ebpf.Map, error) {
	if err := insns.AssociateMap(counterDynSymbol, counters); err != nil && !errors.Is(err, asm.ErrUnreferencedSymbol) {
		return nil, fmt.Errorf("associate counter map: %w", err)
	}
	if stateMap != nil {
		if err := insns.AssociateMap(stateDynSymbol, stateMap); err != nil && !errors.Is(err, asm.ErrUnreferencedSymbol) {
			return nil, fmt.Errorf("associate state map: %w", err)
		}
	}
	var out []*ebpf.Map
	for _, gm := range p.Groups {
		m, err := newGroupMap(gm, slots, state)
		if err == nil {
			err = insns.AssociateMap(gm.Symbol, m)
			out = append(out, m)
		}
		if err != nil {
			for _, m := range out {
				m.Close()
			}
			return nil, err
		}
	}
	return out, nil
}

package codegen

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// LoadShared loads the program with its counters in a map the caller owns
// (a per-CPU array like p.Counters, possibly larger and shared by several
// programs): the counter statement p.CounterSlots[i] counts in slot
// slots[i] of counters. The program's own counter map is not created, nor
// are set maps: sets gives the slot of every set in p.Sets (see NewSetSlot).
func (p *Program) LoadShared(counters *ebpf.Map, slots []uint32, sets map[*ir.Set]*ebpf.Map) (*ebpf.Program, error) {
	return p.LoadWith(SharedMaps{Counters: counters, CounterSlots: slots, Sets: sets})
}

// SharedMaps are the maps a program is loaded against by LoadWith.
type SharedMaps struct {
	Counters     *ebpf.Map
	CounterSlots []uint32 // program counter i counts in slot CounterSlots[i]
	Sets         map[*ir.Set]*ebpf.Map
	// State (StateMapSpec) holds limit and quota state: the program's
	// state slot i is slot StateSlots[i]. Needed if p.StateSlots is not
	// empty.
	State      *ebpf.Map
	StateSlots []uint32
	// Events is the log ring buffer (EventsMapSpec); needed if p.Events
	// is not nil.
	Events *ebpf.Map
	// TailCalls is the program array (p.TailCalls) of a split chain;
	// needed if p.Tail is not empty. LoadWith fills it; the caller keeps
	// it (pinned) as long as the program runs.
	TailCalls *ebpf.Map
}

// LoadWith loads the program against maps the caller owns; see
// LoadShared.
func (p *Program) LoadWith(m SharedMaps) (*ebpf.Program, error) {
	counters, slots, sets := m.Counters, m.CounterSlots, m.Sets
	if len(slots) != len(p.CounterSlots) {
		return nil, fmt.Errorf("%d slots given for %d counters", len(slots), len(p.CounterSlots))
	}
	if counters.Type() != p.Counters.Type || counters.KeySize() != p.Counters.KeySize || counters.ValueSize() != p.Counters.ValueSize {
		return nil, fmt.Errorf("counter map is a %s with key/value sizes %d/%d, want %s with %d/%d",
			counters.Type(), counters.KeySize(), counters.ValueSize(), p.Counters.Type, p.Counters.KeySize, p.Counters.ValueSize)
	}
	for i, s := range slots {
		if s >= counters.MaxEntries() {
			return nil, fmt.Errorf("counter %d: slot %d beyond the map's %d entries", i, s, counters.MaxEntries())
		}
	}
	spec := p.Spec.Copy()
	insns, bounds := p.joinTail()
	// Every counter statement is LoadMapPtr(nft_counters) followed by the
	// store of its slot number into the key slot (see gen.counter).
	for i := range insns {
		if insns[i].Reference() != counterMapSymbol {
			continue
		}
		if i+1 >= len(insns) || insns[i+1].OpCode.Class() != asm.StClass ||
			insns[i+1].Dst != asm.R10 || insns[i+1].Offset != slotKey {
			return nil, fmt.Errorf("instruction %d: counter map reference not followed by its slot number", i)
		}
		idx := insns[i+1].Constant
		if idx < 0 || int(idx) >= len(slots) {
			return nil, fmt.Errorf("instruction %d: counter slot %d out of range", i+1, idx)
		}
		insns[i+1].Constant = int64(slots[idx])
	}
	if err := insns.AssociateMap(counterMapSymbol, counters); err != nil && !errors.Is(err, asm.ErrUnreferencedSymbol) {
		return nil, fmt.Errorf("associate counter map: %w", err)
	}
	if err := associateSets(insns, p, sets); err != nil {
		return nil, err
	}
	stateSlots := m.StateSlots
	if stateSlots == nil && len(p.StateSlots) > 0 {
		stateSlots = []uint32{}
	}
	if err := associateState(insns, p, m.State, stateSlots); err != nil {
		return nil, err
	}
	if err := associateEvents(insns, p, m.Events); err != nil {
		return nil, err
	}
	// The program holds its group maps; ours are closed once it is loaded.
	state := func(i int) uint32 { return uint32(i) }
	if m.StateSlots != nil {
		state = func(i int) uint32 { return m.StateSlots[i] }
	}
	groups, err := p.loadGroups(insns, counters, m.State, func(i int) uint32 { return slots[i] }, state)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, m := range groups {
			m.Close()
		}
	}()
	tail, err := p.loadTail(insns, bounds, m.TailCalls)
	if err != nil {
		return nil, err
	}
	for _, t := range tail {
		defer t.Close()
	}
	spec.Instructions = insns[:bounds[1]]
	prog, err := ebpf.NewProgramWithOptions(spec, ebpf.ProgramOptions{LogSizeStart: 1 << 20})
	if err != nil {
		return nil, fmt.Errorf("load %s program: %w", spec.Type, err)
	}
	return prog, nil
}

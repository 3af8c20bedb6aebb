package codegen

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Set slots. Programs do not reference the map that holds a set's
// elements (see SetMapSpec) directly: they reference the set's slot, a
// one-entry BPF_MAP_TYPE_ARRAY_OF_MAPS whose entry 0 is the element map,
// and look the element map up in it first (one extra lookup, which the
// verifier inlines into a few instructions). A change of many elements
// builds a new element map and stores it in the slot with one map update
// (SwapSetMap): a packet looks the slot up once and then sees either the
// old or the new element map, never a mix. The kernel frees the old map
// once no program runs with it and no file descriptor holds it.

// slotSetMap is the stack slot holding the element map pointer while a
// range table is scanned (below concatKey).
const slotSetMap = -424

// SetSlotSpec returns the spec of the slot of set s: a one-entry array of
// maps whose inner maps have the spec of s's element map.
func SetSlotSpec(s *ir.Set) (*ebpf.MapSpec, error) {
	inner, err := SetMapSpec(s)
	if err != nil {
		return nil, err
	}
	return &ebpf.MapSpec{
		Name:       "nft_slot_" + sanitize(s.Name),
		Type:       ebpf.ArrayOfMaps,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: 1,
		InnerMap:   inner,
	}, nil
}

// NewSetSlot creates the slot of set s holding the element map inner
// (see NewSetMap).
func NewSetSlot(s *ir.Set, inner *ebpf.Map) (*ebpf.Map, error) {
	spec, err := SetSlotSpec(s)
	if err != nil {
		return nil, err
	}
	// The template only fixes the inner maps' type, sizes and flags; the
	// kernel does not compare the capacity of hash maps and LPM tries.
	spec.InnerMap.MaxEntries = inner.MaxEntries()
	slot, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create slot of set %s: %w", s.Name, err)
	}
	if err := SwapSetMap(slot, inner); err != nil {
		slot.Close()
		return nil, fmt.Errorf("set %s: %w", s.Name, err)
	}
	return slot, nil
}

// SwapSetMap makes inner the element map of a set's slot with one map
// update: a packet sees the previous element map or inner.
func SwapSetMap(slot, inner *ebpf.Map) error {
	if slot.Type() != ebpf.ArrayOfMaps {
		return fmt.Errorf("set slot is a %s, not an array of maps", slot.Type())
	}
	if err := slot.Update(uint32(0), inner, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("store element map in set slot: %w", err)
	}
	return nil
}

// SetSlotMap opens the element map a set's slot holds now.
func SetSlotMap(slot *ebpf.Map) (*ebpf.Map, error) {
	if slot.Type() != ebpf.ArrayOfMaps || slot.MaxEntries() != 1 {
		return nil, fmt.Errorf("set slot is a %s of %d entries, not a one-entry array of maps", slot.Type(), slot.MaxEntries())
	}
	var inner *ebpf.Map
	if err := slot.Lookup(uint32(0), &inner); err != nil {
		return nil, fmt.Errorf("read set slot: %w", err)
	}
	return inner, nil
}

// NewSetMapLike creates an element map for set s with the capacity of
// the element map old (which s's elements must fit), filled with s's
// entries (values of a verdict map indexing targets): the replacement
// that SwapSetMap stores in s's slot.
func NewSetMapLike(s *ir.Set, old *ebpf.Map, targets []ir.Verdict) (*ebpf.Map, error) {
	spec, err := SetMapSpec(s)
	if err != nil {
		return nil, err
	}
	if old.Type() != spec.Type || old.KeySize() != spec.KeySize || old.ValueSize() != spec.ValueSize {
		return nil, fmt.Errorf("set %s: element map is a %s with %d/%d-byte keys/values, want %s with %d/%d", s.Name,
			old.Type(), old.KeySize(), old.ValueSize(), spec.Type, spec.KeySize, spec.ValueSize)
	}
	keys, values, err := SetMapEntriesWith(s, targets)
	if err != nil {
		return nil, err
	}
	if uint32(len(keys)) > old.MaxEntries() {
		return nil, fmt.Errorf("set %s: %d entries do not fit the map's %d", s.Name, len(keys), old.MaxEntries())
	}
	spec.MaxEntries = old.MaxEntries()
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create map of set %s: %w", s.Name, err)
	}
	if err := UpdateSetMapEntries(m, keys, values, nil); err != nil {
		m.Close()
		return nil, fmt.Errorf("set %s: %w", s.Name, err)
	}
	return m, nil
}

// loadSetMap emits the lookup of the element map of s in its slot: R1
// points at the element map afterwards (a map pointer for
// bpf_map_lookup_elem), or the code jumps to miss when the slot is
// empty (never, once loaded: the loader fills the slot before any
// program uses it). It clobbers R0 to R5 and slotKey.
func (g *gen) loadSetMap(s *ir.Set, miss string) {
	g.b.emit(
		stImm64(asm.R10, slotKey, 0),
		asm.LoadMapPtr(asm.R1, 0).WithReference(SetSymbol(s)),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, slotKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, miss),
		asm.Mov.Reg(asm.R1, asm.R0),
	)
}

// errNotSlot is returned by associateSets for a set map that is not a
// slot.
var errNotSlot = errors.New("not a set slot (array of maps)")

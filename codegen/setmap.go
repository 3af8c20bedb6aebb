package codegen

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// DefaultSetCapacity is the number of elements a BPF map backs a named set
// with when the set declares no size and has fewer elements.
const DefaultSetCapacity = 65536

// InMap reports whether lookups in s are compiled as BPF map lookups (the
// set is named, so its elements can change at run time without reloading
// the program) rather than compare chains. Named sets of exact keys qualify;
// interval, concatenated, map and dynamic sets do not (yet).
func InMap(s *ir.Set) bool {
	return !s.Anonymous() && s.Flags&(ir.SetInterval|ir.SetConcat|ir.SetMap|ir.SetObject|ir.SetTimeout|ir.SetEval) == 0
}

// SetSymbol is the reference name instructions use for the map of set s.
func SetSymbol(s *ir.Set) string { return "nft_set:" + s.Name }

// SetMapSpec returns the spec of the BPF map that backs set s (see InMap):
// a hash map whose keys are the set's key bytes, with a one-byte value.
// Its capacity is the set's declared size, or DefaultSetCapacity or twice
// the number of elements, whichever is larger.
func SetMapSpec(s *ir.Set) (*ebpf.MapSpec, error) {
	if !InMap(s) {
		return nil, fmt.Errorf("set %s is not backed by a map", s.Name)
	}
	if s.KeyLen == 0 || s.KeyLen > bufSize {
		return nil, fmt.Errorf("set %s: key length %d is out of range 1..%d", s.Name, s.KeyLen, bufSize)
	}
	capacity := s.Size
	if capacity == 0 {
		capacity = DefaultSetCapacity
		if n := 2 * uint32(len(s.Elements)); n > capacity {
			capacity = n
		}
	}
	if uint32(len(s.Elements)) > capacity {
		return nil, fmt.Errorf("set %s has %d elements, more than its size %d", s.Name, len(s.Elements), capacity)
	}
	return &ebpf.MapSpec{
		Name:       "nft_s_" + sanitize(s.Name),
		Type:       ebpf.Hash,
		KeySize:    s.KeyLen,
		ValueSize:  1,
		MaxEntries: capacity,
		Flags:      unix.BPF_F_NO_PREALLOC,
	}, nil
}

// useSet records that the program looks up set s in its map.
func (g *gen) useSet(s *ir.Set) error {
	if _, ok := g.sets[s]; ok {
		return nil
	}
	for o := range g.sets {
		if o.Name == s.Name {
			return g.unsupported("two sets named %s", s.Name)
		}
	}
	spec, err := SetMapSpec(s)
	if err != nil {
		return g.unsupported("%v", err)
	}
	g.sets[s] = spec
	return nil
}

// NewSetMap creates the map backing set s and fills it with s's elements.
func NewSetMap(s *ir.Set) (*ebpf.Map, error) {
	spec, err := SetMapSpec(s)
	if err != nil {
		return nil, err
	}
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create map of set %s: %w", s.Name, err)
	}
	if err := UpdateSetMap(m, s.Elements, nil); err != nil {
		m.Close()
		return nil, fmt.Errorf("set %s: %w", s.Name, err)
	}
	return m, nil
}

// UpdateSetMap adds the elements add to and removes the elements del from
// a set map (see InMap); every element must be an exact key (Low == High).
// Removing an element that is not in the map is not an error.
func UpdateSetMap(m *ebpf.Map, add, del []ir.SetElement) error {
	for _, e := range append(append([]ir.SetElement(nil), add...), del...) {
		if !bytes.Equal(e.Low, e.High) {
			return fmt.Errorf("element %x-%x is a range in a set of exact keys", e.Low, e.High)
		}
		if uint32(len(e.Low)) != m.KeySize() {
			return fmt.Errorf("element %x has %d bytes, keys have %d", e.Low, len(e.Low), m.KeySize())
		}
	}
	one := []byte{1}
	if err := batchAdd(m, add); err != nil {
		// Batch operations need Linux 5.6; add one at a time.
		for _, e := range add {
			if err := m.Update(e.Low, one, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("add element %x: %w", e.Low, err)
			}
		}
	}
	for _, e := range del {
		if err := m.Delete(e.Low); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete element %x: %w", e.Low, err)
		}
	}
	return nil
}

// SetMapElements returns the keys in a set map, sorted, as exact elements.
func SetMapElements(m *ebpf.Map) ([]ir.SetElement, error) {
	var out []ir.SetElement
	var v []byte
	var k []byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		key := append([]byte(nil), k...)
		out = append(out, ir.SetElement{Low: key, High: key})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read set map: %w", err)
	}
	sortSetElements(out)
	return out, nil
}

func sortSetElements(es []ir.SetElement) {
	sort.Slice(es, func(i, j int) bool { return bytes.Compare(es[i].Low, es[j].Low) < 0 })
}

// associateSets points the program's set references at maps.
func associateSets(insns asm.Instructions, p *Program, maps map[*ir.Set]*ebpf.Map) error {
	for s := range p.Sets {
		m, ok := maps[s]
		if !ok {
			return fmt.Errorf("no map for set %s", s.Name)
		}
		if err := insns.AssociateMap(SetSymbol(s), m); err != nil && !errors.Is(err, asm.ErrUnreferencedSymbol) {
			return fmt.Errorf("associate map of set %s: %w", s.Name, err)
		}
	}
	return nil
}

// batchChunk is the number of elements batchAdd passes per system call.
const batchChunk = 1 << 16

// batchAdd adds keys with BPF_MAP_UPDATE_BATCH. Keys go to the kernel as
// a slice of fixed-size byte arrays, which is how cilium/ebpf counts them.
func batchAdd(m *ebpf.Map, add []ir.SetElement) error {
	if len(add) == 0 {
		return nil
	}
	keyType := reflect.ArrayOf(int(m.KeySize()), reflect.TypeFor[byte]())
	for start := 0; start < len(add); start += batchChunk {
		part := add[start:min(start+batchChunk, len(add))]
		keys := reflect.MakeSlice(reflect.SliceOf(keyType), len(part), len(part))
		for i, e := range part {
			reflect.Copy(keys.Index(i), reflect.ValueOf(e.Low))
		}
		vals := bytes.Repeat([]byte{1}, len(part))
		if _, err := m.BatchUpdate(keys.Interface(), vals, nil); err != nil {
			return err
		}
	}
	return nil
}

package codegen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// DefaultSetCapacity is the number of elements a BPF hash map backs a named
// set with when the set declares no size and has fewer elements.
const DefaultSetCapacity = 65536

// lpmCapacity is the least capacity of the LPM trie of an interval set.
// LPM tries allocate per element, so a large limit costs nothing.
const lpmCapacity = 1 << 20

// AnonymousMapThreshold is the number of elements from which an anonymous
// set is looked up in a map rather than compiled into a compare chain,
// whose cost grows with every element.
const AnonymousMapThreshold = 16

// InMap reports whether lookups in s are compiled as BPF map lookups rather
// than compare chains: named sets (whose elements can change at run time
// without reloading the program) and anonymous sets of at least
// AnonymousMapThreshold elements. Sets of exact keys are hash maps;
// interval sets are LPM tries holding every range as the prefixes that
// cover it exactly. Concatenations of exact keys are hash maps over the
// whole key; verdict maps are maps whose values index the map's verdicts
// (ir.Set.Verdicts). Named concatenations with the interval flag are range
// tables (see IsRangeTable). Data maps and dynamic sets are not in maps.
func InMap(s *ir.Set) bool {
	if s.Anonymous() && len(s.Elements) < AnonymousMapThreshold {
		return false
	}
	if s.Flags&ir.SetMap != 0 && !s.IsVerdictMap() && !isDataMap(s) {
		return false
	}
	if s.Concatenated() && s.Flags&ir.SetInterval != 0 {
		return IsRangeTable(s) && !isDataMap(s)
	}
	if s.HasTimeouts() {
		return timeoutInMap(s)
	}
	return s.Flags&(ir.SetObject|ir.SetTimeout|ir.SetEval) == 0
}

// SetSymbol is the reference name instructions use for the map of set s.
func SetSymbol(s *ir.Set) string { return "nft_set:" + s.Name }

// SetMapKeys returns the keys of the map that backs set s (see InMap): an
// exact set's keys are its elements' bytes; an interval set's are LPM trie
// keys (a 4-byte host-order prefix length, then the key bytes), the fewest
// prefixes whose union is exactly the set's ranges.
func SetMapKeys(s *ir.Set) ([][]byte, error) {
	keys, _, err := SetMapEntries(s)
	return keys, err
}

// SetMapEntries returns the keys of the map that backs set s (see
// SetMapKeys) and the value of each: one byte 1 for a set; for a verdict
// map the index of the element's verdict in s.Verdicts(), a host-order
// u32.
func SetMapEntries(s *ir.Set) (keys, values [][]byte, err error) {
	return SetMapEntriesWith(s, s.Verdicts())
}

// SetMapEntriesWith is SetMapEntries for a verdict map whose programs
// were compiled for the verdicts targets (a superset of the verdicts of
// s's elements): values index targets.
func SetMapEntriesWith(s *ir.Set, targets []ir.Verdict) (keys, values [][]byte, err error) {
	if !InMap(s) {
		return nil, nil, fmt.Errorf("set %s is not backed by a map", s.Name)
	}
	if IsRangeTable(s) {
		return rangeEntries(s, targets)
	}
	var index map[ir.Verdict][]byte
	if s.IsVerdictMap() {
		index = map[ir.Verdict][]byte{}
		for i, v := range targets {
			index[v] = binary.NativeEndian.AppendUint32(nil, uint32(i))
		}
	}
	one := []byte{1}
	now := MonotonicNow()
	for _, e := range s.Elements {
		if uint32(len(e.Low)) != s.KeyLen || uint32(len(e.High)) != s.KeyLen {
			return nil, nil, fmt.Errorf("set %s: element %x-%x is not %d bytes long", s.Name, e.Low, e.High, s.KeyLen)
		}
		value := one
		if isDataMap(s) {
			if uint32(len(e.Data)) != s.DataLen {
				return nil, nil, fmt.Errorf("map %s: element %x has no %d-byte value", s.Name, e.Low, s.DataLen)
			}
			value = e.Data
		}
		if index != nil {
			if e.Verdict == nil {
				return nil, nil, fmt.Errorf("verdict map %s: element %x has no verdict", s.Name, e.Low)
			}
			v, ok := index[*e.Verdict]
			if !ok {
				return nil, nil, fmt.Errorf("verdict map %s: element %x: verdict %s is not among the compiled %v", s.Name, e.Low, e.Verdict, targets)
			}
			value = v
		}
		if s.HasTimeouts() {
			// The deadline first (see expiryCheck), then the
			// element's data or verdict index, if any.
			tv := timeoutValue(s, e, now)
			if index != nil || isDataMap(s) {
				value = append(tv, value...)
			} else {
				value = tv
			}
		}
		if s.Flags&ir.SetInterval == 0 {
			if !bytes.Equal(e.Low, e.High) {
				return nil, nil, fmt.Errorf("set %s: element %x-%x is a range in a set of exact keys", s.Name, e.Low, e.High)
			}
			keys = append(keys, e.Low)
			values = append(values, value)
			continue
		}
		for _, k := range rangePrefixes(e.Low, e.High) {
			keys = append(keys, k)
			values = append(values, value)
		}
	}
	return keys, values, nil
}

// setValueSize is the value size of the map backing s.
func setValueSize(s *ir.Set) uint32 {
	if s.HasTimeouts() {
		return timeoutValueSize + setDataSize(s)
	}
	if s.IsVerdictMap() || isDataMap(s) {
		return setDataSize(s)
	}
	return 1
}

// setDataSize is the size of the data of an element of map s in the
// value of its BPF map: a verdict index (4 bytes) or the data; 0 for a
// set.
func setDataSize(s *ir.Set) uint32 {
	switch {
	case s.IsVerdictMap():
		return 4
	case isDataMap(s):
		return s.DataLen
	}
	return 0
}

// setDataOff is the offset of an element's data in the value of the map
// of s (a hash map or LPM trie): after its TimeoutValue when elements
// can expire.
func setDataOff(s *ir.Set) int16 {
	if s.HasTimeouts() {
		return timeoutValueSize
	}
	return 0
}

// isDataMap reports whether s maps keys to 4-byte values (meta mark set
// … map): the values the map backing it holds.
func isDataMap(s *ir.Set) bool {
	return s.Flags&ir.SetMap != 0 && !s.IsVerdictMap() && s.Flags&ir.SetObject == 0 && s.DataLen == 4
}

// rangePrefixes returns LPM trie keys of the prefixes that cover exactly
// the keys from lo to hi (inclusive, compared as big-endian numbers, which
// is memcmp order).
func rangePrefixes(lo, hi []byte) [][]byte {
	n := uint(len(lo)) * 8
	a := new(big.Int).SetBytes(lo)
	b := new(big.Int).SetBytes(hi)
	one := big.NewInt(1)
	var out [][]byte
	for a.Cmp(b) <= 0 {
		// The largest aligned block starting at a that ends by b.
		k := a.TrailingZeroBits()
		if a.Sign() == 0 {
			k = n
		}
		for {
			end := new(big.Int).Lsh(one, k)
			end.Add(end, a)
			end.Sub(end, one)
			if end.Cmp(b) <= 0 {
				break
			}
			k--
		}
		key := make([]byte, 4+len(lo))
		binary.NativeEndian.PutUint32(key, uint32(n-k))
		a.FillBytes(key[4:])
		out = append(out, key)
		a.Add(a, new(big.Int).Lsh(one, k))
		if uint(a.BitLen()) > n {
			break
		}
	}
	return out
}

// SetMapSpec returns the spec of the BPF map that backs set s (see InMap):
// a hash map for exact keys, an LPM trie for intervals, with a one-byte
// value. A hash map holds the set's declared size, or DefaultSetCapacity or
// twice the number of elements, whichever is larger.
func SetMapSpec(s *ir.Set) (*ebpf.MapSpec, error) {
	if !InMap(s) {
		return nil, fmt.Errorf("set %s is not backed by a map", s.Name)
	}
	if s.KeyLen == 0 || s.KeyLen > bufSize {
		return nil, fmt.Errorf("set %s: key length %d is out of range 1..%d", s.Name, s.KeyLen, bufSize)
	}
	if IsRangeTable(s) {
		return rangeTableSpec(s)
	}
	keys, err := SetMapKeys(s)
	if err != nil {
		return nil, err
	}
	if s.Flags&ir.SetInterval != 0 {
		return &ebpf.MapSpec{
			Name:       "nft_s_" + sanitize(s.Name),
			Type:       ebpf.LPMTrie,
			KeySize:    4 + s.KeyLen,
			ValueSize:  setValueSize(s),
			MaxEntries: max(lpmCapacity, 2*uint32(len(keys))),
			Flags:      unix.BPF_F_NO_PREALLOC,
		}, nil
	}
	capacity := s.Size
	if capacity == 0 {
		capacity = max(DefaultSetCapacity, 2*uint32(len(keys)))
	}
	if uint32(len(keys)) > capacity {
		return nil, fmt.Errorf("set %s has %d elements, more than its size %d", s.Name, len(keys), capacity)
	}
	return &ebpf.MapSpec{
		Name:       "nft_s_" + sanitize(s.Name),
		Type:       ebpf.Hash,
		KeySize:    s.KeyLen,
		ValueSize:  setValueSize(s),
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
	keys, values, err := SetMapEntries(s)
	if err != nil {
		return nil, err
	}
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

// UpdateSetMap adds the keys add to and removes the keys del from a set
// map (see SetMapKeys). Removing a key that is not in the map is not an
// error.
func UpdateSetMap(m *ebpf.Map, add, del [][]byte) error {
	return UpdateSetMapEntries(m, add, nil, del)
}

// UpdateSetMapEntries adds the keys add, with values (one per key; nil
// for the one-byte value 1 of a set), to a set map and removes the keys
// del. An added key that is there already takes its new value.
func UpdateSetMapEntries(m *ebpf.Map, add, values, del [][]byte) error {
	for _, k := range append(append([][]byte(nil), add...), del...) {
		if uint32(len(k)) != m.KeySize() {
			return fmt.Errorf("key %x has %d bytes, the map's have %d", k, len(k), m.KeySize())
		}
	}
	if values == nil {
		values = make([][]byte, len(add))
		for i := range values {
			values[i] = []byte{1}
		}
	}
	if len(values) != len(add) {
		return fmt.Errorf("%d values for %d keys", len(values), len(add))
	}
	for _, v := range values {
		if uint32(len(v)) != m.ValueSize() {
			return fmt.Errorf("value %x has %d bytes, the map's have %d", v, len(v), m.ValueSize())
		}
	}
	if err := batchAdd(m, add, values); err != nil {
		// Batch operations need Linux 5.6 (and are not offered by
		// every map type); add one at a time.
		for i, k := range add {
			if err := m.Update(k, values[i], ebpf.UpdateAny); err != nil {
				return fmt.Errorf("add key %x: %w", k, err)
			}
		}
	}
	for _, k := range del {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete key %x: %w", k, err)
		}
	}
	return nil
}

// SetMapContents returns the keys in a set map, sorted.
func SetMapContents(m *ebpf.Map) ([][]byte, error) {
	keys, _, err := SetMapContentEntries(m)
	return keys, err
}

// SetMapContentEntries returns the keys in a set map, sorted, and the
// value of each.
func SetMapContentEntries(m *ebpf.Map) (keys, values [][]byte, err error) {
	type entry struct{ k, v []byte }
	var out []entry
	if bk, bv, err := batchRead(m); err == nil {
		for i := range bk {
			out = append(out, entry{bk[i], bv[i]})
		}
	} else {
		var k, v []byte
		it := m.Iterate()
		for it.Next(&k, &v) {
			out = append(out, entry{append([]byte(nil), k...), append([]byte(nil), v...)})
		}
		if err := it.Err(); err != nil {
			return nil, nil, fmt.Errorf("read set map: %w", err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].k, out[j].k) < 0 })
	for _, e := range out {
		keys = append(keys, e.k)
		values = append(values, e.v)
	}
	return keys, values, nil
}

// associateSets points the program's set references at the sets' slots
// (see NewSetSlot).
func associateSets(insns asm.Instructions, p *Program, maps map[*ir.Set]*ebpf.Map) error {
	for s := range p.Sets {
		m, ok := maps[s]
		if !ok {
			return fmt.Errorf("no map for set %s", s.Name)
		}
		if m.Type() != ebpf.ArrayOfMaps {
			return fmt.Errorf("set %s: map is a %s: %w", s.Name, m.Type(), errNotSlot)
		}
		if err := insns.AssociateMap(SetSymbol(s), m); err != nil && !errors.Is(err, asm.ErrUnreferencedSymbol) {
			return fmt.Errorf("associate map of set %s: %w", s.Name, err)
		}
	}
	return nil
}

// batchChunk is the number of keys batchAdd passes per system call.
const batchChunk = 1 << 16

// batchAdd adds keys with BPF_MAP_UPDATE_BATCH. Keys go to the kernel as
// a slice of fixed-size byte arrays, which is how cilium/ebpf counts them.
func batchAdd(m *ebpf.Map, add, values [][]byte) error {
	if len(add) == 0 {
		return nil
	}
	keyType := reflect.ArrayOf(int(m.KeySize()), reflect.TypeFor[byte]())
	vs := int(m.ValueSize())
	for start := 0; start < len(add); start += batchChunk {
		end := min(start+batchChunk, len(add))
		part := add[start:end]
		keys := reflect.MakeSlice(reflect.SliceOf(keyType), len(part), len(part))
		for i, k := range part {
			reflect.Copy(keys.Index(i), reflect.ValueOf(k))
		}
		var vals any
		if vs == 1 {
			flat := make([]byte, 0, len(part))
			for _, v := range values[start:end] {
				flat = append(flat, v...)
			}
			vals = flat
		} else {
			arr := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(vs, reflect.TypeFor[byte]())), len(part), len(part))
			for i, v := range values[start:end] {
				reflect.Copy(arr.Index(i), reflect.ValueOf(v))
			}
			vals = arr.Interface()
		}
		if _, err := m.BatchUpdate(keys.Interface(), vals, nil); err != nil {
			return err
		}
	}
	return nil
}

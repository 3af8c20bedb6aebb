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
// cover it exactly. Concatenated, map and dynamic sets are not in maps
// (yet).
func InMap(s *ir.Set) bool {
	if s.Anonymous() && len(s.Elements) < AnonymousMapThreshold {
		return false
	}
	return s.Flags&(ir.SetConcat|ir.SetMap|ir.SetObject|ir.SetTimeout|ir.SetEval) == 0
}

// SetSymbol is the reference name instructions use for the map of set s.
func SetSymbol(s *ir.Set) string { return "nft_set:" + s.Name }

// SetMapKeys returns the keys of the map that backs set s (see InMap): an
// exact set's keys are its elements' bytes; an interval set's are LPM trie
// keys (a 4-byte host-order prefix length, then the key bytes), the fewest
// prefixes whose union is exactly the set's ranges.
func SetMapKeys(s *ir.Set) ([][]byte, error) {
	if !InMap(s) {
		return nil, fmt.Errorf("set %s is not backed by a map", s.Name)
	}
	var keys [][]byte
	for _, e := range s.Elements {
		if uint32(len(e.Low)) != s.KeyLen || uint32(len(e.High)) != s.KeyLen {
			return nil, fmt.Errorf("set %s: element %x-%x is not %d bytes long", s.Name, e.Low, e.High, s.KeyLen)
		}
		if s.Flags&ir.SetInterval == 0 {
			if !bytes.Equal(e.Low, e.High) {
				return nil, fmt.Errorf("set %s: element %x-%x is a range in a set of exact keys", s.Name, e.Low, e.High)
			}
			keys = append(keys, e.Low)
			continue
		}
		keys = append(keys, rangePrefixes(e.Low, e.High)...)
	}
	return keys, nil
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
	keys, err := SetMapKeys(s)
	if err != nil {
		return nil, err
	}
	if s.Flags&ir.SetInterval != 0 {
		return &ebpf.MapSpec{
			Name:       "nft_s_" + sanitize(s.Name),
			Type:       ebpf.LPMTrie,
			KeySize:    4 + s.KeyLen,
			ValueSize:  1,
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
	keys, err := SetMapKeys(s)
	if err != nil {
		return nil, err
	}
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create map of set %s: %w", s.Name, err)
	}
	if err := UpdateSetMap(m, keys, nil); err != nil {
		m.Close()
		return nil, fmt.Errorf("set %s: %w", s.Name, err)
	}
	return m, nil
}

// UpdateSetMap adds the keys add to and removes the keys del from a set
// map (see SetMapKeys). Removing a key that is not in the map is not an
// error.
func UpdateSetMap(m *ebpf.Map, add, del [][]byte) error {
	for _, k := range append(append([][]byte(nil), add...), del...) {
		if uint32(len(k)) != m.KeySize() {
			return fmt.Errorf("key %x has %d bytes, the map's have %d", k, len(k), m.KeySize())
		}
	}
	one := []byte{1}
	if err := batchAdd(m, add); err != nil {
		// Batch operations need Linux 5.6 (and are not offered by
		// every map type); add one at a time.
		for _, k := range add {
			if err := m.Update(k, one, ebpf.UpdateAny); err != nil {
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
	var out [][]byte
	var k, v []byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		out = append(out, append([]byte(nil), k...))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read set map: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i], out[j]) < 0 })
	return out, nil
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

// batchChunk is the number of keys batchAdd passes per system call.
const batchChunk = 1 << 16

// batchAdd adds keys with BPF_MAP_UPDATE_BATCH. Keys go to the kernel as
// a slice of fixed-size byte arrays, which is how cilium/ebpf counts them.
func batchAdd(m *ebpf.Map, add [][]byte) error {
	if len(add) == 0 {
		return nil
	}
	keyType := reflect.ArrayOf(int(m.KeySize()), reflect.TypeFor[byte]())
	for start := 0; start < len(add); start += batchChunk {
		part := add[start:min(start+batchChunk, len(add))]
		keys := reflect.MakeSlice(reflect.SliceOf(keyType), len(part), len(part))
		for i, k := range part {
			reflect.Copy(keys.Index(i), reflect.ValueOf(k))
		}
		vals := bytes.Repeat([]byte{1}, len(part))
		if _, err := m.BatchUpdate(keys.Interface(), vals, nil); err != nil {
			return err
		}
	}
	return nil
}

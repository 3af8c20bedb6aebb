package codegen

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// A named set of concatenated ranges (nft's pipapo: every field of the key
// has its own range) is a range table: a hash map from slot numbers 0…n-1
// to elements {low key, high key, u32 value} and, under rangeCountKey, the
// number n of elements in use. A lookup scans the slots in order, at most
// the table's capacity (a bounded loop the verifier walks once per slot).
// Elements change one at a time, each change seen by packets at one
// instant (see SyncRangeTable): a hash map element is replaced whole.

// rangeCountKey is the slot key of a range table's element count.
const rangeCountKey = 0xffffffff

// Range table capacities: the least, and the most a table may have. The
// verifier walks the scan loop once per slot of capacity (about 105
// instructions per slot for two fields); Linux 6.18 fails with EFAULT in
// its precision tracking somewhere past 900 slots.
const (
	rangeTableMin = 64
	rangeTableMax = 512
)

// Stack slots of the scan loop (below concatKey).
const (
	slotScanIdx = -408
	slotScanCnt = -416
)

// IsRangeTable reports whether set s is backed by a range table: a named
// set or map of concatenated keys with the interval flag.
func IsRangeTable(s *ir.Set) bool {
	return !s.Anonymous() && s.Concatenated() && s.Flags&ir.SetInterval != 0 &&
		(s.Flags&ir.SetMap == 0 || s.IsVerdictMap()) && s.Flags&(ir.SetObject|ir.SetEval) == 0
}

// rangeDeadlineOff is the offset of the TimeoutValue in the element value
// of a range table whose elements expire: after the bounds and the data,
// 8-byte aligned.
func rangeDeadlineOff(s *ir.Set) uint32 { return (2*s.KeyLen + 4 + 7) &^ 7 }

// rangeValueSize is the size of the values of the range table of s.
func rangeValueSize(s *ir.Set) uint32 {
	if s.HasTimeouts() {
		return rangeDeadlineOff(s) + timeoutValueSize
	}
	return 2*s.KeyLen + 4
}

// RangeTimeout returns the low key and the TimeoutValue of the element
// value v of a range table of keyLen-byte keys whose elements expire; ok
// is false for the count entry's value or a value of another size.
func RangeTimeout(key, v []byte, keyLen uint32) (low []byte, tv TimeoutValue, ok bool) {
	s := &ir.Set{KeyLen: keyLen, Flags: ir.SetTimeout}
	off := rangeDeadlineOff(s)
	if len(key) != 4 || binary.NativeEndian.Uint32(key) == rangeCountKey || uint32(len(v)) != rangeValueSize(s) {
		return nil, tv, false
	}
	tv, err := ParseTimeoutValue(v[off:])
	return v[:keyLen], tv, err == nil
}

// rangeCapacity is the number of element slots of the range table of s.
func rangeCapacity(s *ir.Set) (uint32, error) {
	c := max(uint32(rangeTableMin), 2*uint32(len(s.Elements)))
	if s.Size != 0 {
		c = s.Size
	}
	if c > rangeTableMax {
		return 0, fmt.Errorf("set %s: a named set of concatenated ranges holds at most %d elements (size %d)", s.Name, rangeTableMax, c)
	}
	if uint32(len(s.Elements)) > c {
		return 0, fmt.Errorf("set %s has %d elements, more than its size %d", s.Name, len(s.Elements), c)
	}
	return c, nil
}

func rangeTableSpec(s *ir.Set) (*ebpf.MapSpec, error) {
	c, err := rangeCapacity(s)
	if err != nil {
		return nil, err
	}
	return &ebpf.MapSpec{
		Name:       "nft_r_" + sanitize(s.Name),
		Type:       ebpf.Hash,
		KeySize:    4,
		ValueSize:  rangeValueSize(s),
		MaxEntries: c + 1,
		Flags:      unix.BPF_F_NO_PREALLOC,
	}, nil
}

// rangeEntries returns the range table contents of s: slot keys and
// element values, then the count entry.
func rangeEntries(s *ir.Set, targets []ir.Verdict) (keys, values [][]byte, err error) {
	elems, err := rangeElements(s, targets)
	if err != nil {
		return nil, nil, err
	}
	for i, v := range elems {
		keys = append(keys, binary.NativeEndian.AppendUint32(nil, uint32(i)))
		values = append(values, v)
	}
	keys = append(keys, binary.NativeEndian.AppendUint32(nil, rangeCountKey))
	values = append(values, rangeCountValue(s, len(elems)))
	return keys, values, nil
}

func rangeCountValue(s *ir.Set, n int) []byte {
	v := make([]byte, rangeValueSize(s))
	binary.NativeEndian.PutUint32(v, uint32(n))
	return v
}

// rangeElements returns the slot values of the elements of s.
func rangeElements(s *ir.Set, targets []ir.Verdict) ([][]byte, error) {
	index := map[ir.Verdict]uint32{}
	for i, v := range targets {
		index[v] = uint32(i)
	}
	var out [][]byte
	now := MonotonicNow()
	for _, e := range s.Elements {
		if uint32(len(e.Low)) != s.KeyLen || uint32(len(e.High)) != s.KeyLen {
			return nil, fmt.Errorf("set %s: element %x-%x is not %d bytes long", s.Name, e.Low, e.High, s.KeyLen)
		}
		data := uint32(1)
		if s.IsVerdictMap() {
			if e.Verdict == nil {
				return nil, fmt.Errorf("verdict map %s: element %x has no verdict", s.Name, e.Low)
			}
			i, ok := index[*e.Verdict]
			if !ok {
				return nil, fmt.Errorf("verdict map %s: element %x: verdict %s is not among the compiled %v", s.Name, e.Low, e.Verdict, targets)
			}
			data = i
		}
		v := make([]byte, rangeValueSize(s))
		copy(v, e.Low)
		copy(v[s.KeyLen:], e.High)
		binary.NativeEndian.PutUint32(v[2*s.KeyLen:], data)
		if s.HasTimeouts() {
			copy(v[rangeDeadlineOff(s):], TimeoutOf(s, e, now).bytes())
		}
		out = append(out, v)
	}
	return out, nil
}

// SyncRangeTable brings the range table m to the elements of s (values of
// a verdict map indexing targets) one element at a time: a changed value
// is replaced in its slot; a removed element's slot takes the last
// element, then the count shrinks; an added element goes to the slot after
// the last, then the count grows. A packet scanning the table meanwhile
// sees every element that is in both the old and the new set, and each
// other element appear or disappear at one instant.
func SyncRangeTable(m *ebpf.Map, s *ir.Set, targets []ir.Verdict) error {
	want, err := rangeElements(s, targets)
	if err != nil {
		return err
	}
	key := func(i uint32) []byte { return binary.NativeEndian.AppendUint32(nil, i) }
	var cv []byte
	if err := m.Lookup(key(rangeCountKey), &cv); err != nil {
		return fmt.Errorf("set %s: read element count: %w", s.Name, err)
	}
	n := binary.NativeEndian.Uint32(cv)
	cur := make([][]byte, n)
	for i := range cur {
		if err := m.Lookup(key(uint32(i)), &cur[i]); err != nil {
			return fmt.Errorf("set %s: read slot %d: %w", s.Name, i, err)
		}
	}
	kl := 2 * s.KeyLen
	wanted := map[string][]byte{}
	for _, v := range want {
		wanted[string(v[:kl])] = v
	}
	setCount := func(c uint32) error {
		return m.Update(key(rangeCountKey), rangeCountValue(s, int(c)), ebpf.UpdateAny)
	}
	// Remove or update what is there.
	for i := uint32(0); i < uint32(len(cur)); {
		v, ok := wanted[string(cur[i][:kl])]
		if ok {
			if string(v) != string(cur[i]) {
				if err := m.Update(key(i), v, ebpf.UpdateAny); err != nil {
					return fmt.Errorf("set %s: %w", s.Name, err)
				}
				cur[i] = v
			}
			delete(wanted, string(v[:kl]))
			i++
			continue
		}
		last := uint32(len(cur)) - 1
		if i != last {
			if err := m.Update(key(i), cur[last], ebpf.UpdateAny); err != nil {
				return fmt.Errorf("set %s: %w", s.Name, err)
			}
			cur[i] = cur[last]
		}
		cur = cur[:last]
		if err := setCount(last); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		if err := m.Delete(key(last)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	// Append what is new, in the order of s.
	for _, v := range want {
		if _, ok := wanted[string(v[:kl])]; !ok {
			continue
		}
		n := uint32(len(cur))
		if n+1 >= m.MaxEntries() {
			return fmt.Errorf("set %s: range table full (%d slots)", s.Name, m.MaxEntries()-1)
		}
		if err := m.Update(key(n), v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		if err := setCount(n + 1); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		cur = append(cur, v)
	}
	return nil
}

// rangeLookup emits the scan of the range table of s for the key in the
// buffer. It jumps to miss when no element holds the key, and falls
// through with R0 pointing at the element's value otherwise (its u32 data
// at offset 2*KeyLen).
func (g *gen) rangeLookup(s *ir.Set, miss string) error {
	if err := g.useSet(s); err != nil {
		return err
	}
	capacity, err := rangeCapacity(s)
	if err != nil {
		return g.unsupported("%v", err)
	}
	offs, lens := s.KeyLayout()
	loop := g.b.newLabel("scan")
	next := g.b.newLabel("scan_next")
	found := g.b.newLabel("scan_found")
	// The element map is looked up in the slot once: the whole scan
	// reads one table, even while a new one replaces it.
	lookup := func() {
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R10, slotSetMap, asm.DWord),
			asm.Mov.Reg(asm.R2, asm.R10),
			asm.Add.Imm(asm.R2, slotKey),
			asm.FnMapLookupElem.Call(),
		)
	}
	g.loadSetMap(s, miss)
	g.b.emit(asm.StoreMem(asm.R10, slotSetMap, asm.R1, asm.DWord))
	g.b.emit(stImm64(asm.R10, slotKey, int64(int32(-1)))) // rangeCountKey
	lookup()
	g.b.emit(
		asm.JEq.Imm(asm.R0, 0, miss),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.StoreMem(asm.R10, slotScanCnt, asm.R1, asm.DWord),
		stImm64(asm.R10, slotScanIdx, 0),
	)
	g.b.label(loop)
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, slotScanIdx, asm.DWord),
		asm.JGE.Imm(asm.R1, int32(capacity), miss),
		asm.LoadMem(asm.R2, asm.R10, slotScanCnt, asm.DWord),
		asm.JGE.Reg(asm.R1, asm.R2, miss),
		asm.StoreMem(asm.R10, slotKey, asm.R1, asm.DWord),
	)
	lookup()
	g.b.emit(asm.JEq.Imm(asm.R0, 0, next))
	for i := range offs {
		// low ≤ field ≤ high, each compared as memcmp does.
		hi := g.b.newLabel("scan_hi")
		ok := g.b.newLabel("scan_field_ok")
		g.cmpValue(offs[i], lens[i], 0, next, hi, hi)
		g.b.label(hi)
		g.cmpValue(offs[i], lens[i], int16(s.KeyLen), ok, ok, next)
		g.b.label(ok)
	}
	if s.HasTimeouts() {
		// An expired element holds no key: the scan goes on (elements
		// do not overlap, so it will miss).
		off := int16(rangeDeadlineOff(s))
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R0, off, asm.DWord),
			asm.JEq.Imm(asm.R1, 0, found),
			asm.StoreMem(asm.R10, slotSetValue, asm.R0, asm.DWord),
			asm.FnKtimeGetNs.Call(),
			asm.LoadMem(asm.R1, asm.R10, slotSetValue, asm.DWord),
			asm.LoadMem(asm.R1, asm.R1, off, asm.DWord),
			asm.JGE.Reg(asm.R0, asm.R1, next),
			asm.LoadMem(asm.R0, asm.R10, slotSetValue, asm.DWord),
		)
	}
	g.b.emit(asm.Ja.Label(found))
	g.b.label(next)
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, slotScanIdx, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R10, slotScanIdx, asm.R1, asm.DWord),
		asm.Ja.Label(loop),
	)
	g.b.label(found)
	return nil
}

// cmpValue compares the key bytes [pos, pos+n) in the buffer with the
// same bytes of the bound at offset base in the map value R0 points to,
// as memcmp does, and jumps to lt, eq or gt (key against bound).
func (g *gen) cmpValue(pos, n uint32, base int16, lt, eq, gt string) {
	for _, c := range chunks(n) {
		p, sz := c[0], c[1]
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R10, int16(bufOff+int32(pos+p)), asmSize(sz)),
			asm.LoadMem(asm.R2, asm.R0, base+int16(pos+p), asmSize(sz)),
		)
		if sz > 1 {
			g.b.emit(asm.BSwap(asm.R1, asmSize(sz)), asm.BSwap(asm.R2, asmSize(sz)))
		}
		g.b.emit(
			asm.JLT.Reg(asm.R1, asm.R2, lt),
			asm.JGT.Reg(asm.R1, asm.R2, gt),
		)
	}
	g.b.emit(asm.Ja.Label(eq))
}

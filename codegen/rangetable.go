package codegen

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// A named set of concatenated ranges (nft's pipapo: every field of the key
// has its own range) is a range table: a hash map from slot numbers 0…n-1
// to elements {low key, high key, u32 value} and, under rangeCountKey, the
// number n of elements in use. A lookup scans the n slots in order with
// bpf_loop, whose callback compares one slot (see rangeLookup): the
// verifier checks the callback once, whatever the capacity. Elements
// change one at a time, each change seen by packets at one instant (see
// SyncRangeTable): a hash map element is replaced whole.

// rangeCountKey is the slot key of a range table's element count.
const rangeCountKey = 0xffffffff

// Range table capacities: the least, and the most a table may have. The
// scan is linear: a packet that misses compares every element in use
// (a few ns each), so the cap bounds the cost of one lookup rather than
// verification work.
const (
	rangeTableMin = 64
	rangeTableMax = 65536
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
	if c > rangeTableMax && len(s.Elements) <= rangeTableMax {
		c = rangeTableMax
	}
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
//
// The scan is a bpf_loop over the element count (at most the capacity)
// calling the set's compare callback (rangeCallback), which the verifier
// checks once whatever the capacity. The callback's context is a pointer
// to this frame's buffer: it reads the key there, the element map from
// slotSetMap, uses slotKey for its lookups and leaves the matching
// element's value pointer in slotSetValue.
func (g *gen) rangeLookup(s *ir.Set, miss string) error {
	if err := g.useSet(s); err != nil {
		return err
	}
	capacity, err := rangeCapacity(s)
	if err != nil {
		return g.unsupported("%v", err)
	}
	cb := g.rangeCallback(s)
	// The element map is looked up in the slot once: the whole scan
	// reads one table, even while a new one replaces it.
	g.loadSetMap(s, miss)
	g.b.emit(
		asm.StoreMem(asm.R10, slotSetMap, asm.R1, asm.DWord),
		stImm64(asm.R10, slotKey, int64(int32(-1))), // rangeCountKey
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, slotKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, miss),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
	)
	capped := g.b.newLabel("scan_capped")
	g.b.emit(asm.JLE.Imm(asm.R1, int32(capacity), capped), asm.Mov.Imm(asm.R1, int32(capacity)))
	g.b.label(capped)
	g.b.emit(
		stImm64(asm.R10, slotSetValue, 0),
		asm.Instruction{OpCode: asm.LoadImmOp(asm.DWord), Dst: asm.R2, Src: asm.PseudoFunc, Constant: -1}.WithReference(cb),
		asm.Mov.Reg(asm.R3, asm.R10),
		asm.Add.Imm(asm.R3, bufOff),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnLoop.Call(),
		asm.LoadMem(asm.R0, asm.R10, slotSetValue, asm.DWord),
		asm.JEq.Imm(asm.R0, 0, miss),
	)
	return nil
}

// rangeCallback returns the label of the bpf_loop callback comparing one
// element of the range table of s with the key (see rangeLookup), adding
// it to the program's callbacks the first time. The callback is called
// as cb(index, ctx) with ctx pointing at the caller's buffer; it uses no
// stack of its own. It returns 1 (stop) on a match that has not expired,
// having stored the element's value pointer, and 0 otherwise.
func (g *gen) rangeCallback(s *ir.Set) string {
	if l, ok := g.rangeCallbacks[s]; ok {
		return l
	}
	if g.rangeCallbacks == nil {
		g.rangeCallbacks = map[*ir.Set]string{}
	}
	// The callback is built apart and appended after everything else
	// (a subprogram runs to the end of the program or the next one).
	main := g.b
	g.b = newBuilder()
	g.b.n = main.n
	name := fmt.Sprintf("nft_range_cb_%d", len(g.rangeCallbacks))
	g.rangeCallbacks[s] = name
	const (
		ctxMap   = slotSetMap - bufOff
		ctxKey   = slotKey - bufOff
		ctxValue = slotSetValue - bufOff
	)
	next := g.b.newLabel("rcb_next")
	g.b.label(name)
	g.b.emit(
		asm.Mov.Reg(asm.R6, asm.R2),
		asm.StoreMem(asm.R6, ctxKey, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, ctxMap, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.R6),
		asm.Add.Imm(asm.R2, ctxKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, next),
	)
	offs, lens := s.KeyLayout()
	for i := range offs {
		// low ≤ field ≤ high, each compared as memcmp does.
		hi := g.b.newLabel("rcb_hi")
		ok := g.b.newLabel("rcb_field_ok")
		g.cmpValue(offs[i], lens[i], 0, next, hi, hi)
		g.b.label(hi)
		g.cmpValue(offs[i], lens[i], int16(s.KeyLen), ok, ok, next)
		g.b.label(ok)
	}
	if s.HasTimeouts() {
		// An expired element holds no key: the scan goes on (elements
		// do not overlap, so it will miss).
		off := int16(rangeDeadlineOff(s))
		live := g.b.newLabel("rcb_live")
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R0, off, asm.DWord),
			asm.JEq.Imm(asm.R1, 0, live),
			asm.Mov.Reg(asm.R7, asm.R0),
			asm.FnKtimeGetNs.Call(),
			asm.LoadMem(asm.R1, asm.R7, off, asm.DWord),
			asm.JGE.Reg(asm.R0, asm.R1, next),
			asm.Mov.Reg(asm.R0, asm.R7),
		)
		g.b.label(live)
	}
	g.b.emit(
		asm.StoreMem(asm.R6, ctxValue, asm.R0, asm.DWord),
		asm.Mov.Imm(asm.R0, 1),
		asm.Return(),
	)
	g.b.label(next)
	g.b.emit(asm.Mov.Imm(asm.R0, 0), asm.Return())
	cb, err := g.b.finish()
	main.n = g.b.n
	g.b = main
	if err != nil {
		// finish fails only on a dangling label, which the code above
		// cannot leave.
		panic(err)
	}
	cb[0] = btf.WithFuncMetadata(cb[0], btfCallback(name))
	if g.callbackCode == nil {
		g.callbackCode = map[string]asm.Instructions{}
	}
	g.callbackCode[name] = cb
	return name
}

// withCallbacks returns the instructions of a finished program followed
// by the callbacks they reference (the kernel wants no code that is not
// called, and function information for exactly the functions called).
func (g *gen) withCallbacks(insns asm.Instructions) asm.Instructions {
	var out asm.Instructions
	seen := map[string]bool{}
	for _, ins := range insns {
		if !ins.IsLoadOfFunctionPointer() || seen[ins.Reference()] {
			continue
		}
		seen[ins.Reference()] = true
		if out == nil {
			out = append(insns[:len(insns):len(insns)], nil...)
		}
		out = append(out, g.callbackCode[ins.Reference()]...)
	}
	if out == nil {
		return insns
	}
	// A program referencing a callback needs BTF function information
	// for each of its functions, the program itself first.
	out[0] = btf.WithFuncMetadata(out[0], &btf.Func{Name: "nft_main", Type: &btf.FuncProto{Return: btfInt}, Linkage: btf.StaticFunc})
	return out
}

var btfInt = &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}

// btfCallback is the BTF function type of the range callbacks:
// static long cb(u64 index, void *ctx).
func btfCallback(name string) *btf.Func {
	u64 := &btf.Int{Name: "unsigned long long", Size: 8}
	return &btf.Func{Name: name, Linkage: btf.StaticFunc, Type: &btf.FuncProto{
		Return: &btf.Int{Name: "long", Size: 8, Encoding: btf.Signed},
		Params: []btf.FuncParam{{Name: "index", Type: u64}, {Name: "ctx", Type: &btf.Pointer{Target: (*btf.Void)(nil)}}},
	}}
}

// cmpValue compares the key bytes [pos, pos+n) of the buffer R6 points
// to with the same bytes of the bound at offset base in the map value R0
// points to, as memcmp does, and jumps to lt, eq or gt (key against
// bound).
func (g *gen) cmpValue(pos, n uint32, base int16, lt, eq, gt string) {
	for _, c := range chunks(n) {
		p, sz := c[0], c[1]
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R6, int16(pos+p), asmSize(sz)),
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

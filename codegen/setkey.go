package codegen

import (
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// concatKey is the stack area (64 bytes) where the key of a concatenation
// is assembled field by field before it is copied to the buffer.
const concatKey = -400

// loadKey places the register image of a lookup key in the buffer: one
// field, or the fields of a concatenation each at its 32-bit-aligned
// offset (see ir.Set.KeyLayout), or jumps to fail where nf_tables would
// break on one of the loads.
func (g *gen) loadKey(key []ir.Field, s *ir.Set, fail string) error {
	if s == nil {
		return g.unsupported("lookup without a set")
	}
	if len(key) == 0 {
		return g.unsupported("lookup without a key")
	}
	if len(key) == 1 {
		f := &key[0]
		if f.Len != s.KeyLen {
			return g.unsupported("set %s has %d-byte keys but the looked-up value has %d bytes", s.Name, s.KeyLen, f.Len)
		}
		return g.loadTransformed(f, fail)
	}
	offs, lens := s.KeyLayout()
	if len(offs) != len(key) {
		return g.unsupported("set %s has keys of %d fields, looked up with %d", s.Name, len(offs), len(key))
	}
	if s.KeyLen > bufSize {
		return g.unsupported("set %s: key of %d bytes is longer than %d", s.Name, s.KeyLen, bufSize)
	}
	for i := range key {
		f := &key[i]
		if f.Len != lens[i] {
			return g.unsupported("set %s: key field %d has %d bytes, the looked-up value %d", s.Name, i+1, lens[i], f.Len)
		}
		if err := g.loadTransformed(f, fail); err != nil {
			return err
		}
		g.copyStack(concatKey+int32(offs[i]), bufOff, round4(f.Len))
	}
	g.copyStack(bufOff, concatKey, s.KeyLen)
	return nil
}

// loadTransformed loads f into the buffer and applies its transforms.
func (g *gen) loadTransformed(f *ir.Field, fail string) error {
	if f.Len == 0 || f.Len > bufSize {
		return g.unsupported("field length %d is out of range 1..%d", f.Len, bufSize)
	}
	span := round4(f.Len)
	if err := g.loadField(f, span, fail); err != nil {
		return err
	}
	for _, t := range f.Transforms {
		if err := g.transform(t, span); err != nil {
			return err
		}
	}
	return nil
}

// copyStack copies n bytes (a multiple of 4) between stack areas.
func (g *gen) copyStack(dst, src int32, n uint32) {
	for _, c := range chunks(n) {
		pos, sz := int32(c[0]), asmSize(c[1])
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, int16(src+pos), sz),
			asm.StoreMem(asm.R10, int16(dst+pos), asm.R0, sz),
		)
	}
}

// cmpEqAt jumps to ne unless the buffer holds want at byte pos.
func (g *gen) cmpEqAt(pos uint32, want []byte, ne string) {
	for _, c := range chunks(uint32(len(want))) {
		p, sz := c[0], c[1]
		g.b.emit(asm.LoadMem(asm.R0, asm.R10, int16(bufOff+int32(pos+p)), asmSize(sz)))
		g.loadConst(asm.R1, leValue(want[p:p+sz]))
		g.b.emit(asm.JNE.Reg(asm.R0, asm.R1, ne))
	}
}

// cmp3At compares the buffer bytes at pos with want as memcmp does and
// jumps to lt, eq or gt.
func (g *gen) cmp3At(pos uint32, want []byte, lt, eq, gt string) {
	for _, c := range chunks(uint32(len(want))) {
		p, sz := c[0], c[1]
		g.b.emit(asm.LoadMem(asm.R0, asm.R10, int16(bufOff+int32(pos+p)), asmSize(sz)))
		if sz > 1 {
			g.b.emit(asm.BSwap(asm.R0, asmSize(sz)))
		}
		g.loadConst(asm.R1, beValue(want[p:p+sz]))
		g.b.emit(
			asm.JLT.Reg(asm.R0, asm.R1, lt),
			asm.JGT.Reg(asm.R0, asm.R1, gt),
		)
	}
	g.b.emit(asm.Ja.Label(eq))
}

// elementTest emits a compare of the key in the buffer with element e of
// s: it jumps to miss unless the key lies in e (for a concatenation with
// the interval flag, every field in its own range) and falls through
// otherwise.
func (g *gen) elementTest(s *ir.Set, e ir.SetElement, miss string) error {
	if uint32(len(e.Low)) != s.KeyLen || uint32(len(e.High)) != s.KeyLen {
		return g.unsupported("set %s: element length differs from key length %d", s.Name, s.KeyLen)
	}
	offs, lens := s.KeyLayout()
	if !s.Concatenated() {
		offs, lens = []uint32{0}, []uint32{s.KeyLen}
	}
	for i := range offs {
		a, b := offs[i], offs[i]+lens[i]
		lo, hi := e.Low[a:b], e.High[a:b]
		if string(lo) == string(hi) {
			g.cmpEqAt(a, lo, miss)
			continue
		}
		hiLabel := g.b.newLabel("key_hi")
		ok := g.b.newLabel("key_ok")
		g.cmp3At(a, lo, miss, hiLabel, hiLabel)
		g.b.label(hiLabel)
		g.cmp3At(a, hi, ok, ok, miss)
		g.b.label(ok)
	}
	return nil
}

// mapLookup looks the key in the buffer up in the map of s (through its
// slot, see loadSetMap); it jumps to
// miss when the key is not there and falls through with R0 pointing at
// the value otherwise.
func (g *gen) mapLookup(s *ir.Set, miss string) error {
	if err := g.useSet(s); err != nil {
		return err
	}
	// The register image in the buffer is the key: nft_lookup hashes
	// exactly KeyLen register bytes. An LPM trie key has the prefix
	// length (all bits) in front.
	keyOff := int32(bufOff)
	if s.Flags&ir.SetInterval != 0 {
		keyOff = bufOff - 4
		g.b.emit(asm.StoreImm(asm.R10, int16(keyOff), int64(s.KeyLen*8), asm.Word))
	}
	g.loadSetMap(s, miss)
	g.b.emit(
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, keyOff),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, miss),
	)
	g.expiryCheck(s, miss)
	return nil
}

// lookup emits a lookup of a concatenated key: it jumps to fail unless the
// key is in the set (not in it, for a negated lookup).
func (g *gen) lookup(l *ir.Lookup, fail string) error {
	s := l.Set
	if s == nil {
		return g.unsupported("lookup without a set")
	}
	if s.Flags&(ir.SetMap|ir.SetObject) != 0 {
		return g.unsupported("maps are not supported in a set lookup")
	}
	if s.Flags&ir.SetEval != 0 || (s.HasTimeouts() && !InMap(s)) {
		return g.unsupported("dynamic sets (timeout/dynamic flag) are not supported")
	}
	if err := g.loadKey(l.Key, s, fail); err != nil {
		return err
	}
	ok := g.b.newLabel("lookup_ok")
	hit, miss := ok, fail
	if l.Negate {
		hit, miss = fail, ok
	}
	if IsRangeTable(s) {
		if err := g.rangeLookup(s, miss); err != nil {
			return err
		}
		g.b.emit(asm.Ja.Label(hit))
	} else if InMap(s) {
		if err := g.mapLookup(s, miss); err != nil {
			return err
		}
		g.b.emit(asm.Ja.Label(hit))
	} else {
		if !s.Anonymous() {
			return g.unsupported("named set %s cannot be backed by a map", s.Name)
		}
		for _, e := range s.Elements {
			next := g.b.newLabel("elem_next")
			if err := g.elementTest(s, e, next); err != nil {
				return err
			}
			g.b.emit(asm.Ja.Label(hit))
			g.b.label(next)
		}
		g.b.emit(asm.Ja.Label(miss))
	}
	g.b.label(ok)
	return nil
}

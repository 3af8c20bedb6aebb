package codegen

import (
	"fmt"
	"sort"

	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// The field cache.
//
// Straight-line rules load every field they compare with a helper call
// (bpf_xdp_load_bytes, bpf_skb_load_bytes, bpf_dynptr_read) into the
// buffer, then compare it there: about 20 instructions and a call per
// field, for every rule a packet passes. Which payload fields load, and
// what they hold, depends only on the packet: nf_tables breaks a rule when
// a load fails (a short packet, no transport header, a fragment), and the
// same load fails for every rule. Nothing a rule does changes the packet
// bytes (there is no payload mangling statement; reject ends the chain).
//
// So a chain of many straight-line rules loads each payload field that
// several of its rules compare once, right after the prologue, into a
// stack slot of its own, and records in a bit of cacheBits whether the
// load succeeded. A rule compares straight from the slot (a load and a
// 32-bit compare with an immediate per 4 bytes, no helper, no buffer) and
// tests the bits of its fields once, after its compares and before
// anything with an effect: a failed load leaves zeros in the slot, which
// may compare either way, but the bit test then ends the rule as
// nf_tables would. On the path where no rule matches, a rule usually
// costs two instructions.
//
// The fill runs in every program of a split chain (it is part of the
// prologue, which every part repeats), so no state crosses a tail call.
//
// The verifier sees each fill step once: the bit is computed from the
// helper's return value without a branch ((r0 >> 63) ^ 1), so the first
// path it walks, on which every load is made, leaves every bit unknown and
// imprecise, and the paths that skip a load (no transport header, a
// fragment) are pruned where they rejoin it. Had the bits been constants,
// the rules' tests of them would make them precise and every combination
// would be verified separately.

// Stack region of the cache (see the layout in gen.go). The fib … type
// lookup uses this region while it runs, so a chain with a fib
// expression has no cache; reject uses it too but ends the chain.
const (
	cacheBits  = -512 // u64: bit k set when cached field k loaded
	cacheStart = -504 // the fields' register images, up to cacheEnd
	cacheEnd   = -432
)

// Thresholds: a chain gets a cache when it has at least cacheMinRules
// straight-line rules, and a field is cached when at least cacheMinUses
// of them compare it. Below that, the rules load their fields as before,
// so a first-rule hit in a short chain costs what it did.
const (
	cacheMinRules = 8
	cacheMinUses  = 3
	// cacheMaxLen is the longest field cached (an IPv6 address).
	cacheMaxLen = 16
)

// cacheKey identifies a payload load or a meta key.
type cacheKey struct {
	source   ir.Source
	base     ir.PayloadBase
	off, len uint32
	meta     ir.MetaKey
}

// cachedMeta are the meta keys the cache holds: taken from the pktinfo
// the prologue computed (meta set cannot change them). The value says
// whether the load can fail (l4proto without a transport header).
var cachedMeta = map[ir.MetaKey]bool{
	ir.MetaProtocol: false,
	ir.MetaNFProto:  false,
	ir.MetaLen:      false,
	ir.MetaL4Proto:  true,
}

// cachedField is where a cached field lives: its register image at off
// (round4(len) bytes, zero beyond len) and its load result in bit, unless
// the load cannot fail (always).
type cachedField struct {
	key    cacheKey
	off    int16
	bit    uint32
	always bool
}

// fieldCache is the plan of a chain's cache.
type fieldCache struct {
	fields []cachedField // fill order
	index  map[cacheKey]int
	// size is the bytes of register images in use behind cacheStart.
	size int32
	// distinct counts the different comparisons the rules make on
	// each field: stmtOrder tests the most discriminating first.
	distinct map[cacheKey]int
}

// cacheKeyOf returns the load m's field is, and whether rule code can
// compare m from the cache.
func (g *gen) cacheKeyOf(m *ir.Match) (cacheKey, bool) {
	f := &m.Field
	key := cacheKey{source: f.Source, base: f.Base, off: f.Offset, len: f.Len}
	switch f.Source {
	case ir.SourcePayload:
	case ir.SourceMeta:
		if _, ok := cachedMeta[f.Meta]; !ok || f.Len != metaLen[f.Meta] {
			return cacheKey{}, false
		}
		key = cacheKey{source: f.Source, meta: f.Meta, len: f.Len}
	default:
		return cacheKey{}, false
	}
	if f.Len == 0 || f.Len > cacheMaxLen || f.Offset > 255 {
		return cacheKey{}, false
	}
	switch base := f.Base; {
	case f.Source == ir.SourceMeta:
	case base == ir.BaseNetwork, base == ir.BaseTransport:
	case base == ir.BaseLL:
		// The load paths of loadPayload without special cases:
		// cgroup_skb and netfilter read the mac header from the skb,
		// tc rebuilds an outer VLAN tag past the MAC addresses.
		switch g.tgt.Type {
		case XDP:
		case TC:
			if f.Offset+f.Len > 12 {
				return cacheKey{}, false
			}
		default:
			return cacheKey{}, false
		}
	default:
		return cacheKey{}, false
	}
	span := round4(f.Len)
	for _, t := range f.Transforms {
		if t.Kind != ir.TransformMaskXor || t.Len == 0 || round4(t.Len) > span ||
			uint32(len(t.Mask)) != t.Len || uint32(len(t.Xor)) != t.Len {
			return cacheKey{}, false
		}
	}
	n := uint32(len(m.Value))
	if n == 0 || n > span {
		return cacheKey{}, false
	}
	switch m.Op {
	case ir.OpEq, ir.OpNeq, ir.OpLt, ir.OpLte, ir.OpGt, ir.OpGte:
	case ir.OpInRange, ir.OpNotInRange:
		if len(m.High) != len(m.Value) {
			return cacheKey{}, false
		}
	default:
		return cacheKey{}, false
	}
	return key, true
}

// planFieldCache chooses the fields base chain c caches, or none: it
// counts, over the straight-line rules of c and of the table's user
// chains (which c may inline), the rules comparing each cacheable field.
func (g *gen) planFieldCache(c *ir.Chain) *fieldCache {
	chains := []*ir.Chain{c}
	for _, u := range g.t.Chains {
		if u.Base == nil {
			chains = append(chains, u)
		}
	}
	uses := map[cacheKey]int{}
	values := map[cacheKey]map[string]bool{}
	rules := 0
	for _, ch := range chains {
		groups := g.planGroups(ch)
		for i := 0; i < len(ch.Rules); i++ {
			if p := groups[i]; p != nil {
				i = p.end - 1
				continue
			}
			rules++
			seen := map[cacheKey]bool{}
			for _, s := range ch.Rules[i].Stmts {
				for _, f := range ir.StmtFields(s) {
					if f.Source == ir.SourceFIB {
						return nil // fib uses the cache's stack region
					}
				}
				m, ok := s.(*ir.Match)
				if !ok {
					continue
				}
				if k, ok := g.cacheKeyOf(m); ok {
					if !seen[k] {
						seen[k] = true
						uses[k]++
					}
					if values[k] == nil {
						values[k] = map[string]bool{}
					}
					values[k][fmt.Sprint(m.Op, m.Value, m.High, m.Field.Transforms)] = true
				}
			}
		}
	}
	// fib in rules that are grouped counts too.
	for _, ch := range g.t.Chains {
		for _, r := range ch.Rules {
			for _, s := range r.Stmts {
				for _, f := range ir.StmtFields(s) {
					if f.Source == ir.SourceFIB {
						return nil
					}
				}
			}
		}
	}
	if rules < cacheMinRules {
		return nil
	}
	keys := make([]cacheKey, 0, len(uses))
	for k, n := range uses {
		if n >= cacheMinUses {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if uses[a] != uses[b] {
			return uses[a] > uses[b]
		}
		if a.source != b.source {
			return a.source < b.source
		}
		if a.meta != b.meta {
			return a.meta < b.meta
		}
		if a.base != b.base {
			return a.base < b.base
		}
		if a.off != b.off {
			return a.off < b.off
		}
		return a.len < b.len
	})
	fc := &fieldCache{index: map[cacheKey]int{}, distinct: map[cacheKey]int{}}
	for k, v := range values {
		fc.distinct[k] = len(v)
	}
	// Images of more than 4 bytes sit on 8-byte boundaries, others on
	// 4-byte ones, so that the compares' 4-, 2- and 1-byte loads are
	// aligned; a field that no longer fits is not cached.
	room := int32(cacheEnd - cacheStart)
	var hole int32 = -1 // a free 4-byte place left by alignment
	var bits uint32
	for _, k := range keys {
		size := int32(round4(k.len))
		var at int32
		switch {
		case size == 4 && hole >= 0:
			at, hole = hole, -1
		case size == 4:
			if fc.size+4 > room {
				continue
			}
			at = fc.size
			fc.size += 4
		default:
			size = (size + 7) &^ 7
			start := (fc.size + 7) &^ 7
			if start+size > room {
				continue
			}
			if start != fc.size {
				hole = fc.size
			}
			at = start
			fc.size = start + size
		}
		cf := cachedField{key: k, off: int16(cacheStart + at), bit: bits}
		if k.source == ir.SourceMeta && !cachedMeta[k.meta] {
			cf.always = true
		} else {
			bits++
		}
		fc.index[k] = len(fc.fields)
		fc.fields = append(fc.fields, cf)
	}
	return fc
}

// fillFieldCache emits the loads of the cached fields, right after the
// prologue.
func (g *gen) fillFieldCache() error {
	fc := g.cache
	if fc == nil {
		return nil
	}
	for off := int32(cacheStart); off < cacheStart+(fc.size+7)&^7; off += 8 {
		g.b.emit(stImm64(asm.R10, int16(off), 0))
	}
	g.b.emit(asm.Mov.Imm(asm.R9, 0))
	for _, cf := range fc.fields {
		if cf.key.source == ir.SourceMeta {
			g.fillMeta(cf)
			continue
		}
		skip := g.b.newLabel("cache_skip")
		f := &ir.Field{Source: ir.SourcePayload, Base: cf.key.base, Offset: cf.key.off, Len: cf.key.len}
		if err := g.payloadAddr(f, skip); err != nil {
			return err
		}
		g.loadBytes(int32(cf.off), cf.key.len)
		g.b.emit(
			// R0 is 0 or a negative error: bit = (R0 >> 63) ^ 1.
			asm.Mov.Reg(asm.R1, asm.R0),
			asm.RSh.Imm(asm.R1, 63),
			asm.Xor.Imm(asm.R1, 1),
		)
		if cf.bit > 0 {
			g.b.emit(asm.LSh.Imm(asm.R1, int32(cf.bit)))
		}
		g.b.emit(asm.Or.Reg(asm.R9, asm.R1))
		g.b.label(skip)
	}
	g.b.emit(asm.StoreMem(asm.R10, cacheBits, asm.R9, asm.DWord))
	return nil
}

// fillMeta emits the copy of a meta key's register image from the
// pktinfo slots into the cache, as loadMeta computes it, without a
// branch: l4proto's load bit is the L4PROTO flag itself.
func (g *gen) fillMeta(cf cachedField) {
	switch cf.key.meta {
	case ir.MetaProtocol:
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, slotProto, asm.DWord),
			asm.BSwap(asm.R0, asm.Half),
		)
	case ir.MetaNFProto:
		g.b.emit(asm.LoadMem(asm.R0, asm.R10, slotPF, asm.DWord))
	case ir.MetaLen:
		g.b.emit(asm.LoadMem(asm.R0, asm.R10, slotLen, asm.DWord))
	case ir.MetaL4Proto:
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, slotTProt, asm.DWord),
			asm.LoadMem(asm.R1, asm.R10, slotL4, asm.DWord),
			asm.And.Imm(asm.R1, 1),
		)
		if cf.bit > 0 {
			g.b.emit(asm.LSh.Imm(asm.R1, int32(cf.bit)))
		}
		g.b.emit(asm.Or.Reg(asm.R9, asm.R1))
	}
	g.b.emit(asm.StoreMem(asm.R10, cf.off, asm.R0, asm.Word))
}

// cached returns the cache entry m compares from, if any.
func (g *gen) cached(m *ir.Match) (cachedField, bool) {
	if g.cache == nil {
		return cachedField{}, false
	}
	k, ok := g.cacheKeyOf(m)
	if !ok {
		return cachedField{}, false
	}
	i, ok := g.cache.index[k]
	if !ok {
		return cachedField{}, false
	}
	return g.cache.fields[i], true
}

// isCachedMatch reports whether s is a match compared from the cache.
func (g *gen) isCachedMatch(s ir.Stmt) bool {
	m, ok := s.(*ir.Match)
	if !ok {
		return false
	}
	_, ok = g.cached(m)
	return ok
}

// matchCached emits m compared from its cache entry cf: code that jumps
// to fail unless m holds or the field did not load. The load bit is
// tested at once, or, within a rule (g.deferBits), by flushCacheBits
// before the rule's next statement that is not such a match.
func (g *gen) matchCached(m *ir.Match, cf cachedField, fail string) error {
	ok := g.b.newLabel("match_ok")
	if n := uint32(len(m.Value)); m.Op != ir.OpEq && m.Op != ir.OpNeq && (n == 1 || n == 2 || n == 4) {
		g.cachedOrder(m, cf, ok, fail)
	} else {
		if err := g.cachedCompare(m, cf, ok, fail); err != nil {
			return err
		}
	}
	g.b.label(ok)
	if cf.always {
		return nil
	}
	g.pendingBits |= uint64(1) << cf.bit
	if !g.deferBits {
		g.flushCacheBits(fail)
	}
	return nil
}

// cachedOrder emits an order or range comparison of a field of 1, 2 or
// 4 bytes: one chunk, turned to host order once and compared with the
// bounds, one jump each.
func (g *gen) cachedOrder(m *ir.Match, cf cachedField, ok, fail string) {
	n := uint32(len(m.Value))
	g.cachedChunk(m, cf, 0, n)
	if n > 1 {
		g.b.emit(asm.BSwap(asm.R0, asmSize(n)))
	}
	lo := int32(uint32(beValue(m.Value)))
	switch m.Op {
	case ir.OpLt:
		g.b.emit(asm.JGE.Imm32(asm.R0, lo, fail))
	case ir.OpLte:
		g.b.emit(asm.JGT.Imm32(asm.R0, lo, fail))
	case ir.OpGt:
		g.b.emit(asm.JLE.Imm32(asm.R0, lo, fail))
	case ir.OpGte:
		g.b.emit(asm.JLT.Imm32(asm.R0, lo, fail))
	case ir.OpInRange:
		hi := int32(uint32(beValue(m.High)))
		g.b.emit(
			asm.JLT.Imm32(asm.R0, lo, fail),
			asm.JGT.Imm32(asm.R0, hi, fail),
		)
	case ir.OpNotInRange:
		hi := int32(uint32(beValue(m.High)))
		g.b.emit(
			asm.JLT.Imm32(asm.R0, lo, ok),
			asm.JLE.Imm32(asm.R0, hi, fail),
		)
	}
}

// cachedCompare emits any comparison cacheKeyOf admits, chunk by chunk.
func (g *gen) cachedCompare(m *ir.Match, cf cachedField, ok, fail string) error {
	switch m.Op {
	case ir.OpEq:
		g.cachedEq(m, cf, m.Value, fail)
	case ir.OpNeq:
		g.cachedEq(m, cf, m.Value, ok)
		g.b.emit(asm.Ja.Label(fail))
	case ir.OpLt:
		g.cachedCmp3(m, cf, m.Value, ok, fail, fail)
	case ir.OpLte:
		g.cachedCmp3(m, cf, m.Value, ok, ok, fail)
	case ir.OpGt:
		g.cachedCmp3(m, cf, m.Value, fail, fail, ok)
	case ir.OpGte:
		g.cachedCmp3(m, cf, m.Value, fail, ok, ok)
	case ir.OpInRange, ir.OpNotInRange:
		hi := g.b.newLabel("range_hi")
		if m.Op == ir.OpInRange {
			g.cachedCmp3(m, cf, m.Value, fail, hi, hi)
			g.b.label(hi)
			g.cachedCmp3(m, cf, m.High, ok, ok, fail)
		} else {
			g.cachedCmp3(m, cf, m.Value, ok, hi, hi)
			g.b.label(hi)
			g.cachedCmp3(m, cf, m.High, fail, fail, ok)
		}
	default:
		return g.unsupported("internal error: comparison %d from the field cache", m.Op)
	}
	return nil
}

// flushCacheBits emits the test of the load bits of the cached matches
// emitted since the last test: a jump to fail unless all are set.
func (g *gen) flushCacheBits(fail string) {
	bits := g.pendingBits
	if bits == 0 {
		return
	}
	g.pendingBits = 0
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, cacheBits, asm.Word),
		asm.And.Imm32(asm.R0, int32(bits)),
		asm.JNE.Imm32(asm.R0, int32(bits), fail),
	)
}

// chunks32 splits n bytes into aligned loads of 4, 2 and 1 bytes.
func chunks32(n uint32) [][2]uint32 {
	var out [][2]uint32
	pos := uint32(0)
	for _, sz := range []uint32{4, 2, 1} {
		for n-pos >= sz {
			out = append(out, [2]uint32{pos, sz})
			pos += sz
		}
	}
	return out
}

// cachedChunk loads sz bytes at pos of the register image of m's field
// into R0 (zero-extended), with the field's mask/xor transforms applied.
func (g *gen) cachedChunk(m *ir.Match, cf cachedField, pos, sz uint32) {
	g.b.emit(asm.LoadMem(asm.R0, asm.R10, cf.off+int16(pos), asmSize(sz)))
	for _, t := range m.Field.Transforms {
		mask := make([]byte, sz)
		xor := make([]byte, sz)
		for i := uint32(0); i < sz; i++ {
			mask[i] = 0xff
			if p := pos + i; p < t.Len {
				mask[i], xor[i] = t.Mask[p], t.Xor[p]
			}
		}
		if mv := uint32(leValue(mask)); uint64(mv) != uint64(1)<<(8*sz)-1 {
			g.b.emit(asm.And.Imm32(asm.R0, int32(mv)))
		}
		if xv := uint32(leValue(xor)); xv != 0 {
			g.b.emit(asm.Xor.Imm32(asm.R0, int32(xv)))
		}
	}
}

// cachedEq jumps to ne unless the field's image starts with want.
func (g *gen) cachedEq(m *ir.Match, cf cachedField, want []byte, ne string) {
	for _, c := range chunks32(uint32(len(want))) {
		pos, sz := c[0], c[1]
		g.cachedChunk(m, cf, pos, sz)
		g.b.emit(asm.JNE.Imm32(asm.R0, int32(uint32(leValue(want[pos:pos+sz]))), ne))
	}
}

// cachedCmp3 compares the field's image with want as memcmp does and
// jumps to lt, eq or gt.
func (g *gen) cachedCmp3(m *ir.Match, cf cachedField, want []byte, lt, eq, gt string) {
	for _, c := range chunks32(uint32(len(want))) {
		pos, sz := c[0], c[1]
		g.cachedChunk(m, cf, pos, sz)
		if sz > 1 {
			g.b.emit(asm.BSwap(asm.R0, asmSize(sz)))
		}
		v := int32(uint32(beValue(want[pos : pos+sz])))
		g.b.emit(
			asm.JLT.Imm32(asm.R0, v, lt),
			asm.JGT.Imm32(asm.R0, v, gt),
		)
	}
	g.b.emit(asm.Ja.Label(eq))
}

// stmtOrder returns the order in which the statements of r are compiled:
// their own, except that each run of consecutive matches compared from
// the cache is sorted so that the tests likeliest to fail come first:
// equalities on fields compared with the most different values in the
// chain, then ranges and inequalities, then tests every rule makes alike. Those compares have no effect and share
// one failure target (their load bits are tested behind the run), so
// their order changes nothing but how soon a packet that fails the rule
// leaves it: a test every rule makes alike ("meta protocol ip") passes
// for most packets, one with a constant of its own fails for most.
func (g *gen) stmtOrder(r *ir.Rule) []int {
	order := make([]int, len(r.Stmts))
	for i := range order {
		order[i] = i
	}
	if g.cache == nil {
		return order
	}
	// rank: equalities with constants that differ between rules first
	// (each passes for few packets), then other comparisons (a range
	// passes for many), then compares every rule makes alike.
	rank := func(i int) (int, int) {
		m := r.Stmts[i].(*ir.Match)
		k, _ := g.cacheKeyOf(m)
		d := g.cache.distinct[k]
		switch {
		case d <= 1:
			return 2, d
		case m.Op == ir.OpEq:
			return 0, d
		}
		return 1, d
	}
	for i := 0; i < len(order); {
		j := i
		for j < len(order) && g.isCachedMatch(r.Stmts[j]) {
			j++
		}
		if j-i > 1 {
			run := order[i:j]
			sort.SliceStable(run, func(a, b int) bool {
				ra, da := rank(run[a])
				rb, db := rank(run[b])
				if ra != rb {
					return ra < rb
				}
				return da > db
			})
		}
		if j == i {
			j++
		}
		i = j
	}
	return order
}

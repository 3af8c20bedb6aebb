package codegen

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Stack layout (offsets from R10). All slots are 8 bytes and written by
// the prologue before any rule runs.
const (
	slotLen    = -8   // skb->len as nf_tables sees it
	slotNH     = -16  // offset of the network header from the load origin
	slotTH     = -24  // offset of the transport header from the load origin
	slotL4     = -32  // 1 if NFT_PKTINFO_L4PROTO is set
	slotTProt  = -40  // pkt->tprot
	slotFrag   = -48  // pkt->fragoff
	slotProto  = -56  // skb->protocol in host order
	slotLL     = -64  // offset of the mac header from the load origin, or -1
	slotBase   = -72  // offset of nf_tables' skb->data from the load origin
	slotTotal  = -80  // bytes from the load origin to the end of the packet
	slotVlan   = -88  // 1 if an outer VLAN tag sits in skb->vlan_tci (tc)
	slotVTCI   = -96  // skb->vlan_tci, host order
	slotVProto = -104 // skb->vlan_proto, host order
	slotPF     = -112 // nft_pf(pkt)
	slotSkb    = -120 // kernel struct sk_buff pointer (tc, cgroup, nf)
	slotState  = -128 // struct nf_hook_state pointer (nf)
	slotKey    = -136 // map key scratch
	slotDyn    = -152 // struct bpf_dynptr (16 bytes, nf)
	slotT1     = -160 // prologue scratch
	slotT2     = -168 // prologue scratch
	vethBuf    = -192 // 24 bytes: rebuilt VLAN ethernet header
	bufOff     = -256 // 64 bytes: the nf_tables register image of a field
	bufSize    = 64
	// Below the buffer: slotEvent (-264, log.go), slotGroupAc (-272)
	// and groupKeyOff (-336…-272, group.go), concatKey (-400…-336,
	// setkey.go), slotSetMap (-424, setslot.go), slotSetValue (-432,
	// timeout.go), and the field cache (-512…-432, fieldcache.go).
	// The fib … type lookup (fib.go) uses -512…-417
	// while it runs; the slots it overlaps are live only within a set
	// lookup, a range scan or a reject. An LPM trie key puts its prefix length in the
	// word right below the buffer (-260…-256) while a lookup is made.
)

const (
	labelAccept = "nft_accept"
	labelDrop   = "nft_drop"
	labelPolicy = "nft_policy"
	labelUnspec = "nft_unspec" // prologue: pktinfo without L4PROTO
	labelPktOK  = "nft_pktinfo_done"
)

// gen compiles one base chain.
type gen struct {
	t      *ir.Table
	tgt    Target
	b      *builder
	chains map[string]*ir.Chain

	slots     []CounterSlot
	slotIndex map[CounterSlot]int
	sets      map[*ir.Set]*ebpf.MapSpec
	anns      []Annotation
	opts      Options
	groups    []*GroupMap
	plans     map[*ir.Chain]map[int]*groupPlan // planGroups' results
	// base is the base chain compiled; rulesDone counts the rules
	// compiled so far (for the estimate in tooLong).
	base      *ir.Chain
	rulesDone int

	stateSlots []CounterSlot
	stateIndex map[CounterSlot]int
	events     bool // a log statement writes to the event ring buffer
	// groupHandle: log statements take the rule's handle from
	// slotGroupHandle (a group's action block, groupact.go).
	groupHandle bool
	// groupState: limit and quota statements take their state slot from
	// slotGroupState (groupact.go).
	groupState bool
	// chainCosts memoizes the estimated inlined code of user chains
	// (groupact.go).
	chainCosts map[string]int

	// entryJump, rulesPos and policyPos locate the prologue's jump to
	// the rules, the first rule and the policy; cuts are the rule
	// boundaries a long chain may be split at (split.go).
	entryJump, rulesPos, policyPos int
	cuts                           []cutPoint

	// rangeCallbacks names the bpf_loop callback scanning each range
	// table; callbackCode is their code by name, appended to every
	// program that references it (rangetable.go).
	rangeCallbacks map[*ir.Set]string
	callbackCode   map[string]asm.Instructions

	// cache is the chain's field cache (fieldcache.go), nil without
	// one; pendingBits are the load bits of the cached matches of the
	// current rule not yet tested, which deferBits lets wait for the
	// rule's next statement that is not such a match.
	cache       *fieldCache
	pendingBits uint64
	deferBits   bool

	// cur identifies the statement being compiled, for errors.
	curChain string
	curRule  *ir.Rule
	curStmt  ir.Stmt
}

func newGen(t *ir.Table, tgt Target) (*gen, error) {
	g := &gen{
		t:          t,
		tgt:        tgt,
		b:          newBuilder(),
		chains:     map[string]*ir.Chain{},
		slotIndex:  map[CounterSlot]int{},
		sets:       map[*ir.Set]*ebpf.MapSpec{},
		stateIndex: map[CounterSlot]int{},
	}
	for _, c := range t.Chains {
		g.chains[c.Name] = c
	}
	return g, nil
}

// unsupported returns an UnsupportedError for the current statement.
func (g *gen) unsupported(format string, args ...any) error {
	e := &UnsupportedError{Chain: g.curChain, Reason: fmt.Sprintf(format, args...)}
	if g.curRule != nil {
		e.Handle = g.curRule.Handle
	}
	if g.curStmt != nil {
		e.Stmt = ir.FormatStmt(g.t.Family, g.curStmt)
	}
	return e
}

func (g *gen) compile(c *ir.Chain) error {
	g.base = c
	if len(c.Rules) == 0 && (g.tgt.Type == TC || c.Base.Policy == ir.VerdictAccept) {
		// An empty chain decides by its policy alone. Only the XDP,
		// cgroup_skb and netfilter prologues decide anything (they
		// accept packets nf_tables never sees), which a drop policy
		// must not override, so they stay there.
		g.b.emit(asm.Mov.Imm(asm.R0, ReturnCode(g.tgt.Type, c.Base.Policy == ir.VerdictAccept)), asm.Return())
		g.anns = append(g.anns, Annotation{Start: 0, End: g.b.pos(), Chain: c.Name, Text: "policy"})
		return nil
	}
	start := g.b.pos()
	g.cache = g.planFieldCache(c)
	if err := g.prologue(); err != nil {
		return err
	}
	if err := g.fillFieldCache(); err != nil {
		return err
	}
	// The verdict exits sit right behind the prologue; rules reach them
	// with long (32-bit) jumps, so programs may exceed 32k instructions.
	rules := g.b.newLabel("rules")
	g.entryJump = g.b.pos()
	g.b.emit(asm.LongJump(rules))
	g.b.label(labelAccept)
	g.b.emit(asm.Mov.Imm(asm.R0, ReturnCode(g.tgt.Type, true)), asm.Return())
	g.b.label(labelDrop)
	g.b.emit(asm.Mov.Imm(asm.R0, ReturnCode(g.tgt.Type, false)), asm.Return())
	g.anns = append(g.anns, Annotation{Start: start, End: g.b.pos(), Chain: c.Name, Text: "prologue"})
	g.b.label(rules)
	g.rulesPos = g.b.pos()
	if err := g.chain(c, labelPolicy, 0, map[string]bool{}); err != nil {
		return err
	}
	start = g.b.pos()
	g.policyPos = start
	g.b.label(labelPolicy)
	g.b.emit(
		asm.Mov.Imm(asm.R0, ReturnCode(g.tgt.Type, c.Base.Policy == ir.VerdictAccept)),
		asm.Return(),
	)
	g.anns = append(g.anns, Annotation{Start: start, End: g.b.pos(), Chain: c.Name, Text: "policy"})
	return nil
}

// maxJumpDepth is nf_tables' NFT_JUMP_STACK_SIZE.
const maxJumpDepth = 16

// chain emits the rules of c. When c ends or returns, control goes to ret.
func (g *gen) chain(c *ir.Chain, ret string, depth int, active map[string]bool) error {
	active[c.Name] = true
	defer delete(active, c.Name)
	groups := g.planGroups(c)
	var batch coldBatch
	for i := 0; i < len(c.Rules); i++ {
		if p := groups[i]; p != nil {
			g.flushCold(&batch, depth)
			if err := g.group(c, p, ret, depth, active); err != nil {
				return err
			}
			g.cut(depth)
			i = p.end - 1
			continue
		}
		r := c.Rules[i]
		g.curChain, g.curRule, g.curStmt = c.Name, r, nil
		next := g.b.newLabel("rule_end")
		cold := g.coldEligible(r)
		if !cold {
			g.flushCold(&batch, depth)
		}
		start := g.b.pos()
		g.b.invertNext = true
		if cold {
			g.b.coldNext, g.b.coldAt = next, -1
		}
		// inlines are the user chains the rule jumps or goes to, compiled
		// after it: a jump verdict falls through into the first, verdict
		// map targets are reached by their labels.
		var inlines []inlineChain
		g.deferBits = true
	stmts:
		for _, i := range g.stmtOrder(r) {
			s := r.Stmts[i]
			g.curStmt = s
			if !g.isCachedMatch(s) {
				g.flushCacheBits(next)
			}
			switch s := s.(type) {
			case *ir.Match:
				if err := g.match(s, next); err != nil {
					return err
				}
			case *ir.Counter:
				g.counter(CounterSlot{Chain: c.Name, Handle: r.Handle, Stmt: i})
			case *ir.Limit, *ir.Quota, *ir.Log, *ir.MetaSet, *ir.Reject, *ir.ObjRef:
				if err := g.statement(c.Name, r, i, s, next); err != nil {
					return err
				}
			case *ir.Verdict:
				switch s.Kind {
				case ir.VerdictContinue:
					continue
				case ir.VerdictAccept:
					g.b.emit(asm.LongJump(labelAccept))
				case ir.VerdictDrop:
					g.b.emit(asm.LongJump(labelDrop))
				case ir.VerdictReturn:
					g.b.emit(asm.LongJump(ret))
				case ir.VerdictJump, ir.VerdictGoto:
					target, err := g.callee(s, depth, active)
					if err != nil {
						return err
					}
					in := inlineChain{chain: target, ret: next}
					if s.Kind == ir.VerdictGoto {
						in.ret = ret
					}
					inlines = append(inlines, in)
				default:
					return g.unsupported("unknown verdict %d", s.Kind)
				}
				if i != len(r.Stmts)-1 {
					return g.unsupported("statements after a verdict")
				}
				break stmts
			case *ir.Lookup:
				if err := g.lookup(s, next); err != nil {
					return err
				}
			case *ir.MetaSetMap:
				if err := g.metaSetMap(s, next); err != nil {
					return err
				}
			case *ir.VerdictMap:
				if i != len(r.Stmts)-1 {
					return g.unsupported("statements after a verdict map")
				}
				in, err := g.verdictMap(s, next, ret, depth, active)
				if err != nil {
					return err
				}
				inlines = append(inlines, in...)
			default:
				return g.unsupported("statement type %T is not supported", s)
			}
		}
		g.flushCacheBits(next)
		g.deferBits = false
		g.b.invertNext = false
		ann := Annotation{Chain: c.Name, Handle: r.Handle, Text: ir.FormatRule(g.t.Family, r)}
		if cold {
			g.takeCold(&batch, next, ann)
		}
		ann.Start, ann.End = start, g.b.pos()
		g.anns = append(g.anns, ann)
		for _, in := range inlines {
			if in.label != "" {
				g.b.label(in.label)
			}
			if err := g.chain(in.chain, in.ret, depth+1, active); err != nil {
				return err
			}
			g.curChain = c.Name
		}
		g.b.label(next)
		switch {
		case batch.full():
			g.flushCold(&batch, depth)
		case batch.rules == 0:
			g.cut(depth)
		}
		g.rulesDone++
		if g.b.pos() > maxChainInsns {
			return g.tooLong()
		}
	}
	g.flushCold(&batch, depth)
	g.b.emit(asm.LongJump(ret))
	return nil
}

// callee returns the user chain a jump or goto verdict v enters at call
// depth depth, checking it as nf_tables does.
func (g *gen) callee(v *ir.Verdict, depth int, active map[string]bool) (*ir.Chain, error) {
	target, ok := g.chains[v.Chain]
	if !ok {
		return nil, g.unsupported("chain %q does not exist", v.Chain)
	}
	if target.Base != nil {
		return nil, g.unsupported("cannot jump to base chain %q", v.Chain)
	}
	if active[v.Chain] {
		return nil, g.unsupported("chain loop through %q", v.Chain)
	}
	if depth+1 > maxJumpDepth {
		return nil, g.unsupported("jump depth exceeds %d", maxJumpDepth)
	}
	return target, nil
}

// slotFor returns the counter index of counter statement s.
func (g *gen) slotFor(s CounterSlot) int {
	idx, ok := g.slotIndex[s]
	if !ok {
		idx = len(g.slots)
		g.slots = append(g.slots, s)
		g.slotIndex[s] = idx
	}
	return idx
}

// counter emits a counter statement.
func (g *gen) counter(s CounterSlot) {
	idx := g.slotFor(s)
	skip := g.b.newLabel("ctr_skip")
	g.b.emit(
		asm.LoadMapPtr(asm.R1, 0).WithReference(counterMapSymbol),
		// The whole 8-byte slot is written, though the key is 4 bytes:
		// the verifier tracks the key as a precise constant (it elides
		// the NULL check for it), and a partly written slot would stay
		// live from one rule to the next, so that states reaching a rule
		// from different counters would never prune.
		stImm64(asm.R10, slotKey, int64(idx)),
	)
	g.bumpCounter(skip)
	g.b.label(skip)
}

// bumpCounter looks up the counter slot whose key is at slotKey in the
// map R1 points to and adds the packet (skb->len as nf_tables sees it) to
// it; a failed lookup jumps to skip.
func (g *gen) bumpCounter(skip string) {
	g.b.emit(
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, slotKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, skip),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R0, 8, asm.DWord),
		asm.LoadMem(asm.R2, asm.R10, slotLen, asm.DWord),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.StoreMem(asm.R0, 8, asm.R1, asm.DWord),
	)
}

func round4(n uint32) uint32 { return (n + 3) &^ 3 }

// match emits code that jumps to fail unless m holds.
func (g *gen) match(m *ir.Match, fail string) error {
	f := &m.Field
	if f.Len == 0 || f.Len > bufSize {
		return g.unsupported("field length %d is out of range 1..%d", f.Len, bufSize)
	}
	if cf, ok := g.cached(m); ok {
		return g.matchCached(m, cf, fail)
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
	ok := g.b.newLabel("match_ok")
	n := uint32(len(m.Value))
	switch m.Op {
	case ir.OpEq, ir.OpNeq, ir.OpLt, ir.OpLte, ir.OpGt, ir.OpGte, ir.OpInRange, ir.OpNotInRange:
		if n == 0 || n > span {
			return g.unsupported("compare length %d does not fit the %d-byte field", n, f.Len)
		}
	}
	switch m.Op {
	case ir.OpEq:
		g.cmpEq(m.Value, fail)
	case ir.OpNeq:
		g.cmpEq(m.Value, ok)
		g.b.emit(asm.Ja.Label(fail))
	case ir.OpLt:
		g.cmp3(m.Value, ok, fail, fail)
	case ir.OpLte:
		g.cmp3(m.Value, ok, ok, fail)
	case ir.OpGt:
		g.cmp3(m.Value, fail, fail, ok)
	case ir.OpGte:
		g.cmp3(m.Value, fail, ok, ok)
	case ir.OpInRange, ir.OpNotInRange:
		if len(m.High) != len(m.Value) {
			return g.unsupported("range bounds differ in length")
		}
		hi := g.b.newLabel("range_hi")
		if m.Op == ir.OpInRange {
			g.cmp3(m.Value, fail, hi, hi)
			g.b.label(hi)
			g.cmp3(m.High, ok, ok, fail)
		} else {
			g.cmp3(m.Value, ok, hi, hi)
			g.b.label(hi)
			g.cmp3(m.High, fail, fail, ok)
		}
	case ir.OpInSet, ir.OpNotInSet:
		if err := g.set(m, span, ok, fail); err != nil {
			return err
		}
	default:
		return g.unsupported("unknown comparison %d", m.Op)
	}
	g.b.label(ok)
	return nil
}

// set emits a set membership test as a compare chain.
func (g *gen) set(m *ir.Match, span uint32, ok, fail string) error {
	s := m.Set
	if s == nil {
		return g.unsupported("set reference without a set")
	}
	if s.Flags&(ir.SetMap|ir.SetObject) != 0 {
		return g.unsupported("maps are not supported in a set lookup")
	}
	if s.Flags&ir.SetEval != 0 || (s.HasTimeouts() && !InMap(s)) {
		return g.unsupported("dynamic sets (timeout/dynamic flag) are not supported")
	}
	if s.Flags&ir.SetConcat != 0 && s.Flags&ir.SetInterval != 0 {
		return g.unsupported("interval sets with concatenated keys match per field; not supported")
	}
	if s.KeyLen == 0 || s.KeyLen > span {
		return g.unsupported("set key length %d does not fit the %d-byte field", s.KeyLen, m.Field.Len)
	}
	hit, miss := ok, fail
	if m.Op == ir.OpNotInSet {
		hit, miss = fail, ok
	}
	if InMap(s) {
		if s.KeyLen != m.Field.Len {
			return g.unsupported("set %s has %d-byte keys but the looked-up value has %d bytes", s.Name, s.KeyLen, m.Field.Len)
		}
		if err := g.mapLookup(s, miss); err != nil {
			return err
		}
		g.b.emit(asm.Ja.Label(hit))
		return nil
	}
	for _, e := range s.Elements {
		if uint32(len(e.Low)) != s.KeyLen || uint32(len(e.High)) != s.KeyLen {
			return g.unsupported("set element length differs from key length %d", s.KeyLen)
		}
		next := g.b.newLabel("set_next")
		if string(e.Low) == string(e.High) {
			g.cmpEq(e.Low, next)
			g.b.emit(asm.Ja.Label(hit))
		} else {
			hi := g.b.newLabel("set_hi")
			g.cmp3(e.Low, next, hi, hi)
			g.b.label(hi)
			g.cmp3(e.High, hit, hit, next)
		}
		g.b.label(next)
	}
	g.b.emit(asm.Ja.Label(miss))
	return nil
}

// chunks splits n bytes into aligned loads of 8, 4, 2 and 1 bytes.
func chunks(n uint32) [][2]uint32 {
	var out [][2]uint32
	pos := uint32(0)
	for _, sz := range []uint32{8, 4, 2, 1} {
		for n-pos >= sz {
			out = append(out, [2]uint32{pos, sz})
			pos += sz
		}
	}
	return out
}

func asmSize(sz uint32) asm.Size {
	switch sz {
	case 8:
		return asm.DWord
	case 4:
		return asm.Word
	case 2:
		return asm.Half
	}
	return asm.Byte
}

// leValue returns b as a little-endian (host order) integer.
func leValue(b []byte) uint64 {
	var v [8]byte
	copy(v[:], b)
	return binary.LittleEndian.Uint64(v[:])
}

// beValue returns b as a big-endian integer, which orders like memcmp.
func beValue(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// loadConst puts v into reg.
func (g *gen) loadConst(reg asm.Register, v uint64) {
	if v <= 0x7fffffff {
		g.b.emit(asm.Mov.Imm(reg, int32(v)))
	} else {
		g.b.emit(asm.LoadImm(reg, int64(v), asm.DWord))
	}
}

// cmpEq jumps to ne unless the buffer starts with want.
func (g *gen) cmpEq(want []byte, ne string) {
	for _, c := range chunks(uint32(len(want))) {
		pos, sz := c[0], c[1]
		v := leValue(want[pos : pos+sz])
		g.b.emit(asm.LoadMem(asm.R0, asm.R10, int16(bufOff+int32(pos)), asmSize(sz)))
		g.loadConst(asm.R1, v)
		g.b.emit(asm.JNE.Reg(asm.R0, asm.R1, ne))
	}
}

// cmp3 compares the buffer with want as memcmp does and jumps to lt, eq
// or gt.
func (g *gen) cmp3(want []byte, lt, eq, gt string) {
	for _, c := range chunks(uint32(len(want))) {
		pos, sz := c[0], c[1]
		g.b.emit(asm.LoadMem(asm.R0, asm.R10, int16(bufOff+int32(pos)), asmSize(sz)))
		if sz > 1 {
			g.b.emit(asm.BSwap(asm.R0, asmSize(sz)))
		}
		g.loadConst(asm.R1, beValue(want[pos:pos+sz]))
		g.b.emit(
			asm.JLT.Reg(asm.R0, asm.R1, lt),
			asm.JGT.Reg(asm.R0, asm.R1, gt),
		)
	}
	g.b.emit(asm.Ja.Label(eq))
}

// transform applies t to the buffer in place.
func (g *gen) transform(t ir.Transform, span uint32) error {
	if t.Len == 0 || round4(t.Len) > span {
		return g.unsupported("transform length %d exceeds the %d-byte field", t.Len, span)
	}
	switch t.Kind {
	case ir.TransformMaskXor:
		if uint32(len(t.Mask)) != t.Len || uint32(len(t.Xor)) != t.Len {
			return g.unsupported("bitwise mask/xor length differs from %d", t.Len)
		}
		for _, c := range chunks(t.Len) {
			pos, sz := c[0], c[1]
			off := int16(bufOff + int32(pos))
			g.b.emit(asm.LoadMem(asm.R0, asm.R10, off, asmSize(sz)))
			g.loadConst(asm.R1, leValue(t.Mask[pos:pos+sz]))
			g.b.emit(asm.And.Reg(asm.R0, asm.R1))
			g.loadConst(asm.R1, leValue(t.Xor[pos:pos+sz]))
			g.b.emit(asm.Xor.Reg(asm.R0, asm.R1))
			g.b.emit(asm.StoreMem(asm.R10, off, asm.R0, asmSize(sz)))
		}
	case ir.TransformShiftLeft, ir.TransformShiftRight:
		return g.shift(t)
	case ir.TransformHton, ir.TransformNtoh:
		switch t.Size {
		case 2, 4:
		case 8:
			if t.Len != 8 {
				return g.unsupported("64-bit byteorder over %d bytes is not supported", t.Len)
			}
		default:
			return g.unsupported("byteorder element size %d is not supported", t.Size)
		}
		for i := uint32(0); i+t.Size <= t.Len; i += t.Size {
			off := int16(bufOff + int32(i))
			g.b.emit(
				asm.LoadMem(asm.R0, asm.R10, off, asmSize(t.Size)),
				asm.BSwap(asm.R0, asmSize(t.Size)),
				asm.StoreMem(asm.R10, off, asm.R0, asmSize(t.Size)),
			)
		}
	default:
		return g.unsupported("unknown transform %d", t.Kind)
	}
	return nil
}

// shift reproduces nft_bitwise_eval_lshift/_rshift. The register is
// taken as Len/4 (rounded up) host-order u32 words; a left shift walks them
// from the last to the first, a right shift from the first to the last,
// each word taking as carry the bits shifted out of the word before it.
//
// The carry comes from the word as it was before the shift. Kernels
// before the fix "netfilter: nft_bitwise: fix shift with overlapping
// registers" (in 6.18.y stable) read the carry back from the register
// they had just written when source and destination were the same
// register, so multi-word in-place shifts differ there; nft emits shifts
// only on one-word values (sub-byte fields in concatenations), where the
// carry plays no part. TestShiftMatchesKernel compares with the running
// kernel.
func (g *gen) shift(t ir.Transform) error {
	words := int((t.Len + 3) / 4)
	if t.Shift >= 32 {
		return g.unsupported("shift by %d is not supported", t.Shift)
	}
	if t.Shift == 0 {
		if words > 1 {
			// Older kernels accept it and compute the carry as
			// word >> 32 in C, which is undefined; newer ones refuse it.
			return g.unsupported("shift by 0 over %d words is not supported", words)
		}
		return nil // one word, no carry: the identity
	}
	s := int32(t.Shift)
	left := t.Kind == ir.TransformShiftLeft
	for k := 0; k < words; k++ {
		i := k
		if left {
			i = words - 1 - k
		}
		off := int16(bufOff + int32(4*i))
		g.b.emit(asm.LoadMem(asm.R0, asm.R10, off, asm.Word))
		if k < words-1 {
			// The carry for the next word, from this word's old value.
			g.b.emit(asm.Mov.Reg32(asm.R1, asm.R0))
			if left {
				g.b.emit(asm.RSh.Imm32(asm.R1, 32-s))
			} else {
				g.b.emit(asm.LSh.Imm32(asm.R1, 32-s))
			}
		}
		if left {
			g.b.emit(asm.LSh.Imm32(asm.R0, s))
		} else {
			g.b.emit(asm.RSh.Imm32(asm.R0, s))
		}
		if k > 0 {
			g.b.emit(asm.Or.Reg32(asm.R0, asm.R2))
		}
		g.b.emit(asm.StoreMem(asm.R10, off, asm.R0, asm.Word))
		if k < words-1 {
			g.b.emit(asm.Mov.Reg32(asm.R2, asm.R1))
		}
	}
	return nil
}

// zeroBuf clears the first n bytes (rounded up to 8) of the buffer.
func (g *gen) zeroBuf(n uint32) {
	for i := uint32(0); i < n; i += 8 {
		g.b.emit(stImm64(asm.R10, int16(bufOff+int32(i)), 0))
	}
}

// loadField places f's register image into the buffer or jumps to fail
// where nf_tables would break.
func (g *gen) loadField(f *ir.Field, span uint32, fail string) error {
	g.zeroBuf(span)
	switch f.Source {
	case ir.SourcePayload:
		return g.loadPayload(f, fail)
	case ir.SourceMeta:
		return g.loadMeta(f, fail)
	case ir.SourceCT:
		return g.loadCT(f, fail)
	case ir.SourceExthdr:
		return g.loadExthdr(f, span, fail)
	case ir.SourceFIB:
		return g.loadFIB(f, fail)
	}
	return g.unsupported("unknown field source %d", f.Source)
}

func (g *gen) loadPayload(f *ir.Field, fail string) error {
	if f.Offset > 255 || f.Len > 255 {
		return g.unsupported("payload offset/length beyond 255")
	}
	if f.Base == ir.BaseLL {
		if g.tgt.Type == CgroupSKB || g.tgt.Type == Netfilter {
			return g.loadLLSkb(f, fail)
		}
		if g.tgt.Type == TC && f.Offset+f.Len > 12 {
			return g.loadLLVlan(f, fail)
		}
	}
	if err := g.payloadAddr(f, fail); err != nil {
		return err
	}
	g.loadBytes(bufOff, f.Len)
	g.b.emit(asm.JNE.Imm(asm.R0, 0, fail))
	return nil
}

// payloadAddr emits the checks nf_tables makes before a payload load of
// f from the link-layer (plain, without loadLLSkb's and loadLLVlan's
// cases), network or transport header, jumping to fail where it breaks,
// and leaves the load-origin offset of f's first byte in R2.
func (g *gen) payloadAddr(f *ir.Field, fail string) error {
	off := int32(f.Offset)
	switch f.Base {
	case ir.BaseLL:
		g.b.emit(
			asm.LoadMem(asm.R2, asm.R10, slotLL, asm.DWord),
			asm.JSLT.Imm(asm.R2, 0, fail),
			asm.Add.Imm(asm.R2, off),
		)
	case ir.BaseNetwork:
		g.b.emit(
			asm.LoadMem(asm.R2, asm.R10, slotNH, asm.DWord),
			asm.Add.Imm(asm.R2, off),
		)
	case ir.BaseTransport:
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, slotL4, asm.DWord),
			asm.JEq.Imm(asm.R0, 0, fail),
		)
		if fastPayload(f) {
			if err := g.fragmentFastPath(f, fail); err != nil {
				return err
			}
		} else {
			g.b.emit(
				asm.LoadMem(asm.R0, asm.R10, slotFrag, asm.DWord),
				asm.JNE.Imm(asm.R0, 0, fail),
			)
		}
		g.b.emit(
			asm.LoadMem(asm.R2, asm.R10, slotTH, asm.DWord),
			asm.Add.Imm(asm.R2, off),
		)
	default:
		return g.unsupported("payload base %d (inner header) is not supported", f.Base)
	}
	return nil
}

// loadLLVlan reproduces nft_payload_copy_vlan for tc programs: when the
// outer VLAN tag sits in skb->vlan_tci, link-layer loads past the MAC
// addresses see the header as if the tag were still in the frame.
func (g *gen) loadLLVlan(f *ir.Field, fail string) error {
	plain := g.b.newLabel("ll_plain")
	done := g.b.newLabel("ll_done")
	off, n := f.Offset, f.Len
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, slotVlan, asm.DWord),
		asm.JEq.Imm(asm.R0, 0, plain),
		asm.LoadMem(asm.R2, asm.R10, slotLL, asm.DWord),
		asm.JSLT.Imm(asm.R2, 0, fail),
	)
	if off < 18 {
		// Rebuild struct vlan_ethhdr: 14 bytes of mac header, then the
		// tag and skb->protocol.
		g.loadBytes(vethBuf, 14)
		g.b.emit(asm.JNE.Imm(asm.R0, 0, fail))
		for i, slot := range []int16{slotVProto, slotVTCI, slotProto} {
			g.b.emit(
				asm.LoadMem(asm.R0, asm.R10, slot, asm.DWord),
				asm.BSwap(asm.R0, asm.Half),
				asm.StoreMem(asm.R10, int16(vethBuf+12+2*i), asm.R0, asm.Half),
			)
		}
		ethlen := n
		if off+n > 18 {
			ethlen = 18 - off
		}
		for i := uint32(0); i < ethlen; i++ {
			g.b.emit(
				asm.LoadMem(asm.R0, asm.R10, int16(vethBuf+int32(off+i)), asm.Byte),
				asm.StoreMem(asm.R10, int16(bufOff+int32(i)), asm.R0, asm.Byte),
			)
		}
		if rest := n - ethlen; rest > 0 {
			g.b.emit(
				asm.LoadMem(asm.R2, asm.R10, slotLL, asm.DWord),
				asm.Add.Imm(asm.R2, 14),
			)
			g.loadBytes(bufOff+int32(ethlen), rest)
			g.b.emit(asm.JNE.Imm(asm.R0, 0, fail))
		}
		g.b.emit(asm.Ja.Label(done))
	} else {
		g.b.emit(asm.Add.Imm(asm.R2, int32(off)-4))
		g.loadBytes(bufOff, n)
		g.b.emit(asm.JNE.Imm(asm.R0, 0, fail), asm.Ja.Label(done))
	}
	g.b.label(plain)
	g.b.emit(
		asm.LoadMem(asm.R2, asm.R10, slotLL, asm.DWord),
		asm.JSLT.Imm(asm.R2, 0, fail),
		asm.Add.Imm(asm.R2, int32(off)),
	)
	g.loadBytes(bufOff, n)
	g.b.emit(asm.JNE.Imm(asm.R0, 0, fail))
	g.b.label(done)
	return nil
}

// loadBytes emits a helper call copying n bytes at the load-origin offset
// in R2 to the stack at dst. R0 is 0 on success. R1-R5 are clobbered.
func (g *gen) loadBytes(dst int32, n uint32) {
	switch g.tgt.Type {
	case XDP:
		g.b.emit(
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Reg(asm.R3, asm.R10),
			asm.Add.Imm(asm.R3, dst),
			asm.Mov.Imm(asm.R4, int32(n)),
			asm.FnXdpLoadBytes.Call(),
		)
	case TC, CgroupSKB:
		g.b.emit(
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Reg(asm.R3, asm.R10),
			asm.Add.Imm(asm.R3, dst),
			asm.Mov.Imm(asm.R4, int32(n)),
			asm.FnSkbLoadBytes.Call(),
		)
	case Netfilter:
		g.b.emit(
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Mov.Reg(asm.R1, asm.R10),
			asm.Add.Imm(asm.R1, dst),
			asm.Mov.Imm(asm.R2, int32(n)),
			asm.Mov.Reg(asm.R3, asm.R10),
			asm.Add.Imm(asm.R3, slotDyn),
			asm.Mov.Imm(asm.R5, 0),
			asm.FnDynptrRead.Call(),
		)
	}
}

// stImm64 emits *(u64 *)(dst + off) = value (sign-extended 32-bit imm).
func stImm64(dst asm.Register, off int16, value int64) asm.Instruction {
	return asm.Instruction{OpCode: asm.StoreImmOp(asm.DWord), Dst: dst, Offset: off, Constant: value}
}

// tooLong refuses a chain whose code has grown past maxChainInsns, with
// an estimate of what the whole chain would need, before the rest is
// compiled and long before the verifier would fail on it.
func (g *gen) tooLong() error {
	total := 0
	for _, c := range g.t.Chains {
		total += len(c.Rules)
	}
	est := g.b.pos()
	if g.rulesDone > 0 && g.rulesDone < total {
		est = int(int64(est) * int64(total) / int64(g.rulesDone))
	}
	return &UnsupportedError{Chain: g.base.Name, Reason: fmt.Sprintf(
		"%d rules need ~%d instructions, over the limit of %d (%d tail-called programs of at most %d instructions; "+
			"the kernel follows at most 33 tail calls and verifies each program up to 1M processed instructions); "+
			"only runs of rules that differ in compared constants share a lookup: use sets or maps for the rest",
		total, est, maxChainInsns, maxParts, maxPartInsns)}
}

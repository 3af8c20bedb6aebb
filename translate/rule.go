package translate

import (
	"errors"
	"fmt"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// exprError ties an error to one expression of a rule.
type exprError struct {
	index int
	kind  string
	err   error
}

func (e *exprError) Error() string {
	return fmt.Sprintf("expression %d (%s): %v", e.index+1, e.kind, e.err)
}

func (e *exprError) Unwrap() error { return e.err }

// Register numbering: NFT_REG_VERDICT is 0, NFT_REG_1…NFT_REG_4 are 1…4
// (16-byte registers), NFT_REG32_00…NFT_REG32_15 are 8…23. Both name the
// same 64-byte register file, so registers are tracked as 32-bit word
// indexes 0…15.
const (
	regVerdict   = 0
	reg32Base    = 8
	reg32Count   = 16
	regWordBytes = 4
)

// regWord returns the 32-bit word index a data register number starts at.
func regWord(reg uint32) (int, error) {
	switch {
	case reg >= 1 && reg <= 4:
		return int(reg-1) * 4, nil
	case reg >= reg32Base && reg < reg32Base+reg32Count:
		return int(reg - reg32Base), nil
	}
	return 0, fmt.Errorf("register %d is not a data register", reg)
}

// regValue is what a register word holds: the Field whose bytes start
// there. Only the word a load starts at holds a value; the following words
// a long load covers are marked as covered so that a read starting in the
// middle of a value is refused.
type regValue struct {
	field   ir.Field
	covered bool
	// expr and kind name the expression that placed the value (a load or
	// a transform); used says whether anything has read it since.
	expr int
	kind string
	used bool
	// konst is the value of an immediate load (see constant).
	konst []byte
	// mapped is the value of a data map lookup (see lookup).
	mapped *ir.MetaSetMap
}

type ruleLifter struct {
	family ir.Family
	sets   map[string]*pendingSet
	chains map[string]*ir.Chain
	table  *ir.Table // for named objects (objref)
	regs   [reg32Count]*regValue
	// cur and curKind are the expression being lifted.
	cur     int
	curKind string
	// extra are statements an expression lifts to after the one it
	// returns (an xtables match becomes several Matches).
	extra []ir.Stmt
}

func (l *ruleLifter) lift(r *nlmsg.Rule) (*ir.Rule, error) {
	rule := &ir.Rule{Handle: r.Handle, Comment: ruleComment(r.Userdata)}
	for i, e := range r.Exprs {
		l.cur, l.curKind = i, e.Kind()
		stmt, err := l.liftExpr(e)
		if err != nil {
			var ee *exprError
			if errors.As(err, &ee) {
				return nil, err
			}
			return nil, &exprError{index: i, kind: e.Kind(), err: err}
		}
		if stmt == nil {
			continue
		}
		if v, ok := stmt.(*ir.Verdict); ok && i != len(r.Exprs)-1 {
			return nil, &exprError{index: i, kind: e.Kind(),
				err: unsupported("verdict %s is followed by %d more expressions", v, len(r.Exprs)-1-i)}
		}
		if _, ok := stmt.(*ir.VerdictMap); ok && i != len(r.Exprs)-1 {
			return nil, &exprError{index: i, kind: e.Kind(),
				err: unsupported("verdict map lookup is followed by %d more expressions", len(r.Exprs)-1-i)}
		}
		if ir.Stateful(stmt) {
			// A load ends the rule (NFT_BREAK) when the packet lacks what
			// it reads, before a later counter (limit, log, …) acts; in
			// the IR the Field is read where it is compared, after it.
			if v := l.pending(); v != nil {
				return nil, &exprError{index: i, kind: e.Kind(),
					err: unsupported("%s between a load (expression %d, %s) and its compare", e.Kind(), v.expr+1, v.kind)}
			}
		}
		rule.Stmts = append(rule.Stmts, stmt)
		rule.Stmts = append(rule.Stmts, l.extra...)
		l.extra = nil
	}
	if v := l.pending(); v != nil {
		return nil, unusedValue(v)
	}
	return rule, nil
}

// pending returns a value that was placed in a register and not read yet.
func (l *ruleLifter) pending() *regValue {
	for _, v := range l.regs {
		if v != nil && !v.covered && !v.used {
			return v
		}
	}
	return nil
}

// unusedValue refuses a load (or transform) whose value is never read: the
// kernel still runs it, and a load ends the rule when the packet lacks the
// bytes or metadata it reads, which a rule without it would not do.
func unusedValue(v *regValue) error {
	return &exprError{index: v.expr, kind: v.kind,
		err: unsupported("the value it places in a register is never compared (the load alone can end the rule)")}
}

// liftExpr lifts one expression. It returns a nil Stmt for expressions that
// only load or transform registers.
func (l *ruleLifter) liftExpr(e nlmsg.Expr) (ir.Stmt, error) {
	switch e := e.(type) {
	case *nlmsg.Payload:
		if e.DReg == 0 {
			return nil, unsupported("payload set (packet mangling) is not supported")
		}
		if e.Base > uint32(ir.BaseInner) {
			return nil, unsupported("payload base %d (tunnel header) is not supported", e.Base)
		}
		if e.Base == uint32(ir.BaseInner) {
			return nil, unsupported("inner header payload is not supported")
		}
		if e.Len == 0 || e.Len > 64 {
			return nil, fmt.Errorf("payload length %d out of range", e.Len)
		}
		return nil, l.load(e.DReg, ir.Field{
			Source: ir.SourcePayload, Base: ir.PayloadBase(e.Base), Offset: e.Offset, Len: e.Len,
		})
	case *nlmsg.Meta:
		if e.DReg == 0 {
			return l.metaSet(e)
		}
		n, ok := metaLen[ir.MetaKey(e.Key)]
		if !ok {
			return nil, unsupported("meta %s is not supported", metaKeyName(e.Key))
		}
		return nil, l.load(e.DReg, ir.Field{Source: ir.SourceMeta, Meta: ir.MetaKey(e.Key), Len: n})
	case *nlmsg.Bitwise:
		return nil, l.bitwise(e)
	case *nlmsg.Byteorder:
		return nil, l.byteorder(e)
	case *nlmsg.Cmp:
		return l.cmp(e)
	case *nlmsg.Range:
		return l.rangeMatch(e)
	case *nlmsg.Lookup:
		return l.lookup(e)
	case *nlmsg.Immediate:
		return l.immediate(e)
	case *nlmsg.Counter:
		return &ir.Counter{}, nil
	case *nlmsg.Ct:
		return nil, l.ct(e)
	case *nlmsg.Opaque:
		switch e.Name {
		case "objref":
			return l.objref(e)
		case "exthdr":
			return nil, l.exthdr(e)
		case "match":
			return l.xtMatch(e)
		}
		if e.Name == "fib" {
			return nil, l.fib(e)
		}
		if s, ok, err := statefulExpr(e); ok {
			return s, err
		}
		return nil, unsupported("expression %q is not supported", e.Name)
	}
	return nil, unsupported("expression %q is not supported", e.Kind())
}

// load places f in register reg.
func (l *ruleLifter) load(reg uint32, f ir.Field) error {
	w, err := regWord(reg)
	if err != nil {
		return err
	}
	words := int((f.Len + regWordBytes - 1) / regWordBytes)
	if w+words > reg32Count {
		return fmt.Errorf("a %d-byte value does not fit from register %d", f.Len, reg)
	}
	// Whatever the words held before is gone.
	for i := 0; i < words; i++ {
		if err := l.clobber(w + i); err != nil {
			return err
		}
	}
	l.regs[w] = &regValue{field: f, expr: l.cur, kind: l.curKind}
	for i := 1; i < words; i++ {
		l.regs[w+i] = &regValue{covered: true}
	}
	return nil
}

// clobber forgets the value a write to word w destroys: the value starting
// at w, or the value word w is part of. Overwriting a value nothing has
// read is refused (see unusedValue).
func (l *ruleLifter) clobber(w int) error {
	if l.regs[w] == nil {
		return nil
	}
	start := w
	for start > 0 && l.regs[start] != nil && l.regs[start].covered {
		start--
	}
	if v := l.regs[start]; v != nil && !v.covered {
		if !v.used {
			return unusedValue(v)
		}
		end := start + int((v.field.Len+regWordBytes-1)/regWordBytes)
		for i := start; i < end && i < reg32Count; i++ {
			l.regs[i] = nil
		}
	}
	l.regs[w] = nil
	return nil
}

// value returns the Field held in reg; n is the number of bytes the reader
// consumes, which may not exceed the Field's length.
func (l *ruleLifter) value(reg uint32, n uint32) (ir.Field, error) {
	w, err := regWord(reg)
	if err != nil {
		return ir.Field{}, err
	}
	v := l.regs[w]
	if v == nil {
		return ir.Field{}, unsupported("reads register %d, which holds no loaded value", reg)
	}
	if v.covered {
		return ir.Field{}, unsupported("reads register %d from the middle of a value", reg)
	}
	if v.konst != nil {
		return ir.Field{}, unsupported("compares an immediate value (register %d)", reg)
	}
	if n > v.field.Len {
		// A read spanning more than one loaded value is a concatenation.
		return ir.Field{}, unsupported("concatenated values (%d bytes read, %d loaded) are not supported yet", n, v.field.Len)
	}
	v.used = true
	return cloneField(v.field), nil
}

func cloneField(f ir.Field) ir.Field {
	f.Transforms = append([]ir.Transform(nil), f.Transforms...)
	return f
}

func (l *ruleLifter) transform(sreg, dreg uint32, n uint32, t ir.Transform) error {
	f, err := l.value(sreg, n)
	if err != nil {
		return err
	}
	if n != f.Len {
		return unsupported("operates on %d of the %d loaded bytes", n, f.Len)
	}
	f.Transforms = append(f.Transforms, t)
	return l.load(dreg, f)
}

// nft_bitwise operations (NFTA_BITWISE_OP).
const (
	bitwiseMaskXor = 0
	bitwiseLShift  = 1
	bitwiseRShift  = 2
)

func (l *ruleLifter) bitwise(e *nlmsg.Bitwise) error {
	t := ir.Transform{Len: e.Len}
	switch e.Op {
	case bitwiseMaskXor:
		if len(e.Mask) != int(e.Len) || len(e.Xor) != int(e.Len) {
			return fmt.Errorf("mask/xor length %d/%d, want %d", len(e.Mask), len(e.Xor), e.Len)
		}
		t.Kind, t.Mask, t.Xor = ir.TransformMaskXor, e.Mask, e.Xor
	case bitwiseLShift, bitwiseRShift:
		if len(e.Data) != 4 {
			return fmt.Errorf("shift amount has %d bytes, want 4", len(e.Data))
		}
		// NFTA_BITWISE_DATA holds the shift as a host-endian u32 in an
		// NFTA_DATA_VALUE; nft only ever emits amounts below 32.
		t.Shift = hostU32(e.Data)
		if t.Shift >= 32 {
			return fmt.Errorf("shift by %d bits", t.Shift)
		}
		t.Kind = ir.TransformShiftLeft
		if e.Op == bitwiseRShift {
			t.Kind = ir.TransformShiftRight
		}
	default:
		return unsupported("bitwise operation %d (register-register and/or/xor) is not supported", e.Op)
	}
	return l.transform(e.SReg, e.DReg, e.Len, t)
}

// nft_byteorder operations.
const (
	byteorderNtoh = 0
	byteorderHton = 1
)

func (l *ruleLifter) byteorder(e *nlmsg.Byteorder) error {
	if e.Size != 2 && e.Size != 4 && e.Size != 8 {
		return fmt.Errorf("byteorder size %d", e.Size)
	}
	if e.Len == 0 || e.Len%e.Size != 0 {
		return fmt.Errorf("byteorder length %d is not a multiple of size %d", e.Len, e.Size)
	}
	t := ir.Transform{Kind: ir.TransformNtoh, Len: e.Len, Size: e.Size}
	if e.Op == byteorderHton {
		t.Kind = ir.TransformHton
	} else if e.Op != byteorderNtoh {
		return fmt.Errorf("byteorder operation %d", e.Op)
	}
	return l.transform(e.SReg, e.DReg, e.Len, t)
}

// nft_cmp operations.
var cmpOps = map[uint32]ir.Op{0: ir.OpEq, 1: ir.OpNeq, 2: ir.OpLt, 3: ir.OpLte, 4: ir.OpGt, 5: ir.OpGte}

func (l *ruleLifter) cmp(e *nlmsg.Cmp) (ir.Stmt, error) {
	op, ok := cmpOps[e.Op]
	if !ok {
		return nil, fmt.Errorf("cmp operation %d", e.Op)
	}
	if len(e.Data) == 0 || len(e.Data) > 64 {
		return nil, fmt.Errorf("cmp data of %d bytes", len(e.Data))
	}
	f, err := l.value(e.SReg, uint32(len(e.Data)))
	if err != nil {
		return nil, err
	}
	return &ir.Match{Field: f, Op: op, Value: e.Data}, nil
}

func (l *ruleLifter) rangeMatch(e *nlmsg.Range) (ir.Stmt, error) {
	if len(e.FromData) != len(e.ToData) || len(e.FromData) == 0 {
		return nil, fmt.Errorf("range bounds of %d and %d bytes", len(e.FromData), len(e.ToData))
	}
	f, err := l.value(e.SReg, uint32(len(e.FromData)))
	if err != nil {
		return nil, err
	}
	op := ir.OpInRange
	switch e.Op {
	case 0:
	case 1:
		op = ir.OpNotInRange
	default:
		return nil, fmt.Errorf("range operation %d", e.Op)
	}
	return &ir.Match{Field: f, Op: op, Value: e.FromData, High: e.ToData}, nil
}

func setRef(s *ir.Set) string {
	if s.Anonymous() {
		return "anonymous set " + s.Name
	}
	return "@" + s.Name
}

func (l *ruleLifter) immediate(e *nlmsg.Immediate) (ir.Stmt, error) {
	if e.DReg != regVerdict {
		if e.Verdict != nil {
			return nil, fmt.Errorf("verdict stored in data register %d", e.DReg)
		}
		// An immediate value only feeds statements that set something
		// (meta mark set); a value nothing reads is refused at the end of
		// the rule like an unread load.
		return nil, l.constant(e.DReg, e.Data)
	}
	if e.Verdict == nil {
		return nil, fmt.Errorf("immediate to the verdict register without a verdict")
	}
	return liftVerdict(e.Verdict, l.chains)
}

func liftVerdict(v *nlmsg.Verdict, chains map[string]*ir.Chain) (*ir.Verdict, error) {
	switch v.Code {
	case nlmsg.VerdictAccept:
		return &ir.Verdict{Kind: ir.VerdictAccept}, nil
	case nlmsg.VerdictDrop:
		return &ir.Verdict{Kind: ir.VerdictDrop}, nil
	case nlmsg.VerdictContinue:
		return &ir.Verdict{Kind: ir.VerdictContinue}, nil
	case nlmsg.VerdictReturn:
		return &ir.Verdict{Kind: ir.VerdictReturn}, nil
	case nlmsg.VerdictJump, nlmsg.VerdictGoto:
		c, ok := chains[v.Chain]
		if !ok {
			return nil, fmt.Errorf("verdict target chain %q not found", v.Chain)
		}
		if c.Base != nil {
			return nil, fmt.Errorf("verdict targets base chain %q", v.Chain)
		}
		k := ir.VerdictJump
		if v.Code == nlmsg.VerdictGoto {
			k = ir.VerdictGoto
		}
		return &ir.Verdict{Kind: k, Chain: v.Chain}, nil
	case nlmsg.VerdictQueue:
		return nil, unsupported("verdict queue is not supported")
	}
	return nil, unsupported("verdict code %d is not supported", v.Code)
}

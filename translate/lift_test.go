package translate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// Expressions, as the kernel dumps them.

func payload(base, off, n, dreg uint32) *nlmsg.Payload {
	return &nlmsg.Payload{Base: base, Offset: off, Len: n, DReg: dreg}
}

func metaLoad(key ir.MetaKey, dreg uint32) *nlmsg.Meta {
	return &nlmsg.Meta{Key: uint32(key), DReg: dreg}
}

func cmpExpr(op, sreg uint32, data ...byte) *nlmsg.Cmp {
	return &nlmsg.Cmp{Op: op, SReg: sreg, Data: data}
}

func bitwise(sreg, dreg uint32, mask, xor []byte) *nlmsg.Bitwise {
	return &nlmsg.Bitwise{SReg: sreg, DReg: dreg, Len: uint32(len(mask)), Op: bitwiseMaskXor, Mask: mask, Xor: xor}
}

func shift(op, sreg, dreg, n, bits uint32) *nlmsg.Bitwise {
	return &nlmsg.Bitwise{SReg: sreg, DReg: dreg, Len: n, Op: op, Data: binary.NativeEndian.AppendUint32(nil, bits)}
}

func byteorder(op, sreg, dreg, n, size uint32) *nlmsg.Byteorder {
	return &nlmsg.Byteorder{Op: op, SReg: sreg, DReg: dreg, Len: n, Size: size}
}

func rangeExpr(op, sreg uint32, from, to []byte) *nlmsg.Range {
	return &nlmsg.Range{Op: op, SReg: sreg, FromData: from, ToData: to}
}

func lookupExpr(sreg uint32, set string, flags uint32) *nlmsg.Lookup {
	return &nlmsg.Lookup{SReg: sreg, Set: set, Flags: flags}
}

func verdictExpr(code int32, chain string) *nlmsg.Immediate {
	return &nlmsg.Immediate{DReg: regVerdict, Verdict: &nlmsg.Verdict{Code: code, Chain: chain}}
}

var (
	acceptExpr  = verdictExpr(nlmsg.VerdictAccept, "")
	dropExpr    = verdictExpr(nlmsg.VerdictDrop, "")
	counterExpr = &nlmsg.Counter{Packets: 3, Bytes: 300}
)

// NFT_PAYLOAD_* bases, NFT_CMP_* and NFT_RANGE_* operations.
const (
	ll, nh, th              = 0, 1, 2
	opEq, opNeq, opLt, opGt = 0, 1, 2, 4
)

// Register numbers: NFT_REG_1…4 and NFT_REG32_00….
const (
	reg1, reg2, reg3, reg4 = 1, 2, 3, 4
	reg32_00               = 8
)

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func bs(b ...byte) []byte  { return b }

// IR the lifter should produce.

func field(base ir.PayloadBase, off, n uint32, ts ...ir.Transform) ir.Field {
	return ir.Field{Source: ir.SourcePayload, Base: base, Offset: off, Len: n, Transforms: ts}
}

func metaField(k ir.MetaKey, ts ...ir.Transform) ir.Field {
	return ir.Field{Source: ir.SourceMeta, Meta: k, Len: metaLen[k], Transforms: ts}
}

func match(f ir.Field, op ir.Op, v []byte) *ir.Match { return &ir.Match{Field: f, Op: op, Value: v} }

func setMatch(f ir.Field, op ir.Op, s *ir.Set) *ir.Match { return &ir.Match{Field: f, Op: op, Set: s} }

func elem(lo, hi []byte) ir.SetElement { return ir.SetElement{Low: lo, High: hi} }

var (
	irAccept = &ir.Verdict{Kind: ir.VerdictAccept}
	irDrop   = &ir.Verdict{Kind: ir.VerdictDrop}
)

// testSet is a set and its elements for a test ruleset.
type testSet struct {
	set   *nlmsg.Set
	elems []nlmsg.SetElem
}

func anonSet(name string, keyLen uint32, interval bool, elems ...nlmsg.SetElem) testSet {
	flags := uint32(ir.SetAnonymous | ir.SetConstant)
	if interval {
		flags |= uint32(ir.SetInterval)
	}
	return testSet{set: &nlmsg.Set{Name: name, Flags: flags, KeyLen: keyLen}, elems: elems}
}

func key(k []byte) nlmsg.SetElem    { return nlmsg.SetElem{Key: k} }
func keyEnd(k []byte) nlmsg.SetElem { return nlmsg.SetElem{Key: k, Flags: elemIntervalEnd} }

// testRuleset is table t of family fam with a base chain c (input, or
// ingress on lo for netdev), a user chain other and a base chain base2,
// the given sets, and one rule (handle 7) in chain c.
func testRuleset(fam nlmsg.Family, sets []testSet, userdata []byte, exprs ...nlmsg.Expr) *nlmsg.Ruleset {
	rs := &nlmsg.Ruleset{
		Tables: []*nlmsg.Table{{Family: fam, Name: "t"}},
		Chains: []*nlmsg.Chain{
			{Family: fam, Table: "t", Name: "c", Hook: &nlmsg.ChainHook{Num: 1}, Type: "filter"},
			{Family: fam, Table: "t", Name: "other"},
			{Family: fam, Table: "t", Name: "base2", Hook: &nlmsg.ChainHook{Num: 1, Priority: 10}, Type: "filter"},
		},
		Rules: []*nlmsg.Rule{{Family: fam, Table: "t", Chain: "c", Handle: 7, Userdata: userdata, Exprs: exprs}},
	}
	if fam == nlmsg.FamilyNetdev {
		rs.Chains[0].Hook = &nlmsg.ChainHook{Num: 0, Devices: []string{"lo"}}
		rs.Chains[2].Hook = &nlmsg.ChainHook{Num: 0, Devices: []string{"lo"}}
	}
	for _, s := range sets {
		s.set.Family, s.set.Table = fam, "t"
		rs.Sets = append(rs.Sets, s.set)
		if s.elems != nil {
			rs.Elems = append(rs.Elems, &nlmsg.SetElems{Family: fam, Table: "t", Set: s.set.Name, Elems: s.elems})
		}
	}
	return rs
}

// liftRule lifts a one-rule ruleset and returns the rule or its error.
func liftRule(t *testing.T, rs *nlmsg.Ruleset) (*ir.Rule, *RuleError) {
	t.Helper()
	res, err := Lift(rs)
	if err != nil {
		t.Fatalf("Lift: %v", err)
	}
	if len(res.Failed) > 0 {
		if len(res.Failed) != 1 {
			t.Fatalf("%d rules failed, want at most 1", len(res.Failed))
		}
		if res.Err() == nil {
			t.Fatal("Result.Err() is nil with a failed rule")
		}
		return nil, res.Failed[0]
	}
	if res.Err() != nil {
		t.Fatalf("Result.Err() = %v with no failed rule", res.Err())
	}
	c := res.Ruleset.Tables[0].Chain("c")
	if c == nil || len(c.Rules) != 1 {
		t.Fatal("lifted ruleset has no chain c with one rule")
	}
	return c.Rules[0], nil
}

// diffStmts describes how got differs from want, or returns "".
func diffStmts(got, want []ir.Stmt) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d statements, want %d", len(got), len(want))
	}
	for i := range want {
		wm, wok := want[i].(*ir.Match)
		gm, gok := got[i].(*ir.Match)
		if wok != gok {
			return fmt.Sprintf("statement %d is %T, want %T", i+1, got[i], want[i])
		}
		if !wok {
			if !reflect.DeepEqual(got[i], want[i]) {
				return fmt.Sprintf("statement %d is %+v, want %+v", i+1, got[i], want[i])
			}
			continue
		}
		if !reflect.DeepEqual(gm.Field, wm.Field) || gm.Op != wm.Op || !bytes.Equal(gm.Value, wm.Value) || !bytes.Equal(gm.High, wm.High) {
			return fmt.Sprintf("statement %d is\n\t%+v\nwant\n\t%+v", i+1, *gm, *wm)
		}
		if (gm.Set == nil) != (wm.Set == nil) {
			return fmt.Sprintf("statement %d has set %v, want %v", i+1, gm.Set, wm.Set)
		}
		if wm.Set != nil {
			g, w := gm.Set, wm.Set
			sameElems := len(g.Elements) == 0 && len(w.Elements) == 0 || reflect.DeepEqual(g.Elements, w.Elements)
			if g.Name != w.Name || g.Flags != w.Flags || g.KeyLen != w.KeyLen || !sameElems {
				return fmt.Sprintf("statement %d has set\n\t%+v\nwant\n\t%+v", i+1, *g, *w)
			}
		}
	}
	return ""
}

type liftCase struct {
	name  string
	fam   nlmsg.Family // 0: inet
	sets  []testSet
	exprs []nlmsg.Expr
	// want is the lifted rule's statements when err is "".
	want []ir.Stmt
	// err is a substring of the refusal; expr is the 1-based number of
	// the expression it names (0: none); unsupported says it wraps
	// ErrUnsupported.
	err         string
	expr        int
	unsupported bool
}

func runLiftCases(t *testing.T, cases []liftCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fam := c.fam
			if fam == 0 {
				fam = nlmsg.FamilyInet
			}
			rule, rerr := liftRule(t, testRuleset(fam, c.sets, nil, c.exprs...))
			if c.err == "" {
				if rerr != nil {
					t.Fatalf("refused: %v", rerr)
				}
				if d := diffStmts(rule.Stmts, c.want); d != "" {
					t.Errorf("%s\nlifted as %s", d, ir.FormatRule(ir.Family(fam), rule))
				}
				if rule.Handle != 7 {
					t.Errorf("handle %d, want 7", rule.Handle)
				}
				return
			}
			if rerr == nil {
				t.Fatalf("lifted as %q, want refusal %q", ir.FormatRule(ir.Family(fam), rule), c.err)
			}
			if !strings.Contains(rerr.Error(), c.err) {
				t.Errorf("refusal %q does not say %q", rerr.Error(), c.err)
			}
			if rerr.Expr+1 != c.expr {
				t.Errorf("refusal names expression %d, want %d: %v", rerr.Expr+1, c.expr, rerr)
			}
			if c.expr > 0 && rerr.Kind != c.exprs[c.expr-1].Kind() {
				t.Errorf("refusal names kind %q, want %q", rerr.Kind, c.exprs[c.expr-1].Kind())
			}
			if got := errors.Is(rerr, ErrUnsupported); got != c.unsupported {
				t.Errorf("errors.Is(ErrUnsupported) = %v, want %v: %v", got, c.unsupported, rerr)
			}
			if rerr.Table != "t" || rerr.Chain != "c" || rerr.Handle != 7 || rerr.Family != ir.Family(fam) {
				t.Errorf("refusal located at %s %s %s %d", rerr.Family, rerr.Table, rerr.Chain, rerr.Handle)
			}
			if rerr.Exprs != DescribeExprs(c.exprs) {
				t.Errorf("refusal lists the expressions as\n%s", rerr.Exprs)
			}
		})
	}
}

var (
	tcpDport = field(ir.BaseTransport, 2, 2)
	ipSaddr  = field(ir.BaseNetwork, 12, 4)
)

func TestLiftRegisters(t *testing.T) {
	runLiftCases(t, []liftCase{
		{name: "payload into reg 1, then cmp",
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), cmpExpr(opEq, reg1, 0, 22), acceptExpr},
			want:  []ir.Stmt{match(tcpDport, ir.OpEq, be16(22)), irAccept}},
		{name: "NFT_REG32_00 is the start of NFT_REG_1",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), cmpExpr(opEq, reg32_00, 192, 0, 2, 1)},
			want:  []ir.Stmt{match(ipSaddr, ir.OpEq, bs(192, 0, 2, 1))}},
		{name: "NFT_REG32_04 is the start of NFT_REG_2",
			exprs: []nlmsg.Expr{payload(nh, 8, 16, reg2), cmpExpr(opNeq, reg32_00+4, bytes.Repeat([]byte{1}, 16)...)},
			want:  []ir.Stmt{match(field(ir.BaseNetwork, 8, 16), ir.OpNeq, bytes.Repeat([]byte{1}, 16))}},
		{name: "32-bit registers side by side",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg32_00+1), payload(th, 0, 2, reg32_00+2),
				cmpExpr(opEq, reg32_00+2, 0, 80), cmpExpr(opEq, reg32_00+1, 192, 0, 2, 1)},
			want: []ir.Stmt{match(field(ir.BaseTransport, 0, 2), ir.OpEq, be16(80)), match(ipSaddr, ir.OpEq, bs(192, 0, 2, 1))}},
		{name: "the last 32-bit register",
			exprs: []nlmsg.Expr{metaLoad(ir.MetaMark, reg32_00+15), cmpExpr(opEq, reg32_00+15, 1, 0, 0, 0)},
			want:  []ir.Stmt{match(metaField(ir.MetaMark), ir.OpEq, le32(1))}},
		{name: "a 16-byte value in the last 16-byte register",
			exprs: []nlmsg.Expr{metaLoad(ir.MetaIifName, reg4), cmpExpr(opEq, reg4, 'l', 'o', 0)},
			want:  []ir.Stmt{match(metaField(ir.MetaIifName), ir.OpEq, bs('l', 'o', 0))}},
		{name: "one value compared twice",
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), cmpExpr(opGt, reg1, 0, 10), cmpExpr(opLt, reg1, 0, 20)},
			want:  []ir.Stmt{match(tcpDport, ir.OpGt, be16(10)), match(tcpDport, ir.OpLt, be16(20))}},
		{name: "a register reloaded after its value was compared",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), cmpExpr(opEq, reg1, 192, 0, 2, 1),
				metaLoad(ir.MetaMark, reg1), cmpExpr(opEq, reg1, 1, 0, 0, 0), dropExpr},
			want: []ir.Stmt{match(ipSaddr, ir.OpEq, bs(192, 0, 2, 1)), match(metaField(ir.MetaMark), ir.OpEq, le32(1)), irDrop}},
		{name: "a compare shorter than the value compares its first bytes",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), cmpExpr(opEq, reg1, 192, 0, 2)},
			want:  []ir.Stmt{match(ipSaddr, ir.OpEq, bs(192, 0, 2))}},

		{name: "a load overwritten before use",
			exprs: []nlmsg.Expr{payload(th, 100, 4, reg1), metaLoad(ir.MetaMark, reg1), cmpExpr(opEq, reg1, 1, 0, 0, 0), acceptExpr},
			err:   "never compared", expr: 1, unsupported: true},
		{name: "a load overwritten in part before use",
			exprs: []nlmsg.Expr{payload(nh, 8, 16, reg1), metaLoad(ir.MetaMark, reg32_00+2), cmpExpr(opEq, reg32_00+2, 1, 0, 0, 0)},
			err:   "never compared", expr: 1, unsupported: true},
		{name: "a load never compared",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), payload(th, 0, 2, reg2), cmpExpr(opEq, reg1, 192, 0, 2, 1), acceptExpr},
			err:   "expression 2 (payload): unsupported: the value it places in a register is never compared", expr: 2, unsupported: true},
		{name: "a transformed value never compared",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), bitwise(reg1, reg2, be32(0xffffff00), be32(0)), cmpExpr(opEq, reg1, 192, 0, 2, 1)},
			err:   "never compared", expr: 2, unsupported: true},
		{name: "a counter between a load and its compare",
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), counterExpr, cmpExpr(opEq, reg1, 0, 22)},
			err:   "counter between a load (expression 1, payload) and its compare", expr: 2, unsupported: true},
		{name: "a value compared, overwritten in part, compared again",
			exprs: []nlmsg.Expr{payload(nh, 8, 16, reg1), cmpExpr(opEq, reg1, make([]byte, 16)...),
				metaLoad(ir.MetaMark, reg32_00+2), cmpExpr(opEq, reg32_00+2, 1, 0, 0, 0), cmpExpr(opEq, reg1, make([]byte, 16)...)},
			err: "reads register 1, which holds no loaded value", expr: 5, unsupported: true},
		{name: "a cmp reading an unloaded register",
			exprs: []nlmsg.Expr{cmpExpr(opEq, reg2, 1), acceptExpr},
			err:   "expression 1 (cmp): unsupported: reads register 2, which holds no loaded value", expr: 1, unsupported: true},
		{name: "reading from the middle of a value",
			exprs: []nlmsg.Expr{payload(nh, 8, 16, reg1), cmpExpr(opEq, reg32_00+1, 1, 2, 3, 4)},
			err:   "reads register 9 from the middle of a value", expr: 2, unsupported: true},
		{name: "a load that covers another's start",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg32_00+1), cmpExpr(opEq, reg32_00+1, 1, 2, 3, 4),
				payload(nh, 8, 16, reg1), cmpExpr(opEq, reg32_00+1, 1, 2, 3, 4)},
			err: "from the middle of a value", expr: 4, unsupported: true},
		{name: "a read longer than the loaded value",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), payload(th, 2, 2, reg32_00+1), cmpExpr(opEq, reg1, 192, 0, 2, 1, 0, 22)},
			err:   "concatenated values (6 bytes read, 4 loaded) are not supported yet", expr: 3, unsupported: true},
		{name: "a value that does not fit",
			exprs: []nlmsg.Expr{payload(nh, 8, 16, reg32_00+14), cmpExpr(opEq, reg32_00+14, 1)},
			err:   "a 16-byte value does not fit from register 22", expr: 1},
		{name: "register 5 is not a data register",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, 5)},
			err:   "register 5 is not a data register", expr: 1},
		{name: "a compare of the verdict register",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), cmpExpr(opEq, 0, 1)},
			err:   "register 0 is not a data register", expr: 2},
	})
}

func TestLiftExpressions(t *testing.T) {
	runLiftCases(t, []liftCase{
		{name: "bitwise mask and xor in place",
			exprs: []nlmsg.Expr{payload(th, 13, 1, reg1), bitwise(reg1, reg1, bs(0x12), bs(0)), cmpExpr(opEq, reg1, 0x02)},
			want: []ir.Stmt{match(field(ir.BaseTransport, 13, 1,
				ir.Transform{Kind: ir.TransformMaskXor, Len: 1, Mask: bs(0x12), Xor: bs(0)}), ir.OpEq, bs(0x02))}},
		{name: "bitwise into another register keeps the source",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), bitwise(reg1, reg2, be32(0xffffff00), be32(1)),
				cmpExpr(opEq, reg2, 192, 0, 2, 1), cmpExpr(opNeq, reg1, 192, 0, 2, 9)},
			want: []ir.Stmt{
				match(field(ir.BaseNetwork, 12, 4, ir.Transform{Kind: ir.TransformMaskXor, Len: 4, Mask: be32(0xffffff00), Xor: be32(1)}),
					ir.OpEq, bs(192, 0, 2, 1)),
				match(ipSaddr, ir.OpNeq, bs(192, 0, 2, 9))}},
		{name: "shifts",
			exprs: []nlmsg.Expr{payload(nh, 1, 1, reg1), bitwise(reg1, reg1, bs(0xfc), bs(0)), shift(bitwiseRShift, reg1, reg1, 1, 2),
				shift(bitwiseLShift, reg1, reg1, 1, 1), cmpExpr(opEq, reg1, 0x10)},
			want: []ir.Stmt{match(field(ir.BaseNetwork, 1, 1,
				ir.Transform{Kind: ir.TransformMaskXor, Len: 1, Mask: bs(0xfc), Xor: bs(0)},
				ir.Transform{Kind: ir.TransformShiftRight, Len: 1, Shift: 2},
				ir.Transform{Kind: ir.TransformShiftLeft, Len: 1, Shift: 1}), ir.OpEq, bs(0x10))}},
		{name: "byteorder",
			exprs: []nlmsg.Expr{metaLoad(ir.MetaLen, reg1), byteorder(byteorderHton, reg1, reg1, 4, 4), cmpExpr(opGt, reg1, be32(1000)...)},
			want: []ir.Stmt{match(metaField(ir.MetaLen, ir.Transform{Kind: ir.TransformHton, Len: 4, Size: 4}),
				ir.OpGt, be32(1000))}},
		{name: "byteorder ntoh of two 2-byte values",
			exprs: []nlmsg.Expr{payload(th, 0, 4, reg1), byteorder(byteorderNtoh, reg1, reg1, 4, 2), cmpExpr(opEq, reg1, 1, 0, 2, 0)},
			want: []ir.Stmt{match(field(ir.BaseTransport, 0, 4, ir.Transform{Kind: ir.TransformNtoh, Len: 4, Size: 2}),
				ir.OpEq, bs(1, 0, 2, 0))}},
		{name: "range",
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), rangeExpr(0, reg1, be16(1000), be16(2000))},
			want:  []ir.Stmt{&ir.Match{Field: tcpDport, Op: ir.OpInRange, Value: be16(1000), High: be16(2000)}}},
		{name: "negated range",
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), rangeExpr(1, reg1, be16(1), be16(5)), dropExpr},
			want:  []ir.Stmt{&ir.Match{Field: tcpDport, Op: ir.OpNotInRange, Value: be16(1), High: be16(5)}, irDrop}},
		{name: "all cmp operations",
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), cmpExpr(0, reg1, 0, 1), cmpExpr(1, reg1, 0, 2), cmpExpr(2, reg1, 0, 3),
				cmpExpr(3, reg1, 0, 4), cmpExpr(4, reg1, 0, 5), cmpExpr(5, reg1, 0, 6)},
			want: []ir.Stmt{match(tcpDport, ir.OpEq, be16(1)), match(tcpDport, ir.OpNeq, be16(2)), match(tcpDport, ir.OpLt, be16(3)),
				match(tcpDport, ir.OpLte, be16(4)), match(tcpDport, ir.OpGt, be16(5)), match(tcpDport, ir.OpGte, be16(6))}},
		{name: "meta keys get their register lengths",
			exprs: []nlmsg.Expr{metaLoad(ir.MetaL4Proto, reg1), cmpExpr(opEq, reg1, 6), metaLoad(ir.MetaIifType, reg1), cmpExpr(opEq, reg1, 1, 0),
				metaLoad(ir.MetaOifName, reg1), cmpExpr(opEq, reg1, 'e', 't', 'h')},
			want: []ir.Stmt{match(metaField(ir.MetaL4Proto), ir.OpEq, bs(6)), match(metaField(ir.MetaIifType), ir.OpEq, bs(1, 0)),
				match(metaField(ir.MetaOifName), ir.OpEq, bs('e', 't', 'h'))}},
		{name: "counter",
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), cmpExpr(opEq, reg1, 0, 22), counterExpr, acceptExpr},
			want:  []ir.Stmt{match(tcpDport, ir.OpEq, be16(22)), &ir.Counter{}, irAccept}},

		{name: "bitwise on part of the value",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), bitwise(reg1, reg1, bs(0xff, 0xff), bs(0, 0)), cmpExpr(opEq, reg1, 1, 2)},
			err:   "operates on 2 of the 4 loaded bytes", expr: 2, unsupported: true},
		{name: "bitwise mask of the wrong length",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), &nlmsg.Bitwise{SReg: reg1, DReg: reg1, Len: 4, Mask: bs(0xff), Xor: be32(0)}},
			err:   "mask/xor length 1/4, want 4", expr: 2},
		{name: "register-register bitwise",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), &nlmsg.Bitwise{SReg: reg1, DReg: reg1, Len: 4, Op: 3, SReg2: reg2}},
			err:   "bitwise operation 3", expr: 2, unsupported: true},
		{name: "shift amount of the wrong size",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), &nlmsg.Bitwise{SReg: reg1, DReg: reg1, Len: 4, Op: bitwiseLShift, Data: bs(1)}},
			err:   "shift amount has 1 bytes", expr: 2},
		{name: "shift by 32",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), shift(bitwiseRShift, reg1, reg1, 4, 32)},
			err:   "shift by 32 bits", expr: 2},
		{name: "byteorder of size 3",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), byteorder(byteorderHton, reg1, reg1, 4, 3)},
			err:   "byteorder size 3", expr: 2},
		{name: "byteorder length not a multiple of its size",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), byteorder(byteorderHton, reg1, reg1, 6, 4)},
			err:   "byteorder length 6 is not a multiple of size 4", expr: 2},
		{name: "byteorder operation 2",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), byteorder(2, reg1, reg1, 4, 4)},
			err:   "byteorder operation 2", expr: 2},
		{name: "cmp operation 6",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), cmpExpr(6, reg1, 1)},
			err:   "cmp operation 6", expr: 2},
		{name: "empty cmp data",
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), cmpExpr(opEq, reg1)},
			err:   "cmp data of 0 bytes", expr: 2},
		{name: "range bounds of different lengths",
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), rangeExpr(0, reg1, be16(1), bs(5))},
			err:   "range bounds of 2 and 1 bytes", expr: 2},
		{name: "range operation 2",
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), rangeExpr(2, reg1, be16(1), be16(5))},
			err:   "range operation 2", expr: 2},
		{name: "payload write",
			exprs: []nlmsg.Expr{&nlmsg.Payload{Base: nh, Offset: 8, Len: 1, SReg: reg1}},
			err:   "payload set (packet mangling) is not supported", expr: 1, unsupported: true},
		{name: "inner header payload",
			exprs: []nlmsg.Expr{payload(3, 0, 4, reg1)},
			err:   "inner header payload is not supported", expr: 1, unsupported: true},
		{name: "tunnel header payload",
			exprs: []nlmsg.Expr{payload(4, 0, 4, reg1)},
			err:   "payload base 4 (tunnel header) is not supported", expr: 1, unsupported: true},
		{name: "empty payload load",
			exprs: []nlmsg.Expr{payload(nh, 0, 0, reg1)},
			err:   "payload length 0 out of range", expr: 1},
		{name: "payload load longer than the registers",
			exprs: []nlmsg.Expr{payload(nh, 0, 65, reg1)},
			err:   "payload length 65 out of range", expr: 1},
		{name: "meta set",
			exprs: []nlmsg.Expr{&nlmsg.Meta{Key: uint32(ir.MetaMark), SReg: reg1}},
			err:   "meta mark set reads register 1, which holds no value", expr: 1, unsupported: true},
		{name: "meta key without a translation",
			exprs: []nlmsg.Expr{metaLoad(25, reg1), cmpExpr(opEq, reg1, 1)},
			err:   "meta secpath is not supported", expr: 1, unsupported: true},
		{name: "opaque expression",
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), cmpExpr(opEq, reg1, 0, 22), &nlmsg.Opaque{Name: "synproxy", Data: bs(1, 2, 3, 4)}, acceptExpr},
			err:   `table inet t, chain c, rule handle 7: expression 3 (synproxy): unsupported: expression "synproxy" is not supported`,
			expr:  3, unsupported: true},
		{name: "immediate data",
			exprs: []nlmsg.Expr{&nlmsg.Immediate{DReg: reg1, Data: le32(1)}, &nlmsg.Meta{Key: uint32(ir.MetaPriority), SReg: reg1}},
			err:   "meta priority set (setting packet metadata) is not supported", expr: 2, unsupported: true},
		{name: "immediate data to no register",
			exprs: []nlmsg.Expr{&nlmsg.Immediate{DReg: 6, Data: le32(1)}},
			err:   "register 6 is not a data register", expr: 1},
		{name: "verdict in a data register",
			exprs: []nlmsg.Expr{&nlmsg.Immediate{DReg: reg1, Verdict: &nlmsg.Verdict{Code: nlmsg.VerdictAccept}}},
			err:   "verdict stored in data register 1", expr: 1},
		{name: "verdict register without a verdict",
			exprs: []nlmsg.Expr{&nlmsg.Immediate{DReg: regVerdict, Data: le32(1)}},
			err:   "immediate to the verdict register without a verdict", expr: 1},
	})
}

func TestLiftVerdicts(t *testing.T) {
	runLiftCases(t, []liftCase{
		{name: "accept", exprs: []nlmsg.Expr{acceptExpr}, want: []ir.Stmt{irAccept}},
		{name: "drop", exprs: []nlmsg.Expr{counterExpr, dropExpr}, want: []ir.Stmt{&ir.Counter{}, irDrop}},
		{name: "continue", exprs: []nlmsg.Expr{verdictExpr(nlmsg.VerdictContinue, "")},
			want: []ir.Stmt{&ir.Verdict{Kind: ir.VerdictContinue}}},
		{name: "return", exprs: []nlmsg.Expr{verdictExpr(nlmsg.VerdictReturn, "")},
			want: []ir.Stmt{&ir.Verdict{Kind: ir.VerdictReturn}}},
		{name: "jump", exprs: []nlmsg.Expr{verdictExpr(nlmsg.VerdictJump, "other")},
			want: []ir.Stmt{&ir.Verdict{Kind: ir.VerdictJump, Chain: "other"}}},
		{name: "goto", exprs: []nlmsg.Expr{metaLoad(ir.MetaMark, reg1), cmpExpr(opEq, reg1, 1, 0, 0, 0), verdictExpr(nlmsg.VerdictGoto, "other")},
			want: []ir.Stmt{match(metaField(ir.MetaMark), ir.OpEq, le32(1)), &ir.Verdict{Kind: ir.VerdictGoto, Chain: "other"}}},
		{name: "no verdict", exprs: []nlmsg.Expr{metaLoad(ir.MetaMark, reg1), cmpExpr(opEq, reg1, 1, 0, 0, 0)},
			want: []ir.Stmt{match(metaField(ir.MetaMark), ir.OpEq, le32(1))}},
		{name: "no expressions", exprs: nil, want: nil},

		{name: "jump to an unknown chain", exprs: []nlmsg.Expr{verdictExpr(nlmsg.VerdictJump, "nowhere")},
			err: `verdict target chain "nowhere" not found`, expr: 1},
		{name: "goto to an unknown chain", exprs: []nlmsg.Expr{verdictExpr(nlmsg.VerdictGoto, "")},
			err: `verdict target chain "" not found`, expr: 1},
		{name: "jump to a base chain", exprs: []nlmsg.Expr{verdictExpr(nlmsg.VerdictJump, "base2")},
			err: `verdict targets base chain "base2"`, expr: 1},
		{name: "queue", exprs: []nlmsg.Expr{verdictExpr(nlmsg.VerdictQueue, "")},
			err: "verdict queue is not supported", expr: 1, unsupported: true},
		{name: "break", exprs: []nlmsg.Expr{verdictExpr(nlmsg.VerdictBreak, "")},
			err: "verdict code -2 is not supported", expr: 1, unsupported: true},
		{name: "a verdict not last", exprs: []nlmsg.Expr{acceptExpr, counterExpr},
			err: "expression 1 (immediate): unsupported: verdict accept is followed by 1 more expressions", expr: 1, unsupported: true},
		{name: "two verdicts", exprs: []nlmsg.Expr{dropExpr, acceptExpr, counterExpr},
			err: "verdict drop is followed by 2 more expressions", expr: 1, unsupported: true},
	})
}

// Interval sets as nft encodes them: a start element per range and an
// INTERVAL_END element one past it, led by an end element at zero.
func TestLiftSets(t *testing.T) {
	anon := func(keyLen uint32, interval bool, elems ...ir.SetElement) *ir.Set {
		s := &ir.Set{Name: "__set0", Flags: ir.SetAnonymous | ir.SetConstant, KeyLen: keyLen, Elements: elems}
		if interval {
			s.Flags |= ir.SetInterval
		}
		return s
	}
	dport := []nlmsg.Expr{payload(th, 2, 2, reg1)}
	lookupRule := func(flags uint32, more ...nlmsg.Expr) []nlmsg.Expr {
		return append(append(append([]nlmsg.Expr(nil), dport...), lookupExpr(reg1, "__set0", flags)), more...)
	}
	runLiftCases(t, []liftCase{
		{name: "exact elements, sorted",
			sets:  []testSet{anonSet("__set0", 2, false, key(be16(443)), key(be16(22)), key(be16(80)))},
			exprs: lookupRule(0, acceptExpr),
			want: []ir.Stmt{setMatch(tcpDport, ir.OpInSet, anon(2, false,
				elem(be16(22), be16(22)), elem(be16(80), be16(80)), elem(be16(443), be16(443)))), irAccept}},
		{name: "negated lookup",
			sets:  []testSet{anonSet("__set0", 2, false, key(be16(22)))},
			exprs: lookupRule(lookupInvert, dropExpr),
			want:  []ir.Stmt{setMatch(tcpDport, ir.OpNotInSet, anon(2, false, elem(be16(22), be16(22)))), irDrop}},
		{name: "intervals with exclusive ends and the leading end at zero",
			sets: []testSet{anonSet("__set0", 2, true,
				keyEnd(be16(0)), key(be16(22)), keyEnd(be16(23)), key(be16(80)), keyEnd(be16(91)))},
			exprs: lookupRule(0),
			want: []ir.Stmt{setMatch(tcpDport, ir.OpInSet, anon(2, true,
				elem(be16(22), be16(22)), elem(be16(80), be16(90))))}},
		{name: "intervals in dump order (newest first)",
			sets: []testSet{anonSet("__set0", 2, true,
				keyEnd(be16(91)), key(be16(80)), keyEnd(be16(23)), key(be16(22)), keyEnd(be16(0)))},
			exprs: lookupRule(0),
			want: []ir.Stmt{setMatch(tcpDport, ir.OpInSet, anon(2, true,
				elem(be16(22), be16(22)), elem(be16(80), be16(90))))}},
		{name: "an interval from zero and an open-ended last one",
			sets: []testSet{anonSet("__set0", 2, true,
				key(be16(0)), keyEnd(be16(6)), key(be16(100)), keyEnd(be16(111)), key(be16(1000)))},
			exprs: lookupRule(0),
			want: []ir.Stmt{setMatch(tcpDport, ir.OpInSet, anon(2, true,
				elem(be16(0), be16(5)), elem(be16(100), be16(110)), elem(be16(1000), be16(0xffff))))}},
		{name: "an end with a carry",
			sets:  []testSet{anonSet("__set0", 2, true, keyEnd(be16(0)), key(be16(0x00f0)), keyEnd(be16(0x0100)))},
			exprs: lookupRule(0),
			want:  []ir.Stmt{setMatch(tcpDport, ir.OpInSet, anon(2, true, elem(be16(0x00f0), be16(0x00ff))))}},
		{name: "key end form",
			sets: []testSet{anonSet("__set0", 2, true,
				nlmsg.SetElem{Key: be16(10), KeyEnd: be16(20)}, nlmsg.SetElem{Key: be16(1), KeyEnd: be16(1)})},
			exprs: lookupRule(0),
			want: []ir.Stmt{setMatch(tcpDport, ir.OpInSet, anon(2, true,
				elem(be16(1), be16(1)), elem(be16(10), be16(20))))}},
		{name: "empty set",
			sets:  []testSet{anonSet("__set0", 2, false)},
			exprs: lookupRule(0),
			want:  []ir.Stmt{setMatch(tcpDport, ir.OpInSet, anon(2, false))}},
		{name: "named constant set",
			sets: []testSet{{set: &nlmsg.Set{Name: "ports", Flags: uint32(ir.SetConstant), KeyType: 13, KeyLen: 2},
				elems: []nlmsg.SetElem{key(be16(53))}}},
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), lookupExpr(reg1, "ports", 0)},
			want: []ir.Stmt{setMatch(tcpDport, ir.OpInSet, &ir.Set{Name: "ports", Flags: ir.SetConstant, KeyType: 13, KeyLen: 2,
				Elements: []ir.SetElement{elem(be16(53), be16(53))}})}},

		{name: "interval opening inside another",
			sets:  []testSet{anonSet("__set0", 2, true, key(be16(1)), key(be16(3)), keyEnd(be16(9)))},
			exprs: lookupRule(0),
			err:   "interval starting at 0003 opens inside another", expr: 2},
		{name: "key end form mixed with start elements",
			sets:  []testSet{anonSet("__set0", 2, true, nlmsg.SetElem{Key: be16(1), KeyEnd: be16(2)}, key(be16(5)))},
			exprs: lookupRule(0),
			err:   "mixes elements with and without a key end", expr: 2},
		{name: "key end before its start",
			sets:  []testSet{anonSet("__set0", 2, true, nlmsg.SetElem{Key: be16(3), KeyEnd: be16(2)})},
			exprs: lookupRule(0),
			err:   "starts after it ends", expr: 2},
		{name: "interval end in a set without intervals",
			sets:  []testSet{anonSet("__set0", 2, false, key(be16(1)), keyEnd(be16(2)))},
			exprs: lookupRule(0),
			err:   "interval end element in a set without the interval flag", expr: 2},
		{name: "element key of the wrong length",
			sets:  []testSet{anonSet("__set0", 2, false, key(be32(1)))},
			exprs: lookupRule(0),
			err:   "element key of 4 bytes in a set of 2-byte keys", expr: 2},
		{name: "catch-all element",
			sets:  []testSet{anonSet("__set0", 2, false, nlmsg.SetElem{Flags: elemCatchall})},
			exprs: lookupRule(0),
			err:   "catch-all set element", expr: 2, unsupported: true},
		{name: "element with a timeout",
			sets:  []testSet{anonSet("__set0", 2, false, nlmsg.SetElem{Key: be16(1), Timeout: 1000})},
			exprs: lookupRule(0),
			err:   "set elements with timeouts", expr: 2, unsupported: true},
		{name: "set keys longer than the value",
			sets:  []testSet{anonSet("__set0", 4, false, key(be32(1)))},
			exprs: lookupRule(0),
			err:   "set anonymous set __set0 has 4-byte keys but the looked-up value has 2 bytes", expr: 2, unsupported: true},
		{name: "set keys shorter than the value",
			sets:  []testSet{anonSet("__set0", 2, false, key(be16(1)))},
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), lookupExpr(reg1, "__set0", 0)},
			err:   "set anonymous set __set0 has 2-byte keys but the looked-up value has 4 bytes", expr: 2, unsupported: true},
		{name: "unknown lookup flags",
			sets:  []testSet{anonSet("__set0", 2, false, key(be16(1)))},
			exprs: lookupRule(2),
			err:   "lookup flags 0x2", expr: 2},
		{name: "unknown set",
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), lookupExpr(reg1, "nosuchset", 0)},
			err:   `set "nosuchset" not found`, expr: 2},
		{name: "map lookup",
			sets:  []testSet{{set: &nlmsg.Set{Name: "__map0", Flags: uint32(ir.SetAnonymous | ir.SetConstant | ir.SetMap), KeyLen: 2}}},
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), &nlmsg.Lookup{SReg: reg1, DReg: reg1, HasDReg: true, Set: "__map0"}},
			err:   "data map lookups (anonymous set __map0) of 0-byte values feed statements that are not supported", expr: 2, unsupported: true},
		{name: "concatenated keys",
			sets:  []testSet{{set: &nlmsg.Set{Name: "__set0", Flags: uint32(ir.SetAnonymous | ir.SetConstant | ir.SetConcat), KeyLen: 8, Concat: []uint32{4, 4}}}},
			exprs: lookupRule(0),
			err:   "key field 1 has 4 bytes but the value loaded for it has 2", expr: 2, unsupported: true},
		{name: "set with timeouts",
			sets:  []testSet{{set: &nlmsg.Set{Name: "__set0", Flags: uint32(ir.SetAnonymous | ir.SetTimeout), KeyLen: 2, Timeout: 1000}}},
			exprs: lookupRule(0),
			err:   "sets with timeouts", expr: 2, unsupported: true},
		{name: "set with element expressions",
			sets:  []testSet{{set: &nlmsg.Set{Name: "__set0", Flags: uint32(ir.SetAnonymous), KeyLen: 2, HasExprs: true}}},
			exprs: lookupRule(0),
			err:   "sets with element expressions", expr: 2, unsupported: true},
		{name: "named set that can change",
			sets: []testSet{{set: &nlmsg.Set{Name: "dyn", KeyType: 13, KeyLen: 2, Size: 100},
				elems: []nlmsg.SetElem{key(be16(22)), key(be16(53))}}},
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), lookupExpr(reg1, "dyn", 0)},
			want: []ir.Stmt{setMatch(tcpDport, ir.OpInSet, &ir.Set{Name: "dyn", KeyType: 13, KeyLen: 2, Size: 100,
				Elements: []ir.SetElement{elem(be16(22), be16(22)), elem(be16(53), be16(53))}})}},
		{name: "named interval set that can change",
			sets: []testSet{{set: &nlmsg.Set{Name: "dyn", Flags: uint32(ir.SetInterval), KeyType: 13, KeyLen: 2},
				elems: []nlmsg.SetElem{key(be16(10)), keyEnd(be16(21))}}},
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), lookupExpr(reg1, "dyn", 0)},
			want: []ir.Stmt{setMatch(tcpDport, ir.OpInSet, &ir.Set{Name: "dyn", Flags: ir.SetInterval, KeyType: 13, KeyLen: 2,
				Elements: []ir.SetElement{elem(be16(10), be16(20))}})}},
		{name: "named concatenation",
			sets:  []testSet{{set: &nlmsg.Set{Name: "cc", Flags: uint32(ir.SetConcat), KeyLen: 8, Concat: []uint32{4, 4}}}},
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), lookupExpr(reg1, "cc", 0)},
			err:   "set @cc: key field 1 has 4 bytes but the value loaded for it has 2", expr: 2, unsupported: true},
		{name: "named map",
			sets:  []testSet{{set: &nlmsg.Set{Name: "m", Flags: uint32(ir.SetMap), KeyLen: 2}}},
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), lookupExpr(reg1, "m", 0)},
			err:   "map @m looked up as a set", expr: 2},
	})
}

func TestRuleComment(t *testing.T) {
	for _, c := range []struct {
		ud   []byte
		want string
	}{
		{nil, ""},
		{[]byte("\x00\x05ping\x00"), "ping"},
		{[]byte("\x00\x04ping"), "ping"},
		{[]byte("\x01\x02ab\x00\x03hi\x00"), "hi"},
		{[]byte("\x01\x02ab"), ""},
		{[]byte("\x00\x09ping\x00"), ""}, // record longer than the data
		{[]byte("\x00"), ""},
	} {
		if got := ruleComment(c.ud); got != c.want {
			t.Errorf("ruleComment(%q) = %q, want %q", c.ud, got, c.want)
		}
		rule, rerr := liftRule(t, testRuleset(nlmsg.FamilyIPv4, nil, c.ud, acceptExpr))
		if rerr != nil {
			t.Fatal(rerr)
		}
		if rule.Comment != c.want {
			t.Errorf("lifted comment %q, want %q", rule.Comment, c.want)
		}
	}
}

func u32p(v uint32) *uint32 { return &v }

func TestLiftChains(t *testing.T) {
	for _, c := range []struct {
		name  string
		fam   nlmsg.Family
		chain nlmsg.Chain
		want  *ir.BaseChain // nil: a user chain
		err   string
	}{
		{"user chain", nlmsg.FamilyInet, nlmsg.Chain{Name: "u"}, nil, ""},
		{"inet input drop", nlmsg.FamilyInet,
			nlmsg.Chain{Name: "in", Type: "filter", Hook: &nlmsg.ChainHook{Num: 1, Priority: -5}, Policy: u32p(0)},
			&ir.BaseChain{Type: "filter", Hook: ir.HookInput, Priority: -5, Policy: ir.VerdictDrop}, ""},
		{"inet forward accept", nlmsg.FamilyInet,
			nlmsg.Chain{Name: "fw", Type: "filter", Hook: &nlmsg.ChainHook{Num: 2}, Policy: u32p(1)},
			&ir.BaseChain{Type: "filter", Hook: ir.HookForward, Policy: ir.VerdictAccept}, ""},
		{"ip output without policy or type", nlmsg.FamilyIPv4,
			nlmsg.Chain{Name: "out", Hook: &nlmsg.ChainHook{Num: 3, Priority: 100}},
			&ir.BaseChain{Type: "filter", Hook: ir.HookOutput, Priority: 100, Policy: ir.VerdictAccept}, ""},
		{"ip6 route chain", nlmsg.FamilyIPv6,
			nlmsg.Chain{Name: "r", Type: "route", Hook: &nlmsg.ChainHook{Num: 3}},
			&ir.BaseChain{Type: "route", Hook: ir.HookOutput, Policy: ir.VerdictAccept}, ""},
		{"inet prerouting and postrouting", nlmsg.FamilyInet,
			nlmsg.Chain{Name: "post", Type: "filter", Hook: &nlmsg.ChainHook{Num: 4}},
			&ir.BaseChain{Type: "filter", Hook: ir.HookPostrouting, Policy: ir.VerdictAccept}, ""},
		{"inet ingress", nlmsg.FamilyInet,
			nlmsg.Chain{Name: "ing", Type: "filter", Hook: &nlmsg.ChainHook{Num: 5, Devices: []string{"eth0"}}},
			&ir.BaseChain{Type: "filter", Hook: ir.HookIngress, Policy: ir.VerdictAccept, Devices: []string{"eth0"}}, ""},
		{"netdev ingress with devices", nlmsg.FamilyNetdev,
			nlmsg.Chain{Name: "ing", Type: "filter", Hook: &nlmsg.ChainHook{Num: 0, Priority: -10, Devices: []string{"a0", "b1"}}, Policy: u32p(0)},
			&ir.BaseChain{Type: "filter", Hook: ir.HookIngress, Priority: -10, Policy: ir.VerdictDrop, Devices: []string{"a0", "b1"}}, ""},
		{"netdev egress", nlmsg.FamilyNetdev,
			nlmsg.Chain{Name: "eg", Type: "filter", Hook: &nlmsg.ChainHook{Num: 1, Devices: []string{"lo"}}},
			&ir.BaseChain{Type: "filter", Hook: ir.HookEgress, Policy: ir.VerdictAccept, Devices: []string{"lo"}}, ""},
		{"netdev hook 2", nlmsg.FamilyNetdev,
			nlmsg.Chain{Name: "x", Hook: &nlmsg.ChainHook{Num: 2}}, nil, "netdev hook 2 unknown"},
		{"inet hook 6", nlmsg.FamilyInet,
			nlmsg.Chain{Name: "x", Hook: &nlmsg.ChainHook{Num: 6}}, nil, "hook 6 unknown"},
		{"policy queue", nlmsg.FamilyInet,
			nlmsg.Chain{Name: "x", Hook: &nlmsg.ChainHook{Num: 1}, Policy: u32p(3)}, nil, "policy 3 is neither accept nor drop"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := c.chain
			ch.Family, ch.Table = c.fam, "t"
			rs := &nlmsg.Ruleset{Tables: []*nlmsg.Table{{Family: c.fam, Name: "t"}}, Chains: []*nlmsg.Chain{&ch}}
			res, err := Lift(rs)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "chain "+ch.Name) {
					t.Fatalf("Lift error %v, want one naming chain %s and saying %q", err, ch.Name, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := res.Ruleset.Tables[0].Chain(ch.Name)
			if got == nil {
				t.Fatal("chain missing from the IR")
			}
			if !reflect.DeepEqual(got.Base, c.want) {
				t.Errorf("base %+v, want %+v", got.Base, c.want)
			}
			if c.want != nil && len(c.want.Devices) > 0 && &got.Base.Devices[0] == &ch.Hook.Devices[0] {
				t.Error("the IR shares the message's device slice")
			}
		})
	}
}

// TestLiftRuleset covers Lift's handling of a ruleset as a whole: the
// order and placement of tables, chains, sets and rules, failed rules
// beside lifted ones, and inconsistencies that fail the whole ruleset.
func TestLiftRuleset(t *testing.T) {
	rs := &nlmsg.Ruleset{
		Tables: []*nlmsg.Table{{Family: nlmsg.FamilyIPv4, Name: "a", Flags: 1}, {Family: nlmsg.FamilyIPv6, Name: "a"}},
		Chains: []*nlmsg.Chain{
			{Family: nlmsg.FamilyIPv6, Table: "a", Name: "c"},
			{Family: nlmsg.FamilyIPv4, Table: "a", Name: "c"},
		},
		Sets: []*nlmsg.Set{{Family: nlmsg.FamilyIPv6, Table: "a", Name: "s", Flags: uint32(ir.SetConstant), KeyType: 12, KeyLen: 1}},
		Elems: []*nlmsg.SetElems{
			{Family: nlmsg.FamilyIPv6, Table: "a", Set: "s", Elems: []nlmsg.SetElem{key(bs(6))}},
			{Family: nlmsg.FamilyIPv6, Table: "a", Set: "s", Elems: []nlmsg.SetElem{key(bs(17))}},
		},
		Rules: []*nlmsg.Rule{
			{Family: nlmsg.FamilyIPv4, Table: "a", Chain: "c", Handle: 1, Exprs: []nlmsg.Expr{acceptExpr}},
			{Family: nlmsg.FamilyIPv6, Table: "a", Chain: "c", Handle: 2, Exprs: []nlmsg.Expr{&nlmsg.Opaque{Name: "synproxy"}}},
			{Family: nlmsg.FamilyIPv6, Table: "a", Chain: "c", Handle: 3,
				Exprs: []nlmsg.Expr{payload(nh, 6, 1, reg1), lookupExpr(reg1, "s", 0), dropExpr}},
			{Family: nlmsg.FamilyIPv4, Table: "a", Chain: "c", Handle: 4, Exprs: []nlmsg.Expr{dropExpr, acceptExpr}},
		},
	}
	res, err := Lift(rs)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if err := res.Ruleset.Print(&sb); err != nil {
		t.Fatal(err)
	}
	const want = `table ip a {
	flags dormant

	chain c {
		accept
	}
}

table ip6 a {
	set s {
		type inet_proto
		flags constant
		elements = { tcp, udp }
	}

	chain c {
		ip6 nexthdr @s drop
	}
}
`
	if sb.String() != want {
		t.Errorf("lifted ruleset prints as\n%s\nwant\n%s", sb.String(), want)
	}
	if len(res.Failed) != 2 || res.Failed[0].Handle != 2 || res.Failed[1].Handle != 4 {
		t.Fatalf("failed rules %v, want handles 2 and 4", res.Err())
	}
	if got := res.Failed[0].Error(); got != `table ip6 a, chain c, rule handle 2: expression 1 (synproxy): unsupported: expression "synproxy" is not supported` {
		t.Errorf("first refusal: %s", got)
	}
	if got := res.Err().Error(); !strings.Contains(got, "rule handle 2") || !strings.Contains(got, "rule handle 4") {
		t.Errorf("Result.Err() = %q, want both refusals", got)
	}

	for _, c := range []struct {
		name string
		edit func(rs *nlmsg.Ruleset)
		want string
	}{
		{"table listed twice", func(rs *nlmsg.Ruleset) {
			rs.Tables = append(rs.Tables, &nlmsg.Table{Family: nlmsg.FamilyIPv4, Name: "a"})
		},
			"table ip a: listed twice"},
		{"chain of an unknown table", func(rs *nlmsg.Ruleset) {
			rs.Chains = append(rs.Chains, &nlmsg.Chain{Family: nlmsg.FamilyInet, Table: "a", Name: "x"})
		}, "chain x: table inet a not found"},
		{"set of an unknown table", func(rs *nlmsg.Ruleset) {
			rs.Sets = append(rs.Sets, &nlmsg.Set{Family: nlmsg.FamilyIPv4, Table: "b", Name: "y"})
		}, "set y: table ip b not found"},
		{"elements of an unknown set", func(rs *nlmsg.Ruleset) {
			rs.Elems = append(rs.Elems, &nlmsg.SetElems{Family: nlmsg.FamilyIPv4, Table: "a", Set: "s"})
		}, "elements of set s: set not found in table ip a"},
		{"rule of an unknown table", func(rs *nlmsg.Ruleset) {
			rs.Rules = append(rs.Rules, &nlmsg.Rule{Family: nlmsg.FamilyNetdev, Table: "a", Chain: "c", Handle: 9})
		}, "rule handle 9: table netdev a not found"},
		{"rule of an unknown chain", func(rs *nlmsg.Ruleset) {
			rs.Rules = append(rs.Rules, &nlmsg.Rule{Family: nlmsg.FamilyIPv4, Table: "a", Chain: "z", Handle: 9})
		}, "rule handle 9: chain z not found in table ip a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := *rs
			bad.Tables = append([]*nlmsg.Table(nil), rs.Tables...)
			bad.Chains = append([]*nlmsg.Chain(nil), rs.Chains...)
			bad.Sets = append([]*nlmsg.Set(nil), rs.Sets...)
			bad.Elems = append([]*nlmsg.SetElems(nil), rs.Elems...)
			bad.Rules = append([]*nlmsg.Rule(nil), rs.Rules...)
			c.edit(&bad)
			if _, err := Lift(&bad); err == nil || err.Error() != c.want {
				t.Errorf("Lift error %v, want %q", err, c.want)
			}
		})
	}
}

func TestRuleErrorWithoutExpression(t *testing.T) {
	e := &RuleError{Family: ir.FamilyNetdev, Table: "t", Chain: "c", Handle: 3, Expr: -1, Err: errors.New("boom")}
	if got := e.Error(); got != "table netdev t, chain c, rule handle 3: boom" {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(e, e.Err) {
		t.Error("RuleError does not unwrap to its error")
	}
}

func TestDescribeExprs(t *testing.T) {
	got := DescribeExprs([]nlmsg.Expr{
		payload(nh, 12, 4, reg1),
		&nlmsg.Payload{Base: 7, Offset: 1, Len: 1, SReg: reg1},
		metaLoad(ir.MetaMark, reg1),
		&nlmsg.Meta{Key: uint32(ir.MetaMark), SReg: reg2},
		cmpExpr(9, reg1, 1),
		rangeExpr(1, reg1, bs(1), bs(2)),
		&nlmsg.Lookup{SReg: reg1, DReg: reg2, HasDReg: true, Set: "m", Flags: 1},
		verdictExpr(nlmsg.VerdictGoto, "x"),
		verdictExpr(42, ""),
		&nlmsg.Immediate{DReg: reg1, Data: bs(1, 2)},
		byteorder(byteorderHton, reg1, reg1, 4, 4),
		&nlmsg.Opaque{Name: "log", Data: bs(1, 2)},
	})
	want := `[ payload load 4b @ network header + 12 => reg 1 ]
[ payload write reg 1 => 1b @ base 7 + 1 ]
[ meta load mark => reg 1 ]
[ meta set mark with reg 2 ]
[ cmp ? reg 1 0x01 ]
[ range neq reg 1 0x01 0x02 ]
[ lookup reg 1 set m dreg 2 0x1 ]
[ immediate reg 0 goto x ]
[ immediate reg 0 verdict 42 ]
[ immediate reg 1 0x0102 ]
[ byteorder reg 1 = hton(reg 1, 4, 4) ]
[ log (2 bytes of attributes) ]
`
	if got != want {
		t.Errorf("DescribeExprs =\n%s\nwant\n%s", got, want)
	}
}

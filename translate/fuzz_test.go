package translate

import (
	"bytes"
	"errors"
	"hash/fnv"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// FuzzLift decodes its input as an NFT_MSG_NEWRULE body (nfgenmsg and
// attributes, like nlmsg's FuzzDecodeRule, whose seeds it shares) and lifts
// the rule in a table that has its chain, user and base chains to jump to,
// and a set for every set the rule looks up. Lifting must never panic and
// must either refuse the rule, naming an expression of it, or give IR that
// keeps the IR's invariants and prints.
func FuzzLift(f *testing.F) {
	for _, exprs := range [][]nlmsg.Expr{
		{payload(th, 2, 2, reg1), cmpExpr(opEq, reg1, 0, 22), acceptExpr},
		{payload(nh, 8, 16, reg1), cmpExpr(opEq, reg32_00+1, 1, 2, 3, 4)},
		{payload(nh, 12, 4, reg1), bitwise(reg1, reg2, be32(0xffffff00), be32(0)), cmpExpr(opEq, reg2, 192, 0, 2), dropExpr},
		{metaLoad(ir.MetaLen, reg1), byteorder(byteorderHton, reg1, reg1, 4, 4), rangeExpr(1, reg1, be32(1), be32(9))},
		{payload(nh, 1, 1, reg1), bitwise(reg1, reg1, bs(0xfc), bs(0)), shift(bitwiseRShift, reg1, reg1, 1, 2), lookupExpr(reg1, "__set0", 0)},
		{payload(th, 2, 2, reg1), lookupExpr(reg1, "__set1", lookupInvert), verdictExpr(nlmsg.VerdictJump, "other")},
		{metaLoad(ir.MetaIifName, reg1), cmpExpr(opEq, reg1, 'e', 't', 'h'), counterExpr, verdictExpr(nlmsg.VerdictGoto, "base")},
	} {
		m := nlmsg.EncodeRule(&nlmsg.Rule{Family: nlmsg.FamilyInet, Table: "t", Chain: "c", Handle: 1, Exprs: exprs,
			Userdata: []byte("\x00\x03hi\x00")})
		f.Add(m.Data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := nlmsg.DecodeRule(netlink.Message{Header: netlink.Header{Type: nlmsg.MsgType(unix.NFT_MSG_NEWRULE)}, Data: data})
		if err != nil {
			return
		}
		rs := fuzzRuleset(r)
		res, err := Lift(rs)
		if err != nil {
			t.Fatalf("Lift: %v (the ruleset holds the rule's table and chain)", err)
		}
		if len(res.Failed) > 0 {
			checkRefusal(t, r, res)
			return
		}
		var rule *ir.Rule
		for _, c := range res.Ruleset.Tables[0].Chains {
			if c.Name == r.Chain && len(c.Rules) == 1 {
				rule = c.Rules[0]
			}
		}
		if rule == nil {
			t.Fatalf("rule neither lifted nor refused")
		}
		checkRule(t, rule)
		_ = ir.FormatRule(ir.Family(r.Family), rule)
		var sb strings.Builder
		if err := res.Ruleset.Print(&sb); err != nil {
			t.Fatal(err)
		}
	})
}

// fuzzRuleset builds the context for a fuzzed rule. Each looked-up set gets
// a key length, flags and elements chosen from a hash of its name, so that
// mutating the name explores the set forms.
func fuzzRuleset(r *nlmsg.Rule) *nlmsg.Ruleset {
	rs := &nlmsg.Ruleset{
		Tables: []*nlmsg.Table{{Family: r.Family, Name: r.Table}},
		Rules:  []*nlmsg.Rule{r},
	}
	chains := map[string]bool{}
	addChain := func(name string, base bool) {
		if chains[name] {
			return
		}
		chains[name] = true
		c := &nlmsg.Chain{Family: r.Family, Table: r.Table, Name: name}
		if base {
			c.Hook = &nlmsg.ChainHook{Num: 1}
		}
		rs.Chains = append(rs.Chains, c)
	}
	addChain(r.Chain, false)
	addChain("other", false)
	addChain("base", true)
	sets := map[string]bool{}
	for _, e := range r.Exprs {
		l, ok := e.(*nlmsg.Lookup)
		if !ok || sets[l.Set] {
			continue
		}
		sets[l.Set] = true
		s, elems := fuzzSet(l.Set)
		s.Family, s.Table = r.Family, r.Table
		rs.Sets = append(rs.Sets, s)
		rs.Elems = append(rs.Elems, &nlmsg.SetElems{Family: r.Family, Table: r.Table, Set: l.Set, Elems: elems})
	}
	return rs
}

func fuzzSet(name string) (*nlmsg.Set, []nlmsg.SetElem) {
	h := fnv.New32a()
	h.Write([]byte(name))
	v := h.Sum32()
	keyLen := []uint32{1, 2, 4, 16}[v%4]
	k := func(b byte) []byte { return append(bytes.Repeat([]byte{0}, int(keyLen)-1), b) }
	s := &nlmsg.Set{Name: name, KeyLen: keyLen, Flags: uint32(ir.SetAnonymous | ir.SetConstant)}
	switch v / 4 % 4 {
	case 0: // exact
		return s, []nlmsg.SetElem{{Key: k(22)}, {Key: k(7)}}
	case 1: // start/INTERVAL_END, leading end at zero, open last interval
		s.Flags |= uint32(ir.SetInterval)
		return s, []nlmsg.SetElem{{Key: k(0), Flags: elemIntervalEnd}, {Key: k(10)}, {Key: k(20), Flags: elemIntervalEnd}, {Key: k(200)}}
	case 2: // KEY_END
		s.Flags |= uint32(ir.SetInterval)
		return s, []nlmsg.SetElem{{Key: k(10), KeyEnd: k(20)}, {Key: k(1), KeyEnd: k(1)}}
	}
	// A named constant set.
	s.Flags = uint32(ir.SetConstant)
	return s, []nlmsg.SetElem{{Key: k(1)}}
}

// checkRefusal checks that a refusal names the rule and, when it names an
// expression, one that exists with its kind.
func checkRefusal(t *testing.T, r *nlmsg.Rule, res *Result) {
	if len(res.Failed) != 1 {
		t.Fatalf("%d refusals for one rule", len(res.Failed))
	}
	re := res.Failed[0]
	if re.Handle != r.Handle || re.Chain != r.Chain || re.Table != r.Table {
		t.Fatalf("refusal located at %s/%s/%d, want %s/%s/%d", re.Table, re.Chain, re.Handle, r.Table, r.Chain, r.Handle)
	}
	if re.Expr >= len(r.Exprs) || re.Expr < -1 {
		t.Fatalf("refusal names expression %d of %d", re.Expr+1, len(r.Exprs))
	}
	if re.Expr >= 0 && re.Kind != r.Exprs[re.Expr].Kind() {
		t.Fatalf("refusal names kind %q for a %q expression", re.Kind, r.Exprs[re.Expr].Kind())
	}
	if re.Err == nil || !strings.Contains(re.Error(), "rule handle") {
		t.Fatalf("refusal without a reason: %q", re.Error())
	}
	var ee *exprError
	if errors.As(re.Err, &ee) {
		t.Fatalf("refusal still wraps an expression error: %v", re)
	}
}

// checkRule checks the invariants codegen relies on.
func checkRule(t *testing.T, rule *ir.Rule) {
	for i, s := range rule.Stmts {
		switch s := s.(type) {
		case *ir.Verdict:
			if i != len(rule.Stmts)-1 {
				t.Fatalf("verdict %s is statement %d of %d", s, i+1, len(rule.Stmts))
			}
		case *ir.Match:
			f := s.Field
			if f.Len == 0 || f.Len > 64 {
				t.Fatalf("statement %d: field of %d bytes", i+1, f.Len)
			}
			for _, tr := range f.Transforms {
				if tr.Len != f.Len {
					t.Fatalf("statement %d: transform of %d bytes on a %d-byte field", i+1, tr.Len, f.Len)
				}
			}
			switch s.Op {
			case ir.OpInSet, ir.OpNotInSet:
				if s.Set == nil || s.Set.KeyLen != f.Len {
					t.Fatalf("statement %d: set lookup without a set of %d-byte keys", i+1, f.Len)
				}
				for _, e := range s.Set.Elements {
					if len(e.Low) != int(f.Len) || len(e.High) != int(f.Len) || bytes.Compare(e.Low, e.High) > 0 {
						t.Fatalf("statement %d: set element %x-%x", i+1, e.Low, e.High)
					}
				}
			case ir.OpInRange, ir.OpNotInRange:
				if len(s.Value) == 0 || len(s.High) != len(s.Value) || len(s.Value) > int(f.Len) {
					t.Fatalf("statement %d: range %x-%x on a %d-byte field", i+1, s.Value, s.High, f.Len)
				}
			default:
				if len(s.Value) == 0 || len(s.Value) > int(f.Len) {
					t.Fatalf("statement %d: %d-byte compare on a %d-byte field", i+1, len(s.Value), f.Len)
				}
			}
		case *ir.Counter, *ir.Quota, *ir.Log, *ir.Reject:
		case *ir.Limit:
			if _, err := s.Params(); err != nil {
				t.Fatalf("statement %d: %s: %v", i+1, s, err)
			}
		case *ir.MetaSet:
			if s.Key != ir.MetaMark || len(s.Value) != 4 {
				t.Fatalf("statement %d: %s", i+1, s)
			}
		default:
			t.Fatalf("statement %d is a %T", i+1, s)
		}
	}
}

// FuzzLiftExprs builds an expression list from its input, one expression per
// few bytes, with register numbers, lengths and operations drawn from the
// ranges nft uses, so that most inputs reach the register tracking instead
// of failing to decode. The same invariants as FuzzLift hold.
func FuzzLiftExprs(f *testing.F) {
	f.Add([]byte{0, 1, 2, 1, 0, 2, 0, 0, 2, 7, 0})
	f.Add([]byte{0, 1, 8, 15, 0, 2, 5, 0, 3, 8, 3, 0, 2, 0, 3, 6, 5, 1, 1, 7, 1})
	f.Add([]byte{1, 3, 0, 5, 4, 4, 0, 6, 0, 0, 1, 7, 2, 9, 2, 2, 4, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &nlmsg.Rule{Family: nlmsg.FamilyInet, Table: "t", Chain: "c", Handle: 1, Exprs: exprsFromBytes(data)}
		res, err := Lift(fuzzRuleset(r))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Failed) > 0 {
			checkRefusal(t, r, res)
			return
		}
		rule := res.Ruleset.Tables[0].Chain("c").Rules[0]
		checkRule(t, rule)
		_ = ir.FormatRule(ir.FamilyInet, rule)
	})
}

// fuzzRegs are the register numbers exprsFromBytes uses: the four 16-byte
// registers, the sixteen 32-bit ones, and two that are not data registers.
var fuzzRegs = []uint32{1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 0, 5}

var fuzzMetaKeys = []ir.MetaKey{ir.MetaLen, ir.MetaProtocol, ir.MetaMark, ir.MetaIifName, ir.MetaNFProto, ir.MetaL4Proto, ir.MetaIifType}

func exprsFromBytes(data []byte) []nlmsg.Expr {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	reg := func() uint32 { return fuzzRegs[int(next())%len(fuzzRegs)] }
	bytesN := func(n int) []byte {
		out := make([]byte, n)
		for i := range out {
			out[i] = next()
		}
		return out
	}
	var exprs []nlmsg.Expr
	for len(data) > 0 && len(exprs) < 32 {
		switch next() % 10 {
		case 0:
			exprs = append(exprs, payload(uint32(next()%3), uint32(next()%64), 1+uint32(next()%20), reg()))
		case 1:
			exprs = append(exprs, metaLoad(fuzzMetaKeys[int(next())%len(fuzzMetaKeys)], reg()))
		case 2:
			op, sreg, n := uint32(next()%6), reg(), 1+int(next()%20)
			exprs = append(exprs, cmpExpr(op, sreg, bytesN(n)...))
		case 3:
			sreg, dreg, n := reg(), reg(), 1+int(next()%20)
			exprs = append(exprs, bitwise(sreg, dreg, bytesN(n), bytesN(n)))
		case 4:
			op, sreg, dreg, n := bitwiseLShift+uint32(next()%2), reg(), reg(), 1+uint32(next()%20)
			exprs = append(exprs, shift(op, sreg, dreg, n, uint32(next()%40)))
		case 5:
			op, sreg, dreg := uint32(next()%2), reg(), reg()
			size := []uint32{2, 4, 8}[next()%3]
			exprs = append(exprs, byteorder(op, sreg, dreg, size*(1+uint32(next()%4)), size))
		case 6:
			op, sreg, n := uint32(next()%2), reg(), 1+int(next()%20)
			exprs = append(exprs, rangeExpr(op, sreg, bytesN(n), bytesN(n)))
		case 7:
			sreg, name, flags := reg(), []string{"__set0", "__set1", "__set2", "__set3", "nets"}[next()%5], uint32(next()%2)
			exprs = append(exprs, lookupExpr(sreg, name, flags))
		case 8:
			exprs = append(exprs, counterExpr)
		case 9:
			v := next()
			code := []int32{nlmsg.VerdictAccept, nlmsg.VerdictDrop, nlmsg.VerdictContinue, nlmsg.VerdictReturn,
				nlmsg.VerdictJump, nlmsg.VerdictGoto, nlmsg.VerdictBreak}[v%7]
			exprs = append(exprs, verdictExpr(code, []string{"other", "base", "c", "x"}[v/7%4]))
		}
	}
	return exprs
}

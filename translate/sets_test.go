package translate

import (
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

func verdictElem(k []byte, code int32, chain string) nlmsg.SetElem {
	return nlmsg.SetElem{Key: k, Verdict: &nlmsg.Verdict{Code: code, Chain: chain}}
}

func vmapLookup(sreg uint32, set string) *nlmsg.Lookup {
	return &nlmsg.Lookup{SReg: sreg, HasDReg: true, DReg: 0, Set: set}
}

// TestLiftVerdictMapsAndConcatenations: verdict maps become VerdictMap
// statements whose elements carry verdicts; lookups of concatenated keys
// read one loaded value per 32-bit-aligned key field.
func TestLiftVerdictMapsAndConcatenations(t *testing.T) {
	vmapFlags := uint32(ir.SetAnonymous | ir.SetConstant | ir.SetMap)
	anonVMap := func(keyLen uint32, elems ...nlmsg.SetElem) testSet {
		return testSet{set: &nlmsg.Set{Name: "__map0", Flags: vmapFlags, KeyLen: keyLen, DataType: ir.DataVerdict}, elems: elems}
	}
	concat := func(name string, flags uint32, fields []uint32, elems ...nlmsg.SetElem) testSet {
		n := uint32(0)
		for _, f := range fields {
			n += round4(f)
		}
		return testSet{set: &nlmsg.Set{Name: name, Flags: flags, KeyLen: n, Concat: fields}, elems: elems}
	}
	pair := func(a uint32, port uint16) []byte { return append(be32(a), be16(port)[0], be16(port)[1], 0, 0) }
	saddrDport := []nlmsg.Expr{payload(nh, 12, 4, reg1), payload(th, 2, 2, reg32_00+1)}
	irVMap := func(key []ir.Field, keyLen uint32, elems ...ir.SetElement) *ir.VerdictMap {
		return &ir.VerdictMap{Key: key, Set: &ir.Set{Name: "__map0", Flags: ir.SetFlags(vmapFlags), KeyLen: keyLen, DataType: ir.DataVerdict, Elements: elems}}
	}
	withVerdict := func(e ir.SetElement, v *ir.Verdict) ir.SetElement { e.Verdict = v; return e }
	runLiftCases(t, []liftCase{
		{name: "anonymous verdict map",
			sets:  []testSet{anonVMap(2, verdictElem(be16(80), nlmsg.VerdictJump, "other"), verdictElem(be16(22), nlmsg.VerdictAccept, ""))},
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), vmapLookup(reg1, "__map0")},
			want: []ir.Stmt{irVMap([]ir.Field{tcpDport}, 2,
				withVerdict(elem(be16(22), be16(22)), irAccept),
				withVerdict(elem(be16(80), be16(80)), &ir.Verdict{Kind: ir.VerdictJump, Chain: "other"}))}},
		{name: "verdict map element jumps to a missing chain",
			sets:  []testSet{anonVMap(2, verdictElem(be16(80), nlmsg.VerdictJump, "nochain"))},
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), vmapLookup(reg1, "__map0")},
			err:   `verdict map element 0050: verdict target chain "nochain" not found`, expr: 2},
		{name: "verdict map element jumps to a base chain",
			sets:  []testSet{anonVMap(2, verdictElem(be16(80), nlmsg.VerdictGoto, "base2"))},
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), vmapLookup(reg1, "__map0")},
			err:   `verdict targets base chain "base2"`, expr: 2},
		{name: "verdict map element queues",
			sets:  []testSet{anonVMap(2, verdictElem(be16(80), nlmsg.VerdictQueue, ""))},
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), vmapLookup(reg1, "__map0")},
			err:   "verdict queue is not supported", expr: 2, unsupported: true},
		{name: "verdict map followed by a counter",
			sets:  []testSet{anonVMap(2, verdictElem(be16(80), nlmsg.VerdictAccept, ""))},
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), vmapLookup(reg1, "__map0"), counterExpr},
			err:   "verdict map lookup is followed by 1 more expressions", expr: 2, unsupported: true},
		{name: "concatenation of an address and a port",
			sets:  []testSet{concat("__set0", uint32(ir.SetAnonymous|ir.SetConstant), []uint32{4, 2}, key(pair(0xc0000201, 22)))},
			exprs: append(append([]nlmsg.Expr(nil), saddrDport...), lookupExpr(reg1, "__set0", lookupInvert), acceptExpr),
			want: []ir.Stmt{&ir.Lookup{Key: []ir.Field{ipSaddr, tcpDport}, Negate: true, Set: &ir.Set{
				Name: "__set0", Flags: ir.SetAnonymous | ir.SetConstant, KeyLen: 8, Fields: []uint32{4, 2},
				Elements: []ir.SetElement{elem(pair(0xc0000201, 22), pair(0xc0000201, 22))}}}, irAccept}},
		{name: "concatenation without a field layout takes it from the loads",
			sets: []testSet{func() testSet {
				ts := concat("__set0", uint32(ir.SetAnonymous|ir.SetConstant), nil, key(pair(0xc0000201, 22)))
				ts.set.KeyLen = 8
				return ts
			}()},
			exprs: append(append([]nlmsg.Expr(nil), saddrDport...), lookupExpr(reg1, "__set0", 0)),
			want: []ir.Stmt{&ir.Lookup{Key: []ir.Field{ipSaddr, tcpDport}, Set: &ir.Set{
				Name: "__set0", Flags: ir.SetAnonymous | ir.SetConstant, KeyLen: 8, Fields: []uint32{4, 2},
				Elements: []ir.SetElement{elem(pair(0xc0000201, 22), pair(0xc0000201, 22))}}}}},
		{name: "concatenated ranges are per field",
			sets: []testSet{concat("__set0", uint32(ir.SetAnonymous|ir.SetConstant|ir.SetInterval|ir.SetConcat), []uint32{4, 2},
				nlmsg.SetElem{Key: pair(0xc0000200, 30), KeyEnd: pair(0xc00002ff, 40)})},
			exprs: append(append([]nlmsg.Expr(nil), saddrDport...), lookupExpr(reg1, "__set0", 0)),
			want: []ir.Stmt{&ir.Lookup{Key: []ir.Field{ipSaddr, tcpDport}, Set: &ir.Set{
				Name: "__set0", Flags: ir.SetAnonymous | ir.SetConstant | ir.SetInterval | ir.SetConcat, KeyLen: 8, Fields: []uint32{4, 2},
				Elements: []ir.SetElement{elem(pair(0xc0000200, 30), pair(0xc00002ff, 40))}}}}},
		{name: "concatenated range whose second field runs backwards",
			sets: []testSet{concat("__set0", uint32(ir.SetAnonymous|ir.SetConstant|ir.SetInterval|ir.SetConcat), []uint32{4, 2},
				nlmsg.SetElem{Key: pair(0xc0000200, 40), KeyEnd: pair(0xc00002ff, 30)})},
			exprs: append(append([]nlmsg.Expr(nil), saddrDport...), lookupExpr(reg1, "__set0", 0)),
			err:   "starts after it ends", expr: 3},
		{name: "meta mark set from a data map",
			sets: []testSet{{set: &nlmsg.Set{Name: "__map0", Flags: vmapFlags, KeyLen: 2, DataType: 19, DataLen: 4},
				elems: []nlmsg.SetElem{{Key: be16(22), Data: []byte{7, 0, 0, 0}}}}},
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), &nlmsg.Lookup{SReg: reg1, DReg: reg1, HasDReg: true, Set: "__map0"}, &nlmsg.Meta{Key: uint32(ir.MetaMark), SReg: reg1}},
			want: []ir.Stmt{&ir.MetaSetMap{Meta: ir.MetaMark, Key: []ir.Field{tcpDport}, Map: &ir.Set{
				Name: "__map0", Flags: ir.SetFlags(vmapFlags), KeyLen: 2, DataType: 19, DataLen: 4,
				Elements: []ir.SetElement{{Low: be16(22), High: be16(22), Data: []byte{7, 0, 0, 0}}}}}}},
		{name: "data map of addresses",
			sets:  []testSet{{set: &nlmsg.Set{Name: "__map0", Flags: vmapFlags, KeyLen: 2, DataType: 7, DataLen: 16}}},
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), &nlmsg.Lookup{SReg: reg1, DReg: reg1, HasDReg: true, Set: "__map0"}},
			err:   "data map lookups (anonymous set __map0) of 16-byte values", expr: 2, unsupported: true},
		{name: "data map value nothing reads",
			sets:  []testSet{{set: &nlmsg.Set{Name: "__map0", Flags: vmapFlags, KeyLen: 2, DataType: 19, DataLen: 4}}},
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), &nlmsg.Lookup{SReg: reg1, DReg: reg1, HasDReg: true, Set: "__map0"}},
			err:   "never compared", expr: 2, unsupported: true},
		{name: "concatenation missing a field load",
			sets:  []testSet{concat("__set0", uint32(ir.SetAnonymous|ir.SetConstant), []uint32{4, 2})},
			exprs: []nlmsg.Expr{payload(nh, 12, 4, reg1), lookupExpr(reg1, "__set0", 0)},
			err:   "key part 2 reads register word 1, which holds no loaded value", expr: 2, unsupported: true},
	})
}

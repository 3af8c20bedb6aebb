package translate

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// attrBytes encodes netlink attributes (type, payload) as NFTA_EXPR_DATA.
func attrBytes(attrs ...any) []byte {
	var out []byte
	for i := 0; i < len(attrs); i += 2 {
		typ := attrs[i].(int)
		var p []byte
		switch v := attrs[i+1].(type) {
		case uint64:
			p = binary.BigEndian.AppendUint64(nil, v)
		case uint32:
			p = binary.BigEndian.AppendUint32(nil, v)
		case uint16:
			p = binary.BigEndian.AppendUint16(nil, v)
		case string:
			p = append([]byte(v), 0)
		case []byte:
			p = v
		}
		out = binary.NativeEndian.AppendUint16(out, uint16(4+len(p)))
		out = binary.NativeEndian.AppendUint16(out, uint16(typ))
		out = append(out, p...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	return out
}

func opaque(name string, attrs ...any) *nlmsg.Opaque {
	return &nlmsg.Opaque{Name: name, Data: attrBytes(attrs...)}
}

func TestLiftStatements(t *testing.T) {
	runLiftCases(t, []liftCase{
		{name: "limit packets default burst",
			exprs: []nlmsg.Expr{opaque("limit", nftaLimitRate, uint64(10), nftaLimitUnit, uint64(1), nftaLimitBurst, uint32(0), nftaLimitType, uint32(0), nftaLimitFlags, uint32(0))},
			want:  []ir.Stmt{&ir.Limit{Rate: 10, Unit: 1, Burst: 5}}},
		{name: "limit over bytes",
			exprs: []nlmsg.Expr{opaque("limit", nftaLimitRate, uint64(2048), nftaLimitUnit, uint64(60), nftaLimitBurst, uint32(100), nftaLimitType, uint32(1), nftaLimitFlags, uint32(1)), acceptExpr},
			want:  []ir.Stmt{&ir.Limit{Rate: 2048, Unit: 60, Burst: 100, Bytes: true, Over: true}, irAccept}},
		{name: "limit rate 0",
			exprs: []nlmsg.Expr{opaque("limit", nftaLimitRate, uint64(0), nftaLimitUnit, uint64(1))},
			err:   "limit without a rate or unit", expr: 1},
		{name: "limit unknown flag",
			exprs: []nlmsg.Expr{opaque("limit", nftaLimitRate, uint64(1), nftaLimitUnit, uint64(1), nftaLimitFlags, uint32(2))},
			err:   "limit flags 0x2", expr: 1, unsupported: true},
		{name: "limit bucket overflows",
			exprs: []nlmsg.Expr{opaque("limit", nftaLimitRate, uint64(1<<20), nftaLimitUnit, uint64(604800), nftaLimitType, uint32(1))},
			err:   "limit bucket size overflows", expr: 1},
		{name: "quota",
			exprs: []nlmsg.Expr{opaque("quota", nftaQuotaBytes, uint64(1000), nftaQuotaFlags, uint32(1), nftaQuotaConsumed, uint64(7)), dropExpr},
			want:  []ir.Stmt{&ir.Quota{Bytes: 1000, Used: 7, Over: true}, irDrop}},
		{name: "log prefix level",
			exprs: []nlmsg.Expr{opaque("log", nftaLogPrefix, "hi: ", nftaLogLevel, uint32(7), nftaLogFlags, uint32(3))},
			want:  []ir.Stmt{&ir.Log{Prefix: "hi: ", HasPrefix: true, Level: 7, HasLevel: true, Flags: 3}}},
		{name: "log group",
			exprs: []nlmsg.Expr{opaque("log", nftaLogGroup, uint16(2), nftaLogSnaplen, uint32(64))},
			want:  []ir.Stmt{&ir.Log{Level: ir.LogDefault, Group: 2, HasGroup: true, Snaplen: 64}}},
		{name: "log bad level",
			exprs: []nlmsg.Expr{opaque("log", nftaLogLevel, uint32(9))},
			err:   "log level 9", expr: 1},
		{name: "meta mark set",
			exprs: []nlmsg.Expr{&nlmsg.Immediate{DReg: reg1, Data: le32(0x10)}, &nlmsg.Meta{Key: uint32(ir.MetaMark), SReg: reg1}, acceptExpr},
			want:  []ir.Stmt{&ir.MetaSet{Key: ir.MetaMark, Value: le32(0x10)}, irAccept}},
		{name: "meta mark set from a packet value",
			exprs: []nlmsg.Expr{payload(th, 2, 4, reg1), &nlmsg.Meta{Key: uint32(ir.MetaMark), SReg: reg1}},
			err:   "meta mark set from a packet value", expr: 2, unsupported: true},
		{name: "immediate compared",
			exprs: []nlmsg.Expr{&nlmsg.Immediate{DReg: reg1, Data: le32(1)}, cmpExpr(opEq, reg1, 1, 0, 0, 0)},
			err:   "compares an immediate value", expr: 2, unsupported: true},
		{name: "immediate never read",
			exprs: []nlmsg.Expr{&nlmsg.Immediate{DReg: reg1, Data: le32(1)}, acceptExpr},
			err:   "never compared", expr: 1, unsupported: true},
		{name: "reject icmp",
			exprs: []nlmsg.Expr{opaque("reject", nftaRejectType, uint32(0), nftaRejectICMPCode, []byte{10})},
			want:  []ir.Stmt{&ir.Reject{Type: ir.RejectICMPUnreach, Code: 10}}},
		{name: "reject unknown type",
			exprs: []nlmsg.Expr{opaque("reject", nftaRejectType, uint32(7))},
			err:   "reject type 7", expr: 1, unsupported: true},
		{name: "limit between a load and its compare",
			exprs: []nlmsg.Expr{payload(th, 2, 2, reg1), opaque("limit", nftaLimitRate, uint64(1), nftaLimitUnit, uint64(1)), cmpExpr(opEq, reg1, 0, 22)},
			err:   "limit between a load (expression 1, payload) and its compare", expr: 2, unsupported: true},
	})
}

// TestStatementsPrintLikeNft loads statements into the kernel with the
// real nft, lifts the dump and checks that every rule prints exactly as
// `nft list ruleset` prints it.
func TestStatementsPrintLikeNft(t *testing.T) {
	privtest.Require(t)
	const ruleset = `table inet t {
	chain c {
		type filter hook input priority 0; policy accept;
		limit rate 10/second
		limit rate 10/second burst 5 packets
		limit rate over 10/minute burst 7 packets
		limit rate 400/day burst 1 packets
		limit rate 3/hour
		limit rate 2/week
		limit rate 1025 bytes/second
		limit rate over 2048 kbytes/second burst 1024 bytes
		limit rate 3 mbytes/hour burst 100000 bytes
		limit rate 1 mbytes/second burst 0 bytes
		log
		log prefix "hi: " level debug
		log prefix "x" level emerg flags all
		log group 3 prefix "g" snaplen 100 queue-threshold 2
		log group 0
		log flags tcp sequence,options flags ip options
		log flags skuid flags ether
		log flags tcp options
		log level audit
		log level warn
		meta mark set 0x10
		meta mark set 5 accept
		limit rate 5/second log prefix "ssh " meta mark set 7 accept
		quota 100 bytes
		quota 2048 mbytes
		quota over 1000 kbytes used 100 bytes
		quota until 5 bytes drop
		reject
		meta l4proto tcp reject with tcp reset
		reject with icmpx admin-prohibited
	}
}
`
	rs, err := nftfile.Parse("stmt", strings.NewReader(ruleset), nftfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Lift(rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	listing, err := nftfile.Listing("stmt", strings.NewReader(ruleset), nftfile.Options{}, "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(listing, "\n") {
		if strings.HasPrefix(line, "\t\t") && !strings.HasPrefix(line, "\t\ttype ") {
			want = append(want, strings.TrimSpace(line))
		}
	}
	rules := res.Ruleset.Tables[0].Chain("c").Rules
	if len(rules) != len(want) {
		t.Fatalf("%d rules lifted, nft lists %d:\n%s", len(rules), len(want), listing)
	}
	for i, r := range rules {
		if got := ir.FormatRule(ir.FamilyInet, r); got != want[i] {
			t.Errorf("rule %d prints as\n\t%s\nnft lists\n\t%s", i+1, got, want[i])
		}
	}
}

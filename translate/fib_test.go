package translate

import (
	"encoding/binary"
	"testing"

	"github.com/mdlayher/netlink"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// fibExpr builds a fib expression as the kernel dumps it.
func fibExpr(dreg, result, flags uint32) *nlmsg.Opaque {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(nftaFibDreg, binary.BigEndian.AppendUint32(nil, dreg))
	ae.Bytes(nftaFibResult, binary.BigEndian.AppendUint32(nil, result))
	ae.Bytes(nftaFibFlags, binary.BigEndian.AppendUint32(nil, flags))
	b, err := ae.Encode()
	if err != nil {
		panic(err)
	}
	return &nlmsg.Opaque{Name: "fib", Data: b}
}

func fibField(flags ir.FIBFlags) ir.Field { return ir.Field{Source: ir.SourceFIB, FIB: flags, Len: 4} }

func TestLiftFIB(t *testing.T) {
	const addrtype = nftFibResultAddrtype
	daddr, saddr := uint32(ir.FIBDaddr), uint32(ir.FIBSaddr)
	runLiftCases(t, []liftCase{
		{name: "fib daddr type local accept", fam: nlmsg.FamilyIPv4,
			exprs: []nlmsg.Expr{fibExpr(reg1, addrtype, daddr), cmpExpr(opEq, reg1, le32(ir.AddrLocal)...), acceptExpr},
			want:  []ir.Stmt{match(fibField(ir.FIBDaddr), ir.OpEq, le32(ir.AddrLocal)), irAccept}},
		{name: "fib saddr . iif type != local", fam: nlmsg.FamilyIPv4,
			exprs: []nlmsg.Expr{fibExpr(reg1, addrtype, saddr|uint32(ir.FIBIif)), cmpExpr(opNeq, reg1, le32(ir.AddrLocal)...)},
			want:  []ir.Stmt{match(fibField(ir.FIBSaddr|ir.FIBIif), ir.OpNeq, le32(ir.AddrLocal))}},
		{name: "inet table", exprs: []nlmsg.Expr{fibExpr(reg1, addrtype, daddr), cmpExpr(opEq, reg1, le32(ir.AddrBroadcast)...)},
			want: []ir.Stmt{match(fibField(ir.FIBDaddr), ir.OpEq, le32(ir.AddrBroadcast))}},
		{name: "fib daddr oif is a route lookup", fam: nlmsg.FamilyIPv4,
			exprs: []nlmsg.Expr{fibExpr(reg1, nftFibResultOif, daddr), cmpExpr(opEq, reg1, le32(1)...)},
			err:   "fib oif is not supported", expr: 1, unsupported: true},
		{name: "fib daddr oifname", fam: nlmsg.FamilyIPv4,
			exprs: []nlmsg.Expr{fibExpr(reg1, nftFibResultOifname, daddr), cmpExpr(opEq, reg1, make([]byte, 16)...)},
			err:   "fib oifname is not supported", expr: 1, unsupported: true},
		{name: "ip6 table", fam: nlmsg.FamilyIPv6,
			exprs: []nlmsg.Expr{fibExpr(reg1, addrtype, daddr), cmpExpr(opEq, reg1, le32(ir.AddrLocal)...)},
			err:   "IPv6 address type", expr: 1, unsupported: true},
		{name: "both addresses", fam: nlmsg.FamilyIPv4,
			exprs: []nlmsg.Expr{fibExpr(reg1, addrtype, daddr|saddr), cmpExpr(opEq, reg1, le32(ir.AddrLocal)...)},
			err:   "exactly one of saddr and daddr", expr: 1},
		{name: "both devices", fam: nlmsg.FamilyIPv4,
			exprs: []nlmsg.Expr{fibExpr(reg1, addrtype, daddr|uint32(ir.FIBIif|ir.FIBOif)), cmpExpr(opEq, reg1, le32(ir.AddrLocal)...)},
			err:   "both iif and oif", expr: 1},
		{name: "unknown flag", fam: nlmsg.FamilyIPv4,
			exprs: []nlmsg.Expr{fibExpr(reg1, addrtype, daddr|64), cmpExpr(opEq, reg1, le32(ir.AddrLocal)...)},
			err:   "invalid flags", expr: 1},
		{name: "a type never compared", fam: nlmsg.FamilyIPv4,
			exprs: []nlmsg.Expr{fibExpr(reg1, addrtype, daddr), acceptExpr},
			err:   "never compared", expr: 1, unsupported: true},
	})
}

// TestFormatFIB prints fib matches as nft lists them.
func TestFormatFIB(t *testing.T) {
	set := &ir.Set{Flags: ir.SetAnonymous | ir.SetConstant, KeyType: ir.FIBKeyType, KeyLen: 4,
		Elements: []ir.SetElement{{Low: le32(ir.AddrLocal), High: le32(ir.AddrLocal)}, {Low: le32(ir.AddrBroadcast), High: le32(ir.AddrBroadcast)}}}
	cases := []struct {
		m    *ir.Match
		want string
	}{
		{match(fibField(ir.FIBDaddr), ir.OpEq, le32(ir.AddrLocal)), "fib daddr type local"},
		{match(fibField(ir.FIBSaddr|ir.FIBIif), ir.OpNeq, le32(ir.AddrUnicast)), "fib saddr . iif type != unicast"},
		{match(fibField(ir.FIBDaddr|ir.FIBOif), ir.OpEq, le32(ir.AddrMulticast)), "fib daddr . oif type multicast"},
		{&ir.Match{Field: fibField(ir.FIBDaddr), Op: ir.OpInSet, Set: set}, "fib daddr type { local, broadcast }"},
		{&ir.Match{Field: fibField(ir.FIBDaddr), Op: ir.OpNotInSet, Set: set}, "fib daddr type != { local, broadcast }"},
	}
	for _, c := range cases {
		if got := ir.FormatStmt(ir.FamilyIPv4, c.m); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}

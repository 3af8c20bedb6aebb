package ir_test

import (
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

func ct(k ir.CTKey, dir ir.CTDir, n uint32, ts ...ir.Transform) ir.Field {
	return ir.Field{Source: ir.SourceCT, CT: k, CTDir: dir, Len: n, Transforms: ts}
}

var (
	ctState  = ct(ir.CTState, ir.CTDirNone, 4)
	ctStatus = ct(ir.CTStatus, ir.CTDirNone, 4)
	ctMark   = ct(ir.CTMark, ir.CTDirNone, 4)
)

// ctCases are the ct rule cases; they join ruleCases, so that they are
// printed (TestFormatRule) and reloaded with nft (TestFormatReloads).
var ctCases = []ruleCase{
	{name: "ct state established,related", fam: ir.FamilyInet,
		stmts: []ir.Stmt{cmp(ct(ir.CTState, ir.CTDirNone, 4, mx(le32(6), nil)), ir.OpNeq, le32(0)), accept},
		want:  "ct state established,related accept"},
	{name: "ct state invalid", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{cmp(ct(ir.CTState, ir.CTDirNone, 4, mx(le32(1), nil)), ir.OpNeq, le32(0)), drop},
		want:  "ct state invalid drop"},
	{name: "ct state new,untracked", fam: ir.FamilyIPv6,
		stmts: []ir.Stmt{cmp(ct(ir.CTState, ir.CTDirNone, 4, mx(le32(72), nil)), ir.OpNeq, le32(0))},
		want:  "ct state new,untracked"},
	{name: "ct state == established", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(ctState, le32(2))},
		want:  "ct state == established"},
	{name: "ct state != established|related", fam: ir.FamilyInet,
		stmts: []ir.Stmt{cmp(ctState, ir.OpNeq, le32(6))},
		want:  "ct state != (established | related)"},
	{name: "ct state set", fam: ir.FamilyInet,
		stmts: []ir.Stmt{lookup(ctState, ir.OpInSet, anon(4, false, el(le32(2)), el(le32(4)))), accept},
		want:  "ct state { established, related } accept"},
	{name: "ct state not established", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{eq(ct(ir.CTState, ir.CTDirNone, 4, mx(le32(2), nil)), le32(0))},
		want:  "ct state & established == 0x0"},
	{name: "ct state unknown bit", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{cmp(ct(ir.CTState, ir.CTDirNone, 4, mx(le32(0x80), nil)), ir.OpNeq, le32(0))},
		want:  "ct state & 0x80 != 0x0"},
	{name: "ct status dnat", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{cmp(ct(ir.CTStatus, ir.CTDirNone, 4, mx(le32(0x20), nil)), ir.OpNeq, le32(0))},
		want:  "ct status dnat"},
	{name: "ct status assured,confirmed", fam: ir.FamilyInet,
		stmts: []ir.Stmt{cmp(ct(ir.CTStatus, ir.CTDirNone, 4, mx(le32(0xc), nil)), ir.OpNeq, le32(0))},
		want:  "ct status assured,confirmed"},
	{name: "ct status == assured", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(ctStatus, le32(4))},
		want:  "ct status == assured"},
	{name: "ct direction reply", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(ct(ir.CTDirection, ir.CTDirNone, 1), b(1))},
		want:  "ct direction reply"},
	{name: "ct direction original", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{eq(ct(ir.CTDirection, ir.CTDirNone, 1), b(0))},
		want:  "ct direction original"},
	{name: "ct mark", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(ctMark, le32(1)), accept},
		want:  "ct mark 0x00000001 accept"},
	{name: "ct mark masked", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{eq(ct(ir.CTMark, ir.CTDirNone, 4, mx(le32(0xff), nil)), le32(2))},
		want:  "ct mark & 0x000000ff == 0x00000002"},
	{name: "ct mark !=", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{cmp(ctMark, ir.OpNeq, le32(0x10))},
		want:  "ct mark != 0x00000010"},
	{name: "ct mark set", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{lookup(ctMark, ir.OpInSet, anon(4, false, el(le32(1)), el(le32(2))))},
		want:  "ct mark { 0x00000001, 0x00000002 }"},
	{name: "ct l3proto", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(ct(ir.CTL3Proto, ir.CTDirNone, 1), b(10))},
		want:  "ct l3proto ipv6"},
	{name: "ct protocol", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(ct(ir.CTProtocol, ir.CTDirNone, 1), b(6))},
		want:  "ct protocol tcp"},
	{name: "ct protocol number", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{eq(ct(ir.CTProtocol, ir.CTDirNone, 1), b(99))},
		want:  "ct protocol 99"},
	{name: "ct original saddr ip", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{eq(ct(ir.CTSrc, ir.CTDirOriginal, 4), addr("192.0.2.1"))},
		want:  "ct original saddr 192.0.2.1"},
	{name: "ct reply daddr ip6", fam: ir.FamilyIPv6,
		stmts: []ir.Stmt{cmp(ct(ir.CTDst, ir.CTDirReply, 16), ir.OpNeq, addr("2001:db8::1"))},
		want:  "ct reply daddr != 2001:db8::1"},
	{name: "ct original ip saddr", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(ct(ir.CTSrcIP, ir.CTDirOriginal, 4), addr("192.0.2.1"))},
		want:  "ct original ip saddr 192.0.2.1"},
	{name: "ct reply ip6 daddr", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(ct(ir.CTDstIP6, ir.CTDirReply, 16), addr("2001:db8::2"))},
		want:  "ct reply ip6 daddr 2001:db8::2"},
	{name: "ct original ip saddr set", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{lookup(ct(ir.CTSrcIP, ir.CTDirOriginal, 4), ir.OpInSet, anon(4, false, el(addr("192.0.2.1")), el(addr("192.0.2.2"))))},
		want:  "ct original ip saddr { 192.0.2.1, 192.0.2.2 }"},
	{name: "ct proto-src", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{eq(ct(ir.CTProtocol, ir.CTDirNone, 1), b(6)), eq(ct(ir.CTProtoSrc, ir.CTDirOriginal, 2), be16(1024))},
		want:  "ct protocol tcp ct original proto-src 1024"},
	{name: "ct proto-dst range", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isTCP, rng(ct(ir.CTProtoDst, ir.CTDirReply, 2), ir.OpInRange, be16(1000), be16(2000))},
		want:  "meta l4proto tcp ct reply proto-dst 1000-2000", reload: accepted},
}

func init() { ruleCases = append(ruleCases, ctCases...) }

func TestStmtFields(t *testing.T) {
	f := ct(ir.CTMark, ir.CTDirNone, 4)
	g := ct(ir.CTState, ir.CTDirNone, 4)
	for _, c := range []struct {
		stmt ir.Stmt
		want int
	}{
		{eq(f, le32(1)), 1},
		{&ir.Lookup{Key: []ir.Field{f, g}}, 2},
		{&ir.VerdictMap{Key: []ir.Field{g}}, 1},
		{&ir.MetaSetMap{Meta: ir.MetaMark, Key: []ir.Field{f}}, 1},
		{accept, 0},
		{counter, 0},
	} {
		got := ir.StmtFields(c.stmt)
		if len(got) != c.want {
			t.Errorf("%T: %d fields, want %d", c.stmt, len(got), c.want)
			continue
		}
		for _, x := range got {
			if x.Source != ir.SourceCT {
				t.Errorf("%T: field %+v is not the ct field given", c.stmt, x)
			}
		}
	}
}

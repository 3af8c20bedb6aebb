package translate

import (
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

func ctLoad(key ir.CTKey, dreg uint32) *nlmsg.Ct { return &nlmsg.Ct{Key: uint32(key), DReg: dreg} }

func ctLoadDir(key ir.CTKey, dir uint8, dreg uint32) *nlmsg.Ct {
	return &nlmsg.Ct{Key: uint32(key), DReg: dreg, Direction: dir, HasDirection: true}
}

func ctField(key ir.CTKey, dir ir.CTDir, n uint32, ts ...ir.Transform) ir.Field {
	return ir.Field{Source: ir.SourceCT, CT: key, CTDir: dir, Len: n, Transforms: ts}
}

func TestLiftCT(t *testing.T) {
	mask := func(m []byte) ir.Transform {
		return ir.Transform{Kind: ir.TransformMaskXor, Len: uint32(len(m)), Mask: m, Xor: make([]byte, len(m))}
	}
	runLiftCases(t, []liftCase{
		{name: "ct state established,related accept",
			exprs: []nlmsg.Expr{ctLoad(ir.CTState, reg1), bitwise(reg1, reg1, le32(6), le32(0)), cmpExpr(opNeq, reg1, le32(0)...), acceptExpr},
			want:  []ir.Stmt{match(ctField(ir.CTState, ir.CTDirNone, 4, mask(le32(6))), ir.OpNeq, le32(0)), irAccept}},
		{name: "ct direction",
			exprs: []nlmsg.Expr{ctLoad(ir.CTDirection, reg1), cmpExpr(opEq, reg1, 1)},
			want:  []ir.Stmt{match(ctField(ir.CTDirection, ir.CTDirNone, 1), ir.OpEq, bs(1))}},
		{name: "ct status",
			exprs: []nlmsg.Expr{ctLoad(ir.CTStatus, reg1), cmpExpr(opEq, reg1, le32(4)...)},
			want:  []ir.Stmt{match(ctField(ir.CTStatus, ir.CTDirNone, 4), ir.OpEq, le32(4))}},
		{name: "ct mark",
			exprs: []nlmsg.Expr{ctLoad(ir.CTMark, reg32_00), cmpExpr(opEq, reg32_00, le32(1)...)},
			want:  []ir.Stmt{match(ctField(ir.CTMark, ir.CTDirNone, 4), ir.OpEq, le32(1))}},
		{name: "ct l3proto",
			exprs: []nlmsg.Expr{ctLoad(ir.CTL3Proto, reg1), cmpExpr(opEq, reg1, 2)},
			want:  []ir.Stmt{match(ctField(ir.CTL3Proto, ir.CTDirNone, 1), ir.OpEq, bs(2))}},
		{name: "ct protocol with an ignored direction",
			exprs: []nlmsg.Expr{ctLoadDir(ir.CTProtocol, 1, reg1), cmpExpr(opEq, reg1, 6)},
			want:  []ir.Stmt{match(ctField(ir.CTProtocol, ir.CTDirNone, 1), ir.OpEq, bs(6))}},
		{name: "ct original saddr in ip",
			fam:   nlmsg.FamilyIPv4,
			exprs: []nlmsg.Expr{ctLoadDir(ir.CTSrc, 0, reg1), cmpExpr(opEq, reg1, 192, 0, 2, 1)},
			want:  []ir.Stmt{match(ctField(ir.CTSrc, ir.CTDirOriginal, 4), ir.OpEq, bs(192, 0, 2, 1))}},
		{name: "ct reply daddr in ip6",
			fam:   nlmsg.FamilyIPv6,
			exprs: []nlmsg.Expr{ctLoadDir(ir.CTDst, 1, reg1), cmpExpr(opEq, reg1, make([]byte, 16)...)},
			want:  []ir.Stmt{match(ctField(ir.CTDst, ir.CTDirReply, 16), ir.OpEq, make([]byte, 16))}},
		{name: "ct original ip saddr",
			exprs: []nlmsg.Expr{ctLoadDir(ir.CTSrcIP, 0, reg1), cmpExpr(opEq, reg1, 192, 0, 2, 1)},
			want:  []ir.Stmt{match(ctField(ir.CTSrcIP, ir.CTDirOriginal, 4), ir.OpEq, bs(192, 0, 2, 1))}},
		{name: "ct reply ip6 daddr",
			exprs: []nlmsg.Expr{ctLoadDir(ir.CTDstIP6, 1, reg1), cmpExpr(opNeq, reg1, make([]byte, 16)...)},
			want:  []ir.Stmt{match(ctField(ir.CTDstIP6, ir.CTDirReply, 16), ir.OpNeq, make([]byte, 16))}},
		{name: "ct reply proto-dst",
			exprs: []nlmsg.Expr{ctLoadDir(ir.CTProtoDst, 1, reg1), cmpExpr(opEq, reg1, 0, 22)},
			want:  []ir.Stmt{match(ctField(ir.CTProtoDst, ir.CTDirReply, 2), ir.OpEq, be16(22))}},
		{name: "ct original proto-src",
			exprs: []nlmsg.Expr{ctLoadDir(ir.CTProtoSrc, 0, reg1), cmpExpr(opEq, reg1, 4, 0)},
			want:  []ir.Stmt{match(ctField(ir.CTProtoSrc, ir.CTDirOriginal, 2), ir.OpEq, be16(1024))}},

		// Refusals name the key.
		{name: "ct mark set",
			exprs: []nlmsg.Expr{&nlmsg.Ct{Key: uint32(ir.CTMark), SReg: reg1}},
			err:   "expression 1 (ct): unsupported: ct mark set (changing the conntrack entry) is not supported", expr: 1, unsupported: true},
		{name: "ct expiration",
			exprs: []nlmsg.Expr{ctLoad(ir.CTExpiration, reg1), cmpExpr(opEq, reg1, le32(5000)...)},
			err:   "ct expiration is not supported", expr: 1, unsupported: true},
		{name: "ct helper",
			exprs: []nlmsg.Expr{ctLoad(ir.CTHelper, reg1), cmpExpr(opEq, reg1, 'f', 't', 'p', 0)},
			err:   "ct helper is not supported", expr: 1, unsupported: true},
		{name: "ct label",
			exprs: []nlmsg.Expr{ctLoad(ir.CTLabels, reg1), cmpExpr(opEq, reg1, 1)},
			err:   "ct label is not supported", expr: 1, unsupported: true},
		{name: "ct zone",
			exprs: []nlmsg.Expr{ctLoad(ir.CTZone, reg1), cmpExpr(opEq, reg1, 1, 0)},
			err:   "ct zone is not supported", expr: 1, unsupported: true},
		{name: "ct original packets",
			exprs: []nlmsg.Expr{ctLoadDir(ir.CTPkts, 0, reg1), cmpExpr(opEq, reg1, 1)},
			err:   "ct packets is not supported", expr: 1, unsupported: true},
		{name: "ct id",
			exprs: []nlmsg.Expr{ctLoad(ir.CTID, reg1), cmpExpr(opEq, reg1, 1)},
			err:   "ct id is not supported", expr: 1, unsupported: true},
		{name: "ct secmark",
			exprs: []nlmsg.Expr{ctLoad(ir.CTSecmark, reg1), cmpExpr(opEq, reg1, 1)},
			err:   "ct secmark is not supported", expr: 1, unsupported: true},
		{name: "ct saddr in inet",
			exprs: []nlmsg.Expr{ctLoadDir(ir.CTSrc, 0, reg1), cmpExpr(opEq, reg1, 192, 0, 2, 1)},
			err:   "ct original saddr in an inet table", expr: 1, unsupported: true},
		{name: "ct in a netdev table",
			fam:   nlmsg.FamilyNetdev,
			exprs: []nlmsg.Expr{ctLoad(ir.CTState, reg1), cmpExpr(opEq, reg1, le32(2)...)},
			err:   "ct state in a netdev table is not supported", expr: 1, unsupported: true},
		{name: "ct saddr without a direction",
			fam:   nlmsg.FamilyIPv4,
			exprs: []nlmsg.Expr{ctLoad(ir.CTSrc, reg1), cmpExpr(opEq, reg1, 192, 0, 2, 1)},
			err:   "ct saddr without a direction", expr: 1, unsupported: true},
		{name: "ct state with a direction",
			exprs: []nlmsg.Expr{ctLoadDir(ir.CTState, 0, reg1), cmpExpr(opEq, reg1, le32(2)...)},
			err:   "ct state with a direction", expr: 1, unsupported: true},
		{name: "ct load never compared",
			exprs: []nlmsg.Expr{ctLoad(ir.CTMark, reg1), acceptExpr},
			err:   "never compared", expr: 1, unsupported: true},
	})
}

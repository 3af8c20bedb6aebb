package translate

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// metaLen is the register length the kernel's nft_meta_get_init gives each
// meta key this translator lifts.
var metaLen = map[ir.MetaKey]uint32{
	ir.MetaLen: 4, ir.MetaProtocol: 2, ir.MetaPriority: 4, ir.MetaMark: 4,
	ir.MetaIif: 4, ir.MetaOif: 4, ir.MetaIifName: 16, ir.MetaOifName: 16,
	ir.MetaIifType: 2, ir.MetaOifType: 2, ir.MetaSkUID: 4, ir.MetaSkGID: 4,
	ir.MetaNFTrace: 1, ir.MetaRtClassid: 4, ir.MetaSecmark: 4, ir.MetaNFProto: 1,
	ir.MetaL4Proto: 1, ir.MetaBriIifName: 16, ir.MetaBriOifName: 16, ir.MetaPktType: 1,
	ir.MetaCPU: 4, ir.MetaIifGroup: 4, ir.MetaOifGroup: 4, ir.MetaCgroup: 4, ir.MetaPRandom: 4,
}

func metaKeyName(k uint32) string { return ir.MetaName(ir.MetaKey(k)) }

func hostU32(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }

// NFTNL_UDATA_RULE_COMMENT: the comment TLV in NFTA_RULE_USERDATA.
const udataRuleComment = 0

// ruleComment extracts the comment from a rule's user data: a sequence of
// {type u8, len u8, value} records, the comment NUL-terminated.
func ruleComment(ud []byte) string {
	for len(ud) >= 2 {
		typ, n := ud[0], int(ud[1])
		if 2+n > len(ud) {
			return ""
		}
		if typ == udataRuleComment {
			return strings.TrimRight(string(ud[2:2+n]), "\x00")
		}
		ud = ud[2+n:]
	}
	return ""
}

var payloadBases = [...]string{"link", "network", "transport", "inner"}

func describeExpr(e nlmsg.Expr) string {
	switch e := e.(type) {
	case *nlmsg.Payload:
		base := fmt.Sprintf("base %d", e.Base)
		if int(e.Base) < len(payloadBases) {
			base = payloadBases[e.Base] + " header"
		}
		if e.DReg == 0 {
			return fmt.Sprintf("payload write reg %d => %db @ %s + %d", e.SReg, e.Len, base, e.Offset)
		}
		return fmt.Sprintf("payload load %db @ %s + %d => reg %d", e.Len, base, e.Offset, e.DReg)
	case *nlmsg.Meta:
		if e.DReg == 0 {
			return fmt.Sprintf("meta set %s with reg %d", ir.MetaName(ir.MetaKey(e.Key)), e.SReg)
		}
		return fmt.Sprintf("meta load %s => reg %d", ir.MetaName(ir.MetaKey(e.Key)), e.DReg)
	case *nlmsg.Cmp:
		return fmt.Sprintf("cmp %s reg %d 0x%s", [...]string{"eq", "neq", "lt", "lte", "gt", "gte", "?"}[min(e.Op, 6)], e.SReg, hex.EncodeToString(e.Data))
	case *nlmsg.Bitwise:
		return fmt.Sprintf("bitwise reg %d = op %d ( reg %d & 0x%s ) ^ 0x%s data 0x%s", e.DReg, e.Op, e.SReg,
			hex.EncodeToString(e.Mask), hex.EncodeToString(e.Xor), hex.EncodeToString(e.Data))
	case *nlmsg.Range:
		return fmt.Sprintf("range %s reg %d 0x%s 0x%s", [...]string{"eq", "neq", "?"}[min(e.Op, 2)], e.SReg,
			hex.EncodeToString(e.FromData), hex.EncodeToString(e.ToData))
	case *nlmsg.Lookup:
		s := fmt.Sprintf("lookup reg %d set %s", e.SReg, e.Set)
		if e.HasDReg {
			s += fmt.Sprintf(" dreg %d", e.DReg)
		}
		if e.Flags != 0 {
			s += fmt.Sprintf(" 0x%x", e.Flags)
		}
		return s
	case *nlmsg.Immediate:
		if e.Verdict != nil {
			return fmt.Sprintf("immediate reg %d %s", e.DReg, describeVerdict(e.Verdict))
		}
		return fmt.Sprintf("immediate reg %d 0x%s", e.DReg, hex.EncodeToString(e.Data))
	case *nlmsg.Counter:
		return fmt.Sprintf("counter pkts %d bytes %d", e.Packets, e.Bytes)
	case *nlmsg.Byteorder:
		op := "ntoh"
		if e.Op == byteorderHton {
			op = "hton"
		}
		return fmt.Sprintf("byteorder reg %d = %s(reg %d, %d, %d)", e.DReg, op, e.SReg, e.Size, e.Len)
	case *nlmsg.Ct:
		return fmt.Sprintf("ct key %d dreg %d sreg %d", e.Key, e.DReg, e.SReg)
	case *nlmsg.Opaque:
		return fmt.Sprintf("%s (%d bytes of attributes)", e.Name, len(e.Data))
	}
	return e.Kind()
}

func describeVerdict(v *nlmsg.Verdict) string {
	switch v.Code {
	case nlmsg.VerdictAccept:
		return "accept"
	case nlmsg.VerdictDrop:
		return "drop"
	case nlmsg.VerdictContinue:
		return "continue"
	case nlmsg.VerdictReturn:
		return "return"
	case nlmsg.VerdictJump:
		return "jump " + v.Chain
	case nlmsg.VerdictGoto:
		return "goto " + v.Chain
	}
	return fmt.Sprintf("verdict %d", v.Code)
}

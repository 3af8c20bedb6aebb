package translate

import (
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// ctLifted lists the ct keys the translator lifts; every other key is
// refused by name.
var ctLifted = map[ir.CTKey]bool{
	ir.CTState: true, ir.CTDirection: true, ir.CTStatus: true, ir.CTMark: true,
	ir.CTL3Proto: true, ir.CTProtocol: true, ir.CTSrc: true, ir.CTDst: true,
	ir.CTProtoSrc: true, ir.CTProtoDst: true, ir.CTSrcIP: true, ir.CTDstIP: true,
	ir.CTSrcIP6: true, ir.CTDstIP6: true,
}

// ctName names a ct expression as nft writes it, with its direction.
func ctName(e *nlmsg.Ct) string {
	name := ir.CTName(ir.CTKey(e.Key))
	if e.HasDirection && ir.CTTakesDirection(ir.CTKey(e.Key)) {
		name = ir.CTDir(e.Direction+1).String() + " " + name
	}
	return "ct " + name
}

// ct lifts a ct get expression (nft_ct_get_eval) into a SourceCT load.
func (l *ruleLifter) ct(e *nlmsg.Ct) error {
	key := ir.CTKey(e.Key)
	if e.DReg == 0 {
		return unsupported("%s set (changing the conntrack entry) is not supported", ctName(e))
	}
	switch l.family {
	case ir.FamilyIPv4, ir.FamilyIPv6, ir.FamilyInet:
	default:
		// nf_ct_netns_get fails for the other families on this kernel
		// (EPROTO for netdev), so the kernel itself refuses such a rule.
		return unsupported("%s in a %s table is not supported: connection tracking serves ip, ip6 and inet tables", ctName(e), l.family)
	}
	if !ctLifted[key] {
		return unsupported("%s is not supported", ctName(e))
	}
	dir := ir.CTDirNone
	switch {
	case ir.CTTakesDirection(key):
		if !e.HasDirection {
			return unsupported("%s without a direction (the kernel requires one)", ctName(e))
		}
		if e.Direction > 1 {
			return unsupported("%s with direction %d", ctName(e), e.Direction)
		}
		dir = ir.CTDir(e.Direction + 1)
	case key == ir.CTL3Proto || key == ir.CTProtocol:
		// The kernel accepts a direction here for compatibility and
		// ignores it: both tuples carry the same protocols.
	case e.HasDirection:
		return unsupported("%s with a direction (the kernel refuses one)", ctName(e))
	}
	n, _ := ir.CTLen(key, l.family)
	if (key == ir.CTSrc || key == ir.CTDst) && l.family == ir.FamilyInet {
		// The register is 16 bytes, and the kernel writes only 4 of them
		// for an IPv4 entry: the rest is whatever the register held.
		return unsupported("%s in an inet table (16-byte register, partly unwritten for IPv4 entries); use ct %s ip %s or ip6 %s",
			ctName(e), dir, ir.CTName(key), ir.CTName(key))
	}
	return l.load(e.DReg, ir.Field{Source: ir.SourceCT, CT: key, CTDir: dir, Len: n})
}

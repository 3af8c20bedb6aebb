package translate

import (
	"fmt"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// Attributes and results of the fib expression (linux/netfilter/nf_tables.h).
const (
	nftaFibDreg   = 1
	nftaFibResult = 2
	nftaFibFlags  = 3

	nftFibResultOif      = 1
	nftFibResultOifname  = 2
	nftFibResultAddrtype = 3
)

// fibResultNames are nft's words for the fib results.
var fibResultNames = map[uint32]string{nftFibResultOif: "oif", nftFibResultOifname: "oifname", nftFibResultAddrtype: "type"}

// fib lifts a fib expression. Only the address type (fib saddr|daddr
// [. iif|. oif] type, NFT_FIB_RESULT_ADDRTYPE, which nft_fib4_eval_type
// answers with inet_dev_addr_type) is lifted, into a SourceFIB load; the
// route lookups (oif, oifname) are refused. The flags are checked as
// nft_fib_init checks them, so a rule the kernel would refuse is refused.
func (l *ruleLifter) fib(e *nlmsg.Opaque) error {
	a, err := exprAttrs(e.Data)
	if err != nil {
		return fmt.Errorf("fib: %w", err)
	}
	dreg, okD, err1 := attrBE32(a, nftaFibDreg, "NFTA_FIB_DREG")
	result, okR, err2 := attrBE32(a, nftaFibResult, "NFTA_FIB_RESULT")
	flags, okF, err3 := attrBE32(a, nftaFibFlags, "NFTA_FIB_FLAGS")
	for _, e := range []error{err1, err2, err3} {
		if e != nil {
			return fmt.Errorf("fib: %w", e)
		}
	}
	if !okD || !okR || !okF {
		return fmt.Errorf("fib: missing register, result or flags")
	}
	f := ir.FIBFlags(flags)
	switch {
	case f == 0 || f&^ir.FIBAll != 0:
		return fmt.Errorf("fib: invalid flags %#x", flags)
	case f&(ir.FIBSaddr|ir.FIBDaddr) == ir.FIBSaddr|ir.FIBDaddr, f&(ir.FIBSaddr|ir.FIBDaddr) == 0:
		return fmt.Errorf("fib: flags %#x name not exactly one of saddr and daddr", flags)
	case f&(ir.FIBIif|ir.FIBOif) == ir.FIBIif|ir.FIBOif:
		return fmt.Errorf("fib: flags %#x name both iif and oif", flags)
	}
	if result != nftFibResultAddrtype {
		name := fibResultNames[result]
		if name == "" {
			return fmt.Errorf("fib: unknown result %d", result)
		}
		return unsupported("fib %s is not supported: it is a route lookup (fib_lookup with the packet's flow: "+
			"policy rules, marks, multipath selection) that a BPF program cannot repeat exactly; only fib … type is supported", name)
	}
	switch l.family {
	case ir.FamilyIPv4, ir.FamilyInet, ir.FamilyNetdev:
	case ir.FamilyIPv6:
		return unsupported("fib … type in an ip6 table is not supported: the IPv6 address type (nft_fib6_eval_type: ipv6_chk_addr and rt6 lookups) is not implemented, only the IPv4 one")
	default:
		return unsupported("fib in a %s table (the kernel has fib for ip, ip6, inet and netdev tables)", l.family)
	}
	return l.load(dreg, ir.Field{Source: ir.SourceFIB, FIB: f, Len: 4})
}

package codegen

import (
	"net"
	"net/netip"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/pktgen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// xh is a Field of routing header bytes read in mode.
func xh(mode ir.ExthdrMode, off, n uint32) ir.Field {
	return ir.Field{Source: ir.SourceExthdr, Exthdr: ir.NextHdrRouting, ExthdrMode: mode, Offset: off, Len: n}
}

// TestExthdrVerdicts runs routing header rules in each mode on every IP
// program type (the verifier must take the header walk everywhere) with
// BPF_PROG_TEST_RUN; the kernel comparison is difftest.TestExthdrRulesets
// and iptables' TestRTDifferential.
func TestExthdrVerdicts(t *testing.T) {
	src, dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	udp := []byte{0x0f, 0xa0, 0, 9, 0, 8, 0, 0}
	rt := func(typ, segs uint8) pktgen.ExtHdr {
		return pktgen.ExtHdr{Proto: 43, Bytes: []byte{0, 0, typ, segs, 0, 0, 0, 0}}
	}
	hbh := pktgen.ExtHdr{Proto: 0, Bytes: []byte{0, 0, 1, 4, 0, 0, 0, 0}}
	frame := func(hdrs ...pktgen.ExtHdr) []byte { return pktgen.IPv6Frame(mac, mac, src, dst, hdrs, 17, udp) }
	cut := pktgen.IPv6Frame(mac, mac, src, dst, []pktgen.ExtHdr{{Proto: 43, Bytes: []byte{0, 0, 0}}}, 0, nil)
	long := pktgen.IPv6Frame(mac, mac, src, dst, []pktgen.ExtHdr{{Proto: 43, Bytes: []byte{0, 2, 0, 1, 0, 0, 0, 0}}}, 0, nil)
	drop, accept := ir.VerdictDrop, ir.VerdictAccept
	runVerdictCases(t, []verdictCase{
		{name: "rt type 0 drop", pf: ir.FamilyIPv6, only: []string{"nf-", "cgroup-"},
			rules: []*ir.Rule{rule(eq(xh(ir.ExthdrLoad, 2, 1), b(0)), &ir.Verdict{Kind: drop})},
			pkts: []pkt{
				{name: "no routing header", frame: frame(), want: accept},
				{name: "type 0", frame: frame(rt(0, 1)), want: drop},
				{name: "type 0 behind hop-by-hop", frame: frame(hbh, rt(0, 1)), want: drop},
				{name: "type 2", frame: frame(rt(2, 1)), want: accept},
				{name: "cut short (breaks)", frame: cut, want: accept},
				{name: "longer than the packet (loads)", frame: long, want: drop},
			}},
		{name: "exthdr rt missing drop", pf: ir.FamilyIPv6, only: []string{"nf-", "cgroup-"},
			rules: []*ir.Rule{rule(eq(xh(ir.ExthdrPresent, 0, 1), b(0)), &ir.Verdict{Kind: drop})},
			pkts: []pkt{
				{name: "no routing header", frame: frame(), want: drop},
				{name: "type 2", frame: frame(rt(2, 0)), want: accept},
				{name: "cut short (missing)", frame: cut, want: drop},
			}},
		{name: "xt rt type 0 accept", pf: ir.FamilyIPv6, only: []string{"nf-", "cgroup-"},
			rules: []*ir.Rule{rule(eq(xh(ir.ExthdrXT, 2, 1), b(0)), &ir.Verdict{Kind: accept})}, pol: drop,
			pkts: []pkt{
				{name: "no routing header", frame: frame(), want: drop},
				{name: "type 0", frame: frame(rt(0, 3)), want: accept},
				{name: "cut short (hotdrop)", frame: cut, want: drop},
				{name: "longer than the packet (hotdrop)", frame: long, want: drop},
			}},
		{name: "xt rt hotdrop under accept policy", pf: ir.FamilyIPv6, only: []string{"nf-", "cgroup-"},
			rules: []*ir.Rule{rule(eq(xh(ir.ExthdrXT, 2, 1), b(7)), &ir.Verdict{Kind: drop})},
			pkts: []pkt{
				{name: "type 0 (no match)", frame: frame(rt(0, 3)), want: accept},
				{name: "cut short (hotdrop)", frame: cut, want: drop},
				{name: "longer than the packet (hotdrop)", frame: long, want: drop},
			}},
	})
}

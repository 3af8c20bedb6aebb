package codegen

import (
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// pkt is one test packet with the verdict nf_tables gives it.
type pkt struct {
	name  string
	frame []byte
	want  ir.VerdictKind
	// only limits the packet to flavours whose name has this prefix.
	only string
	// wantFor overrides want per flavour name prefix.
	wantFor map[string]ir.VerdictKind
}

type verdictCase struct {
	name  string
	pf    ir.Family // packet family; selects ipFlavours
	only  []string  // flavour name prefixes; empty means all
	dev   *Device
	rules []*ir.Rule
	user  []*ir.Chain
	pol   ir.VerdictKind
	pkts  []pkt
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

func (c verdictCase) flavours() []flavour {
	pf := c.pf
	if pf == 0 {
		pf = ir.FamilyIPv4
	}
	var out []flavour
	for _, fl := range allFlavours(pf) {
		if len(c.only) == 0 {
			out = append(out, fl)
			continue
		}
		for _, p := range c.only {
			if hasPrefix(fl.name, p) {
				out = append(out, fl)
				break
			}
		}
	}
	return out
}

func runVerdictCases(t *testing.T, cases []verdictCase) {
	privileged(t)
	for _, tc := range cases {
		for _, fl := range tc.flavours() {
			t.Run(tc.name+"/"+fl.name, func(t *testing.T) {
				fl.tgt.Device = tc.dev
				pol := tc.pol
				if pol == 0 {
					pol = ir.VerdictAccept
				}
				tab, c := table(fl.fam, fl.hook, pol, tc.rules, tc.user...)
				l := loadFlavour(t, fl, tab, c)
				for _, p := range tc.pkts {
					if p.only != "" && !hasPrefix(fl.name, p.only) {
						continue
					}
					want := p.want
					for pre, w := range p.wantFor {
						if hasPrefix(fl.name, pre) {
							want = w
						}
					}
					t.Logf("packet %s", p.name)
					if got := run(t, fl, l, p.frame); got != want {
						t.Errorf("%s: got %s, want %s", p.name, vname(got), vname(want))
					}
				}
			})
		}
	}
}

const (
	A = ir.VerdictAccept
	D = ir.VerdictDrop
)

func TestPayloadVerdicts(t *testing.T) {
	optsV4 := eth(0x0800, v4{proto: protoTCP, opts: []byte{1, 1, 1, 0}}.build(tcp(1, 22, 2)))
	frag1V4 := eth(0x0800, v4{proto: protoTCP, frag: 0x2000}.build(tcp(1, 22, 2)))
	fragNV4 := eth(0x0800, v4{proto: protoTCP, frag: 0x0003}.build(tcp(1, 22, 2)))
	whole1to22 := eth(0x0800, v4{proto: protoTCP}.build(tcp(1, 22, 2)))
	hbh := eth(0x86dd, v6{nexthdr: 0, ext: [][]byte{ext6(43, 0), append(ext6(60, 0)[:2], 0, 0, 0, 0, 0, 0), ext6(protoTCP, 1)}}.build(tcp(1, 22, 2)))
	frag6First := eth(0x86dd, v6{nexthdr: 44, ext: [][]byte{frag6(protoTCP, 0, true)}}.build(tcp(1, 22, 2)))
	frag6Next := eth(0x86dd, v6{nexthdr: 44, ext: [][]byte{frag6(protoTCP, 8, false)}}.build(tcp(1, 22, 2)))
	frag6NextExt := eth(0x86dd, v6{nexthdr: 44, ext: [][]byte{frag6(60, 8, false)}}.build(ext6(protoTCP, 0)))
	ah6 := eth(0x86dd, v6{nexthdr: 51, ext: [][]byte{{protoTCP, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}}.build(tcp(1, 22, 2)))
	cases := []verdictCase{
		{name: "ip saddr", rules: []*ir.Rule{rule(eq(nh(12, 4), srcV4), drop)}, pkts: []pkt{
			{name: "hit", frame: tcp4(1), want: D},
			{name: "miss", frame: eth(0x0800, v4{proto: protoTCP, src: ip4(203, 0, 113, 9)}.build(tcp(1, 2, 2))), want: A},
		}},
		{name: "ip6 daddr", pf: ir.FamilyIPv6, rules: []*ir.Rule{rule(eq(nh(24, 16), dstV6), drop)}, pkts: []pkt{
			{name: "hit", frame: tcp6(1), want: D},
			{name: "miss", frame: eth(0x86dd, v6{nexthdr: protoTCP, dst: srcV6}.build(tcp(1, 2, 2))), want: A},
		}},
		{name: "ip saddr/24 mask", rules: []*ir.Rule{rule(eq(nh(12, 4, mask(b(255, 255, 255, 0), b(0, 0, 0, 0))), ip4(192, 0, 2, 0)), drop)}, pkts: []pkt{
			{name: "hit", frame: eth(0x0800, v4{proto: protoUDP, src: ip4(192, 0, 2, 77)}.build(udp(1, 2, nil))), want: D},
			{name: "miss", frame: eth(0x0800, v4{proto: protoUDP, src: ip4(192, 0, 3, 77)}.build(udp(1, 2, nil))), want: A},
		}},
		{name: "tcp dport", rules: []*ir.Rule{rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), eq(th(2, 2), u16(22)), drop)}, pkts: []pkt{
			{name: "hit", frame: tcp4(22), want: D},
			{name: "miss", frame: tcp4(23), want: A},
			{name: "udp", frame: udp4(22), want: A},
			{name: "ipv4 options", frame: optsV4, want: D},
			{name: "first fragment", frame: frag1V4, want: D},
			// nft_payload_fast_eval reads a linear non-first fragment's
			// payload at thoff without looking at fragoff.
			{name: "non-first fragment", frame: fragNV4, want: D},
		}},
		{name: "tcp dport unaligned", rules: []*ir.Rule{rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), eq(th(1, 2), b(1, 0)), drop)}, pkts: []pkt{
			{name: "hit", frame: whole1to22, want: D},
			{name: "non-first fragment", frame: fragNV4, want: A}, // nft_payload_eval breaks on fragoff
		}},
		{name: "tcp ports as 8 bytes", rules: []*ir.Rule{rule(eq(th(0, 8), b(0, 1, 0, 22, 0, 0, 3, 0xe8)), drop)}, pkts: []pkt{
			{name: "hit", frame: whole1to22, want: D},
			{name: "non-first fragment", frame: fragNV4, want: A},
		}},
		{name: "non-first fragment past the end", rules: []*ir.Rule{rule(cmp(th(36, 4), ir.OpNeq, u32be(1)), drop)}, pkts: []pkt{
			{name: "short", frame: fragNV4, want: A},
			{name: "long", frame: eth(0x0800, v4{proto: protoTCP, frag: 0x0003}.build(append(tcp(1, 22, 2), make([]byte, 20)...))), want: D},
		}},
		{name: "l4proto of fragment", rules: []*ir.Rule{rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), drop)}, pkts: []pkt{
			{name: "non-first fragment", frame: fragNV4, want: D},
		}},
		{name: "ip6 tcp dport", pf: ir.FamilyIPv6, rules: []*ir.Rule{rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), eq(th(2, 2), u16(22)), drop)}, pkts: []pkt{
			{name: "plain", frame: tcp6(22), want: D},
			{name: "miss", frame: tcp6(80), want: A},
			{name: "hbh+rt+dst", frame: hbh, want: D},
			{name: "first fragment", frame: frag6First, want: D},
			{name: "non-first fragment", frame: frag6Next, want: A},
		}},
		{name: "ip6 l4proto", pf: ir.FamilyIPv6, rules: []*ir.Rule{rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), drop), rule(eq(meta(ir.MetaL4Proto), b(51)), accept)}, pol: D, pkts: []pkt{
			{name: "non-first fragment", frame: frag6Next, want: D},
			{name: "ext after non-first fragment", frame: frag6NextExt, want: D},
			{name: "ah", frame: ah6, want: A},
		}},
		{name: "ip6 nexthdr payload", pf: ir.FamilyIPv6, rules: []*ir.Rule{rule(eq(nh(6, 1), b(0)), drop)}, pkts: []pkt{
			{name: "hbh", frame: hbh, want: D},
			{name: "tcp", frame: tcp6(1), want: A},
		}},
		{name: "tcp flags", rules: []*ir.Rule{rule(eq(th(13, 1, mask(b(0x12), b(0))), b(0x02)), drop)}, pkts: []pkt{
			{name: "syn", frame: tcp4(1), want: D},
			{name: "synack", frame: eth(0x0800, v4{proto: protoTCP}.build(tcp(1, 2, 0x12))), want: A},
		}},
		{name: "icmp type", rules: []*ir.Rule{rule(eq(meta(ir.MetaL4Proto), b(protoICMP)), eq(th(0, 1), b(8)), drop)}, pkts: []pkt{
			{name: "echo", frame: eth(0x0800, v4{proto: protoICMP}.build(icmp(8, 0, 7))), want: D},
			{name: "reply", frame: eth(0x0800, v4{proto: protoICMP}.build(icmp(0, 0, 7))), want: A},
		}},
		{name: "load beyond packet", rules: []*ir.Rule{rule(cmp(th(30, 4), ir.OpNeq, u32be(1)), drop)}, pkts: []pkt{
			{name: "short", frame: tcp4(1), want: A},
			{name: "long enough", frame: eth(0x0800, v4{proto: protoTCP}.build(append(tcp(1, 2, 2), make([]byte, 20)...))), want: D},
		}},
	}
	runVerdictCases(t, cases)
}

func TestMalformedNetdev(t *testing.T) {
	badIHL := eth(0x0800, v4{proto: protoTCP, ihl: 4}.build(tcp(1, 22, 2)))
	longTot := eth(0x0800, v4{proto: protoTCP, totLen: 200}.build(tcp(1, 22, 2)))
	shortTot := eth(0x0800, v4{proto: protoTCP, totLen: 16}.build(tcp(1, 22, 2)))
	short := eth(0x0800, v4{proto: protoTCP}.build(nil)[:12])
	badVer := eth(0x0800, v4{proto: protoTCP, version: 6}.build(tcp(1, 22, 2)))
	longV6 := eth(0x86dd, v6{nexthdr: protoTCP, plen: 100}.build(tcp(1, 22, 2)))
	truncExt := eth(0x86dd, v6{nexthdr: 0}.build([]byte{6}))
	cases := []verdictCase{
		{name: "l4 of malformed", only: []string{"xdp", "tc"}, rules: []*ir.Rule{
			rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), drop),
			rule(eq(nh(0, 1, mask(b(0xf0), b(0))), b(0x40)), accept),
		}, pol: D, pkts: []pkt{
			{name: "good", frame: tcp4(22), want: D},
			{name: "bad ihl", frame: badIHL, want: A},
			{name: "tot_len beyond packet", frame: longTot, want: A},
			{name: "tot_len below header", frame: shortTot, want: A},
			{name: "short header", frame: short, want: A, only: "xdp"}, // skb test_run refuses IP packets shorter than a header
			{name: "bad version", frame: badVer, want: D},
			{name: "v6 payload_len beyond packet", frame: longV6, want: D},
			{name: "v6 truncated ext", frame: truncExt, want: D},
		}},
	}
	// bad version: nh byte is 0x65 → second rule misses → policy drop.
	runVerdictCases(t, cases)
}

func TestVLANAtXDP(t *testing.T) {
	tagged := eth(0x0800, v4{proto: protoTCP}.build(tcp(1, 22, 2)), 5)
	cases := []verdictCase{
		{name: "vlan id", only: []string{"xdp"}, rules: []*ir.Rule{
			rule(eq(ll(12, 2), u16(0x8100)), eq(ll(14, 2, mask(b(0x0f, 0xff), b(0, 0))), u16(5)), eq(ll(16, 2), u16(0x0800)), counter, contin),
			rule(eq(meta(ir.MetaProtocol), u16(0x0800)), eq(nh(12, 4), srcV4), eq(th(2, 2), u16(22)), drop),
		}, pkts: []pkt{
			{name: "tagged", frame: tagged, want: D},
			{name: "other port", frame: eth(0x0800, v4{proto: protoTCP}.build(tcp(1, 23, 2)), 5), want: A},
		}},
	}
	runVerdictCases(t, cases)
}

func TestOpsVerdicts(t *testing.T) {
	dport := th(2, 2)
	mk := func(op ir.Op, v uint16) []*ir.Rule { return []*ir.Rule{rule(cmp(dport, op, u16(v)), drop)} }
	p := func(port uint16, want ir.VerdictKind) pkt {
		return pkt{name: "port " + string(rune('0'+port%10)), frame: tcp4(port), want: want}
	}
	cases := []verdictCase{
		{name: "neq", rules: mk(ir.OpNeq, 22), pkts: []pkt{p(22, A), p(23, D)}},
		{name: "lt", rules: mk(ir.OpLt, 0x0100), pkts: []pkt{p(0x00ff, D), p(0x0100, A), p(0x0101, A)}},
		{name: "lte", rules: mk(ir.OpLte, 0x0100), pkts: []pkt{p(0x00ff, D), p(0x0100, D), p(0x0101, A)}},
		{name: "gt", rules: mk(ir.OpGt, 0x0100), pkts: []pkt{p(0x00ff, A), p(0x0100, A), p(0x0200, D)}},
		{name: "gte", rules: mk(ir.OpGte, 0x0100), pkts: []pkt{p(0x00ff, A), p(0x0100, D), p(0x0200, D)}},
		{name: "range", rules: []*ir.Rule{rule(rng(dport, false, u16(1000), u16(2000)), drop)}, pkts: []pkt{p(999, A), p(1000, D), p(2000, D), p(2001, A)}},
		{name: "not range", rules: []*ir.Rule{rule(rng(dport, true, u16(1000), u16(2000)), drop)}, pkts: []pkt{p(999, D), p(1500, A), p(2001, D)}},
		{name: "set", rules: []*ir.Rule{rule(inSet(dport, false, 2, el(u16(22)), elr(u16(8000), u16(8080))), drop)}, pkts: []pkt{p(22, D), p(23, A), p(8000, D), p(8050, D), p(8081, A)}},
		{name: "not set", rules: []*ir.Rule{rule(inSet(dport, true, 2, el(u16(22)), el(u16(80))), drop)}, pkts: []pkt{p(22, A), p(80, A), p(443, D)}},
		{name: "ip saddr range 32bit", rules: []*ir.Rule{rule(rng(nh(12, 4), false, ip4(192, 0, 2, 0), ip4(200, 0, 0, 0)), drop)}, pkts: []pkt{
			{name: "in", frame: tcp4(1), want: D},
			{name: "above", frame: eth(0x0800, v4{proto: protoTCP, src: ip4(203, 0, 113, 1)}.build(tcp(1, 2, 2))), want: A},
		}},
		{name: "ip6 saddr lt", pf: ir.FamilyIPv6, rules: []*ir.Rule{rule(cmp(nh(8, 16), ir.OpLt, dstV6), drop)}, pkts: []pkt{
			{name: "lower", frame: tcp6(1), want: D},
			{name: "equal", frame: eth(0x86dd, v6{nexthdr: protoTCP, src: dstV6}.build(tcp(1, 2, 2))), want: A},
		}},
		{name: "byteorder ntoh and host compare", rules: []*ir.Rule{rule(cmp(th(2, 2, ir.Transform{Kind: ir.TransformNtoh, Len: 2, Size: 2}), ir.OpEq, []byte{22, 0}), drop)}, pkts: []pkt{p(22, D), p(23, A)}},
	}
	runVerdictCases(t, cases)
}

func shl(n, s uint32) ir.Transform {
	return ir.Transform{Kind: ir.TransformShiftLeft, Len: n, Shift: s}
}
func shr(n, s uint32) ir.Transform {
	return ir.Transform{Kind: ir.TransformShiftRight, Len: n, Shift: s}
}

// TestShiftVerdicts checks nft_bitwise shifts with values worked out by
// hand from nft_bitwise_eval_lshift/_rshift (TestShiftMatchesKernel
// compares many more against the kernel itself).
func TestShiftVerdicts(t *testing.T) {
	tos4 := func(tos byte) []byte { return eth(0x0800, v4{proto: protoTCP, tos: tos}.build(tcp(1, 22, 2))) }
	tc6 := func(tc uint32) []byte { return eth(0x86dd, v6{nexthdr: protoTCP, flow: tc << 20}.build(tcp(1, 22, 2))) }
	// What nft 1.0.6 emits for the first field of "ip dscp . tcp dport
	// { 46 . 22 }": payload load 1b @ network header + 1; bitwise & 0xfc;
	// bitwise >> 2; the set key's first word is 0x0000002e. The byte sits
	// in the low bits of the host-order word, so 0xb8 >> 2 = 0x2e.
	ipDSCP := nh(1, 1, mask(b(0xfc), b(0)), shr(1, 2))
	// And for "ip6 dscp . tcp dport { 46 . 22 }": payload load 2b @ network
	// header + 0; bitwise & 0x0000c00f; bitwise >> 6; key word 0x00002e00
	// (bytes 00 2e 00 00). On a little-endian host the loaded bytes
	// 6b 80 are the word 0x806b, masked 0x800b, shifted 0x0200: bytes
	// 00 02 00 00. The key nft computed never matches; the kernel's
	// result does, for dscp 46 and, as the nibbles are mixed up, dscp 14.
	ip6DSCP := nh(0, 2, mask(b(0x0f, 0xc0), b(0, 0)), shr(2, 6))
	// Two words, saddr.daddr of tcp4 frames: c0 00 02 01 c6 33 64 02 are
	// the host-order words w0 = 0x010200c0, w1 = 0x026433c6.
	//  << 8: w1 = 0x6433c600, carrying the bits shifted out of it,
	//        0x026433c6 >> 24 = 0x02, into w0 = 0x0200c000 | 0x02.
	//        Bytes 02 c0 00 02 00 c6 33 64. (Kernels that took the carry
	//        from the word just written had 0x6433c600 >> 24 = 0x64.)
	//  >> 8: w0 = 0x00010200, carrying 0x010200c0 << 24 = 0xc0000000 into
	//        w1 = 0xc0026433. Bytes 00 02 01 00 33 64 02 c0. (The new w0
	//        would carry 0.)
	cases := []verdictCase{
		{name: "ip dscp as nft emits it", rules: []*ir.Rule{rule(eq(ipDSCP, b(46, 0, 0, 0)), drop)}, pkts: []pkt{
			{name: "dscp 46", frame: tos4(0xb8), want: D},
			{name: "dscp 46 ecn 1", frame: tos4(0xb9), want: D},
			{name: "dscp 10", frame: tos4(0x28), want: A},
		}},
		{name: "ip6 dscp as nft emits it", pf: ir.FamilyIPv6, rules: []*ir.Rule{rule(eq(ip6DSCP, b(0, 0x2e, 0, 0)), drop)}, pkts: []pkt{
			{name: "dscp 46", frame: tc6(0xb8), want: A},
		}},
		{name: "ip6 dscp kernel result", pf: ir.FamilyIPv6, rules: []*ir.Rule{rule(eq(ip6DSCP, b(0, 2, 0, 0)), drop)}, pkts: []pkt{
			{name: "dscp 46", frame: tc6(0xb8), want: D},
			{name: "dscp 14", frame: tc6(0x38), want: D},
			{name: "dscp 44", frame: tc6(0xb0), want: A},
			{name: "dscp 47", frame: tc6(0xbc), want: A},
		}},
		{name: "one word", rules: []*ir.Rule{rule(eq(nh(0, 4, shr(4, 4)), b(0x04, 0x00, 0x80, 0x02)), drop)}, pkts: []pkt{
			// 45 00 00 28 is 0x28000045; >> 4 is 0x02800004.
			{name: "tot_len 40", frame: tcp4(22), want: D},
			{name: "tot_len 41", frame: eth(0x0800, v4{proto: protoTCP}.build(append(tcp(1, 22, 2), 0))), want: A},
		}},
		{name: "one word by zero", rules: []*ir.Rule{rule(eq(nh(9, 1, shl(1, 0)), b(protoTCP)), drop)}, pkts: []pkt{
			{name: "tcp", frame: tcp4(22), want: D},
			{name: "udp", frame: udp4(22), want: A},
		}},
		{name: "left carry from the old word", rules: []*ir.Rule{rule(eq(nh(12, 8, shl(8, 8)), b(0x02, 0xc0, 0, 2, 0, 0xc6, 0x33, 0x64)), drop)}, pkts: []pkt{
			{name: "hit", frame: tcp4(22), want: D},
			{name: "other daddr", frame: eth(0x0800, v4{proto: protoTCP, dst: ip4(203, 0, 113, 2)}.build(tcp(1, 22, 2))), want: A},
		}},
		{name: "left carry from the new word", rules: []*ir.Rule{rule(eq(nh(12, 8, shl(8, 8)), b(0x64, 0xc0, 0, 2, 0, 0xc6, 0x33, 0x64)), drop)}, pkts: []pkt{
			{name: "miss", frame: tcp4(22), want: A},
		}},
		{name: "right carry from the old word", rules: []*ir.Rule{rule(eq(nh(12, 8, shr(8, 8)), b(0, 2, 1, 0, 0x33, 0x64, 2, 0xc0)), drop)}, pkts: []pkt{
			{name: "hit", frame: tcp4(22), want: D},
		}},
		{name: "right carry from the new word", rules: []*ir.Rule{rule(eq(nh(12, 8, shr(8, 8)), b(0, 2, 1, 0, 0x33, 0x64, 2, 0)), drop)}, pkts: []pkt{
			{name: "miss", frame: tcp4(22), want: A},
		}},
	}
	runVerdictCases(t, cases)
}

func TestChainsVerdicts(t *testing.T) {
	user := &ir.Chain{Name: "u", Rules: []*ir.Rule{
		rule(eq(th(2, 2), u16(22)), accept),
		rule(eq(th(2, 2), u16(23)), ret),
		rule(eq(th(2, 2), u16(24)), gotoV("v")),
		rule(eq(th(2, 2), u16(25)), drop),
	}}
	v := &ir.Chain{Name: "v", Rules: []*ir.Rule{
		rule(eq(th(2, 2), u16(24)), ret),
	}}
	cases := []verdictCase{
		{name: "jump/return/goto", pol: D, user: []*ir.Chain{user, v}, rules: []*ir.Rule{
			rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), jump("u")),
			rule(eq(th(2, 2), u16(23)), accept),
			rule(eq(th(2, 2), u16(26)), accept),
		}, pkts: []pkt{
			{name: "accept in user chain", frame: tcp4(22), want: A},
			{name: "return then accept", frame: tcp4(23), want: A},
			{name: "goto returns to base caller's next rule", frame: tcp4(24), want: D},
			{name: "drop in user chain", frame: tcp4(25), want: D},
			{name: "fall through user chain", frame: tcp4(26), want: A},
			{name: "policy", frame: tcp4(27), want: D},
		}},
		{name: "base return is policy", pol: D, rules: []*ir.Rule{rule(ret), rule(accept)}, pkts: []pkt{{name: "any", frame: tcp4(1), want: D}}},
		{name: "continue", rules: []*ir.Rule{rule(contin), rule(drop)}, pkts: []pkt{{name: "any", frame: tcp4(1), want: D}}},
		{name: "goto from base", user: []*ir.Chain{v}, rules: []*ir.Rule{rule(gotoV("v")), rule(drop)}, pkts: []pkt{
			{name: "returns to policy", frame: tcp4(24), want: A},
			{name: "ends to policy", frame: tcp4(1), want: A},
		}},
	}
	runVerdictCases(t, cases)
}

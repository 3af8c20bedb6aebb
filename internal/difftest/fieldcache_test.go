package difftest

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pktgen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// cacheRules are straight-line rules on the fields the field cache holds
// (codegen/fieldcache.go): network and transport header fields of every
// length and alignment, raw transport loads (which break on non-first
// fragments unless nf_tables' fast path reads them), masked fields,
// prefixes, ranges and inequalities, link-layer addresses and pktinfo
// meta keys, each compared by several rules with accept and drop in turn,
// so that a wrong load bit or a stale cached value changes a verdict.
// Constants include those of the crafted frames (cacheFrames).
var cacheRules = []string{
	"meta l4proto != %d meta length > 60 ip saddr 192.0.2.7",
	"ip saddr 192.0.2.%d",
	"ip daddr 198.51.100.0/%d",
	"ip ttl < %d",
	"ip length > %d",
	"ip frag-off & 0x1fff != %d ip saddr 192.0.2.7",
	"tcp dport %d",
	"tcp dport %d-2000",
	"udp sport != %d udp dport 5000",
	"@th,0,16 %d",
	"@th,16,16 %d",
	"@th,32,32 %d",
	"@th,16,32 %d",
	"icmp type %d",
	"ip6 saddr 2001:db8::%x",
	"ip6 daddr 2001:db8:%x::/48",
	"ip6 nexthdr %d",
	"ip6 hoplimit > %d",
	"ether saddr 02:b0:00:00:00:%02x",
	"meta length < %d",
	"meta l4proto %d",
	"ip ttl <= %d ip protocol udp",
	"udp dport != %d-6000 ip ttl 2",
	"ip6 hoplimit >= %d ip6 nexthdr tcp",
}

// cacheConsts are the constants each rule template is used with.
var cacheConsts = map[string][]int{
	"ip saddr 192.0.2.%d":      {9, 7, 1, 200},
	"ip daddr 198.51.100.0/%d": {32, 24, 25, 31},
	"ip ttl < %d":              {2, 3, 1, 4},
	"ip length > %d":           {1400, 1000, 1300, 1200},
	"ip frag-off & 0x1fff != %d ip saddr 192.0.2.7": {7, 0, 5, 9},
	"tcp dport %d":                    {23, 22, 80, 443},
	"tcp dport %d-2000":               {1999, 1000, 1500, 1},
	"udp sport != %d udp dport 5000":  {53, 54, 55, 56},
	"@th,0,16 %d":                     {1, 53, 40000, 1234},
	"@th,16,16 %d":                    {2, 5000, 22, 4321},
	"@th,32,32 %d":                    {3, 16909060, 7, 8},
	"@th,16,32 %d":                    {4, 1441792, 9, 10},
	"icmp type %d":                    {13, 8, 0, 3},
	"ip6 saddr 2001:db8::%x":          {0x99, 0x5, 0x1, 0x77},
	"ip6 daddr 2001:db8:%x::/48":      {0x99, 0, 1, 2},
	"ip6 nexthdr %d":                  {50, 17, 6, 44},
	"ip6 hoplimit > %d":               {250, 63, 64, 200},
	"ether saddr 02:b0:00:00:00:%02x": {0x77, 0x01, 0x02, 0x03},
	"meta length < %d":                {40, 60, 80, 100},
	"meta l4proto %d":                 {132, 17, 6, 1},
	"meta l4proto != %d meta length > 60 ip saddr 192.0.2.7": {6, 17, 1, 58},
	"ip ttl <= %d ip protocol udp":                           {1, 2, 3, 0},
	"udp dport != %d-6000 ip ttl 2":                          {5000, 5001, 4000, 1},
	"ip6 hoplimit >= %d ip6 nexthdr tcp":                     {65, 64, 63, 255},
}

// cacheRuleset returns the rules of cacheRules in a base chain of the
// given family and hook, rounds interleaved so that every field is
// compared all along the chain, each round behind filler rules that no
// crafted frame matches (enough of them split the chain into tail-called
// programs, each of which fills the cache again).
func cacheRuleset(family, hook, dev string, filler int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s t {\n chain c {\n  type filter hook %s", family, hook)
	if dev != "" {
		fmt.Fprintf(&b, " device %q", dev)
	}
	b.WriteString(" priority 0; policy accept;\n")
	n := 0
	for round := 0; round < 4; round++ {
		for i := 0; i < filler; i++ {
			fmt.Fprintf(&b, "  ip saddr 203.0.113.%d tcp dport %d drop\n", i%250+1, 30000+round*filler+i)
		}
		for _, tmpl := range cacheRules {
			if family == "ip" && (strings.HasPrefix(tmpl, "ip6") || strings.HasPrefix(tmpl, "ether")) {
				continue
			}
			verdict := []string{"accept", "drop", "counter drop", "counter"}[n%4]
			fmt.Fprintf(&b, "  "+tmpl+" %s\n", cacheConsts[tmpl][round], verdict)
			n++
		}
	}
	b.WriteString(" }\n}\n")
	return b.String()
}

// cacheFrames are frames whose fields load in part or not at all: every
// truncation of TCP, UDP and ICMP frames over IPv4 and IPv6, first and
// later IPv4 and IPv6 fragments (a later one has no transport header,
// though its payload sits where one would be), IPv6 without a transport
// header (next header none), a VLAN-tagged frame and a non-IP frame.
func cacheFrames(src, dst net.HardwareAddr, ip6 bool) []pktgen.Case {
	eth := func(tags ...packet.VLAN) *packet.Ethernet { return &packet.Ethernet{Src: src, Dst: dst, Tags: tags} }
	s4, d4 := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("198.51.100.1")
	s6, d6 := netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("2001:db8::2")
	ports := packet.Payload{0, 53, 0x13, 0x88, 1, 2, 3, 4, 0, 0, 0, 0} // bytes a later fragment carries where ports would be
	full := []struct {
		name   string
		layers []packet.Layer
	}{
		{"ipv4 tcp", []packet.Layer{eth(), &packet.IPv4{Src: s4, Dst: d4}, &packet.TCP{SrcPort: 53, DstPort: 22}, packet.Payload(make([]byte, 48))}},
		{"ipv4 udp", []packet.Layer{eth(), &packet.IPv4{Src: s4, Dst: d4, TTL: packet.Ptr[uint8](2)}, &packet.UDP{SrcPort: 54, DstPort: 5000}, packet.Payload("0123456789")}},
		{"ipv4 icmp", []packet.Layer{eth(), &packet.IPv4{Src: s4, Dst: d4}, &packet.RawIP{Protocol: packet.ProtoICMP}, packet.Payload{8, 0, 0, 0, 0, 1, 0, 1}}},
		{"ipv4 first fragment", []packet.Layer{eth(), &packet.IPv4{Src: s4, Dst: d4, Flags: packet.IPv4MoreFrags}, &packet.TCP{SrcPort: 1, DstPort: 22}}},
		{"ipv4 later fragment", []packet.Layer{eth(), &packet.IPv4{Src: s4, Dst: d4, FragOffset: 5, Protocol: packet.Ptr[uint8](packet.ProtoUDP)}, ports}},
		{"ipv4 vlan", []packet.Layer{eth(packet.VLAN{ID: 5}), &packet.IPv4{Src: s4, Dst: d4}, &packet.TCP{SrcPort: 53, DstPort: 22}}},
		{"ipv6 udp", []packet.Layer{eth(), &packet.IPv6{Src: s6, Dst: d6}, &packet.UDP{SrcPort: 53, DstPort: 5000}, packet.Payload("0123")}},
		{"ipv6 tcp", []packet.Layer{eth(), &packet.IPv6{Src: s6, Dst: d6, HopLimit: packet.Ptr[uint8](64)}, &packet.TCP{SrcPort: 1, DstPort: 22}, packet.Payload(make([]byte, 48))}},
		{"ipv6 first fragment", []packet.Layer{eth(), &packet.IPv6{Src: s6, Dst: d6}, &packet.IPv6Fragment{More: true, ID: 7}, &packet.UDP{SrcPort: 53, DstPort: 5000}}},
		{"ipv6 later fragment", []packet.Layer{eth(), &packet.IPv6{Src: s6, Dst: d6}, &packet.IPv6Fragment{Offset: 3, ID: 7, NextHeader: packet.Ptr[uint8](packet.ProtoUDP)}, ports}},
		{"ipv6 no next header", []packet.Layer{eth(), &packet.IPv6{Src: s6, Dst: d6, NextHeader: packet.Ptr[uint8](59)}, packet.Payload{0, 53, 0x13, 0x88}}},
		{"arp", []packet.Layer{&packet.Ethernet{Src: src, Dst: dst, Type: packet.Ptr[uint16](packet.EtherTypeARP)}, packet.Payload(make([]byte, 80))}},
	}
	var out []pktgen.Case
	for _, f := range full {
		if strings.HasPrefix(f.name, "ipv6") != ip6 && !strings.HasPrefix(f.name, "arp") {
			continue
		}
		frame := packet.MustBuild(f.layers...)
		out = append(out, pktgen.Case{Name: f.name, Frame: frame})
		min := 14
		if strings.Contains(f.name, "vlan") {
			// Shorter tagged frames are dropped before any hook
			// (skb_vlan_untag); XDP programs pass them on.
			min = 20
		}
		for n := min; n < len(frame); n++ {
			out = append(out, pktgen.Case{Name: fmt.Sprintf("%s cut to %d bytes", f.name, n), Frame: packet.Truncate(frame, n)})
		}
	}
	return out
}

// TestFieldCacheTwin compares the kernel's nftables with straight-line
// code that compares from the field cache, on frames whose fields load in
// part or not at all: a wrong load bit or a stale cached value shows as a
// verdict that differs from the kernel's.
func TestFieldCacheTwin(t *testing.T) {
	privtest.Require(t)
	tests := []struct {
		name   string
		hook   ir.Hook
		family string
		ip6    []bool
		filler int
		parts  int // least number of tail-called parts
	}{
		{"netdev ingress", ir.HookIngress, "netdev", []bool{false, true}, 0, 1},
		{"ip prerouting", ir.HookPrerouting, "ip", []bool{false}, 0, 1},
		{"inet prerouting", ir.HookPrerouting, "inet", []bool{false, true}, 0, 1},
		{"netdev ingress split", ir.HookIngress, "netdev", []bool{false, true}, 300, 2},
		{"inet prerouting split", ir.HookPrerouting, "inet", []bool{false, true}, 300, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := oracle.New(oracle.Config{Hook: tt.hook})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { o.Close() })
			dev := ""
			if tt.hook == ir.HookIngress {
				dev = o.ReceiverIfname()
			}
			text := cacheRuleset(tt.family, tt.hook.String(), dev, tt.filler)
			var frames []pktgen.Case
			for _, ip6 := range tt.ip6 {
				frames = append(frames, cacheFrames(o.SenderMAC(), o.ReceiverMAC(), ip6)...)
			}
			rep, err := Check(o, tt.hook, text, Options{Seed: 11, Count: 300, Linear: true, Frames: frames})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range rep.Result.Programs {
				if len(p.Program.Groups) > 0 {
					t.Errorf("%s: %d rule groups, want straight-line code", p.Chain.Name, len(p.Program.Groups))
				}
				if !fillsCache(p.Program.Spec.Instructions) {
					t.Errorf("%s: the program does not fill the field cache", p.Chain.Name)
				}
				for _, tp := range p.Program.Tail {
					if !fillsCache(tp.Spec.Instructions) {
						t.Errorf("%s: part %d does not fill the field cache", p.Chain.Name, tp.Part)
					}
				}
				if n := p.Program.Parts(); n < tt.parts {
					t.Errorf("%s: %d parts, want at least %d", p.Chain.Name, n, tt.parts)
				}
			}
			if rep.Kernel[oracle.Dropped] == 0 || rep.Kernel[oracle.Accepted] == 0 {
				t.Errorf("the frames do not exercise both verdicts: kernel %v", rep.Kernel)
			}
			for i, m := range rep.Mismatches {
				if i == 20 {
					t.Errorf("… %d mismatches in all", len(rep.Mismatches))
					break
				}
				t.Errorf("mismatch: %s", m)
			}
			t.Logf("%d frames (%d crafted), %d verdicts compared, kernel %v, %d mismatches", rep.Frames, len(frames), rep.Compared, rep.Kernel, len(rep.Mismatches))
		})
	}
}

// fillsCache reports whether insns store the field cache's load bits
// (at R10-512, codegen/fieldcache.go).
func fillsCache(insns asm.Instructions) bool {
	for _, ins := range insns {
		if ins.OpCode.Class() == asm.StXClass && ins.Dst == asm.R10 && ins.Offset == -512 {
			return true
		}
	}
	return false
}

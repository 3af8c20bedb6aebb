package codegen

import (
	"bytes"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// ---- an independent model of the kernel's netdev reject ----

// inetSum is the ones' complement sum of b (odd length padded with a zero).
func inetSum(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func foldSum(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// inetChecksum is the Internet checksum of the concatenated parts.
func inetChecksum(parts ...[]byte) uint16 {
	var sum uint32
	for _, p := range parts {
		sum = inetSum(sum, p)
	}
	return ^foldSum(sum)
}

func pseudo4(src, dst []byte, proto byte, n int) []byte {
	p := append(append([]byte{}, src...), dst...)
	return append(p, 0, proto, byte(n>>8), byte(n))
}

// rejectModel computes the frame nft_reject_netdev_eval sends for frame
// (received at netdev ingress of an Ethernet device, ip_summed
// CHECKSUM_NONE), or nil when it sends nothing. It follows the kernel
// sources (net/netfilter/nft_reject_netdev.c,
// net/ipv4/netfilter/nf_reject_ipv4.c), written here without reference to
// the code generator.
func rejectModel(r *ir.Reject, frame []byte, ttl, hlim byte) []byte {
	if len(frame) < 14 || frame[0]&1 != 0 {
		return nil
	}
	skb := frame[14:] // skb->data .. skb->len at the hook
	switch binary.BigEndian.Uint16(frame[12:]) {
	case ethPIP:
		if len(skb) < 20 {
			return nil
		}
		ihl := int(skb[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(skb[2:]))
		if skb[0]>>4 != 4 || ihl < 20 || len(skb) < tot || tot < ihl {
			return nil
		}
		var ip4 []byte
		switch r.Type {
		case ir.RejectTCPReset:
			ip4 = modelV4Reset(skb, ihl, ttl)
		case ir.RejectICMPUnreach:
			ip4 = modelV4Unreach(skb, ihl, tot, r.Code, ttl)
		case ir.RejectICMPXUnreach:
			code := map[uint8]uint8{0: 0, 1: 3, 2: 1, 3: 13}[r.Code]
			ip4 = modelV4Unreach(skb, ihl, tot, code, ttl)
		}
		if ip4 == nil {
			return nil
		}
		out := append(append([]byte{}, frame[6:12]...), frame[0:6]...)
		out = append(out, 0x08, 0x00)
		return append(out, ip4...)
	case ethPIPv6:
		if len(skb) < 40 || skb[0]>>4 != 6 || int(binary.BigEndian.Uint16(skb[4:]))+40 > len(skb) {
			return nil
		}
		var ip6 []byte
		switch r.Type {
		case ir.RejectTCPReset:
			ip6 = modelV6Reset(skb, hlim)
		case ir.RejectICMPUnreach:
			ip6 = modelV6Unreach(skb, r.Code, hlim)
		case ir.RejectICMPXUnreach:
			code := map[uint8]uint8{0: 0, 1: 4, 2: 3, 3: 1}[r.Code]
			ip6 = modelV6Unreach(skb, code, hlim)
		}
		if ip6 == nil {
			return nil
		}
		out := append(append([]byte{}, frame[6:12]...), frame[0:6]...)
		out = append(out, 0x86, 0xdd)
		return append(out, ip6...)
	}
	return nil
}

func pseudo6(src, dst []byte, proto byte, n int) []byte {
	p := append(append([]byte{}, src...), dst...)
	p = binary.BigEndian.AppendUint32(p, uint32(n))
	return append(p, 0, 0, 0, proto)
}

// skipExthdr is ipv6_skip_exthdr from the end of the fixed header.
func skipExthdr(skb []byte) (off int, proto byte, fragOff uint16, ok bool) {
	off, proto = 40, skb[6]
	for {
		switch proto {
		case 0, 43, 44, 51, 60:
		case 59:
			return 0, 0, 0, false
		default:
			return off, proto, fragOff, true
		}
		if off+2 > len(skb) {
			return 0, 0, 0, false
		}
		var n int
		switch proto {
		case 44:
			if off+4 > len(skb) {
				return 0, 0, 0, false
			}
			fragOff = binary.BigEndian.Uint16(skb[off+2:])
			if fragOff&^7 != 0 {
				return off, proto, fragOff, true
			}
			n = 8
		case 51:
			n = (int(skb[off+1]) + 2) << 2
		default:
			n = (int(skb[off+1]) + 1) << 3
		}
		proto = skb[off]
		off += n
	}
}

// modelIPv6 is nf_reject_ip6hdr_put with the payload length set.
func modelIPv6(old []byte, proto, hlim byte, payload []byte) []byte {
	h := []byte{0x60, 0, 0, 0, 0, 0, proto, hlim}
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h = append(h, old[24:40]...)
	h = append(h, old[8:24]...)
	return append(h, payload...)
}

// modelV6Reset is nf_reject_skb_v6_tcp_reset.
func modelV6Reset(skb []byte, hlim byte) []byte {
	th, proto, _, ok := skipExthdr(skb)
	if !ok || th > len(skb) || proto != protoTCP || len(skb)-th < 20 {
		return nil
	}
	oth := skb[th:]
	if oth[13]&0x04 != 0 {
		return nil
	}
	if inetChecksum(pseudo6(skb[8:24], skb[24:40], protoTCP, len(skb)-th), skb[th:]) != 0 {
		return nil
	}
	nth := modelTCPReset(oth, len(skb)-th)
	binary.BigEndian.PutUint16(nth[16:], inetChecksum(pseudo6(skb[24:40], skb[8:24], protoTCP, 20), nth))
	return modelIPv6(skb, protoTCP, hlim, nth)
}

// modelV6Unreach is nf_reject_skb_v6_unreach.
func modelV6Unreach(skb []byte, code, hlim byte) []byte {
	quote := skb[:min(1220, len(skb))]
	tot := len(skb)
	if plen := int(binary.BigEndian.Uint16(skb[4:])); plen != 0 {
		tot = plen + 40
	}
	trimmed := skb[:tot]
	th, proto, fo, ok := skipExthdr(trimmed)
	if !ok || th >= tot || fo&^7 != 0 {
		return nil
	}
	verify := true
	switch proto {
	case 47, 51, 50, 132, 136, 33:
		verify = false
	case protoUDP:
		if th+8 <= tot && binary.BigEndian.Uint16(trimmed[th+6:]) == 0 {
			verify = false
		}
	}
	if verify && inetChecksum(pseudo6(skb[8:24], skb[24:40], proto, tot-th), trimmed[th:]) != 0 {
		return nil
	}
	icmp := append([]byte{1, code, 0, 0, 0, 0, 0, 0}, quote...)
	binary.BigEndian.PutUint16(icmp[2:], inetChecksum(pseudo6(skb[24:40], skb[8:24], protoICMPv6, len(icmp)), icmp))
	return modelIPv6(skb, protoICMPv6, hlim, icmp)
}

// modelIPv4 is nf_reject_iphdr_put followed by tot_len and ip_send_check.
func modelIPv4(old []byte, proto, ttl byte, payload []byte) []byte {
	h := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, ttl, proto, 0, 0}
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h = append(h, old[16:20]...)
	h = append(h, old[12:16]...)
	binary.BigEndian.PutUint16(h[10:], inetChecksum(h))
	return append(h, payload...)
}

func modelV4Reset(skb []byte, ihl int, ttl byte) []byte {
	if binary.BigEndian.Uint16(skb[6:])&0x1fff != 0 || skb[9] != protoTCP {
		return nil
	}
	if len(skb) < ihl+20 {
		return nil
	}
	oth := skb[ihl:]
	if oth[13]&0x04 != 0 {
		return nil
	}
	// nf_ip_checksum → __skb_checksum_complete sums from skb->data: the
	// IP header is part of the sum.
	if inetChecksum(pseudo4(skb[12:16], skb[16:20], protoTCP, len(skb)-ihl), skb) != 0 {
		return nil
	}
	th := modelTCPReset(oth, len(skb)-ihl)
	// The kernel leaves the checksum to the device; the wire carries the
	// complete one.
	binary.BigEndian.PutUint16(th[16:], inetChecksum(pseudo4(skb[16:20], skb[12:16], protoTCP, 20), th))
	return modelIPv4(skb, protoTCP, ttl, th)
}

// modelV4Unreach is nf_reject_skb_v4_unreach.
func modelV4Unreach(skb []byte, ihl, tot int, code, ttl byte) []byte {
	if binary.BigEndian.Uint16(skb[6:])&0x1fff != 0 {
		return nil
	}
	quote := skb[:min(536, len(skb))] // taken before the trim to tot_len
	trimmed := skb[:tot]
	proto := skb[9]
	verify := true
	switch proto {
	case 47, 51, 50, 132, 136, 33:
		verify = false
	case protoUDP:
		if ihl+8 <= tot && binary.BigEndian.Uint16(trimmed[ihl+6:]) == 0 {
			verify = false
		}
	}
	if verify {
		var ph []byte
		if proto == protoTCP || proto == protoUDP {
			ph = pseudo4(skb[12:16], skb[16:20], proto, tot-ihl)
		}
		if inetChecksum(ph, trimmed) != 0 {
			return nil
		}
	}
	icmp := append([]byte{3, code, 0, 0, 0, 0, 0, 0}, quote...)
	binary.BigEndian.PutUint16(icmp[2:], inetChecksum(icmp))
	return modelIPv4(skb, protoICMP, ttl, icmp)
}

// modelTCPReset is nf_reject_ip(6)_tcphdr_put without the checksum;
// otcplen is the original's length from its TCP header to the skb's end.
func modelTCPReset(oth []byte, otcplen int) []byte {
	th := make([]byte, 20)
	copy(th[0:2], oth[2:4])
	copy(th[2:4], oth[0:2])
	th[12] = 5 << 4
	flags := oth[13]
	if flags&0x10 != 0 {
		copy(th[4:8], oth[8:12])
		th[13] = 0x04
	} else {
		ack := binary.BigEndian.Uint32(oth[4:]) + uint32(flags>>1&1) + uint32(flags&1) +
			uint32(otcplen) - uint32(oth[12]>>4)*4
		binary.BigEndian.PutUint32(th[8:], ack)
		th[13] = 0x14
	}
	return th
}

// ---- test frames (with correct checksums) ----

type tcpSeg struct {
	sport, dport uint16
	seq, ack     uint32
	flags        byte
	opts         []byte // TCP options, a multiple of 4 bytes
	payload      []byte
	badSum       bool
}

func (s tcpSeg) build4(h v4) []byte {
	th := binary.BigEndian.AppendUint16(nil, s.sport)
	th = binary.BigEndian.AppendUint16(th, s.dport)
	th = binary.BigEndian.AppendUint32(th, s.seq)
	th = binary.BigEndian.AppendUint32(th, s.ack)
	th = append(th, byte(5+len(s.opts)/4)<<4, s.flags, 0xff, 0xff, 0, 0, 0, 0)
	th = append(th, s.opts...)
	th = append(th, s.payload...)
	src, dst := h.src, h.dst
	if src == nil {
		src = srcV4
	}
	if dst == nil {
		dst = dstV4
	}
	sum := inetChecksum(pseudo4(src, dst, protoTCP, len(th)), th)
	if s.badSum {
		sum ^= 0x0101
	}
	binary.BigEndian.PutUint16(th[16:], sum)
	h.proto = protoTCP
	return ipv4Sum(h.build(th))
}

// ipv4Sum fills in the IPv4 header checksum.
func ipv4Sum(p []byte) []byte {
	ihl := int(p[0]&0xf) * 4
	if ihl >= 20 && ihl <= len(p) {
		binary.BigEndian.PutUint16(p[10:], inetChecksum(p[:ihl]))
	}
	return p
}

// badIPSum spoils the IPv4 header checksum of a frame.
func badIPSum(f []byte) []byte {
	f = append([]byte{}, f...)
	f[14+10] ^= 0x40
	return f
}

var (
	macBcast = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	macMcast = []byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
)

func withDst(frame, mac []byte) []byte {
	f := append([]byte{}, frame...)
	copy(f, mac)
	return f
}

// sysctlByte reads a sysctl of the test's network namespace.
func sysctlByte(t *testing.T, path string) byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return byte(n)
}

type rejectCase struct {
	name  string
	frame []byte
	reply bool // the kernel model sends a reply (checked against the model)
}

func rejectV4ResetCases() []rejectCase {
	syn := tcpSeg{sport: 40000, dport: 80, seq: 0x11223344, flags: 0x02}
	ack := tcpSeg{sport: 40001, dport: 22, seq: 0xfffffff0, ack: 0xa0b0c0d0, flags: 0x18, payload: []byte("hello, world")}
	finNoAck := tcpSeg{sport: 1, dport: 2, seq: 0xffffffff, flags: 0x01, payload: []byte("xyz")}
	synPayload := tcpSeg{sport: 3, dport: 4, seq: 7, flags: 0x03, opts: []byte{2, 4, 5, 0xb4}, payload: []byte("odd")}
	rst := tcpSeg{sport: 5, dport: 6, flags: 0x04}
	bad := syn
	bad.badSum = true
	frag := v4{frag: 0x2000 | 3}
	truncated := eth(0x0800, ipv4Sum(v4{proto: protoTCP, totLen: 30}.build(make([]byte, 10))))
	padded := append(eth(0x0800, syn.build4(v4{})), make([]byte, 6)...)
	long := tcpSeg{sport: 7, dport: 8, seq: 9, flags: 0x10, ack: 5, payload: bytes.Repeat([]byte{0xa5, 0x5a, 0x01}, 700)}
	return []rejectCase{
		{"syn", eth(0x0800, syn.build4(v4{})), true},
		{"ack-with-data", eth(0x0800, ack.build4(v4{})), true},
		{"fin-without-ack", eth(0x0800, finNoAck.build4(v4{})), true},
		{"syn-fin-options-odd-payload", eth(0x0800, synPayload.build4(v4{})), true},
		{"ip-options", eth(0x0800, syn.build4(v4{opts: []byte{1, 1, 1, 0}})), true},
		{"long-segment", eth(0x0800, long.build4(v4{})), true},
		{"df-ttl-tos-id", eth(0x0800, ack.build4(v4{tos: 0x10, id: 77, frag: 0x4000, ttl: 3})), true},
		{"rst", eth(0x0800, rst.build4(v4{})), false},
		{"bad-ip-checksum", badIPSum(eth(0x0800, syn.build4(v4{}))), false},
		{"bad-checksum", eth(0x0800, bad.build4(v4{})), false},
		{"fragment", eth(0x0800, syn.build4(frag)), false},
		{"first-fragment", eth(0x0800, syn.build4(v4{frag: 0x2000})), true},
		{"broadcast", withDst(eth(0x0800, syn.build4(v4{})), macBcast), false},
		{"multicast", withDst(eth(0x0800, syn.build4(v4{})), macMcast), false},
		{"udp", eth(0x0800, ipv4Sum(v4{proto: protoUDP}.build(udp(1, 2, []byte("x"))))), false},
		{"truncated-tcp", truncated, false},
		{"tot-len-beyond-packet", eth(0x0800, ipv4Sum(v4{proto: protoTCP, totLen: 200}.build(tcp(1, 2, 0x02)))), false},
		{"tot-len-below-ihl", eth(0x0800, ipv4Sum(v4{proto: protoTCP, totLen: 16}.build(tcp(1, 2, 0x02)))), false},
		{"ihl-4", eth(0x0800, v4{proto: protoTCP, ihl: 4}.build(tcp(1, 2, 0x02))), false},
		{"version-5", eth(0x0800, ipv4Sum(v4{proto: protoTCP, version: 5}.build(tcp(1, 2, 0x02)))), false},
		{"ethernet-padding", padded, false},
		{"arp", eth(0x0806, make([]byte, 28)), false},
	}
}

// l4v4 builds an IPv4 packet of protocol proto around l4, filling in the
// checksum at l4[sumAt:] (none if sumAt < 0).
func l4v4(h v4, proto byte, l4 []byte, sumAt int) []byte {
	l4 = append([]byte{}, l4...)
	if sumAt >= 0 {
		var ph []byte
		if proto == protoTCP || proto == protoUDP {
			ph = pseudo4(srcV4, dstV4, proto, len(l4))
		}
		binary.BigEndian.PutUint16(l4[sumAt:], inetChecksum(ph, l4))
	}
	h.proto = proto
	return ipv4Sum(h.build(l4))
}

func rejectV4UnreachCases() []rejectCase {
	dgram := udp(40000, 53, []byte("query"))
	long := udp(1, 2, bytes.Repeat([]byte{1, 2, 3, 4, 5}, 200))
	echo := icmp(8, 0, 99)
	badEcho := l4v4(v4{}, protoICMP, echo, -1)
	badEcho[20+2] = 0x12
	syn := tcpSeg{sport: 40000, dport: 80, seq: 1, flags: 0x02}
	badTCP := syn
	badTCP.badSum = true
	badUDP := l4v4(v4{}, protoUDP, dgram, 6)
	badUDP[len(badUDP)-1] ^= 1
	return []rejectCase{
		{"udp", eth(0x0800, l4v4(v4{}, protoUDP, dgram, 6)), true},
		{"udp-no-checksum", eth(0x0800, l4v4(v4{}, protoUDP, udp(1, 2, []byte("garbage")), -1)), true},
		{"udp-bad-checksum", eth(0x0800, badUDP), false},
		{"udp-long-quote-536", eth(0x0800, l4v4(v4{}, protoUDP, long, 6)), true},
		{"udp-ip-options", eth(0x0800, l4v4(v4{opts: []byte{1, 1, 1, 0}}, protoUDP, dgram, 6)), true},
		{"udp-ethernet-padding", append(eth(0x0800, l4v4(v4{}, protoUDP, udp(1, 2, nil), 6)), make([]byte, 18)...), true},
		{"udp-first-fragment-no-checksum", eth(0x0800, l4v4(v4{frag: 0x2000}, protoUDP, dgram, -1)), true},
		{"udp-fragment", eth(0x0800, l4v4(v4{frag: 0x2000 | 10}, protoUDP, dgram, -1)), false},
		{"tcp", eth(0x0800, syn.build4(v4{})), true},
		{"tcp-bad-checksum", eth(0x0800, badTCP.build4(v4{})), false},
		{"icmp-echo", eth(0x0800, l4v4(v4{}, protoICMP, echo, 2)), true},
		{"icmp-bad-checksum", eth(0x0800, badEcho), false},
		{"proto-253", eth(0x0800, l4v4(v4{}, 253, []byte("payload!"), -1)), false},
		{"proto-253-summing-to-zero", eth(0x0800, l4v4(v4{}, 253, []byte{0xff, 0xff}, -1)), true},
		{"gre-unchecked", eth(0x0800, l4v4(v4{}, 47, []byte("not really gre"), -1)), true},
		{"bad-ip-checksum", badIPSum(eth(0x0800, l4v4(v4{}, protoUDP, dgram, 6))), false},
		{"broadcast", withDst(eth(0x0800, l4v4(v4{}, protoUDP, dgram, 6)), macBcast), false},
		{"tot-len-beyond-packet", eth(0x0800, ipv4Sum(v4{proto: protoUDP, totLen: 200}.build(dgram))), false},
		{"arp", eth(0x0806, make([]byte, 28)), false},
	}
}

// runReject runs a loaded tc or XDP program on frame and returns the
// frame it sends back, or nil if it drops the frame.
func runReject(t *testing.T, fl flavour, l *Loaded, frame []byte) []byte {
	t.Helper()
	out := make([]byte, len(frame)+256)
	opts := &ebpf.RunOptions{Data: frame, DataOut: out, Repeat: 1}
	ret, err := l.Program.Run(opts)
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	switch fl.tgt.Type {
	case TC:
		switch int32(ret) {
		case tcActRedirect:
			return opts.DataOut
		case tcShot:
			return nil
		}
	case XDP:
		switch ret {
		case xdpTX:
			return opts.DataOut
		case xdpDrop:
			return nil
		}
	}
	t.Fatalf("program returned %d", int32(ret))
	return nil
}

// TestRejectModel pins the model to the bytes the kernel's reject
// sends for one frame (a reset to a SYN).
func TestRejectModel(t *testing.T) {
	syn := tcpSeg{sport: 40000, dport: 80, seq: 0x11223344, flags: 0x02}
	frame := eth(0x0800, syn.build4(v4{}))
	got := rejectModel(&ir.Reject{Type: ir.RejectTCPReset}, frame, 64, 64)
	want := []byte{
		2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0, // MACs swapped
		0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 51, 100, 2, 192, 0, 2, 1,
		0, 80, 0x9c, 0x40, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x45, 0x50, 0x14, 0, 0, 0, 0, 0, 0,
	}
	binary.BigEndian.PutUint16(want[14+10:], inetChecksum(want[14:34]))
	binary.BigEndian.PutUint16(want[34+16:], inetChecksum(pseudo4(want[26:30], want[30:34], 6, 20), want[34:54]))
	if !bytes.Equal(got, want) {
		t.Fatalf("model reply\n%x\nwant\n%x", got, want)
	}
}

// checkRejects runs every reject statement of rejects on every frame of
// cases through tc ingress programs and compares the frames sent back
// with the model's.
func checkRejects(t *testing.T, rejects []*ir.Reject, cases []rejectCase) {
	privileged(t)
	ttl := sysctlByte(t, "/proc/sys/net/ipv4/ip_default_ttl")
	hlim := sysctlByte(t, "/proc/sys/net/ipv6/conf/all/hop_limit")
	for _, fl := range rejectFlavours() {
		for _, rj := range rejects {
			t.Run(fl.name+"/"+strings.ReplaceAll(ir.FormatStmt(ir.FamilyNetdev, rj), " ", "_"), func(t *testing.T) {
				tab, c := table(fl.fam, fl.hook, ir.VerdictAccept, []*ir.Rule{rule(rj)})
				l := loadFlavour(t, fl, tab, c)
				for _, tc := range cases {
					t.Run(tc.name, func(t *testing.T) {
						want := rejectModel(rj, tc.frame, ttl, hlim)
						if (want != nil) != tc.reply {
							t.Fatalf("model reply %x, case says reply=%v", want, tc.reply)
						}
						got := runReject(t, fl, l, tc.frame)
						if !bytes.Equal(got, want) {
							t.Errorf("reply\n%x\nwant\n%x", got, want)
						}
					})
				}
			})
		}
	}
}

var icmpRejects = []*ir.Reject{
	{Type: ir.RejectICMPUnreach, Code: 3},
	{Type: ir.RejectICMPUnreach, Code: 1},
	{Type: ir.RejectICMPUnreach, Code: 13},
	{Type: ir.RejectICMPXUnreach, Code: 0},
	{Type: ir.RejectICMPXUnreach, Code: 1},
	{Type: ir.RejectICMPXUnreach, Code: 2},
	{Type: ir.RejectICMPXUnreach, Code: 3},
}

// TestRejectTCPResetV4 checks "reject with tcp reset" on IPv4 frames.
func TestRejectTCPResetV4(t *testing.T) {
	checkRejects(t, []*ir.Reject{{Type: ir.RejectTCPReset}}, rejectV4ResetCases())
}

// TestRejectICMPV4 checks ICMP and ICMPx rejects on IPv4 frames.
func TestRejectICMPV4(t *testing.T) {
	checkRejects(t, icmpRejects, rejectV4UnreachCases())
}

// TestRejectTCPResetV6 checks "reject with tcp reset" on IPv6 frames.
func TestRejectTCPResetV6(t *testing.T) {
	checkRejects(t, []*ir.Reject{{Type: ir.RejectTCPReset}}, rejectV6ResetCases())
}

// TestRejectICMPV6 checks ICMP and ICMPx rejects on IPv6 frames (the
// ICMP codes of "reject with icmp" go unchanged into ICMPv6 errors, as
// nft_reject_netdev_eval passes them).
func TestRejectICMPV6(t *testing.T) {
	checkRejects(t, icmpRejects, rejectV6UnreachCases())
}

// l4v6 builds an IPv6 packet (with h's extension headers) around l4 of
// protocol proto, filling in the checksum at l4[sumAt:] (none if sumAt <
// 0).
func l4v6(h v6, proto byte, l4 []byte, sumAt int) []byte {
	l4 = append([]byte{}, l4...)
	if sumAt >= 0 {
		binary.BigEndian.PutUint16(l4[sumAt:], inetChecksum(pseudo6(srcV6, dstV6, proto, len(l4)), l4))
	}
	if len(h.ext) == 0 {
		h.nexthdr = proto
	}
	return h.build(l4)
}

func tcpSeg6(s tcpSeg) []byte {
	// Build the segment through build4 for its bytes, then checksum it
	// for IPv6.
	p := s.build4(v4{})
	th := append([]byte{}, p[20:]...)
	th[16], th[17] = 0, 0
	sum := inetChecksum(pseudo6(srcV6, dstV6, protoTCP, len(th)), th)
	if s.badSum {
		sum ^= 0x0101
	}
	binary.BigEndian.PutUint16(th[16:], sum)
	return th
}

func rejectV6ResetCases() []rejectCase {
	syn := tcpSeg6(tcpSeg{sport: 40000, dport: 80, seq: 0x11223344, flags: 0x02})
	ack := tcpSeg6(tcpSeg{sport: 40001, dport: 22, seq: 0xfffffff0, ack: 0xa0b0c0d0, flags: 0x18, payload: []byte("hello, world")})
	rst := tcpSeg6(tcpSeg{sport: 5, dport: 6, flags: 0x04})
	bad := tcpSeg6(tcpSeg{sport: 40000, dport: 80, flags: 0x02, badSum: true})
	long := tcpSeg6(tcpSeg{sport: 7, dport: 8, seq: 9, flags: 0x01, payload: bytes.Repeat([]byte{0xa5, 0x5a, 0x01}, 700)})
	return []rejectCase{
		{"syn", eth(0x86dd, v6{nexthdr: protoTCP}.build(syn)), true},
		{"ack-with-data", eth(0x86dd, v6{nexthdr: protoTCP}.build(ack)), true},
		{"long-fin", eth(0x86dd, v6{nexthdr: protoTCP}.build(long)), true},
		{"hop-by-hop", eth(0x86dd, v6{nexthdr: 0, ext: [][]byte{ext6(protoTCP, 0)}}.build(syn)), true},
		{"dest-opts-routing", eth(0x86dd, v6{nexthdr: 60, ext: [][]byte{ext6(43, 1), ext6(protoTCP, 0)}}.build(syn)), true},
		{"first-fragment", eth(0x86dd, v6{nexthdr: 44, ext: [][]byte{frag6(protoTCP, 0, true)}}.build(syn)), true},
		{"later-fragment", eth(0x86dd, v6{nexthdr: 44, ext: [][]byte{frag6(protoTCP, 8, false)}}.build(syn)), false},
		{"no-next-header", eth(0x86dd, v6{nexthdr: 59}.build(syn)), false},
		{"truncated-ext", eth(0x86dd, v6{nexthdr: 0}.build([]byte{protoTCP})), false},
		{"rst", eth(0x86dd, v6{nexthdr: protoTCP}.build(rst)), false},
		{"bad-checksum", eth(0x86dd, v6{nexthdr: protoTCP}.build(bad)), false},
		{"short-tcp", eth(0x86dd, v6{nexthdr: protoTCP}.build(syn[:19])), false},
		{"payload-len-beyond", eth(0x86dd, v6{nexthdr: protoTCP, plen: 100}.build(syn)), false},
		{"ethernet-padding", append(eth(0x86dd, v6{nexthdr: protoTCP}.build(syn)), 0, 0, 0, 0), false},
		{"udp", eth(0x86dd, l4v6(v6{}, protoUDP, udp(1, 2, []byte("x")), 6)), false},
		{"multicast", withDst(eth(0x86dd, v6{nexthdr: protoTCP}.build(syn)), []byte{0x33, 0x33, 0, 0, 0, 1}), false},
	}
}

func rejectV6UnreachCases() []rejectCase {
	dgram := udp(40000, 53, []byte("query"))
	echo := []byte{128, 0, 0, 0, 0, 1, 0, 1, 'p', 'i', 'n', 'g'}
	badUDP := l4v6(v6{}, protoUDP, dgram, 6)
	badUDP[len(badUDP)-1] ^= 1
	return []rejectCase{
		{"udp", eth(0x86dd, l4v6(v6{}, protoUDP, dgram, 6)), true},
		{"udp-bad-checksum", eth(0x86dd, badUDP), false},
		{"udp-zero-checksum", eth(0x86dd, l4v6(v6{}, protoUDP, udp(1, 2, []byte("garbage")), -1)), true},
		{"udp-long-quote-1220", eth(0x86dd, l4v6(v6{}, protoUDP, udp(1, 2, bytes.Repeat([]byte{9, 8, 7}, 600)), 6)), true},
		{"udp-ethernet-padding", append(eth(0x86dd, l4v6(v6{}, protoUDP, udp(1, 2, nil), 6)), 1, 2, 3, 4), true},
		{"udp-hop-by-hop", eth(0x86dd, l4v6(v6{nexthdr: 0, ext: [][]byte{ext6(protoUDP, 0)}}, protoUDP, dgram, 6)), true},
		{"icmpv6-echo", eth(0x86dd, l4v6(v6{}, protoICMPv6, echo, 2)), true},
		{"icmpv6-bad-checksum", eth(0x86dd, l4v6(v6{}, protoICMPv6, echo, -1)), false},
		{"gre-unchecked", eth(0x86dd, l4v6(v6{}, 47, []byte("not really gre"), -1)), true},
		{"later-fragment", eth(0x86dd, v6{nexthdr: 44, ext: [][]byte{frag6(protoUDP, 8, false)}}.build(dgram)), false},
		{"no-next-header", eth(0x86dd, v6{nexthdr: 59}.build(dgram)), false},
		{"tcp", eth(0x86dd, v6{nexthdr: protoTCP}.build(tcpSeg6(tcpSeg{sport: 1, dport: 2, flags: 0x02}))), true},
		{"payload-len-beyond", eth(0x86dd, v6{nexthdr: protoUDP, plen: 100}.build(dgram)), false},
		{"multicast", withDst(eth(0x86dd, l4v6(v6{}, protoUDP, dgram, 6)), []byte{0x33, 0x33, 0, 0, 0, 1}), false},
	}
}

// rejectFlavours are the targets reject compiles for.
func rejectFlavours() []flavour {
	var fls []flavour
	for _, fl := range netdevFlavours() {
		if fl.tgt.Type == TC && !fl.tgt.Egress {
			fls = append(fls, fl)
		}
	}
	return fls
}

// TestRejectRefusedNetdev checks the netdev targets where reject is refused.
func TestRejectRefusedNetdev(t *testing.T) {
	cases := []struct {
		name string
		tgt  Target
		rj   *ir.Reject
		want string
	}{
		{"xdp", Target{Type: XDP, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}, &ir.Reject{Type: ir.RejectTCPReset}, "cannot see skb->ip_summed"},
		{"tc-egress", Target{Type: TC, Family: ir.FamilyNetdev, Hook: ir.HookEgress, ProtoFamily: ir.FamilyNetdev, Egress: true}, &ir.Reject{Type: ir.RejectTCPReset}, "only at the ingress hook"},
		{"icmpx-code", Target{Type: TC, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}, &ir.Reject{Type: ir.RejectICMPXUnreach, Code: 4}, "unknown icmpx code"},
		{"type", Target{Type: TC, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}, &ir.Reject{Type: 9}, "unknown reject type"},
		{"not-ethernet", Target{Type: TC, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev, Device: &Device{Name: "wg0", Type: 65534}}, &ir.Reject{Type: ir.RejectTCPReset}, "not an Ethernet device"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tab, c := table(ir.FamilyNetdev, tc.tgt.Hook, ir.VerdictAccept, []*ir.Rule{rule(tc.rj)})
			_, err := Compile(tab, c, tc.tgt)
			ue, ok := err.(*UnsupportedError)
			if !ok || !strings.HasPrefix(ue.Stmt, "reject") {
				t.Fatalf("compile: %v, want a refusal of the reject", err)
			}
			if !strings.Contains(ue.Reason, tc.want) {
				t.Errorf("reason %q does not say %q", ue.Reason, tc.want)
			}
		})
	}
}

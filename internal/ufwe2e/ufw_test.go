package ufwe2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// probe is one thing the test does against a twin, with a yes/no outcome:
// a frame from the peer is answered (reply) or reaches a UDP socket of the
// fw (udpPort), or, with do, something the fw's own sockets do.
type probe struct {
	name    string
	frame   []byte
	reply   func(f []byte) bool
	udpPort int
	do      func(tw *twin) (bool, error)
	// want is the outcome ufw's rules give; expected says whether the
	// test knows it (else only the twins are compared).
	want, expected bool
}

// replyWait is how long a probe waits for its answer; lateWait how long
// it waits when its first outcome disagrees with the other twin's or with
// ufw's rules (on a loaded machine an answer can be late).
const (
	replyWait = 300 * time.Millisecond
	lateWait  = 3 * time.Second
)

// outcome runs p against tw.
func (p probe) outcome(tw *twin) (bool, error) {
	return p.outcomeWithin(tw, replyWait)
}

// outcomes runs p against both twins. An outcome that disagrees with the
// other twin's or with ufw's rules is measured again with lateWait, so
// that only a difference that persists counts, not an answer that came
// late.
func (p probe) outcomes(kernel, bpf *twin) (k, b bool, err error) {
	if k, err = p.outcome(kernel); err != nil {
		return false, false, fmt.Errorf("kernel: %w", err)
	}
	if b, err = p.outcome(bpf); err != nil {
		return false, false, fmt.Errorf("bpf: %w", err)
	}
	if p.do != nil || (k == b && (!p.expected || k == p.want)) {
		return k, b, nil
	}
	if !k {
		if k, err = p.outcomeWithin(kernel, lateWait); err != nil {
			return false, false, fmt.Errorf("kernel, again: %w", err)
		}
	}
	if !b {
		if b, err = p.outcomeWithin(bpf, lateWait); err != nil {
			return false, false, fmt.Errorf("bpf, again: %w", err)
		}
	}
	return k, b, nil
}

// outcomeWithin runs p against tw, waiting up to wait for its answer.
func (p probe) outcomeWithin(tw *twin, wait time.Duration) (bool, error) {
	if p.do != nil {
		return p.do(tw)
	}
	got, err := tw.exchange(p.frame, wait)
	if err != nil {
		return false, err
	}
	if p.udpPort != 0 {
		return tw.udpReceived(p.udpPort) > 0, nil
	}
	for _, f := range got {
		if p.reply(f) {
			return true, nil
		}
	}
	return false, nil
}

func eth(dst net.HardwareAddr) *packet.Ethernet { return &packet.Ethernet{Dst: dst, Src: peerMAC} }

// transport returns the protocol and transport bytes of frame f when it
// is an IP packet to dst, else 0 and nil.
func transport(f []byte, dst netip.Addr) (uint8, []byte) {
	info, err := packet.Parse(f)
	if err != nil || info.TransportOffset < 0 || info.Dst != dst {
		return 0, nil
	}
	return info.Proto, f[info.TransportOffset:info.NetworkEnd]
}

// tcpReplyTo matches a TCP segment from the fw to src port sport (a
// SYN-ACK or a reset).
func tcpReplyTo(src netip.Addr, sport uint16) func([]byte) bool {
	return func(f []byte) bool {
		proto, th := transport(f, src)
		return proto == packet.ProtoTCP && len(th) >= 4 && binary.BigEndian.Uint16(th[2:]) == sport
	}
}

// icmp6Reply matches an ICMPv6 message of type typ to dst whose first
// body bytes are body.
func icmp6Reply(dst netip.Addr, typ uint8, body []byte) func([]byte) bool {
	return func(f []byte) bool {
		proto, th := transport(f, dst)
		return proto == packet.ProtoICMPv6 && len(th) >= 4+len(body) && th[0] == typ && string(th[4:4+len(body)]) == string(body)
	}
}

// advertises matches a neighbour advertisement to dst for target.
func advertises(dst netip.Addr, target [16]byte) func([]byte) bool {
	return func(f []byte) bool {
		proto, th := transport(f, dst)
		return proto == packet.ProtoICMPv6 && len(th) >= 24 && th[0] == 136 && string(th[8:24]) == string(target[:])
	}
}

var sport uint16 = 40000

// syn6 is a TCP SYN from src to the fw's port dport, behind the given
// extension headers, and the match of its answer.
func syn6(src netip.Addr, dport uint16, ext ...packet.Layer) ([]byte, func([]byte) bool) {
	sport++
	layers := []packet.Layer{eth(fwMAC), &packet.IPv6{Src: src, Dst: fw6}}
	layers = append(layers, ext...)
	layers = append(layers, &packet.TCP{SrcPort: sport, DstPort: dport, Seq: 1000, Flags: packet.TCPSyn, Window: 64240})
	return packet.MustBuild(layers...), tcpReplyTo(src, sport)
}

// probes6 are the IPv6 probes.
func probes6() []probe {
	var ps []probe
	addSyn := func(name string, src netip.Addr, dport uint16, want, expected bool, ext ...packet.Layer) {
		f, m := syn6(src, dport, ext...)
		ps = append(ps, probe{name: name, frame: f, reply: m, want: want, expected: expected})
	}
	addSyn("tcp 22 (ufw allow 22/tcp)", peer6, 22, true, true)
	addSyn("tcp 23 (default deny)", peer6, 23, false, true)
	addSyn("tcp 80 (allowed over IPv4 only)", far6, 80, false, true)
	addSyn("tcp 8080 from 2001:db8:1::/48 (allowed)", far6, 8080, true, true)
	addSyn("tcp 8080 from outside 2001:db8:1::/48", peer6, 8080, false, true)
	addSyn("tcp 22 behind a type 0 routing header (-m rt --rt-type 0 -j DROP)", peer6, 22, false, true,
		&packet.IPv6Routing{Type: 0, SegmentsLeft: 0, Data: make([]byte, 4)})
	addSyn("tcp 22 behind a type 253 routing header", peer6, 22, false, false,
		&packet.IPv6Routing{Type: 253, SegmentsLeft: 0, Data: make([]byte, 4)})
	addSyn("tcp 22 behind hop-by-hop and a type 0 routing header", peer6, 22, false, true,
		&packet.IPv6HopByHop{}, &packet.IPv6Routing{Type: 0, Data: make([]byte, 4)})

	sport++
	synack := packet.MustBuild(eth(fwMAC), &packet.IPv6{Src: peer6, Dst: fw6},
		&packet.TCP{SrcPort: sport, DstPort: 22, Seq: 1, Ack: 1, Flags: packet.TCPSyn | packet.TCPAck, Window: 64240})
	ps = append(ps, probe{name: "unsolicited tcp syn-ack to 22 (ct state invalid)", frame: synack,
		reply: tcpReplyTo(peer6, sport), want: false, expected: true})

	echo := []byte{0x12, 0x34, 0, 1}
	ps = append(ps, probe{name: "icmpv6 echo request",
		frame: packet.MustBuild(eth(fwMAC), &packet.IPv6{Src: peer6, Dst: fw6}, &packet.ICMPv6{Type: 128, ID: 0x1234, Seq: 1}, packet.Payload("ping")),
		reply: icmp6Reply(peer6, 129, echo), want: true, expected: true})
	ps = append(ps, probe{name: "icmpv6 echo request from outside the subnet",
		frame: packet.MustBuild(eth(fwMAC), &packet.IPv6{Src: far6, Dst: fw6}, &packet.ICMPv6{Type: 128, ID: 0x1234, Seq: 2}, packet.Payload("ping")),
		reply: icmp6Reply(far6, 129, []byte{0x12, 0x34, 0, 2}), want: true, expected: true})

	// Neighbour solicitation for the fw's address: accepted with hop
	// limit 255 (ufw's rule and the kernel's ND both require it).
	target := fw6.As16()
	ns := append(append([]byte(nil), target[:]...), 1, 1)
	ns = append(ns, peerMAC...)
	snm := netip.AddrFrom16([16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: target[13], 14: target[14], 15: target[15]})
	snmMAC := net.HardwareAddr{0x33, 0x33, 0xff, target[13], target[14], target[15]}
	for _, hl := range []uint8{255, 64} {
		ps = append(ps, probe{name: fmt.Sprintf("icmpv6 neighbour solicitation, hop limit %d", hl),
			frame: packet.MustBuild(eth(snmMAC), &packet.IPv6{Src: peer6, Dst: snm, HopLimit: packet.Ptr(hl)}, &packet.ICMPv6{Type: 135}, packet.Payload(ns)),
			reply: advertises(peer6, target), want: hl == 255, expected: true})
	}

	// Multicast: mDNS to ff02::fb is accepted, another port is not.
	mdnsMAC := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 0xfb}
	for _, port := range []uint16{5353, 5354} {
		ps = append(ps, probe{name: fmt.Sprintf("udp to ff02::fb port %d", port),
			frame:   packet.MustBuild(eth(mdnsMAC), &packet.IPv6{Src: peer6, Dst: netip.MustParseAddr("ff02::fb")}, &packet.UDP{SrcPort: 5353, DstPort: port}, packet.Payload("mdns")),
			udpPort: int(port), want: port == 5353, expected: true})
	}
	ps = append(ps, probe{name: "udp 80 from 2001:db8:1::5 (no IPv6 rule)",
		frame:   packet.MustBuild(eth(fwMAC), &packet.IPv6{Src: far6, Dst: fw6}, &packet.UDP{SrcPort: 4000, DstPort: 80}, packet.Payload("x")),
		udpPort: 80, want: false, expected: true})

	// The fw's own connections: the replies are established.
	ps = append(ps, probe{name: "fw connects to the peer over tcp (reply established)", want: true, expected: true,
		do: func(tw *twin) (bool, error) { return tw.dialTCP(peer6) }})
	ps = append(ps, probe{name: "fw sends udp to the peer (reply established)", want: true, expected: true,
		do: func(tw *twin) (bool, error) { return tw.askUDP(peer6) }})
	return ps
}

// syn4 is a TCP SYN from src to the fw's port dport and the match of its
// answer.
func syn4(src netip.Addr, dport uint16) ([]byte, func([]byte) bool) {
	sport++
	return packet.MustBuild(eth(fwMAC), &packet.IPv4{Src: src, Dst: fw4},
		&packet.TCP{SrcPort: sport, DstPort: dport, Seq: 1000, Flags: packet.TCPSyn, Window: 64240}), tcpReplyTo(src, sport)
}

// probes4 are the IPv4 probes.
func probes4() []probe {
	var ps []probe
	addSyn := func(name string, src netip.Addr, dport uint16, want bool) {
		f, m := syn4(src, dport)
		ps = append(ps, probe{name: name, frame: f, reply: m, want: want, expected: true})
	}
	addSyn("tcp 22 (ufw allow 22/tcp)", peer4, 22, true)
	addSyn("tcp 23 (default deny)", peer4, 23, false)
	addSyn("tcp 80 from 198.51.100.0/24 (allowed)", far4, 80, true)
	addSyn("tcp 80 from outside 198.51.100.0/24", peer4, 80, false)
	addSyn("tcp 8080 (allowed over IPv6 only)", far4, 8080, false)

	sport++
	synack := packet.MustBuild(eth(fwMAC), &packet.IPv4{Src: peer4, Dst: fw4},
		&packet.TCP{SrcPort: sport, DstPort: 22, Seq: 1, Ack: 1, Flags: packet.TCPSyn | packet.TCPAck, Window: 64240})
	ps = append(ps, probe{name: "unsolicited tcp syn-ack to 22 (ct state invalid)", frame: synack,
		reply: tcpReplyTo(peer4, sport), want: false, expected: true})

	ps = append(ps, probe{name: "icmp echo request",
		frame: packet.MustBuild(eth(fwMAC), &packet.IPv4{Src: peer4, Dst: fw4}, &packet.ICMP{Type: 8, ID: 0x4321, Seq: 1}, packet.Payload("ping")),
		reply: func(f []byte) bool {
			proto, th := transport(f, peer4)
			return proto == packet.ProtoICMP && len(th) >= 8 && th[0] == 0 && binary.BigEndian.Uint16(th[4:]) == 0x4321
		}, want: true, expected: true})

	udp := func(name string, dstMAC net.HardwareAddr, src, dst netip.Addr, sp, dp uint16, want bool) {
		ps = append(ps, probe{name: name,
			frame:   packet.MustBuild(eth(dstMAC), &packet.IPv4{Src: src, Dst: dst}, &packet.UDP{SrcPort: sp, DstPort: dp}, packet.Payload("x")),
			udpPort: int(dp), want: want, expected: true})
	}
	bcastMAC := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mdnsMAC := net.HardwareAddr{0x01, 0x00, 0x5e, 0, 0, 0xfb}
	bcast := netip.MustParseAddr("192.0.2.255")
	mdns := netip.MustParseAddr("224.0.0.251")
	udp("udp 80 from 198.51.100.0/24 (allowed)", fwMAC, far4, fw4, 4000, 80, true)
	udp("udp 80 from outside 198.51.100.0/24", fwMAC, peer4, fw4, 4000, 80, false)
	udp("broadcast udp 67 to 68 (dhcp reply, allowed)", bcastMAC, peer4, bcast, 67, 68, true)
	udp("broadcast udp to 5354 (ufw-not-local returns, then dropped)", bcastMAC, peer4, bcast, 4000, 5354, false)
	udp("multicast udp to 224.0.0.251:5353 (mdns, allowed)", mdnsMAC, peer4, mdns, 5353, 5353, true)
	udp("multicast udp to 224.0.0.251:5354", mdnsMAC, peer4, mdns, 5353, 5354, false)

	ps = append(ps, probe{name: "fw connects to the peer over tcp (reply established)", want: true, expected: true,
		do: func(tw *twin) (bool, error) { return tw.dialTCP(peer4) }})
	ps = append(ps, probe{name: "fw sends udp to the peer (reply established)", want: true, expected: true,
		do: func(tw *twin) (bool, error) { return tw.askUDP(peer4) }})
	return ps
}

// TestUFW4 is TestUFW6 for ufw's IPv4 script (with -m addrtype in
// ufw-not-local and after.rules).
func TestUFW4(t *testing.T) {
	privtest.Require(t)
	needUFW(t)
	v4, _ := assemble(t)
	kernel := newTwin(t, "kernel")
	kernel.loadKernel(t, "iptables-restore", v4)
	bpf := newTwin(t, "bpf")
	bpf.loadBPF(t, nlmsg.FamilyIPv4, v4)
	compareTwins(t, kernel, bpf, probes4())
}

// TestUFW6 loads ufw's assembled IPv6 script into twin namespaces, with
// ip6tables-restore (nftables backend) and with bpfilter-nft, and sends the
// same probes to both: every probe must have the same outcome, and the
// outcome ufw's rules give.
func TestUFW6(t *testing.T) {
	privtest.Require(t)
	needUFW(t)
	_, v6 := assemble(t)
	kernel := newTwin(t, "kernel")
	kernel.loadKernel(t, "ip6tables-restore", v6)
	bpf := newTwin(t, "bpf")
	bpf.loadBPF(t, nlmsg.FamilyIPv6, v6)
	compareTwins(t, kernel, bpf, probes6())
}

// compareTwins runs probes against both twins.
func compareTwins(t *testing.T, kernel, bpf *twin, probes []probe) {
	t.Helper()
	yes := 0
	for _, p := range probes {
		k, b, err := p.outcomes(kernel, bpf)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		if k != b {
			t.Errorf("%s: kernel %v, bpf %v", p.name, k, b)
		}
		if p.expected && k != p.want {
			t.Errorf("%s: kernel %v, want %v (ufw's rules)", p.name, k, p.want)
		}
		if k {
			yes++
		}
		t.Logf("%-70s kernel %-5v bpf %v", p.name, k, b)
	}
	if yes == 0 || yes == len(probes) {
		t.Errorf("%d of %d probes got through: want some of both", yes, len(probes))
	}
}

// dialTCP reports whether the fw can connect to the peer's TCP listener at
// addr (the peer's answers come back as established traffic).
func (tw *twin) dialTCP(addr netip.Addr) (bool, error) {
	ok := false
	err := tw.fw.Do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(addr, peerTCPPort).String(), time.Second)
		if err == nil {
			ok = true
			c.Close()
		}
		return nil
	})
	return ok, err
}

// askUDP reports whether a datagram the fw sends to the peer's UDP echo
// at addr comes back.
func (tw *twin) askUDP(addr netip.Addr) (bool, error) {
	ok := false
	err := tw.fw.Do(func() error {
		c, err := net.Dial("udp", netip.AddrPortFrom(addr, peerUDPPort).String())
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("query")); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		ok = err == nil && string(buf[:n]) == "query"
		return nil
	})
	return ok, err
}

package nflog

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

var (
	src4 = netip.MustParseAddr("192.0.2.1")
	dst4 = netip.MustParseAddr("198.51.100.7")
	src6 = netip.MustParseAddr("2001:db8::1")
	dst6 = netip.MustParseAddr("2001:db8::2")
)

// ev is an event for an IP packet at a netfilter hook.
func ev(pf ir.Family, pkt []byte, mut ...func(*Event)) *Event {
	e := &Event{PF: pf, Avail: uint32(len(pkt)), Data: pkt}
	for _, m := range mut {
		m(e)
	}
	return e
}

// TestFormat checks lines against nf_log_syslog's format for packets the
// end-to-end test does not send: fragments, IPv6 extension headers,
// truncated headers, the mark, ARP and other protocols at netdev hooks.
func TestFormat(t *testing.T) {
	names := func(i uint32) string { return map[uint32]string{2: "veth0", 3: "veth1"}[i] }
	tcp := packet.MustBuild(&packet.IPv4{Src: src4, Dst: dst4, ID: 5, TTL: packet.Ptr[uint8](3)}, &packet.TCP{SrcPort: 1, DstPort: 2, Flags: packet.TCPSyn | packet.TCPAck | 0x800, Window: 7, Urgent: 9})
	frag := packet.MustBuild(&packet.IPv4{Src: src4, Dst: dst4, ID: 6, Flags: 4 | 1, FragOffset: 100, Protocol: packet.Ptr[uint8](17)}, packet.Payload("12345678"))
	frag[9] = 17
	hbh := packet.MustBuild(&packet.IPv6{Src: src6, Dst: dst6, TrafficClass: 0x12, FlowLabel: 0xabcde}, &packet.IPv6HopByHop{Options: []byte{1, 0}}, &packet.IPv6Fragment{ID: 0x1234, More: true}, &packet.UDP{SrcPort: 5, DstPort: 6})
	frag6 := packet.MustBuild(&packet.IPv6{Src: src6, Dst: dst6}, &packet.IPv6Fragment{ID: 7, Offset: 3, NextHeader: packet.Ptr[uint8](6)}, packet.Payload("abcdefgh"))
	arp := make([]byte, 28)
	binary.BigEndian.PutUint16(arp[0:], 1)
	binary.BigEndian.PutUint16(arp[2:], 0x0800)
	arp[4], arp[5] = 6, 4
	binary.BigEndian.PutUint16(arp[6:], 1)
	copy(arp[8:], []byte{2, 0, 0, 0, 0, 1, 192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 192, 0, 2, 2})
	mac := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 6}
	for _, c := range []struct {
		name string
		ev   *Event
		want string
	}{
		{"tcp output with mark", ev(ir.FamilyIPv4, tcp, func(e *Event) { e.Out, e.Mark = 3, 0x2a; e.Prefix = "out " }),
			"out IN= OUT=veth1 SRC=192.0.2.1 DST=198.51.100.7 LEN=40 TOS=0x00 PREC=0x00 TTL=3 ID=5 PROTO=TCP SPT=1 DPT=2 WINDOW=7 RES=0x20 ACK SYN URGP=9 MARK=0x2a "},
		{"forward, no mac captured", ev(ir.FamilyIPv4, tcp, func(e *Event) { e.In, e.Out = 2, 3 }),
			"IN=veth0 OUT=veth1 MAC= SRC=192.0.2.1 DST=198.51.100.7 LEN=40 TOS=0x00 PREC=0x00 TTL=3 ID=5 PROTO=TCP SPT=1 DPT=2 WINDOW=7 RES=0x20 ACK SYN URGP=9 "},
		{"truncated tcp", ev(ir.FamilyIPv4, tcp[:30], func(e *Event) { e.Mark = 1 }),
			"IN= OUT= SRC=192.0.2.1 DST=198.51.100.7 LEN=40 TOS=0x00 PREC=0x00 TTL=3 ID=5 PROTO=TCP INCOMPLETE [10 bytes] "},
		{"ipv4 fragment", ev(ir.FamilyIPv4, frag),
			"IN= OUT= SRC=192.0.2.1 DST=198.51.100.7 LEN=28 TOS=0x00 PREC=0x00 TTL=64 ID=6 CE MF FRAG:100 PROTO=UDP "},
		{"ipv6 hop-by-hop, fragment header, ip options", ev(ir.FamilyIPv6, hbh, func(e *Event) { e.Flags = ir.LogIPOpt }),
			"IN= OUT= SRC=2001:db8::1 DST=2001:db8::2 LEN=64 TC=18 HOPLIMIT=64 FLOWLBL=703710 OPT ( ) OPT ( FRAG:0 INCOMPLETE ID:00001234 ) PROTO=UDP SPT=5 DPT=6 LEN=8 "},
		{"ipv6 non-first fragment", ev(ir.FamilyIPv6, frag6),
			"IN= OUT= SRC=2001:db8::1 DST=2001:db8::2 LEN=56 TC=0 HOPLIMIT=64 FLOWLBL=0 FRAG:24 ID:00000007 PROTO=TCP "},
		{"arp at netdev", ev(ir.FamilyNetdev, arp, func(e *Event) { e.Proto, e.In, e.MAC = 0x0806, 2, mac }),
			"IN=veth0 OUT= ARP HTYPE=1 PTYPE=0x0800 OPCODE=1 MACSRC=02:00:00:00:00:01 IPSRC=192.0.2.1 MACDST=00:00:00:00:00:00 IPDST=192.0.2.2"},
		{"other protocol at netdev", ev(ir.FamilyNetdev, []byte{1, 2, 3}, func(e *Event) { e.Proto, e.In, e.MAC = 0x88b5, 2, mac }),
			"IN=veth0 OUT= MAC=02:00:00:00:00:02:02:00:00:00:00:01:08:06 "},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Format(c.ev, names); got != c.want {
				t.Errorf("\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

// TestDecode round-trips an event through the ring buffer layout.
func TestDecode(t *testing.T) {
	b := make([]byte, codegen.LogEventLen)
	le := binary.LittleEndian
	le.PutUint32(b[codegen.EvMagic:], codegen.LogEventMagic)
	b[codegen.EvHook], b[codegen.EvPF], b[codegen.EvLevel] = byte(ir.HookInput), byte(ir.FamilyIPv4), 6
	le.PutUint32(b[codegen.EvIn:], 4)
	le.PutUint32(b[codegen.EvMark:], 9)
	le.PutUint16(b[codegen.EvCapLen:], 3)
	le.PutUint32(b[codegen.EvAvail:], 300)
	le.PutUint64(b[codegen.EvHandle:], 77)
	copy(b[codegen.EvPrefix:], "pfx")
	copy(b[codegen.EvData:], []byte{0x45, 0, 1})
	e, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.Hook != ir.HookInput || e.PF != ir.FamilyIPv4 || e.Level != 6 || e.In != 4 || e.Mark != 9 || e.Avail != 300 || e.Handle != 77 || e.Prefix != "pfx" || string(e.Data) != "\x45\x00\x01" || e.MAC != nil {
		t.Errorf("decoded %+v", e)
	}
	le.PutUint32(b[codegen.EvMagic:], 1)
	if _, err := Decode(b); err == nil {
		t.Error("bad magic accepted")
	}
	if _, err := Decode(b[:10]); err == nil {
		t.Error("short event accepted")
	}
}

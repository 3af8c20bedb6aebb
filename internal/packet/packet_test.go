package packet

import (
	"bytes"
	"encoding/hex"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var (
	rxMAC = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	txMAC = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	src4  = netip.MustParseAddr("192.0.2.1")
	dst4  = netip.MustParseAddr("192.0.2.2")
	src6  = netip.MustParseAddr("2001:db8::1")
	dst6  = netip.MustParseAddr("2001:db8::2")
)

func eth() *Ethernet { return &Ethernet{Dst: rxMAC, Src: txMAC} }

// The expected frames were computed independently, byte by byte, with a
// small Python script using struct packing and its own checksum and CRC32c
// implementations (RFC 1071, RFC 9260 appendix A); the IPv4 header is the
// well-known example from the Internet checksum literature.
func TestBuild(t *testing.T) {
	tests := []struct {
		name   string
		layers []Layer
		want   string
	}{
		{
			name: "vlan tags and raw payload",
			layers: []Layer{
				&Ethernet{Dst: rxMAC, Src: txMAC, Type: Ptr(EtherTypeLocal), Tags: []VLAN{
					{TPID: EtherTypeQinQ, PCP: 5, DEI: true, ID: 100},
					{ID: 7},
				}},
				Payload{0xde, 0xad},
			},
			want: "02000000000202000000000188a8b0648100000788b5dead",
		},
		{
			name: "ipv4 header checksum reference",
			layers: []Layer{&IPv4{
				Src: netip.MustParseAddr("192.168.0.1"), Dst: netip.MustParseAddr("192.168.0.199"),
				Flags: IPv4DontFragment, Protocol: Ptr(ProtoUDP), TotalLength: Ptr[uint16](0x73),
			}},
			want: "450000730000400040 11b861c0a80001c0a800c7",
		},
		{
			name: "ipv4 options tos fragment udp",
			layers: []Layer{eth(),
				&IPv4{Src: src4, Dst: dst4, TOS: 0xb9, ID: 0x1234, Flags: IPv4MoreFrags, FragOffset: 5,
					TTL: Ptr[uint8](3), Options: []byte{7, 7, 4, 0, 0}},
				&UDP{SrcPort: 1234, DstPort: 53}, Payload("abc")},
			want: "020000000002020000000001080047b90027123420050311f3c9c0000201c0000202070704000000000004d20035000bb26a616263",
		},
		{
			name: "tcp with options and AE flag",
			layers: []Layer{eth(), &IPv4{Src: src4, Dst: dst4},
				&TCP{SrcPort: 40000, DstPort: 443, Seq: 1, Flags: TCPSyn | TCPAE, Window: 65535,
					Options: []byte{2, 4, 5, 0xb4, 1, 1, 4, 2}},
				Payload("x")},
			want: "020000000002020000000001080045000031000000004006f6c3c0000201c00002029c4001bb00000001000000007102ffffe81d0000020405b40101040278",
		},
		{
			name: "ipv6 extension headers",
			layers: []Layer{eth(),
				&IPv6{Src: src6, Dst: dst6, TrafficClass: 0xa5, FlowLabel: 0x12345, HopLimit: Ptr[uint8](1)},
				&IPv6HopByHop{Options: []byte{5, 2, 0, 0}},
				&IPv6Routing{Type: 4},
				&IPv6Fragment{ID: 0xabcdef01},
				&IPv6DestOpts{},
				&UDP{SrcPort: 5000, DstPort: 6000}, Payload("hi")},
			want: "02000000000202000000000186dd6a512345002a000120010db800000000000000000000000120010db80000000000000000000000022b000502000001002c000400000000003c000000abcdef01110001040000000013881770000a11046869",
		},
		{
			name: "icmp echo",
			layers: []Layer{eth(), &IPv4{Src: src4, Dst: dst4},
				&ICMP{Type: ICMPEchoRequest, ID: 0x77, Seq: 2}, Payload("ping")},
			want: "020000000002020000000001080045000020000000004001f6d9c0000201c0000202080018b60077000270696e67",
		},
		{
			name: "icmpv6 echo",
			layers: []Layer{eth(), &IPv6{Src: src6, Dst: dst6},
				&ICMPv6{Type: ICMPv6EchoReq, ID: 0x77, Seq: 2}, Payload("ping")},
			want: "02000000000202000000000186dd60000000000c3a4020010db800000000000000000000000120010db8000000000000000000000002800044fa0077000270696e67",
		},
		{
			name: "udplite partial coverage",
			layers: []Layer{eth(), &IPv4{Src: src4, Dst: dst4},
				&UDPLite{SrcPort: 7, DstPort: 8, Coverage: 8}, Payload("payload!")},
			want: "020000000002020000000001080045000024000000004088f64ec0000201c00002020007000800087b4c7061796c6f616421",
		},
		{
			name: "sctp init with crc32c",
			layers: []Layer{eth(), &IPv4{Src: src4, Dst: dst4},
				&SCTP{SrcPort: 5000, DstPort: 7},
				Payload{1, 0, 0, 20, 0x11, 0x22, 0x33, 0x44, 0, 0, 0xff, 0xff, 0, 10, 0, 10, 0x55, 0x66, 0x77, 0x88}},
			want: "020000000002020000000001080045000034000000004084f642c0000201c00002021388000700000000f757c89a01000014112233440000ffff000a000a55667788",
		},
		{
			name: "deliberately bad ipv4 fields",
			layers: []Layer{&IPv4{Src: src4, Dst: dst4, Version: Ptr[uint8](5), IHL: Ptr[uint8](4),
				TotalLength: Ptr[uint16](1000), Checksum: Ptr[uint16](0xbeef)}, &RawIP{Protocol: 253}},
			want: "5400 03e8 0000 0000 40fd beef c0000201 c0000202",
		},
		{
			name: "udp without checksum and bad length",
			layers: []Layer{&IPv4{Src: src4, Dst: dst4, Protocol: Ptr[uint8](17)},
				&UDP{SrcPort: 1, DstPort: 2, Length: Ptr[uint16](3), Checksum: Ptr[uint16](0)}},
			want: "4500001c000000004011f6cdc0000201c0000202 0001000200030000",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Build(tt.layers...)
			if err != nil {
				t.Fatal(err)
			}
			want, err := hex.DecodeString(strings.ReplaceAll(tt.want, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Build =\n%x\nwant\n%x", got, want)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name   string
		layers []Layer
		want   string
	}{
		{"no layers", nil, "no layers"},
		{"short mac", []Layer{&Ethernet{Dst: rxMAC[:5], Src: txMAC}, &IPv4{Src: src4, Dst: dst4}, &RawIP{}}, "MAC addresses"},
		{"ethertype unknown", []Layer{eth(), Payload{1}}, "EtherType not set"},
		{"ipv4 protocol unknown", []Layer{eth(), &IPv4{Src: src4, Dst: dst4}, Payload{1}}, "protocol not set"},
		{"ipv4 with v6 address", []Layer{&IPv4{Src: src6, Dst: dst4}, &RawIP{}}, "IPv4 addresses"},
		{"ipv6 with v4 address", []Layer{&IPv6{Src: src4, Dst: dst6}, &RawIP{}}, "IPv6 addresses"},
		{"tcp without ip", []Layer{&TCP{}}, "checksum needs an IP layer"},
		{"ipv4 options too long", []Layer{&IPv4{Src: src4, Dst: dst4, Options: make([]byte, 41)}, &RawIP{}}, "at most 40"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.layers...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	f := []byte{1, 2, 3, 4}
	tests := []struct {
		got, want []byte
	}{
		{Truncate(f, 2), []byte{1, 2}},
		{Truncate(f, 9), f},
		{Truncate(f, -1), []byte{}},
		{TruncateFromEnd(f, 1), []byte{1, 2, 3}},
		{TruncateFromEnd(f, 5), []byte{}},
	}
	for i, tt := range tests {
		if !bytes.Equal(tt.got, tt.want) {
			t.Errorf("case %d: got %x, want %x", i, tt.got, tt.want)
		}
	}
	g := Truncate(f, 2)
	g[0] = 9
	if f[0] != 1 {
		t.Error("Truncate shares memory with its input")
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		layers []Layer
		want   Info
	}{
		{
			name:   "qinq ipv4 tcp",
			layers: []Layer{&Ethernet{Dst: rxMAC, Src: txMAC, Tags: []VLAN{{TPID: EtherTypeQinQ, ID: 10}, {ID: 20, PCP: 3}}}, &IPv4{Src: src4, Dst: dst4}, &TCP{}},
			want: Info{Tags: []VLAN{{TPID: EtherTypeQinQ, ID: 10}, {TPID: EtherTypeVLAN, ID: 20, PCP: 3}},
				EtherType: EtherTypeIPv4, NetworkOffset: 22, NetworkEnd: 62, Src: src4, Dst: dst4, Proto: ProtoTCP, TransportOffset: 42},
		},
		{
			name:   "ipv4 with options, non-first fragment",
			layers: []Layer{eth(), &IPv4{Src: src4, Dst: dst4, FragOffset: 3, Options: []byte{1, 1, 1, 1}}, &UDP{}},
			want: Info{EtherType: EtherTypeIPv4, NetworkOffset: 14, NetworkEnd: 46, Src: src4, Dst: dst4, Proto: ProtoUDP,
				FragOffset: 24, Fragmented: true, TransportOffset: -1},
		},
		{
			name:   "ipv6 ext headers first fragment",
			layers: []Layer{eth(), &IPv6{Src: src6, Dst: dst6}, &IPv6HopByHop{}, &IPv6Fragment{More: true}, &ICMPv6{}},
			want: Info{EtherType: EtherTypeIPv6, NetworkOffset: 14, NetworkEnd: 78, Src: src6, Dst: dst6, Proto: ProtoICMPv6,
				MoreFragments: true, Fragmented: true, TransportOffset: 70},
		},
		{
			name:   "ipv6 non-first fragment",
			layers: []Layer{eth(), &IPv6{Src: src6, Dst: dst6}, &IPv6Fragment{Offset: 2}, &UDP{}},
			want: Info{EtherType: EtherTypeIPv6, NetworkOffset: 14, NetworkEnd: 70, Src: src6, Dst: dst6, Proto: ProtoUDP,
				FragOffset: 16, Fragmented: true, TransportOffset: -1},
		},
		{
			name:   "arp",
			layers: []Layer{&Ethernet{Dst: rxMAC, Src: txMAC, Type: Ptr(EtherTypeARP)}, Payload(make([]byte, 28))},
			want:   Info{EtherType: EtherTypeARP, NetworkOffset: -1, NetworkEnd: -1, TransportOffset: -1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(MustBuild(tt.layers...))
			if err != nil {
				t.Fatal(err)
			}
			if !equalInfo(*got, tt.want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", *got, tt.want)
			}
		})
	}
	if _, err := Parse(make([]byte, 13)); err == nil {
		t.Error("Parse of a 13-byte frame did not fail")
	}
}

func equalInfo(a, b Info) bool {
	return slices.Equal(a.Tags, b.Tags) &&
		a.EtherType == b.EtherType && a.NetworkOffset == b.NetworkOffset && a.NetworkEnd == b.NetworkEnd &&
		a.Src == b.Src && a.Dst == b.Dst && a.Proto == b.Proto && a.FragOffset == b.FragOffset &&
		a.MoreFragments == b.MoreFragments && a.Fragmented == b.Fragmented && a.TransportOffset == b.TransportOffset
}

// TestFixChecksums patches fields of built frames and checks that the
// fixed frame equals a frame built with the patched values.
func TestFixChecksums(t *testing.T) {
	tests := []struct {
		name          string
		before, after []Layer
		patch         func([]byte)
	}{
		{
			name:   "ipv4 ttl and tcp port",
			before: []Layer{eth(), &IPv4{Src: src4, Dst: dst4}, &TCP{SrcPort: 1, DstPort: 2}, Payload("abc")},
			after:  []Layer{eth(), &IPv4{Src: src4, Dst: dst4, TTL: Ptr[uint8](7)}, &TCP{SrcPort: 1, DstPort: 0x0102}, Payload("abc")},
			patch:  func(b []byte) { b[14+8] = 7; b[34+2] = 1 },
		},
		{
			name:   "ipv6 udp payload",
			before: []Layer{eth(), &IPv6{Src: src6, Dst: dst6}, &IPv6DestOpts{}, &UDP{SrcPort: 1, DstPort: 2}, Payload("abc")},
			after:  []Layer{eth(), &IPv6{Src: src6, Dst: dst6}, &IPv6DestOpts{}, &UDP{SrcPort: 1, DstPort: 2}, Payload("abd")},
			patch:  func(b []byte) { b[len(b)-1] = 'd' },
		},
		{
			name:   "icmp code",
			before: []Layer{eth(), &IPv4{Src: src4, Dst: dst4}, &ICMP{Type: 3}},
			after:  []Layer{eth(), &IPv4{Src: src4, Dst: dst4}, &ICMP{Type: 3, Code: 4}},
			patch:  func(b []byte) { b[35] = 4 },
		},
		{
			name:   "icmpv6 id",
			before: []Layer{eth(), &IPv6{Src: src6, Dst: dst6}, &ICMPv6{Type: 128}},
			after:  []Layer{eth(), &IPv6{Src: src6, Dst: dst6}, &ICMPv6{Type: 128, ID: 9}},
			patch:  func(b []byte) { b[54+5] = 9 },
		},
		{
			name:   "sctp port",
			before: []Layer{eth(), &IPv4{Src: src4, Dst: dst4}, &SCTP{SrcPort: 1}},
			after:  []Layer{eth(), &IPv4{Src: src4, Dst: dst4}, &SCTP{SrcPort: 2}},
			patch:  func(b []byte) { b[35] = 2 },
		},
		{
			name:   "udplite coverage",
			before: []Layer{eth(), &IPv4{Src: src4, Dst: dst4}, &UDPLite{}, Payload("0123456789")},
			after:  []Layer{eth(), &IPv4{Src: src4, Dst: dst4}, &UDPLite{Coverage: 9}, Payload("0123456789")},
			patch:  func(b []byte) { b[34+5] = 9 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MustBuild(tt.before...)
			tt.patch(got)
			if err := FixChecksums(got); err != nil {
				t.Fatal(err)
			}
			if want := MustBuild(tt.after...); !bytes.Equal(got, want) {
				t.Errorf("fixed frame\n%x\nwant\n%x", got, want)
			}
		})
	}
}

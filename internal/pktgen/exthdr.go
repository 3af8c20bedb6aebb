package pktgen

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// ExtHdr is one IPv6 extension header of a crafted frame: its protocol
// number and its bytes (the next header byte is filled in by IPv6Frame).
type ExtHdr struct {
	Proto uint8
	Bytes []byte
}

// IPv6Frame builds an Ethernet frame carrying an IPv6 packet from src to
// dst with the extension headers hdrs and then the payload of protocol
// proto. The payload length field counts exactly the bytes that follow the
// fixed header, so truncated headers make a consistent packet.
func IPv6Frame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, hdrs []ExtHdr, proto uint8, payload []byte) []byte {
	var body []byte
	for i, h := range hdrs {
		b := append([]byte(nil), h.Bytes...)
		if len(b) > 0 {
			if i+1 < len(hdrs) {
				b[0] = hdrs[i+1].Proto
			} else {
				b[0] = proto
			}
		}
		body = append(body, b...)
	}
	body = append(body, payload...)
	first := proto
	if len(hdrs) > 0 {
		first = hdrs[0].Proto
	}
	f := make([]byte, 0, 14+40+len(body))
	f = append(f, dstMAC...)
	f = append(f, srcMAC...)
	f = append(f, 0x86, 0xdd)
	f = append(f, 0x60, 0, 0, 0)
	f = binary.BigEndian.AppendUint16(f, uint16(len(body)))
	f = append(f, first, 64)
	s, d := src.As16(), dst.As16()
	f = append(f, s[:]...)
	f = append(f, d[:]...)
	return append(f, body...)
}

// udpPayload is a UDP header (ports 4000 → 9, checksum 0 is not checked
// before the input hook) with four bytes of data.
func udpPayload() []byte {
	return []byte{0x0f, 0xa0, 0, 9, 0, 12, 0, 0, 'd', 'a', 't', 'a'}
}

// routing returns a routing header of type typ with segments left segs
// and hdrlen (in 8-byte units after the first 8), reserved word res.
func routing(typ, segs, hdrlen uint8, res uint32) ExtHdr {
	b := make([]byte, 8+8*int(hdrlen))
	b[1], b[2], b[3] = hdrlen, typ, segs
	binary.BigEndian.PutUint32(b[4:], res)
	for i := 8; i < len(b); i++ {
		b[i] = byte(0x20 + i) // addresses: any bytes
	}
	return ExtHdr{Proto: 43, Bytes: b}
}

// IPv6ExtHdrCases are frames that probe how IPv6 extension headers are
// found (ipv6_find_hdr): routing headers of types 0, 2 and 4 with several
// segments-left and length values, alone and behind hop-by-hop,
// destination options, fragment and authentication headers; non-first
// fragments; headers cut short by the end of the packet (malformed) and
// headers whose length field reaches beyond it; NEXTHDR_NONE and ESP.
func IPv6ExtHdrCases(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr) []Case {
	hbh := ExtHdr{Proto: 0, Bytes: []byte{0, 0, 1, 4, 0, 0, 0, 0}}    // PadN
	dopt := ExtHdr{Proto: 60, Bytes: []byte{0, 0, 1, 4, 0, 0, 0, 0}}  // PadN
	frag0 := ExtHdr{Proto: 44, Bytes: []byte{0, 0, 0, 1, 0, 0, 0, 7}} // offset 0, more fragments
	fragN := ExtHdr{Proto: 44, Bytes: []byte{0, 0, 0, 8, 0, 0, 0, 7}} // offset 1 (8 bytes), last
	ah := ExtHdr{Proto: 51, Bytes: make([]byte, 24)}                  // payload len 4: (4+2)*4 bytes
	ah.Bytes[1] = 4
	udp := udpPayload()
	type tc struct {
		name  string
		hdrs  []ExtHdr
		proto uint8
		pay   []byte
	}
	cases := []tc{
		{"no extension header", nil, 17, udp},
		{"rt type 0 segleft 0 len 8", []ExtHdr{routing(0, 0, 0, 0)}, 17, udp},
		{"rt type 0 segleft 1 len 24", []ExtHdr{routing(0, 1, 2, 0)}, 17, udp},
		{"rt type 0 segleft 3 len 24", []ExtHdr{routing(0, 3, 2, 0)}, 17, udp},
		{"rt type 0 segleft 5 len 40 reserved 1", []ExtHdr{routing(0, 5, 4, 1)}, 17, udp},
		{"rt type 0 segleft 0 len 24 reserved 0x80000000", []ExtHdr{routing(0, 0, 2, 0x80000000)}, 17, udp},
		{"rt type 2 segleft 1 len 24", []ExtHdr{routing(2, 1, 2, 0)}, 17, udp},
		{"rt type 2 segleft 0 len 24", []ExtHdr{routing(2, 0, 2, 0)}, 17, udp},
		{"rt type 4 segleft 2 len 40", []ExtHdr{routing(4, 2, 4, 0)}, 17, udp},
		{"rt type 4 segleft 255 len 8", []ExtHdr{routing(4, 255, 0, 0)}, 17, udp},
		{"rt type 255 segleft 4 len 16", []ExtHdr{routing(255, 4, 1, 0)}, 17, udp},
		{"rt type 0 behind hbh", []ExtHdr{hbh, routing(0, 1, 2, 0)}, 17, udp},
		{"rt type 2 behind hbh and dst", []ExtHdr{hbh, dopt, routing(2, 1, 2, 0)}, 17, udp},
		{"rt type 0 behind dst", []ExtHdr{dopt, routing(0, 2, 2, 0)}, 17, udp},
		{"rt type 0 behind first fragment", []ExtHdr{frag0, routing(0, 1, 2, 0)}, 17, udp},
		{"rt type 0 behind non-first fragment", []ExtHdr{fragN, routing(0, 1, 2, 0)}, 17, udp},
		{"rt type 0 before first fragment", []ExtHdr{routing(0, 1, 2, 0), frag0}, 17, udp},
		{"rt type 0 before non-first fragment", []ExtHdr{routing(0, 1, 2, 0), fragN}, 17, udp},
		{"rt type 0 behind ah", []ExtHdr{ah, routing(0, 3, 2, 0)}, 17, udp},
		{"first fragment alone", []ExtHdr{frag0}, 17, udp},
		{"non-first fragment alone", []ExtHdr{fragN}, 17, udp},
		{"hbh, no rt", []ExtHdr{hbh}, 17, udp},
		{"dst, no rt", []ExtHdr{dopt}, 58, []byte{128, 0, 0, 0, 0, 1, 0, 1}},
		{"rt type 0 then no next header", []ExtHdr{routing(0, 1, 2, 0)}, 59, nil},
		{"no next header", nil, 59, nil},
		{"esp", nil, 50, []byte{0, 0, 0, 1, 0, 0, 0, 1, 43, 0, 0, 0, 0, 0, 0, 0}},
		{"rt cut to 1 byte", []ExtHdr{{43, []byte{0}}}, 0, nil},
		{"rt cut to 3 bytes", []ExtHdr{{43, []byte{0, 0, 0}}}, 0, nil},
		{"rt cut to 4 bytes", []ExtHdr{{43, []byte{0, 2, 0, 1}}}, 0, nil},
		{"rt type 0 len 24 cut to 8 bytes", []ExtHdr{{43, routing(0, 1, 2, 0).Bytes[:8]}}, 0, nil},
		{"rt type 0 len 24 cut to 16 bytes", []ExtHdr{{43, routing(0, 1, 2, 0).Bytes[:16]}}, 0, nil},
		{"dst then rt of 0 bytes", []ExtHdr{dopt, {43, nil}}, 0, nil},
		{"dst cut to 1 byte", []ExtHdr{{60, []byte{0}}}, 0, nil},
		{"dst then rt cut to 2 bytes", []ExtHdr{dopt, {43, []byte{0, 0}}}, 0, nil},
		{"dst longer than the packet", []ExtHdr{{60, []byte{0, 3, 1, 4, 0, 0, 0, 0}}}, 0, nil},
		{"fragment header cut to 3 bytes", []ExtHdr{{44, []byte{0, 0, 0}}}, 0, nil},
		{"ah cut to 1 byte", []ExtHdr{{51, []byte{0}}}, 0, nil},
	}
	var out []Case
	for _, c := range cases {
		out = append(out, Case{Name: "ipv6 exthdr: " + c.name, Frame: IPv6Frame(srcMAC, dstMAC, src, dst, c.hdrs, c.proto, c.pay)})
	}
	return out
}

package codegen

import "encoding/binary"

// Test frame builder. Addresses come from the documentation ranges.

var (
	macDst = []byte{0x02, 0, 0, 0, 0, 0x02}
	macSrc = []byte{0x02, 0, 0, 0, 0, 0x01}
	srcV4  = ip4(192, 0, 2, 1)
	dstV4  = ip4(198, 51, 100, 2)
	srcV6  = []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	dstV6  = []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}
)

// eth returns an Ethernet frame; tags are 802.1Q VLAN ids pushed outermost first.
func eth(etype uint16, payload []byte, tags ...uint16) []byte {
	f := append([]byte{}, macDst...)
	f = append(f, macSrc...)
	for _, tag := range tags {
		f = binary.BigEndian.AppendUint16(f, 0x8100)
		f = binary.BigEndian.AppendUint16(f, tag)
	}
	f = binary.BigEndian.AppendUint16(f, etype)
	return append(f, payload...)
}

// v4 describes an IPv4 header.
type v4 struct {
	proto   byte
	src     []byte
	dst     []byte
	ttl     byte
	id      uint16
	frag    uint16 // flags and offset field
	opts    []byte // options, a multiple of 4 bytes
	tos     byte
	totLen  int // overrides tot_len when nonzero
	ihl     int // overrides ihl when nonzero
	version int // overrides the version when nonzero
}

func (h v4) build(payload []byte) []byte {
	src, dst := h.src, h.dst
	if src == nil {
		src = srcV4
	}
	if dst == nil {
		dst = dstV4
	}
	ttl := h.ttl
	if ttl == 0 {
		ttl = 64
	}
	ihl := 5 + len(h.opts)/4
	if h.ihl != 0 {
		ihl = h.ihl
	}
	ver := 4
	if h.version != 0 {
		ver = h.version
	}
	tot := 20 + len(h.opts) + len(payload)
	if h.totLen != 0 {
		tot = h.totLen
	}
	p := []byte{byte(ver<<4 | ihl), h.tos}
	p = binary.BigEndian.AppendUint16(p, uint16(tot))
	p = binary.BigEndian.AppendUint16(p, h.id)
	p = binary.BigEndian.AppendUint16(p, h.frag)
	p = append(p, ttl, h.proto, 0, 0)
	p = append(p, src...)
	p = append(p, dst...)
	p = append(p, h.opts...)
	return append(p, payload...)
}

// v6 describes an IPv6 header and its extension headers.
type v6 struct {
	nexthdr  byte
	src, dst []byte
	hlim     byte
	flow     uint32 // traffic class and flow label: low 28 bits
	ext      [][]byte
	plen     int // overrides payload_len when nonzero
}

func (h v6) build(payload []byte) []byte {
	src, dst := h.src, h.dst
	if src == nil {
		src = srcV6
	}
	if dst == nil {
		dst = dstV6
	}
	hlim := h.hlim
	if hlim == 0 {
		hlim = 64
	}
	var body []byte
	for _, e := range h.ext {
		body = append(body, e...)
	}
	body = append(body, payload...)
	plen := len(body)
	if h.plen != 0 {
		plen = h.plen
	}
	p := binary.BigEndian.AppendUint32(nil, 6<<28|h.flow&0x0fffffff)
	p = binary.BigEndian.AppendUint16(p, uint16(plen))
	first := h.nexthdr
	p = append(p, first, hlim)
	p = append(p, src...)
	p = append(p, dst...)
	return append(p, body...)
}

// ext6 is a generic IPv6 option header (hop-by-hop, dest opts, routing)
// of 8*(hdrlen+1) bytes.
func ext6(next byte, hdrlen byte) []byte {
	e := make([]byte, 8*(int(hdrlen)+1))
	e[0], e[1] = next, hdrlen
	return e
}

// frag6 is an IPv6 fragment header; off is in 8-byte units.
func frag6(next byte, off uint16, more bool) []byte {
	v := off << 3
	if more {
		v |= 1
	}
	e := []byte{next, 0}
	e = binary.BigEndian.AppendUint16(e, v)
	return append(e, 0, 0, 0, 42)
}

func tcp(sport, dport uint16, flags byte) []byte {
	p := binary.BigEndian.AppendUint16(nil, sport)
	p = binary.BigEndian.AppendUint16(p, dport)
	p = binary.BigEndian.AppendUint32(p, 1000) // seq
	p = binary.BigEndian.AppendUint32(p, 0)    // ack
	p = append(p, 5<<4, flags)
	p = binary.BigEndian.AppendUint16(p, 512) // window
	return append(p, 0, 0, 0, 0)
}

func udp(sport, dport uint16, payload []byte) []byte {
	p := binary.BigEndian.AppendUint16(nil, sport)
	p = binary.BigEndian.AppendUint16(p, dport)
	p = binary.BigEndian.AppendUint16(p, uint16(8+len(payload)))
	p = append(p, 0, 0)
	return append(p, payload...)
}

func icmp(typ, code byte, id uint16) []byte {
	p := []byte{typ, code, 0, 0}
	p = binary.BigEndian.AppendUint16(p, id)
	return append(p, 0, 1)
}

const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

func tcp4(dport uint16) []byte {
	return eth(0x0800, v4{proto: protoTCP}.build(tcp(40000, dport, 0x02)))
}
func udp4(dport uint16) []byte {
	return eth(0x0800, v4{proto: protoUDP}.build(udp(40000, dport, []byte("hello"))))
}
func tcp6(dport uint16) []byte {
	return eth(0x86dd, v6{nexthdr: protoTCP}.build(tcp(40000, dport, 0x02)))
}

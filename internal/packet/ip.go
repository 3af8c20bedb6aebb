package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// IP protocol numbers used by this package.
const (
	ProtoHopByHop uint8 = 0
	ProtoICMP     uint8 = 1
	ProtoTCP      uint8 = 6
	ProtoUDP      uint8 = 17
	ProtoRouting  uint8 = 43
	ProtoFragment uint8 = 44
	ProtoICMPv6   uint8 = 58
	ProtoNoNext   uint8 = 59
	ProtoDestOpts uint8 = 60
	ProtoSCTP     uint8 = 132
	ProtoUDPLite  uint8 = 136
)

// IPv4 header flags (the top three bits of the flags/fragment word).
const (
	IPv4Evil         uint8 = 4 // the reserved bit
	IPv4DontFragment uint8 = 2
	IPv4MoreFrags    uint8 = 1
)

// DefaultTTL is the TTL or hop limit of IP headers that do not set one.
const DefaultTTL = 64

// IPv4 is an IPv4 header.
type IPv4 struct {
	Src, Dst netip.Addr
	// TOS is the whole second byte: DSCP<<2 | ECN.
	TOS uint8
	ID  uint16
	// Flags are IPv4Evil, IPv4DontFragment and IPv4MoreFrags.
	Flags uint8
	// FragOffset is the fragment offset in 8-byte units (13 bits).
	FragOffset uint16
	// TTL is the time to live; nil means DefaultTTL.
	TTL *uint8
	// Options are the header options; they are padded with zero bytes
	// (end of option list) to a multiple of 4 bytes.
	Options []byte

	// Overrides: nil means "computed".
	Version     *uint8  // 4
	IHL         *uint8  // header length in 32-bit words
	TotalLength *uint16 // header plus payload
	Protocol    *uint8  // from the next layer
	Checksum    *uint16 // header checksum
}

func (*IPv4) etherType() uint16 { return EtherTypeIPv4 }

func (ip *IPv4) pseudoHeader(proto uint8, length int) []byte {
	b := make([]byte, 0, 12)
	b = append(b, ip.Src.AsSlice()...)
	b = append(b, ip.Dst.AsSlice()...)
	b = append(b, 0, proto)
	return binary.BigEndian.AppendUint16(b, uint16(length))
}

func (ip *IPv4) encode(payload []byte, ctx context) ([]byte, error) {
	if !ip.Src.Is4() || !ip.Dst.Is4() {
		return nil, fmt.Errorf("IPv4 addresses required (src %v, dst %v)", ip.Src, ip.Dst)
	}
	opts := append([]byte(nil), ip.Options...)
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	if len(opts) > 40 {
		return nil, fmt.Errorf("%d bytes of options, at most 40 fit", len(opts))
	}
	hlen := 20 + len(opts)
	proto, ok := ctx.nextProtocol()
	if ip.Protocol != nil {
		proto = *ip.Protocol
	} else if !ok {
		return nil, fmt.Errorf("protocol not set and next layer %T has none", ctx.next)
	}
	version := uint8(4)
	if ip.Version != nil {
		version = *ip.Version
	}
	ihl := uint8(hlen / 4)
	if ip.IHL != nil {
		ihl = *ip.IHL
	}
	total := hlen + len(payload)
	if ip.TotalLength == nil && total > 0xffff {
		return nil, fmt.Errorf("total length %d too large", total)
	}
	if ip.TotalLength != nil {
		total = int(*ip.TotalLength)
	}
	ttl := uint8(DefaultTTL)
	if ip.TTL != nil {
		ttl = *ip.TTL
	}
	h := make([]byte, hlen, hlen+len(payload))
	h[0] = version<<4 | ihl&0xf
	h[1] = ip.TOS
	binary.BigEndian.PutUint16(h[2:], uint16(total))
	binary.BigEndian.PutUint16(h[4:], ip.ID)
	binary.BigEndian.PutUint16(h[6:], uint16(ip.Flags&7)<<13|ip.FragOffset&0x1fff)
	h[8] = ttl
	h[9] = proto
	copy(h[12:], ip.Src.AsSlice())
	copy(h[16:], ip.Dst.AsSlice())
	copy(h[20:], opts)
	sum := checksum(h)
	if ip.Checksum != nil {
		sum = *ip.Checksum
	}
	binary.BigEndian.PutUint16(h[10:], sum)
	return append(h, payload...), nil
}

// IPv6 is a fixed IPv6 header. Extension headers are separate layers
// (IPv6HopByHop, IPv6Routing, IPv6Fragment, IPv6DestOpts) that follow it.
type IPv6 struct {
	Src, Dst     netip.Addr
	TrafficClass uint8  // DSCP<<2 | ECN
	FlowLabel    uint32 // 20 bits
	// HopLimit is nil for DefaultTTL.
	HopLimit *uint8

	// Overrides: nil means "computed".
	Version       *uint8  // 6
	PayloadLength *uint16 // everything after the fixed header
	NextHeader    *uint8  // from the next layer
}

func (*IPv6) etherType() uint16 { return EtherTypeIPv6 }

func (ip *IPv6) pseudoHeader(proto uint8, length int) []byte {
	b := make([]byte, 0, 40)
	b = append(b, ip.Src.AsSlice()...)
	b = append(b, ip.Dst.AsSlice()...)
	b = binary.BigEndian.AppendUint32(b, uint32(length))
	return append(b, 0, 0, 0, proto)
}

func (ip *IPv6) encode(payload []byte, ctx context) ([]byte, error) {
	if !ip.Src.Is6() || ip.Src.Is4In6() || !ip.Dst.Is6() || ip.Dst.Is4In6() {
		return nil, fmt.Errorf("IPv6 addresses required (src %v, dst %v)", ip.Src, ip.Dst)
	}
	next, ok := ctx.nextProtocol()
	if ip.NextHeader != nil {
		next = *ip.NextHeader
	} else if !ok {
		return nil, fmt.Errorf("next header not set and next layer %T has none", ctx.next)
	}
	version := uint8(6)
	if ip.Version != nil {
		version = *ip.Version
	}
	plen := len(payload)
	if ip.PayloadLength == nil && plen > 0xffff {
		return nil, fmt.Errorf("payload length %d too large", plen)
	}
	if ip.PayloadLength != nil {
		plen = int(*ip.PayloadLength)
	}
	hop := uint8(DefaultTTL)
	if ip.HopLimit != nil {
		hop = *ip.HopLimit
	}
	h := make([]byte, 40, 40+len(payload))
	binary.BigEndian.PutUint32(h, uint32(version)<<28|uint32(ip.TrafficClass)<<20|ip.FlowLabel&0xfffff)
	binary.BigEndian.PutUint16(h[4:], uint16(plen))
	h[6] = next
	h[7] = hop
	copy(h[8:], ip.Src.AsSlice())
	copy(h[24:], ip.Dst.AsSlice())
	return append(h, payload...), nil
}

// nextHeaderOf returns the next-header value for an extension header.
func nextHeaderOf(override *uint8, ctx context) (uint8, error) {
	if override != nil {
		return *override, nil
	}
	if p, ok := ctx.nextProtocol(); ok {
		return p, nil
	}
	if ctx.next == nil {
		return ProtoNoNext, nil
	}
	return 0, fmt.Errorf("next header not set and next layer %T has none", ctx.next)
}

// padOptions pads IPv6 TLV options so that two header bytes plus the
// options fill a multiple of 8 bytes, using Pad1 or PadN options.
func padOptions(opts []byte) []byte {
	out := append([]byte(nil), opts...)
	switch n := (8 - (len(out)+2)%8) % 8; {
	case n == 1:
		out = append(out, 0) // Pad1
	case n > 1:
		out = append(out, 1, byte(n-2)) // PadN
		out = append(out, make([]byte, n-2)...)
	}
	return out
}

// optionsHeader encodes a hop-by-hop or destination options header.
func optionsHeader(opts []byte, override *uint8, payload []byte, ctx context) ([]byte, error) {
	next, err := nextHeaderOf(override, ctx)
	if err != nil {
		return nil, err
	}
	body := padOptions(opts)
	n := (len(body)+2)/8 - 1
	if n > 255 {
		return nil, errors.New("options too long")
	}
	b := append([]byte{next, byte(n)}, body...)
	return append(b, payload...), nil
}

// IPv6HopByHop is a hop-by-hop options extension header. Options are TLV
// encoded and padded with Pad1/PadN to a multiple of 8 bytes.
type IPv6HopByHop struct {
	Options    []byte
	NextHeader *uint8 // nil: from the next layer
}

func (*IPv6HopByHop) ipProtocol() uint8 { return ProtoHopByHop }

func (h *IPv6HopByHop) encode(payload []byte, ctx context) ([]byte, error) {
	return optionsHeader(h.Options, h.NextHeader, payload, ctx)
}

// IPv6DestOpts is a destination options extension header.
type IPv6DestOpts struct {
	Options    []byte
	NextHeader *uint8 // nil: from the next layer
}

func (*IPv6DestOpts) ipProtocol() uint8 { return ProtoDestOpts }

func (h *IPv6DestOpts) encode(payload []byte, ctx context) ([]byte, error) {
	return optionsHeader(h.Options, h.NextHeader, payload, ctx)
}

// IPv6Routing is a routing extension header. Data follows the four fixed
// bytes (next header, length, type, segments left) and is padded with zeros
// to a multiple of 8 bytes.
type IPv6Routing struct {
	Type         uint8
	SegmentsLeft uint8
	Data         []byte
	NextHeader   *uint8 // nil: from the next layer
}

func (*IPv6Routing) ipProtocol() uint8 { return ProtoRouting }

func (h *IPv6Routing) encode(payload []byte, ctx context) ([]byte, error) {
	next, err := nextHeaderOf(h.NextHeader, ctx)
	if err != nil {
		return nil, err
	}
	data := append([]byte(nil), h.Data...)
	for len(data) < 4 || (len(data)+4)%8 != 0 {
		data = append(data, 0)
	}
	n := (len(data)+4)/8 - 1
	if n > 255 {
		return nil, errors.New("routing data too long")
	}
	b := append([]byte{next, byte(n), h.Type, h.SegmentsLeft}, data...)
	return append(b, payload...), nil
}

// IPv6Fragment is a fragment extension header.
type IPv6Fragment struct {
	// Offset is the fragment offset in 8-byte units (13 bits).
	Offset     uint16
	More       bool
	ID         uint32
	NextHeader *uint8 // nil: from the next layer
}

func (*IPv6Fragment) ipProtocol() uint8 { return ProtoFragment }

func (h *IPv6Fragment) encode(payload []byte, ctx context) ([]byte, error) {
	next, err := nextHeaderOf(h.NextHeader, ctx)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 8, 8+len(payload))
	b[0] = next
	off := h.Offset << 3
	if h.More {
		off |= 1
	}
	binary.BigEndian.PutUint16(b[2:], off)
	binary.BigEndian.PutUint32(b[4:], h.ID)
	return append(b, payload...), nil
}

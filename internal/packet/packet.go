// Package packet builds Ethernet frames byte by byte for tests.
//
// A frame is a list of layers, outermost first:
//
//	frame, err := packet.Build(
//		&packet.Ethernet{Dst: rxMAC, Src: txMAC},
//		&packet.IPv4{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2")},
//		&packet.TCP{SrcPort: 1024, DstPort: 80, Flags: packet.TCPSyn},
//		packet.Payload("hello"),
//	)
//
// Every length, "next protocol" field and checksum that is left unset is
// derived from the layers that follow, so that the result is a well-formed
// frame; each of them can be overridden (a pointer field that is not nil) to
// build deliberately broken frames. Build encodes the layers from the last to
// the first, so a layer sees its complete payload when it computes a length
// or a checksum.
package packet

import (
	"errors"
	"fmt"
)

// Layer is one header of a frame, or its payload.
type Layer interface {
	// encode returns the layer's header followed by payload.
	encode(payload []byte, ctx context) ([]byte, error)
}

// context is what a layer knows about its neighbours while it is encoded.
type context struct {
	// net is the closest IPv4 or IPv6 layer before this one (nil when
	// there is none); transport layers use it for pseudo-header checksums.
	net ipLayer
	// next is the layer after this one (nil for the last layer).
	next Layer
}

// nextProtocol returns the IP protocol number of the next layer, or ok ==
// false when it has none.
func (c context) nextProtocol() (proto uint8, ok bool) {
	if p, ok := c.next.(protocolLayer); ok {
		return p.ipProtocol(), true
	}
	return 0, false
}

// protocolLayer is a layer that has an IP protocol number, so that the
// layer before it can fill in its "next header" or "protocol" field.
type protocolLayer interface {
	ipProtocol() uint8
}

// etherTypeLayer is a layer that has an EtherType.
type etherTypeLayer interface {
	etherType() uint16
}

// ipLayer is an IPv4 or IPv6 header, as transport checksums see it.
type ipLayer interface {
	// pseudoHeader returns the pseudo-header for an upper-layer packet of
	// the given protocol and length.
	pseudoHeader(proto uint8, length int) []byte
}

// Build encodes the layers, outermost first, into one frame.
func Build(layers ...Layer) ([]byte, error) {
	var payload []byte
	for i := len(layers) - 1; i >= 0; i-- {
		var ctx context
		for j := i - 1; j >= 0; j-- {
			if l, ok := layers[j].(ipLayer); ok {
				ctx.net = l
				break
			}
		}
		if i+1 < len(layers) {
			ctx.next = layers[i+1]
		}
		b, err := layers[i].encode(payload, ctx)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%T): %w", i, layers[i], err)
		}
		payload = b
	}
	if payload == nil {
		return nil, errors.New("no layers")
	}
	return payload, nil
}

// MustBuild is Build for tests and package-level values: it panics on error.
func MustBuild(layers ...Layer) []byte {
	b, err := Build(layers...)
	if err != nil {
		panic(err)
	}
	return b
}

// Ptr returns a pointer to v; it is a shorthand for the override fields.
func Ptr[T any](v T) *T { return &v }

// Truncate returns the first n bytes of frame (all of it if it is shorter).
func Truncate(frame []byte, n int) []byte {
	if n < 0 {
		n = 0
	}
	if n > len(frame) {
		n = len(frame)
	}
	return append([]byte(nil), frame[:n]...)
}

// TruncateFromEnd returns frame without its last n bytes.
func TruncateFromEnd(frame []byte, n int) []byte {
	return Truncate(frame, len(frame)-n)
}

// Payload is raw bytes: an arbitrary L3 or L4 payload, or data after a
// transport header.
type Payload []byte

func (p Payload) encode(payload []byte, _ context) ([]byte, error) {
	return append(append([]byte(nil), p...), payload...), nil
}

// RawIP is an arbitrary payload of IP protocol Protocol: the layer before it
// takes Protocol as its protocol or next-header value.
type RawIP struct {
	Protocol uint8
	Data     []byte
}

func (r *RawIP) encode(payload []byte, _ context) ([]byte, error) {
	return append(append([]byte(nil), r.Data...), payload...), nil
}

func (r *RawIP) ipProtocol() uint8 { return r.Protocol }

// checksum is the Internet checksum (RFC 1071) over the concatenation of
// parts, each of which must have even length except the last.
func checksum(parts ...[]byte) uint16 {
	var sum uint32
	for _, p := range parts {
		for i := 0; i+1 < len(p); i += 2 {
			sum += uint32(p[i])<<8 | uint32(p[i+1])
		}
		if len(p)%2 == 1 {
			sum += uint32(p[len(p)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

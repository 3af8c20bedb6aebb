package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// TCP flags, as they sit in the 12 low bits of the data offset word.
const (
	TCPFin uint16 = 0x001
	TCPSyn uint16 = 0x002
	TCPRst uint16 = 0x004
	TCPPsh uint16 = 0x008
	TCPAck uint16 = 0x010
	TCPUrg uint16 = 0x020
	TCPEce uint16 = 0x040
	TCPCwr uint16 = 0x080
	TCPAE  uint16 = 0x100 // accurate ECN, formerly NS
)

// TCP is a TCP header.
type TCP struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	// Flags are the TCP* flags, including the reserved bits (12 bits).
	Flags  uint16
	Window uint16
	Urgent uint16
	// Options are padded with zero bytes (end of option list) to a
	// multiple of 4 bytes.
	Options []byte

	// Overrides: nil means "computed".
	DataOffset *uint8  // header length in 32-bit words
	Checksum   *uint16 // over the pseudo-header, header and payload
}

func (*TCP) ipProtocol() uint8 { return ProtoTCP }

func (t *TCP) encode(payload []byte, ctx context) ([]byte, error) {
	opts := append([]byte(nil), t.Options...)
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	if len(opts) > 40 {
		return nil, fmt.Errorf("%d bytes of options, at most 40 fit", len(opts))
	}
	hlen := 20 + len(opts)
	doff := uint8(hlen / 4)
	if t.DataOffset != nil {
		doff = *t.DataOffset
	}
	b := make([]byte, hlen, hlen+len(payload))
	binary.BigEndian.PutUint16(b[0:], t.SrcPort)
	binary.BigEndian.PutUint16(b[2:], t.DstPort)
	binary.BigEndian.PutUint32(b[4:], t.Seq)
	binary.BigEndian.PutUint32(b[8:], t.Ack)
	binary.BigEndian.PutUint16(b[12:], uint16(doff&0xf)<<12|t.Flags&0xfff)
	binary.BigEndian.PutUint16(b[14:], t.Window)
	binary.BigEndian.PutUint16(b[18:], t.Urgent)
	copy(b[20:], opts)
	b = append(b, payload...)
	sum, err := l4Checksum(t.Checksum, ctx, ProtoTCP, b)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint16(b[16:], sum)
	return b, nil
}

// l4Checksum returns override if set, else the Internet checksum of seg
// with the pseudo-header of ctx.net.
func l4Checksum(override *uint16, ctx context, proto uint8, seg []byte) (uint16, error) {
	if override != nil {
		return *override, nil
	}
	if ctx.net == nil {
		return 0, errors.New("checksum needs an IP layer before this one (or set Checksum)")
	}
	return checksum(ctx.net.pseudoHeader(proto, len(seg)), seg), nil
}

// UDP is a UDP header.
type UDP struct {
	SrcPort, DstPort uint16

	// Overrides: nil means "computed". A Checksum of 0 means "no checksum"
	// (allowed over IPv4 only).
	Length   *uint16
	Checksum *uint16
}

func (*UDP) ipProtocol() uint8 { return ProtoUDP }

func (u *UDP) encode(payload []byte, ctx context) ([]byte, error) {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], u.SrcPort)
	binary.BigEndian.PutUint16(b[2:], u.DstPort)
	length := 8 + len(payload)
	if u.Length == nil && length > 0xffff {
		return nil, fmt.Errorf("length %d too large", length)
	}
	if u.Length != nil {
		length = int(*u.Length)
	}
	binary.BigEndian.PutUint16(b[4:], uint16(length))
	b = append(b, payload...)
	sum, err := l4Checksum(u.Checksum, ctx, ProtoUDP, b)
	if err != nil {
		return nil, err
	}
	if u.Checksum == nil && sum == 0 {
		sum = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(b[6:], sum)
	return b, nil
}

// UDPLite is a UDP-Lite header (RFC 3828).
type UDPLite struct {
	SrcPort, DstPort uint16
	// Coverage is the number of bytes the checksum covers, counted from
	// the start of the UDP-Lite header; 0 means the whole datagram.
	Coverage uint16
	// Checksum overrides the computed checksum when not nil.
	Checksum *uint16
}

func (*UDPLite) ipProtocol() uint8 { return ProtoUDPLite }

func (u *UDPLite) encode(payload []byte, ctx context) ([]byte, error) {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], u.SrcPort)
	binary.BigEndian.PutUint16(b[2:], u.DstPort)
	binary.BigEndian.PutUint16(b[4:], u.Coverage)
	b = append(b, payload...)
	covered := len(b)
	if u.Coverage != 0 && int(u.Coverage) < covered {
		covered = int(u.Coverage)
	}
	var sum uint16
	switch {
	case u.Checksum != nil:
		sum = *u.Checksum
	case ctx.net == nil:
		return nil, errors.New("checksum needs an IP layer before this one (or set Checksum)")
	default:
		// The pseudo-header carries the IP length, not the coverage.
		sum = checksum(ctx.net.pseudoHeader(ProtoUDPLite, len(b)), b[:covered])
		if sum == 0 {
			sum = 0xffff
		}
	}
	binary.BigEndian.PutUint16(b[6:], sum)
	return b, nil
}

// SCTP is an SCTP common header; chunks are its payload.
type SCTP struct {
	SrcPort, DstPort uint16
	VerificationTag  uint32
	// Checksum overrides the CRC32c when not nil.
	Checksum *uint32
}

func (*SCTP) ipProtocol() uint8 { return ProtoSCTP }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (s *SCTP) encode(payload []byte, _ context) ([]byte, error) {
	b := make([]byte, 12, 12+len(payload))
	binary.BigEndian.PutUint16(b[0:], s.SrcPort)
	binary.BigEndian.PutUint16(b[2:], s.DstPort)
	binary.BigEndian.PutUint32(b[4:], s.VerificationTag)
	b = append(b, payload...)
	if s.Checksum != nil {
		binary.BigEndian.PutUint32(b[8:], *s.Checksum)
	} else {
		// RFC 9260 appendix A: the CRC32c goes on the wire least
		// significant byte first.
		binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b, castagnoli))
	}
	return b, nil
}

// ICMP types used by tests.
const (
	ICMPEchoReply   uint8 = 0
	ICMPEchoRequest uint8 = 8
	ICMPv6EchoReq   uint8 = 128
	ICMPv6EchoReply uint8 = 129
)

// ICMP is an ICMP (IPv4) header. ID and Seq fill bytes 4 to 7 (the
// "rest of header" of messages other than echo).
type ICMP struct {
	Type, Code uint8
	ID, Seq    uint16
	// Checksum overrides the computed checksum when not nil.
	Checksum *uint16
}

func (*ICMP) ipProtocol() uint8 { return ProtoICMP }

func (c *ICMP) encode(payload []byte, _ context) ([]byte, error) {
	b := icmpHeader(c.Type, c.Code, c.ID, c.Seq, payload)
	sum := checksum(b)
	if c.Checksum != nil {
		sum = *c.Checksum
	}
	binary.BigEndian.PutUint16(b[2:], sum)
	return b, nil
}

// ICMPv6 is an ICMPv6 header, laid out like ICMP.
type ICMPv6 struct {
	Type, Code uint8
	ID, Seq    uint16
	// Checksum overrides the computed checksum when not nil.
	Checksum *uint16
}

func (*ICMPv6) ipProtocol() uint8 { return ProtoICMPv6 }

func (c *ICMPv6) encode(payload []byte, ctx context) ([]byte, error) {
	b := icmpHeader(c.Type, c.Code, c.ID, c.Seq, payload)
	sum, err := l4Checksum(c.Checksum, ctx, ProtoICMPv6, b)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint16(b[2:], sum)
	return b, nil
}

func icmpHeader(typ, code uint8, id, seq uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	return append(b, payload...)
}

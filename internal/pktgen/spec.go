package pktgen

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"

	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// spec describes a frame: structural choices (EtherType, tags, transport
// protocol) that decide the layout, then raw byte patches at payload
// offsets applied on top.
type spec struct {
	opt       *Options
	dstMAC    net.HardwareAddr
	tags      []packet.VLAN
	etherType uint16
	l4        uint8
	src       *netip.Addr
	// netLen, when positive, is the wanted length from the network header
	// to the end of the frame (meta len).
	netLen int
	// fragment options, IP options and IPv6 extension headers.
	fragment, moreFrags bool
	fragOffset          uint16
	ipOptions           bool
	truncate            int
	random              *rand.Rand
	patches             []patch
}

type patch struct {
	base      ir.PayloadBase
	off       int
	val, care []byte
}

// set makes field f have register value v (after its transforms).
func (s *spec) set(f ir.Field, v []byte) {
	if f.Source == ir.SourceCT {
		// A packet chooses the tuple of the entry it creates, not the
		// rest of it (state, mark, status).
		if pf, ok := s.ctTupleField(f); ok {
			s.set(pf, v)
		}
		return
	}
	if f.Source == ir.SourceFIB {
		// An address type is the namespace's routing answer for an
		// address, not bytes a frame can be given.
		return
	}
	raw, care := invert(f, v)
	if f.Source == ir.SourceMeta {
		s.setMeta(f.Meta, raw, care)
		return
	}
	full := allBytes(care, 0xff)
	switch {
	case full && f.Base == ir.BaseLL && f.Offset == 12 && f.Len == 2:
		s.setEtherType(binary.BigEndian.Uint16(raw))
		return
	case full && f.Base == ir.BaseNetwork && f.Len == 1 &&
		(f.Offset == 9 && s.etherType == packet.EtherTypeIPv4 || f.Offset == 6 && s.etherType == packet.EtherTypeIPv6):
		s.l4 = raw[0]
		return
	}
	s.patches = append(s.patches, patch{f.Base, int(f.Offset), raw, care})
}

func (s *spec) setEtherType(t uint16) {
	if t == packet.EtherTypeVLAN || t == packet.EtherTypeQinQ {
		s.tags = []packet.VLAN{{TPID: t, ID: 1}}
		return
	}
	s.tags = nil
	s.etherType = t
}

func (s *spec) setMeta(key ir.MetaKey, raw, care []byte) {
	switch key {
	case ir.MetaNFProto:
		switch raw[0] {
		case uint8(ir.FamilyIPv4):
			s.etherType = packet.EtherTypeIPv4
		case uint8(ir.FamilyIPv6):
			s.etherType = packet.EtherTypeIPv6
		default:
			s.etherType = packet.EtherTypeARP
		}
	case ir.MetaProtocol:
		if len(raw) >= 2 {
			s.setEtherType(binary.BigEndian.Uint16(raw))
		}
	case ir.MetaL4Proto:
		s.l4 = raw[0]
	case ir.MetaLen:
		if len(raw) >= 4 {
			if n := binary.NativeEndian.Uint32(raw); n < 9000 {
				s.netLen = int(n)
			}
		}
	case ir.MetaPktType:
		switch raw[0] {
		case 0: // PACKET_HOST
			s.dstMAC = s.opt.DstMAC
		case 1: // PACKET_BROADCAST
			s.dstMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		case 2: // PACKET_MULTICAST
			s.dstMAC = net.HardwareAddr{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
		default:
			s.dstMAC = net.HardwareAddr{0x02, 0x99, 0, 0, 0, 3}
		}
	}
	// Other meta keys (interfaces, marks, sockets, CPU, …) are not
	// properties of the frame: the default frames cover them.
}

// layers returns the layers for the structural choices, with an L4
// payload of extra bytes.
func (s *spec) layers(extra int) []packet.Layer {
	eth := &packet.Ethernet{Dst: s.dstMAC, Src: s.opt.SrcMAC, Tags: s.tags, Type: packet.Ptr(s.etherType)}
	payload := packet.Payload(make([]byte, extra))
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	var l3 []packet.Layer
	v6 := s.etherType == packet.EtherTypeIPv6
	switch s.etherType {
	case packet.EtherTypeIPv4:
		ip := &packet.IPv4{Src: s.opt.Src4, Dst: s.opt.Dst4, ID: 0x1234, FragOffset: s.fragOffset}
		if s.src != nil && s.src.Is4() {
			ip.Src = *s.src
		}
		if s.moreFrags {
			ip.Flags = packet.IPv4MoreFrags
		}
		if s.ipOptions {
			ip.Options = []byte{7, 7, 4, 0, 0, 0, 0} // record route, one slot
		}
		l3 = []packet.Layer{ip}
	case packet.EtherTypeIPv6:
		ip := &packet.IPv6{Src: s.opt.Src6, Dst: s.opt.Dst6, FlowLabel: 0x12345}
		if s.src != nil && s.src.Is6() {
			ip.Src = *s.src
		}
		l3 = []packet.Layer{ip}
		if s.ipOptions {
			l3 = append(l3, &packet.IPv6DestOpts{})
		}
		if s.fragment {
			l3 = append(l3, &packet.IPv6Fragment{Offset: s.fragOffset, More: s.moreFrags, ID: 0x5678})
		}
	default:
		return []packet.Layer{eth, packet.Payload(make([]byte, 46+extra))}
	}
	var l4 packet.Layer
	switch {
	case s.l4 == packet.ProtoTCP:
		l4 = &packet.TCP{SrcPort: 40000, DstPort: 80, Seq: 1, Flags: packet.TCPSyn, Window: 512}
	case s.l4 == packet.ProtoUDP:
		l4 = &packet.UDP{SrcPort: 40000, DstPort: 53}
	case s.l4 == packet.ProtoUDPLite:
		l4 = &packet.UDPLite{SrcPort: 40000, DstPort: 53}
	case s.l4 == packet.ProtoSCTP:
		l4 = &packet.SCTP{SrcPort: 40000, DstPort: 5000, VerificationTag: 1}
	case s.l4 == packet.ProtoICMP && !v6:
		l4 = &packet.ICMP{Type: packet.ICMPEchoRequest, ID: 1, Seq: 1}
	case s.l4 == packet.ProtoICMPv6 && v6:
		l4 = &packet.ICMPv6{Type: packet.ICMPv6EchoReq, ID: 1, Seq: 1}
	default:
		l4 = &packet.RawIP{Protocol: s.l4, Data: make([]byte, 8)}
	}
	return append(append([]packet.Layer{eth}, l3...), l4, payload)
}

// build encodes the frame and applies the patches.
func (s *spec) build() []byte {
	extra := 16
	var frame []byte
	var info *packet.Info
	for range 3 {
		var err error
		frame, err = packet.Build(s.layers(extra)...)
		if err != nil {
			return nil
		}
		info, err = packet.Parse(frame)
		if err != nil {
			return nil
		}
		// Grow the payload until every patch fits inside the packet,
		// and until meta len is met.
		grow := 0
		for _, p := range s.patches {
			if start, ok := s.offset(info, p.base); ok {
				end := info.NetworkEnd
				if info.NetworkOffset < 0 {
					end = len(frame)
				}
				grow = max(grow, start+p.off+len(p.val)-end)
			}
		}
		if s.netLen > 0 {
			nh := s.netStart(info)
			grow = max(grow, s.netLen-(len(frame)-nh))
		}
		if grow <= 0 {
			break
		}
		extra += grow
	}
	if s.netLen > 0 {
		if n := s.netStart(info) + s.netLen; n < len(frame) {
			frame = frame[:n]
		}
	}
	s.apply(frame, info)
	packet.FixChecksums(frame)
	s.apply(frame, info) // patched checksum bytes win over fixed ones
	if s.truncate > 0 {
		frame = packet.TruncateFromEnd(frame, s.truncate)
		if len(frame) < 14 {
			return nil
		}
	}
	return frame
}

// netStart is where nf_tables' network header base is: after the
// Ethernet header and its tags.
func (s *spec) netStart(info *packet.Info) int {
	if info.NetworkOffset >= 0 {
		return info.NetworkOffset
	}
	return 14 + 4*len(info.Tags)
}

func (s *spec) offset(info *packet.Info, base ir.PayloadBase) (int, bool) {
	switch base {
	case ir.BaseLL:
		return 0, true
	case ir.BaseNetwork:
		return s.netStart(info), true
	case ir.BaseTransport:
		return info.TransportOffset, info.TransportOffset >= 0
	}
	return 0, false
}

func (s *spec) apply(frame []byte, info *packet.Info) {
	for _, p := range s.patches {
		start, ok := s.offset(info, p.base)
		if !ok {
			continue
		}
		for i := range p.val {
			j := start + p.off + i
			if j >= len(frame) {
				break
			}
			frame[j] = frame[j]&^p.care[i] | p.val[i]&p.care[i]
		}
	}
}

// ctTupleField returns the packet field that gives a ct tuple key its
// value for a packet that starts a connection (so that its own direction
// is the original one), and makes the frame of the key's IP version.
func (s *spec) ctTupleField(f ir.Field) (ir.Field, bool) {
	out := ir.Field{Transforms: f.Transforms}
	reply := f.CTDir == ir.CTDirReply
	v6 := false
	switch f.CT {
	case ir.CTProtocol:
		out.Source, out.Meta, out.Len = ir.SourceMeta, ir.MetaL4Proto, 1
		return out, true
	case ir.CTL3Proto:
		out.Source, out.Meta, out.Len = ir.SourceMeta, ir.MetaNFProto, 1
		return out, true
	case ir.CTProtoSrc, ir.CTProtoDst:
		out.Source, out.Base, out.Len = ir.SourcePayload, ir.BaseTransport, 2
		if (f.CT == ir.CTProtoDst) != reply {
			out.Offset = 2
		}
		return out, true
	case ir.CTSrcIP, ir.CTDstIP:
	case ir.CTSrcIP6, ir.CTDstIP6:
		v6 = true
	case ir.CTSrc, ir.CTDst:
		v6 = f.Len == 16
	default:
		return out, false
	}
	dst := (f.CT == ir.CTDstIP || f.CT == ir.CTDstIP6 || f.CT == ir.CTDst) != reply
	out.Source, out.Base = ir.SourcePayload, ir.BaseNetwork
	if v6 {
		s.setEtherType(packet.EtherTypeIPv6)
		out.Offset, out.Len = 8, 16
		if dst {
			out.Offset = 24
		}
	} else {
		s.setEtherType(packet.EtherTypeIPv4)
		out.Offset, out.Len = 12, 4
		if dst {
			out.Offset = 16
		}
	}
	return out, true
}

package packet

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/netip"
)

// Info describes where the headers of a frame are, as far as the frame
// holds them. It is a test helper, not a validating parser: it reads what
// is there and reports offsets, so tests and generators can patch bytes.
type Info struct {
	Tags []VLAN
	// EtherType is the type after the VLAN tags (0 if the frame is too
	// short to hold one).
	EtherType uint16
	// NetworkOffset is where the IPv4 or IPv6 header starts; -1 if the
	// frame carries neither (or is too short for the fixed header).
	NetworkOffset int
	// NetworkEnd is where the IP packet ends according to its length
	// field, clipped to the frame; -1 with NetworkOffset.
	NetworkEnd int
	// Src and Dst are the IP addresses (zero if no IP header).
	Src, Dst netip.Addr
	// Proto is the transport protocol: the IPv4 protocol or the first
	// IPv6 next header that is not an extension header.
	Proto uint8
	// FragOffset is the fragment offset in bytes; MoreFragments is the MF
	// flag (IPv4 header or IPv6 fragment header).
	FragOffset    int
	MoreFragments bool
	// Fragmented is set when the packet has an IPv6 fragment header or
	// IPv4 MF/offset set.
	Fragmented bool
	// TransportOffset is where the transport header starts; -1 if there is
	// none: no IP header, a non-first fragment, or the headers before it
	// run past the end of the frame.
	TransportOffset int
}

// Parse reads the Ethernet, VLAN, IP and IPv6 extension headers of frame.
// It fails only when the frame is shorter than an Ethernet header.
func Parse(frame []byte) (*Info, error) {
	info := &Info{NetworkOffset: -1, NetworkEnd: -1, TransportOffset: -1}
	if len(frame) < 14 {
		return info, fmt.Errorf("frame of %d bytes has no Ethernet header", len(frame))
	}
	off := 12
	typ := binary.BigEndian.Uint16(frame[off:])
	for (typ == EtherTypeVLAN || typ == EtherTypeQinQ) && off+6 <= len(frame) {
		tci := binary.BigEndian.Uint16(frame[off+2:])
		info.Tags = append(info.Tags, VLAN{TPID: typ, PCP: uint8(tci >> 13), DEI: tci&0x1000 != 0, ID: tci & 0xfff})
		off += 4
		typ = binary.BigEndian.Uint16(frame[off:])
	}
	info.EtherType = typ
	nh := off + 2
	switch typ {
	case EtherTypeIPv4:
		parseIPv4(frame, nh, info)
	case EtherTypeIPv6:
		parseIPv6(frame, nh, info)
	}
	return info, nil
}

func parseIPv4(frame []byte, nh int, info *Info) {
	if len(frame) < nh+20 {
		return
	}
	h := frame[nh:]
	info.NetworkOffset = nh
	info.NetworkEnd = min(nh+int(binary.BigEndian.Uint16(h[2:])), len(frame))
	info.Src = netip.AddrFrom4([4]byte(h[12:16]))
	info.Dst = netip.AddrFrom4([4]byte(h[16:20]))
	info.Proto = h[9]
	fo := binary.BigEndian.Uint16(h[6:])
	info.FragOffset = int(fo&0x1fff) * 8
	info.MoreFragments = fo&0x2000 != 0
	info.Fragmented = info.FragOffset != 0 || info.MoreFragments
	th := nh + int(h[0]&0xf)*4
	if info.FragOffset == 0 && th <= len(frame) && h[0]&0xf >= 5 {
		info.TransportOffset = th
	}
}

// isIPv6Ext reports whether p is an extension header that the kernel's
// ipv6_find_hdr walks over.
func isIPv6Ext(p uint8) bool {
	switch p {
	case ProtoHopByHop, ProtoRouting, ProtoFragment, ProtoDestOpts, 51 /* AH */ :
		return true
	}
	return false
}

func parseIPv6(frame []byte, nh int, info *Info) {
	if len(frame) < nh+40 {
		return
	}
	h := frame[nh:]
	info.NetworkOffset = nh
	info.NetworkEnd = min(nh+40+int(binary.BigEndian.Uint16(h[4:])), len(frame))
	info.Src = netip.AddrFrom16([16]byte(h[8:24]))
	info.Dst = netip.AddrFrom16([16]byte(h[24:40]))
	next := h[6]
	off := nh + 40
	for isIPv6Ext(next) {
		if off+8 > len(frame) {
			return
		}
		e := frame[off:]
		switch next {
		case ProtoFragment:
			fo := binary.BigEndian.Uint16(e[2:])
			info.Fragmented = true
			info.FragOffset = int(fo>>3) * 8
			info.MoreFragments = fo&1 != 0
			if info.FragOffset != 0 {
				info.Proto = e[0]
				return
			}
			off += 8
		case 51: // AH counts in 4-byte units
			off += (int(e[1]) + 2) * 4
		default:
			off += (int(e[1]) + 1) * 8
		}
		next = e[0]
	}
	info.Proto = next
	if off <= len(frame) && next != ProtoNoNext {
		info.TransportOffset = off
	}
}

// FixChecksums recomputes, in place, the IPv4 header checksum and the
// checksum of a TCP, UDP, UDP-Lite, SCTP, ICMP or ICMPv6 header, where the
// frame holds the whole header (for IPv4) and the whole unfragmented
// transport segment (for transport checksums). Other checksums are left
// alone. It is meant for frames whose bytes were patched after Build.
func FixChecksums(frame []byte) error {
	info, err := Parse(frame)
	if err != nil {
		return err
	}
	if info.NetworkOffset < 0 {
		return nil
	}
	nh := info.NetworkOffset
	var pseudo func(proto uint8, n int) []byte
	if info.EtherType == EtherTypeIPv4 {
		ihl := int(frame[nh]&0xf) * 4
		if ihl >= 20 && nh+ihl <= len(frame) {
			binary.BigEndian.PutUint16(frame[nh+10:], 0)
			binary.BigEndian.PutUint16(frame[nh+10:], checksum(frame[nh:nh+ihl]))
		}
		ip := &IPv4{Src: info.Src, Dst: info.Dst}
		pseudo = ip.pseudoHeader
	} else {
		ip := &IPv6{Src: info.Src, Dst: info.Dst}
		pseudo = ip.pseudoHeader
	}
	th := info.TransportOffset
	if th < 0 || info.Fragmented || info.NetworkEnd < th {
		return nil
	}
	seg := frame[th:info.NetworkEnd]
	isV4 := info.EtherType == EtherTypeIPv4
	switch info.Proto {
	case ProtoTCP:
		if len(seg) >= 20 {
			setSum(seg, 16, func() uint16 { return checksum(pseudo(ProtoTCP, len(seg)), seg) })
		}
	case ProtoUDP:
		if len(seg) >= 8 {
			setSum(seg, 6, func() uint16 { return nonZero(checksum(pseudo(ProtoUDP, len(seg)), seg)) })
		}
	case ProtoUDPLite:
		if len(seg) >= 8 {
			cov := int(binary.BigEndian.Uint16(seg[4:]))
			if cov == 0 || cov > len(seg) {
				cov = len(seg)
			}
			if cov >= 8 {
				setSum(seg, 6, func() uint16 { return nonZero(checksum(pseudo(ProtoUDPLite, len(seg)), seg[:cov])) })
			}
		}
	case ProtoICMP:
		if isV4 && len(seg) >= 4 {
			setSum(seg, 2, func() uint16 { return checksum(seg) })
		}
	case ProtoICMPv6:
		if !isV4 && len(seg) >= 4 {
			setSum(seg, 2, func() uint16 { return checksum(pseudo(ProtoICMPv6, len(seg)), seg) })
		}
	case ProtoSCTP:
		if len(seg) >= 12 {
			binary.LittleEndian.PutUint32(seg[8:], 0)
			binary.LittleEndian.PutUint32(seg[8:], crc32.Checksum(seg, castagnoli))
		}
	}
	return nil
}

// setSum zeroes the 16-bit checksum field at off, then stores what sum
// computes over the segment with the field zeroed.
func setSum(seg []byte, off int, sum func() uint16) {
	binary.BigEndian.PutUint16(seg[off:], 0)
	binary.BigEndian.PutUint16(seg[off:], sum())
}

func nonZero(sum uint16) uint16 {
	if sum == 0 {
		return 0xffff
	}
	return sum
}

// Package nflog decodes the log events BPF programs of bpfilter-nft write
// (see codegen's log statement) and prints them as the kernel's
// nf_log_syslog prints the packets nft's "log" statement logs, so that
// `bpfilter-nft monitor` shows the lines the kernel log would.
package nflog

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Event is one logged packet.
type Event struct {
	Hook   ir.Hook
	PF     ir.Family // nft_pf: the family of the table's hook
	Level  uint8
	In     uint32 // input ifindex, 0 if none
	Out    uint32 // output ifindex, 0 if none
	Len    uint32 // skb->len as nf_tables saw it
	Mark   uint32
	Flags  uint32 // NF_LOG_* (ir.LogTCPSeq, …)
	Proto  uint16 // skb->protocol
	Handle uint64 // the logging rule's handle
	Prefix string
	// MAC is the link-layer header (14 bytes) or nil.
	MAC []byte
	// Avail is the number of bytes from the network header to the end of
	// the packet; Data holds the first of them (at most
	// codegen.LogCaptureLen).
	Avail uint32
	Data  []byte
}

// Decode decodes a ring buffer record.
func Decode(b []byte) (*Event, error) {
	if len(b) < codegen.LogEventLen {
		return nil, fmt.Errorf("log event of %d bytes, want %d", len(b), codegen.LogEventLen)
	}
	le := binary.LittleEndian
	if le.Uint32(b[codegen.EvMagic:]) != codegen.LogEventMagic {
		return nil, fmt.Errorf("not a log event (magic %#x)", le.Uint32(b[codegen.EvMagic:]))
	}
	ev := &Event{
		Hook:   ir.Hook(b[codegen.EvHook]),
		PF:     ir.Family(b[codegen.EvPF]),
		Level:  b[codegen.EvLevel],
		In:     le.Uint32(b[codegen.EvIn:]),
		Out:    le.Uint32(b[codegen.EvOut:]),
		Len:    le.Uint32(b[codegen.EvLen:]),
		Mark:   le.Uint32(b[codegen.EvMark:]),
		Flags:  le.Uint32(b[codegen.EvFlags:]),
		Proto:  le.Uint16(b[codegen.EvProto:]),
		Avail:  le.Uint32(b[codegen.EvAvail:]),
		Handle: le.Uint64(b[codegen.EvHandle:]),
	}
	prefix := b[codegen.EvPrefix : codegen.EvPrefix+codegen.LogPrefixLen]
	if i := strings.IndexByte(string(prefix), 0); i >= 0 {
		prefix = prefix[:i]
	}
	ev.Prefix = string(prefix)
	if n := int(le.Uint16(b[codegen.EvMACLen:])); n > 0 && n <= 16 {
		ev.MAC = append([]byte(nil), b[codegen.EvMAC:codegen.EvMAC+n]...)
	}
	n := int(le.Uint16(b[codegen.EvCapLen:]))
	if n > codegen.LogCaptureLen {
		return nil, fmt.Errorf("log event claims %d captured bytes", n)
	}
	ev.Data = append([]byte(nil), b[codegen.EvData:codegen.EvData+n]...)
	return ev, nil
}

// Interface names an interface index ("" if unknown).
type Interface func(ifindex uint32) string

// Format returns the line nf_log_syslog writes for the event (without the
// syslog level marker), with the trailing space the kernel leaves.
func Format(ev *Event, ifname Interface) string {
	w := &writer{ev: ev}
	name := func(i uint32) string {
		if i == 0 || ifname == nil {
			return ""
		}
		return ifname(i)
	}
	w.add("%sIN=%s OUT=%s ", ev.Prefix, name(ev.In), name(ev.Out))
	family := ev.PF
	if family == ir.FamilyNetdev || family == ir.FamilyBridge {
		switch ev.Proto {
		case 0x0800:
			family = ir.FamilyIPv4
		case 0x86dd:
			family = ir.FamilyIPv6
		case 0x0806, 0x8035:
			family = ir.FamilyARP
		default:
			w.macHeader()
			return w.String()
		}
	}
	switch family {
	case ir.FamilyIPv4:
		if ev.In != 0 {
			w.macHeader()
		}
		w.ipv4(0, false)
	case ir.FamilyIPv6:
		if ev.In != 0 {
			w.macHeader()
		}
		w.ipv6(0, true)
	case ir.FamilyARP:
		w.arp()
	default:
		w.macHeader()
	}
	return w.String()
}

type writer struct {
	strings.Builder
	ev *Event
}

func (w *writer) add(format string, args ...any) { fmt.Fprintf(w, format, args...) }

// header returns n bytes at off from the network header, as
// skb_header_pointer does, or nil when the packet is shorter. ok is false
// when the packet has them but the event did not capture them.
func (w *writer) header(off, n int) (b []byte, ok bool) {
	if off < 0 || off+n > int(w.ev.Avail) {
		return nil, true
	}
	if off+n > len(w.ev.Data) {
		return nil, false
	}
	return w.ev.Data[off : off+n], true
}

// bytes is header for the printer: a part the event lacks is printed as
// what it is rather than guessed.
func (w *writer) bytes(off, n int) []byte {
	b, ok := w.header(off, n)
	if !ok {
		w.add("[beyond the %d captured bytes] ", codegen.LogCaptureLen)
	}
	return b
}

func (w *writer) rest(off int) int { return int(w.ev.Avail) - off }

func (w *writer) macHeader() {
	ev := w.ev
	if ev.Flags&ir.LogMACDecode != 0 && len(ev.MAC) >= 14 {
		w.add("MACSRC=%s MACDST=%s ", net.HardwareAddr(ev.MAC[6:12]), net.HardwareAddr(ev.MAC[0:6]))
		w.add("MACPROTO=%04x ", binary.BigEndian.Uint16(ev.MAC[12:14]))
		return
	}
	w.add("MAC=")
	for i, c := range ev.MAC {
		if i > 0 {
			w.add(":")
		}
		w.add("%02x", c)
	}
	w.add(" ")
}

func (w *writer) arp() {
	ah := w.bytes(0, 8)
	if ah == nil {
		w.add("TRUNCATED")
		return
	}
	be := binary.BigEndian
	if w.ev.Flags&ir.LogMACDecode != 0 && len(w.ev.MAC) >= 14 {
		w.add("MACSRC=%s MACDST=%s ", net.HardwareAddr(w.ev.MAC[6:12]), net.HardwareAddr(w.ev.MAC[0:6]))
		w.add("MACPROTO=%04x ", be.Uint16(w.ev.MAC[12:14]))
	}
	w.add("ARP HTYPE=%d PTYPE=0x%04x OPCODE=%d", be.Uint16(ah[0:]), be.Uint16(ah[2:]), be.Uint16(ah[6:]))
	if be.Uint16(ah[0:]) != 1 || ah[4] != 6 || ah[5] != 4 {
		return
	}
	ap := w.bytes(8, 20)
	if ap == nil {
		w.add(" INCOMPLETE [%d bytes]", int(w.ev.Avail)-8)
		return
	}
	w.add(" MACSRC=%s IPSRC=%s MACDST=%s IPDST=%s", net.HardwareAddr(ap[0:6]), netip.AddrFrom4([4]byte(ap[6:10])),
		net.HardwareAddr(ap[10:16]), netip.AddrFrom4([4]byte(ap[16:20])))
}

// IPv4 header bits (host order of frag_off).
const (
	ipCE     = 0x8000
	ipDF     = 0x4000
	ipMF     = 0x2000
	ipOffset = 0x1fff
)

func (w *writer) ipv4(off int, inner bool) {
	ih := w.bytes(off, 20)
	if ih == nil {
		w.add("TRUNCATED")
		return
	}
	be := binary.BigEndian
	ev := w.ev
	w.add("SRC=%s DST=%s ", netip.AddrFrom4([4]byte(ih[12:16])), netip.AddrFrom4([4]byte(ih[16:20])))
	w.add("LEN=%d TOS=0x%02X PREC=0x%02X TTL=%d ID=%d ", be.Uint16(ih[2:]), ih[1]&0x1e, ih[1]&0xe0, ih[8], be.Uint16(ih[4:]))
	frag := be.Uint16(ih[6:])
	if frag&ipCE != 0 {
		w.add("CE ")
	}
	if frag&ipDF != 0 {
		w.add("DF ")
	}
	if frag&ipMF != 0 {
		w.add("MF ")
	}
	if frag&ipOffset != 0 {
		w.add("FRAG:%d ", frag&ipOffset)
	}
	ihl := int(ih[0]&0x0f) * 4
	if ev.Flags&ir.LogIPOpt != 0 && ihl > 20 {
		op := w.bytes(off+20, ihl-20)
		if op == nil {
			w.add("TRUNCATED")
			return
		}
		w.add("OPT (%X) ", op)
	}
	fragment := frag&ipOffset != 0
	th := off + ihl
	switch proto := ih[9]; proto {
	case 6:
		if !w.tcp(fragment, th) {
			return
		}
	case 17, 136:
		if !w.udp(proto, fragment, th) {
			return
		}
	case 1:
		w.icmp(fragment, th, inner)
	case 51:
		if fragment {
			break
		}
		w.add("PROTO=AH ")
		ah := w.bytes(th, 12)
		if ah == nil {
			w.add("INCOMPLETE [%d bytes] ", w.rest(th))
			break
		}
		w.add("SPI=0x%x ", be.Uint32(ah[4:]))
	case 50:
		w.add("PROTO=ESP ")
		if fragment {
			break
		}
		eh := w.bytes(th, 8)
		if eh == nil {
			w.add("INCOMPLETE [%d bytes] ", w.rest(th))
			break
		}
		w.add("SPI=0x%x ", be.Uint32(eh[0:]))
	default:
		w.add("PROTO=%d ", proto)
	}
	if !inner && ev.Mark != 0 {
		w.add("MARK=0x%x ", ev.Mark)
	}
}

// icmpRequired is nf_log_syslog's required_len: the ICMP message length
// below which the message is INCOMPLETE.
var icmpRequired = map[byte]int{0: 4, 3: 28, 4: 28, 5: 28, 8: 4, 11: 28, 12: 28, 13: 20, 14: 20, 17: 12, 18: 12}

func (w *writer) icmp(fragment bool, th int, inner bool) {
	w.add("PROTO=ICMP ")
	if fragment {
		return
	}
	ich := w.bytes(th, 8)
	if ich == nil {
		w.add("INCOMPLETE [%d bytes] ", w.rest(th))
		return
	}
	typ, code := ich[0], ich[1]
	w.add("TYPE=%d CODE=%d ", typ, code)
	if req, ok := icmpRequired[typ]; ok && typ <= 18 && w.rest(th) < req {
		w.add("INCOMPLETE [%d bytes] ", w.rest(th))
		return
	}
	be := binary.BigEndian
	switch typ {
	case 0, 8:
		w.add("ID=%d SEQ=%d ", be.Uint16(ich[4:]), be.Uint16(ich[6:]))
	case 12:
		w.add("PARAMETER=%d ", be.Uint32(ich[4:])>>24)
	case 5, 3, 4, 11:
		if typ == 5 {
			w.add("GATEWAY=%s ", netip.AddrFrom4([4]byte(ich[4:8])))
		}
		if !inner {
			w.add("[")
			w.ipv4(th+8, true)
			w.add("] ")
		}
		if typ == 3 && code == 4 {
			w.add("MTU=%d ", be.Uint16(ich[6:]))
		}
	}
}

// tcp prints the TCP header; false means the line ends here.
func (w *writer) tcp(fragment bool, off int) bool {
	w.add("PROTO=TCP ")
	if fragment {
		return true
	}
	th := w.bytes(off, 20)
	if th == nil {
		w.add("INCOMPLETE [%d bytes] ", w.rest(off))
		return false
	}
	be := binary.BigEndian
	w.add("SPT=%d DPT=%d ", be.Uint16(th[0:]), be.Uint16(th[2:]))
	if w.ev.Flags&ir.LogTCPSeq != 0 {
		w.add("SEQ=%d ACK=%d ", be.Uint32(th[4:]), be.Uint32(th[8:]))
	}
	w.add("WINDOW=%d ", be.Uint16(th[14:]))
	word := be.Uint32(th[12:])
	w.add("RES=0x%02x ", (word&0x0e000000)>>22)
	for _, f := range []struct {
		bit  uint32
		name string
	}{{0x01000000, "AE"}, {0x00800000, "CWR"}, {0x00400000, "ECE"}, {0x00200000, "URG"}, {0x00100000, "ACK"},
		{0x00080000, "PSH"}, {0x00040000, "RST"}, {0x00020000, "SYN"}, {0x00010000, "FIN"}} {
		if word&f.bit != 0 {
			w.add("%s ", f.name)
		}
	}
	w.add("URGP=%d ", be.Uint16(th[18:]))
	doff := int(th[12]>>4) * 4
	if w.ev.Flags&ir.LogTCPOpt != 0 && doff > 20 {
		op := w.bytes(off+20, doff-20)
		if op == nil {
			w.add("OPT (TRUNCATED)")
			return false
		}
		w.add("OPT (%X) ", op)
	}
	return true
}

func (w *writer) udp(proto byte, fragment bool, off int) bool {
	if proto == 17 {
		w.add("PROTO=UDP ")
	} else {
		w.add("PROTO=UDPLITE ")
	}
	if fragment {
		return true
	}
	uh := w.bytes(off, 8)
	if uh == nil {
		w.add("INCOMPLETE [%d bytes] ", w.rest(off))
		return false
	}
	be := binary.BigEndian
	w.add("SPT=%d DPT=%d LEN=%d ", be.Uint16(uh[0:]), be.Uint16(uh[2:]), be.Uint16(uh[4:]))
	return true
}

// IPv6 extension headers nf_ip6_ext_hdr knows.
func ip6ExtHdr(nexthdr byte) bool {
	switch nexthdr {
	case 0, 43, 44, 50, 51, 59, 60:
		return true
	}
	return false
}

func (w *writer) ipv6(off int, recurse bool) {
	ih := w.bytes(off, 40)
	if ih == nil {
		w.add("TRUNCATED")
		return
	}
	be := binary.BigEndian
	ev := w.ev
	ipopt := ev.Flags&ir.LogIPOpt != 0
	w.add("SRC=%s DST=%s ", netip.AddrFrom16([16]byte(ih[8:24])), netip.AddrFrom16([16]byte(ih[24:40])))
	first := be.Uint32(ih[0:])
	w.add("LEN=%d TC=%d HOPLIMIT=%d FLOWLBL=%d ", int(be.Uint16(ih[4:]))+40, (first&0x0ff00000)>>20, ih[7], first&0x000fffff)
	fragment := false
	ptr := off + 40
	cur := ih[6]
	for cur != 59 && ip6ExtHdr(cur) {
		hp := w.bytes(ptr, 2)
		if hp == nil {
			w.add("TRUNCATED")
			return
		}
		if ipopt {
			w.add("OPT ( ")
		}
		var hdrlen int
		switch cur {
		case 44:
			w.add("FRAG:")
			fh := w.bytes(ptr, 8)
			if fh == nil {
				w.add("TRUNCATED ")
				return
			}
			fo := be.Uint16(fh[2:])
			w.add("%d ", fo&0xfff8)
			if fo&1 != 0 {
				w.add("INCOMPLETE ")
			}
			w.add("ID:%08x ", be.Uint32(fh[4:]))
			if fo&0xfff8 != 0 {
				fragment = true
			}
			hdrlen = 8
		case 60, 43, 0:
			if fragment {
				if ipopt {
					w.add(")")
				}
				return
			}
			hdrlen = (int(hp[1]) + 1) << 3
		case 51:
			if ipopt {
				w.add("AH ")
				if fragment {
					w.add(")")
					return
				}
				ah := w.bytes(ptr, 12)
				if ah == nil {
					w.add("INCOMPLETE [%d bytes] )", w.rest(ptr))
					return
				}
				w.add("SPI=0x%x ", be.Uint32(ah[4:]))
			}
			hdrlen = (int(hp[1]) + 2) << 2
		case 50:
			if ipopt {
				w.add("ESP ")
				if fragment {
					w.add(")")
					return
				}
				eh := w.bytes(ptr, 8)
				if eh == nil {
					w.add("INCOMPLETE [%d bytes] )", w.rest(ptr))
					return
				}
				w.add("SPI=0x%x )", be.Uint32(eh[0:]))
			}
			return
		default:
			w.add("Unknown Ext Hdr %d", cur)
			return
		}
		if ipopt {
			w.add(") ")
		}
		cur = hp[0]
		ptr += hdrlen
	}
	switch cur {
	case 6:
		if !w.tcp(fragment, ptr) {
			return
		}
	case 17, 136:
		if !w.udp(cur, fragment, ptr) {
			return
		}
	case 58:
		w.add("PROTO=ICMPv6 ")
		if fragment {
			break
		}
		ic := w.bytes(ptr, 8)
		if ic == nil {
			w.add("INCOMPLETE [%d bytes] ", w.rest(ptr))
			return
		}
		w.add("TYPE=%d CODE=%d ", ic[0], ic[1])
		switch ic[0] {
		case 128, 129:
			w.add("ID=%d SEQ=%d ", be.Uint16(ic[4:]), be.Uint16(ic[6:]))
		case 130, 131, 132:
		case 4, 1, 2, 3:
			if ic[0] == 4 {
				w.add("POINTER=%08x ", be.Uint32(ic[4:]))
			}
			if recurse {
				w.add("[")
				w.ipv6(ptr+8, false)
				w.add("] ")
			}
			if ic[0] == 2 {
				w.add("MTU=%d ", be.Uint32(ic[4:]))
			}
		}
	default:
		w.add("PROTO=%d ", cur)
	}
	if recurse && ev.Mark != 0 {
		w.add("MARK=0x%x ", ev.Mark)
	}
}

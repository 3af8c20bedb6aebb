package ir

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
)

// FormatStmt returns s in nft syntax, as it would stand alone in a rule of a
// table of family fam.
func FormatStmt(fam Family, s Stmt) string {
	p := newPrinter(fam)
	return p.stmt(s)
}

// FormatRule returns the rule's statements in nft syntax. Header fields are
// named (ip saddr, tcp dport) only where the rule itself establishes the
// protocol, so that nft, reading the text back, adds no dependency the
// original rule did not have; other fields print as raw payload (@nh,96,32).
func FormatRule(fam Family, r *Rule) string {
	p := newPrinter(fam)
	parts := make([]string, 0, len(r.Stmts)+1)
	for _, s := range r.Stmts {
		parts = append(parts, p.stmt(s))
	}
	if r.Comment != "" {
		parts = append(parts, fmt.Sprintf("comment %q", r.Comment))
	}
	return strings.Join(parts, " ")
}

// String returns the verdict in nft syntax.
func (v *Verdict) String() string {
	switch v.Kind {
	case VerdictAccept:
		return "accept"
	case VerdictDrop:
		return "drop"
	case VerdictReturn:
		return "return"
	case VerdictJump:
		return "jump " + v.Chain
	case VerdictGoto:
		return "goto " + v.Chain
	}
	return "continue"
}

// printer carries what earlier matches of a rule established.
type printer struct {
	fam   Family
	l3    string // "ip", "ip6" or ""
	l4    string // "tcp", "udp", … or ""
	ether bool   // the link layer is known to be Ethernet
	vlan  bool   // the frame is known to carry an 802.1Q tag
}

func newPrinter(fam Family) *printer {
	p := &printer{fam: fam}
	switch fam {
	case FamilyIPv4:
		p.l3 = "ip"
	case FamilyIPv6:
		p.l3 = "ip6"
	case FamilyNetdev, FamilyBridge:
		p.ether = true
	}
	return p
}

func (p *printer) stmt(s Stmt) string {
	switch s := s.(type) {
	case *Match:
		out := p.match(s)
		p.learn(s)
		return out
	case *Counter:
		return "counter"
	case *Verdict:
		return s.String()
	}
	return fmt.Sprintf("%T", s)
}

// learn records the protocol an equality match establishes.
func (p *printer) learn(mt *Match) {
	if mt.Op != OpEq || len(mt.Field.Transforms) != 0 {
		return
	}
	f := &mt.Field
	v := mt.Value
	switch {
	case f.Source == SourceMeta && f.Meta == MetaNFProto && len(v) == 1:
		p.l3 = map[byte]string{2: "ip", 10: "ip6"}[v[0]]
	case f.Source == SourceMeta && f.Meta == MetaProtocol && len(v) == 2,
		f.Source == SourcePayload && f.Base == BaseLL && f.Offset == 12 && f.Len == 2 && !p.vlan && p.ether,
		f.Source == SourcePayload && f.Base == BaseLL && f.Offset == 16 && f.Len == 2 && p.vlan:
		switch binary.BigEndian.Uint16(v) {
		case 0x0800:
			p.l3 = "ip"
		case 0x86dd:
			p.l3 = "ip6"
		case 0x8100:
			if f.Source == SourcePayload && f.Offset == 12 {
				p.vlan = true
			}
		}
	case f.Source == SourceMeta && f.Meta == MetaL4Proto && len(v) == 1,
		f.Source == SourcePayload && f.Base == BaseNetwork && p.l3 == "ip" && f.Offset == 9 && f.Len == 1,
		f.Source == SourcePayload && f.Base == BaseNetwork && p.l3 == "ip6" && f.Offset == 6 && f.Len == 1:
		p.l4 = transportProtos[v[0]]
	case f.Source == SourceMeta && f.Meta == MetaIifType && len(v) == 2:
		if binary.NativeEndian.Uint16(v) == 1 {
			p.ether = true
		}
	}
}

// named finds the header field a payload Field loads, given the context.
// It returns the field and how many leading transforms its mask accounts for.
func (p *printer) named(f *Field) (*HeaderField, int) {
	if f.Source != SourcePayload {
		return nil, 0
	}
	for i := range headerFields {
		hf := &headerFields[i]
		if hf.Base != f.Base || hf.Offset != f.Offset || hf.Len != f.Len {
			continue
		}
		switch hf.Base {
		case BaseLL:
			if !p.ether || (hf.Proto == "vlan") != p.vlan && hf.Offset >= 14 {
				continue
			}
		case BaseNetwork:
			if hf.Proto != p.l3 {
				continue
			}
		case BaseTransport:
			if hf.Proto != p.l4 {
				continue
			}
		}
		if hf.Mask == nil {
			return hf, 0
		}
		if len(f.Transforms) > 0 {
			t := f.Transforms[0]
			if t.Kind == TransformMaskXor && bytes.Equal(t.Mask, hf.Mask) && isZero(t.Xor) {
				return hf, 1
			}
		}
	}
	return nil, 0
}

func (p *printer) match(mt *Match) string {
	f := &mt.Field
	var lhs string
	typ, host := TypeHex, false
	var mask []byte
	rest := f.Transforms
	if f.Source == SourceMeta {
		lhs = "meta " + MetaName(f.Meta)
		if mtyp, ok := metaTypes[f.Meta]; ok {
			typ, host = mtyp.typ, mtyp.host
		}
	} else if hf, used := p.named(f); hf != nil {
		lhs = hf.Proto + " " + hf.Name
		typ, mask, rest = hf.Type, hf.Mask, f.Transforms[used:]
	} else if hf := p.addressPrefix(f); hf != nil && (mt.Op == OpEq || mt.Op == OpNeq) && len(f.Transforms) == 0 {
		// nft loads only the whole bytes of a byte-aligned prefix.
		full := make([]byte, hf.Len)
		copy(full, mt.Value)
		op := ""
		if mt.Op == OpNeq {
			op = "!= "
		}
		return fmt.Sprintf("%s %s %s%s/%d", hf.Proto, hf.Name, op, p.value(hf.Type, false, nil, full), len(mt.Value)*8)
	} else {
		base := [...]string{"ll", "nh", "th", "ih"}[f.Base&3]
		lhs = fmt.Sprintf("@%s,%d,%d", base, f.Offset*8, f.Len*8)
	}
	// A prefix mask on an address compares as a prefix.
	if len(rest) == 1 && rest[0].Kind == TransformMaskXor && isZero(rest[0].Xor) && (typ == TypeIPv4 || typ == TypeIPv6) &&
		(mt.Op == OpEq || mt.Op == OpNeq) {
		if bits, ok := prefixLen(rest[0].Mask); ok {
			op := ""
			if mt.Op == OpNeq {
				op = "!= "
			}
			return fmt.Sprintf("%s %s%s/%d", lhs, op, p.value(typ, host, nil, mt.Value), bits)
		}
	}
	// Other transforms print as nft bitwise syntax on the value.
	eq := ""
	for _, t := range rest {
		eq = "== "
		switch t.Kind {
		case TransformMaskXor:
			if isZero(t.Xor) && mask == nil && typ != TypeIfName {
				lhs += " & " + p.value(typ, host, nil, t.Mask)
				continue
			}
			lhs += " & 0x" + hex.EncodeToString(t.Mask)
			if !isZero(t.Xor) {
				lhs += " ^ 0x" + hex.EncodeToString(t.Xor)
			}
			typ, mask = TypeHex, nil
		case TransformShiftLeft:
			lhs += fmt.Sprintf(" << %d", t.Shift)
			typ, mask = TypeHex, nil
		case TransformShiftRight:
			lhs += fmt.Sprintf(" >> %d", t.Shift)
			typ, mask = TypeHex, nil
		case TransformHton, TransformNtoh:
			host = !host
		}
	}
	val := func(b []byte) string { return p.value(typ, host, mask, b) }
	switch mt.Op {
	case OpInRange:
		return fmt.Sprintf("%s %s-%s", lhs, val(mt.Value), val(mt.High))
	case OpNotInRange:
		return fmt.Sprintf("%s != %s-%s", lhs, val(mt.Value), val(mt.High))
	case OpInSet, OpNotInSet:
		neg := ""
		if mt.Op == OpNotInSet {
			neg = "!= "
		}
		return fmt.Sprintf("%s %s%s", lhs, neg, p.setRef(mt.Set, val))
	}
	if typ == TypeIfName && len(mt.Value) < 16 && (mt.Op == OpEq || mt.Op == OpNeq) {
		// A compare shorter than the name is a wildcard.
		return fmt.Sprintf("%s %s%q", lhs, opText[mt.Op], strings.TrimRight(string(mt.Value), "\x00")+"*")
	}
	op := opText[mt.Op]
	if op == "" {
		op = eq
	}
	return fmt.Sprintf("%s %s%s", lhs, op, val(mt.Value))
}

// addressPrefix finds the address field a shorter load at its offset
// belongs to.
func (p *printer) addressPrefix(f *Field) *HeaderField {
	if f.Source != SourcePayload || f.Base != BaseNetwork {
		return nil
	}
	for i := range headerFields {
		hf := &headerFields[i]
		if hf.Base == f.Base && hf.Offset == f.Offset && hf.Proto == p.l3 && f.Len < hf.Len &&
			(hf.Type == TypeIPv4 || hf.Type == TypeIPv6) {
			return hf
		}
	}
	return nil
}

var opText = map[Op]string{OpEq: "", OpNeq: "!= ", OpLt: "< ", OpLte: "<= ", OpGt: "> ", OpGte: ">= "}

func (p *printer) setRef(s *Set, val func([]byte) string) string {
	if s == nil {
		return "@?"
	}
	if !s.Anonymous() {
		return "@" + s.Name
	}
	elems := make([]string, 0, len(s.Elements))
	for _, e := range s.Elements {
		if bytes.Equal(e.Low, e.High) {
			elems = append(elems, val(e.Low))
		} else {
			elems = append(elems, val(e.Low)+"-"+val(e.High))
		}
	}
	return "{ " + strings.Join(elems, ", ") + " }"
}

// value prints b as a value of type typ; host says b is in host byte
// order; mask, when set, selects the bits of the field that hold the value.
func (p *printer) value(typ ValueType, host bool, mask, b []byte) string {
	if host {
		b = reverse(b)
	}
	n := new(big.Int).SetBytes(b)
	if mask != nil && len(mask) == len(b) {
		mk := new(big.Int).SetBytes(mask)
		n.And(n, mk)
		n.Rsh(n, mk.TrailingZeroBits())
	}
	switch typ {
	case TypeIPv4:
		if len(b) == 4 {
			return netip.AddrFrom4([4]byte(b)).String()
		}
	case TypeIPv6:
		if len(b) == 16 {
			return netip.AddrFrom16([16]byte(b)).String()
		}
	case TypeEther:
		if len(b) == 6 {
			parts := make([]string, 6)
			for i, c := range b {
				parts[i] = fmt.Sprintf("%02x", c)
			}
			return strings.Join(parts, ":")
		}
	case TypeEtherType:
		if name, ok := etherTypes[n.Uint64()]; ok && n.IsUint64() {
			return name
		}
		return fmt.Sprintf("0x%04x", n)
	case TypeInetProto:
		if name, ok := inetProtos[n.Uint64()]; ok && n.IsUint64() {
			return name
		}
		return n.String()
	case TypeIfName:
		return fmt.Sprintf("%q", strings.TrimRight(string(b), "\x00"))
	case TypeNFProto:
		if name, ok := map[uint64]string{2: "ipv4", 10: "ipv6"}[n.Uint64()]; ok {
			return name
		}
		return n.String()
	case TypePktType:
		if name, ok := map[uint64]string{0: "host", 1: "broadcast", 2: "multicast", 3: "other"}[n.Uint64()]; ok {
			return name
		}
		return n.String()
	case TypeIfType:
		if name, ok := map[uint64]string{1: "ether", 772: "loopback"}[n.Uint64()]; ok {
			return name
		}
		return n.String()
	case TypeTCPFlags:
		return tcpFlags(n.Uint64())
	case TypeInteger, TypeICMPType, TypeICMPv6Type:
		return n.String()
	}
	return fmt.Sprintf("0x%0*x", hexWidth(b, mask), n)
}

func hexWidth(b, mask []byte) int {
	if mask != nil {
		return 1
	}
	return 2 * len(b)
}

var etherTypes = map[uint64]string{0x0800: "ip", 0x86dd: "ip6", 0x0806: "arp", 0x8100: "8021q", 0x88a8: "8021ad"}

var inetProtos = map[uint64]string{1: "icmp", 6: "tcp", 17: "udp", 50: "esp", 51: "ah", 58: "icmpv6", 132: "sctp", 136: "udplite"}

var tcpFlagNames = []string{"fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"}

func tcpFlags(v uint64) string {
	if v == 0 || v > 0xff {
		return fmt.Sprintf("0x%x", v)
	}
	var names []string
	for i, name := range tcpFlagNames {
		if v&(1<<i) != 0 {
			names = append(names, name)
		}
	}
	if len(names) == 1 {
		return names[0]
	}
	return "(" + strings.Join(names, " | ") + ")"
}

func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[len(b)-1-i] = c
	}
	return out
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// prefixLen reports whether mask is a network prefix mask and its length.
func prefixLen(mask []byte) (int, bool) {
	bits, ended := 0, false
	for _, c := range mask {
		for i := 7; i >= 0; i-- {
			set := c&(1<<i) != 0
			switch {
			case set && ended:
				return 0, false
			case set:
				bits++
			default:
				ended = true
			}
		}
	}
	return bits, true
}

var metaNames = map[MetaKey]string{
	MetaLen: "length", MetaProtocol: "protocol", MetaPriority: "priority", MetaMark: "mark",
	MetaIif: "iif", MetaOif: "oif", MetaIifName: "iifname", MetaOifName: "oifname",
	MetaIifType: "iiftype", MetaOifType: "oiftype", MetaSkUID: "skuid", MetaSkGID: "skgid",
	MetaNFTrace: "nftrace", MetaRtClassid: "rtclassid", MetaSecmark: "secmark",
	MetaNFProto: "nfproto", MetaL4Proto: "l4proto", MetaBriIifName: "ibrname",
	MetaBriOifName: "obrname", MetaPktType: "pkttype", MetaCPU: "cpu",
	MetaIifGroup: "iifgroup", MetaOifGroup: "oifgroup", MetaCgroup: "cgroup", MetaPRandom: "random",
	25: "secpath", 26: "iifkind", 27: "oifkind", 28: "ibrpvid", 29: "ibrvproto",
	30: "time", 31: "day", 32: "hour", 33: "sdif", 34: "sdifname", 35: "broute",
}

// MetaName returns nft's name for a meta key.
func MetaName(k MetaKey) string {
	if n, ok := metaNames[k]; ok {
		return n
	}
	return fmt.Sprintf("key%d", uint32(k))
}

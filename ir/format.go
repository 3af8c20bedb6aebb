package ir

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/big"
	"math/bits"
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
func FormatRule(fam Family, r *Rule) string { return formatRule(fam, r, ruleOptions{}) }

// ruleOptions tune formatRule.
type ruleOptions struct {
	// counter gives the live values of the counter statement at index i.
	counter func(i int) (packets, bytes uint64, ok bool)
	// quota gives the live bytes consumed by the quota statement at i.
	quota func(i int) (used uint64, ok bool)
}

func formatRule(fam Family, r *Rule, opts ruleOptions) string {
	p := newPrinter(fam)
	parts := make([]string, 0, len(r.Stmts)+1)
	for i, s := range r.Stmts {
		if _, ok := s.(*Counter); ok && opts.counter != nil {
			if pk, by, ok := opts.counter(i); ok {
				parts = append(parts, fmt.Sprintf("counter packets %d bytes %d", pk, by))
				continue
			}
		}
		if q, ok := s.(*Quota); ok && opts.quota != nil {
			if used, ok := opts.quota(i); ok {
				live := *q
				live.Used = q.Listed(used)
				parts = append(parts, live.String())
				continue
			}
		}
		parts = append(parts, p.stmt(s))
	}
	if r.Comment != "" {
		parts = append(parts, "comment "+quote(r.Comment))
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
	case FamilyBridge:
		// nft adds no dependency for ether fields in a bridge table; in
		// netdev and the IP families it adds "meta iiftype ether".
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
	case *Lookup:
		return p.lookup(s)
	case *VerdictMap:
		return p.verdictMap(s)
	case *MetaSetMap:
		return p.metaSetMap(s)
	case *Limit, *Quota, *Log, *MetaSet:
		return formatStateful(s)
	case *Reject:
		return p.reject(s)
	case *ObjRef:
		return s.String()
	}
	return fmt.Sprintf("%T", s)
}

// learn records the protocol an equality match establishes, the way nft's
// dependency tracking sees it: a match counts only where nft, reading the
// printed rule back, would take it as the dependency of a later header field
// and add none of its own.
func (p *printer) learn(mt *Match) {
	f := &mt.Field
	v := mt.Value
	if mt.Op != OpEq || len(f.Transforms) != 0 || len(v) != int(f.Len) {
		return
	}
	switch {
	case f.Source == SourceMeta && f.Meta == MetaNFProto && len(v) == 1:
		// Only the inet family has a choice of network protocols that
		// meta nfproto tells apart.
		if p.fam == FamilyInet {
			p.l3 = map[byte]string{2: "ip", 10: "ip6"}[v[0]]
		}
	case f.Source == SourceMeta && f.Meta == MetaProtocol && len(v) == 2 && (p.fam == FamilyNetdev || p.fam == FamilyBridge),
		f.Source == SourcePayload && f.Base == BaseLL && f.Offset == 12 && len(v) == 2 && !p.vlan && p.ether,
		f.Source == SourcePayload && f.Base == BaseLL && f.Offset == 16 && len(v) == 2 && p.vlan:
		// In the inet family nft still adds meta nfproto after meta
		// protocol; in ip and ip6 tables the protocol is known anyway.
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
		f.Source == SourcePayload && f.Base == BaseNetwork && p.l3 == "ip" && f.Offset == 9 && len(v) == 1,
		f.Source == SourcePayload && f.Base == BaseNetwork && p.l3 == "ip6" && f.Offset == 6 && len(v) == 1:
		p.l4 = transportProtos[v[0]]
	case f.Source == SourceMeta && f.Meta == MetaIifType && len(v) == 2:
		if binary.NativeEndian.Uint16(v) == 1 {
			p.ether = true
		}
	}
}

// known reports whether the rule so far establishes the protocol of hf.
func (p *printer) known(hf *HeaderField) bool {
	switch hf.Base {
	case BaseLL:
		if !p.ether {
			return false
		}
		// Past the Ethernet header only the VLAN tag's fields are named,
		// and only once the tag is known to be there.
		return hf.Offset < 14 || (hf.Proto == "vlan") == p.vlan
	case BaseNetwork:
		return hf.Proto == p.l3
	case BaseTransport:
		return hf.Proto == p.l4
	}
	return false
}

// named finds the header field a payload Field loads, given the context.
// It returns the field, how many leading transforms its name accounts for
// (the field's mask, and the right shift nft adds to a sub-byte field that
// is looked up in a set), and whether the value is shifted down already.
func (p *printer) named(f *Field) (hf *HeaderField, used int, shifted bool) {
	if f.Source != SourcePayload {
		return nil, 0, false
	}
	for i := range headerFields {
		hf := &headerFields[i]
		if hf.Base != f.Base || hf.Offset != f.Offset || hf.Len != f.Len || !p.known(hf) {
			continue
		}
		if hf.Mask == nil {
			return hf, 0, false
		}
		if len(f.Transforms) == 0 {
			continue
		}
		t := f.Transforms[0]
		if t.Kind != TransformMaskXor || !bytes.Equal(t.Mask, hf.Mask) || !isZero(t.Xor) {
			continue
		}
		if len(f.Transforms) > 1 && hf.Len == 1 && nativeLittleEndian {
			// A one-byte value sits in the low byte of the register's
			// first host-endian word, so the shift moves it down within
			// that byte.
			s := f.Transforms[1]
			if s.Kind == TransformShiftRight && s.Shift == uint32(trailingZeros(hf.Mask)) && s.Shift > 0 {
				return hf, 2, true
			}
		}
		return hf, 1, false
	}
	return nil, 0, false
}

// fitsNamed reports whether every value mt compares the named field hf
// with can be written as a value of that field: a field narrower than its
// bytes (a mask) cannot express bits outside the mask, nor further
// transforms, which nft would apply to the field's value instead of the
// loaded bytes.
func fitsNamed(hf *HeaderField, shifted bool, rest []Transform, mt *Match) bool {
	if hf.Mask == nil {
		return true
	}
	if len(rest) != 0 {
		return false
	}
	fits := func(v []byte) bool {
		if len(v) != len(hf.Mask) {
			return false
		}
		if shifted {
			return v[0] <= hf.Mask[0]>>trailingZeros(hf.Mask)
		}
		for i := range v {
			if v[i]&^hf.Mask[i] != 0 {
				return false
			}
		}
		return true
	}
	return allValues(mt, fits)
}

// allValues reports whether ok holds for every value mt compares with.
func allValues(mt *Match, ok func([]byte) bool) bool {
	switch mt.Op {
	case OpInSet, OpNotInSet:
		if mt.Set == nil || !mt.Set.Anonymous() {
			return true
		}
		for _, e := range mt.Set.Elements {
			if !ok(e.Low) || !ok(e.High) {
				return false
			}
		}
		return true
	case OpInRange, OpNotInRange:
		return ok(mt.Value) && ok(mt.High)
	}
	return ok(mt.Value)
}

func (p *printer) match(mt *Match) string {
	if s, ok := p.ifnamePrefix(mt); ok {
		return s
	}
	if s, ok := p.addressPrefix(mt); ok {
		return s
	}
	if s, ok := p.ctFlags(mt); ok {
		return s
	}
	if s, ok := exthdrPresence(mt); ok {
		return s
	}
	mt = widen(mt)
	lhs, typ, host, mask, eq := p.operand(mt)
	switch mt.Op {
	case OpInRange:
		return fmt.Sprintf("%s %s-%s", lhs, p.value(typ, host, mask, mt.Value), p.value(typ, host, mask, mt.High))
	case OpNotInRange:
		return fmt.Sprintf("%s != %s-%s", lhs, p.value(typ, host, mask, mt.Value), p.value(typ, host, mask, mt.High))
	case OpInSet, OpNotInSet:
		neg := ""
		if mt.Op == OpNotInSet {
			neg = "!= "
		}
		return fmt.Sprintf("%s %s%s", lhs, neg, p.setRef(mt.Set, typ, host, mask))
	}
	op := opText[mt.Op]
	if op == "" {
		op = eq
	}
	if op == "" && (typ == TypeTCPFlags || typ == TypeCTState || typ == TypeCTStatus) {
		// Without an operator nft reads flags as "any of these set".
		op = "== "
	}
	return fmt.Sprintf("%s %s%s", lhs, op, p.value(typ, host, mask, mt.Value))
}

// operand returns how the Field of mt prints: the left-hand side (a
// header field, meta key or raw payload, with its transforms in nft's
// bitwise syntax), how its values print, and the operator an equality
// compare needs ("== " after a transform).
func (p *printer) operand(mt *Match) (lhs string, typ ValueType, host bool, mask []byte, eq string) {
	f := &mt.Field
	typ = TypeHex
	rest := foldMasks(f.Transforms)
	if f.Source == SourceCT {
		lhs, typ, host = p.ctField(f)
	} else if f.Source == SourceExthdr {
		lhs, typ = exthdrOperand(f), TypeInteger
	} else if f.Source == SourceFIB {
		lhs, typ, host = fibField(f), TypeAddrType, true
	} else if f.Source == SourceMeta {
		lhs = "meta " + MetaName(f.Meta)
		if mtyp, ok := metaTypes[f.Meta]; ok {
			typ, host = mtyp.typ, mtyp.host
		}
	} else if hf, used, shifted := p.named(f); hf != nil && fitsNamed(hf, shifted, foldMasks(f.Transforms[used:]), mt) {
		lhs = hf.Proto + " " + hf.Name
		typ, rest = hf.Type, foldMasks(f.Transforms[used:])
		if !shifted {
			mask = hf.Mask
		}
	} else {
		base := fmt.Sprintf("base%d", f.Base)
		if int(f.Base) < len(rawBases) {
			base = rawBases[f.Base]
		}
		lhs = fmt.Sprintf("@%s,%d,%d", base, f.Offset*8, f.Len*8)
	}
	// Transforms print as nft bitwise syntax on the value; byte order
	// conversions only change how the value reads.
	for _, t := range rest {
		switch t.Kind {
		case TransformMaskXor:
			eq = "== "
			if typ == TypeIfName {
				typ = TypeHex
			}
			lhs += " & " + p.value(bitsType(typ), host, nil, t.Mask)
			if !isZero(t.Xor) {
				lhs += " ^ " + p.value(bitsType(typ), host, nil, t.Xor)
			}
		case TransformShiftLeft:
			eq = "== "
			lhs += fmt.Sprintf(" << %d", t.Shift)
			typ = TypeHex
		case TransformShiftRight:
			eq = "== "
			lhs += fmt.Sprintf(" >> %d", t.Shift)
			typ = TypeHex
		case TransformHton, TransformNtoh:
			host = !host
		}
	}
	return lhs, typ, host, mask, eq
}

// bitsType is the type a mask or xor operand of a value of type typ
// prints as: the value's own type where its bits have a reading (addresses,
// TCP flags, integers), hex for enumerations.
func bitsType(typ ValueType) ValueType {
	switch typ {
	case TypeIPv4, TypeIPv6, TypeEther, TypeTCPFlags, TypeInteger, TypeCTState, TypeCTStatus:
		return typ
	}
	return TypeHex
}

var rawBases = [...]string{"ll", "nh", "th", "ih"}

// nativeLittleEndian reports whether this machine stores integers least
// significant byte first, as the register words nft shifts are.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// ifnamePrefix prints an interface name compare: a value shorter than the
// name that does not end in NUL compares a prefix, nft's "eth*"; one that
// ends in NUL compares the whole name.
func (p *printer) ifnamePrefix(mt *Match) (string, bool) {
	f := &mt.Field
	if f.Source != SourceMeta || metaTypes[f.Meta].typ != TypeIfName || len(f.Transforms) != 0 ||
		(mt.Op != OpEq && mt.Op != OpNeq) || len(mt.Value) == 0 || len(mt.Value) > int(f.Len) {
		return "", false
	}
	name := strings.TrimRight(string(mt.Value), "\x00")
	if strings.IndexByte(name, 0) >= 0 {
		return "", false
	}
	if len(name) == len(mt.Value) && len(mt.Value) < int(f.Len) {
		name += "*"
	}
	return fmt.Sprintf("meta %s %s%s", MetaName(f.Meta), opText[mt.Op], quote(name)), true
}

// addressPrefix prints a compare of the leading bits of an address: a
// shorter load or compare, or a prefix mask (ip saddr 192.0.2.0/24). It
// declines a mask that is no prefix and a value with bits outside the
// mask, which never matches and prints as a mask instead.
func (p *printer) addressPrefix(mt *Match) (string, bool) {
	f := &mt.Field
	n := len(mt.Value)
	if f.Source != SourcePayload || (mt.Op != OpEq && mt.Op != OpNeq) || n == 0 || n > int(f.Len) {
		return "", false
	}
	var hf *HeaderField
	for i := range headerFields {
		h := &headerFields[i]
		if h.Base == f.Base && h.Offset == f.Offset && f.Len <= h.Len && (h.Type == TypeIPv4 || h.Type == TypeIPv6) && p.known(h) {
			hf = h
			break
		}
	}
	if hf == nil {
		return "", false
	}
	mask := make([]byte, hf.Len)
	for i := 0; i < n; i++ {
		mask[i] = 0xff
	}
	switch len(f.Transforms) {
	case 0:
		if n == int(hf.Len) {
			return "", false // the whole address
		}
	case 1:
		t := f.Transforms[0]
		if t.Kind != TransformMaskXor || !isZero(t.Xor) || len(t.Mask) != int(f.Len) {
			return "", false
		}
		for i := 0; i < n; i++ {
			mask[i] &= t.Mask[i]
		}
	default:
		return "", false
	}
	bits, ok := prefixLen(mask)
	if !ok {
		return "", false
	}
	addr := make([]byte, hf.Len)
	copy(addr, mt.Value)
	for i := range addr {
		if addr[i]&^mask[i] != 0 {
			return "", false
		}
	}
	return fmt.Sprintf("%s %s %s%s/%d", hf.Proto, hf.Name, opText[mt.Op], p.value(hf.Type, false, nil, addr), bits), true
}

// widen rewrites a compare of the first bytes of a Field (a value shorter
// than the Field) as a compare of the whole Field under a mask that keeps
// those bytes: memcmp over the first n bytes orders values exactly as
// memcmp over the masked whole does.
func widen(mt *Match) *Match {
	n, l := len(mt.Value), int(mt.Field.Len)
	if n == 0 || n >= l || mt.Op == OpInSet || mt.Op == OpNotInSet {
		return mt
	}
	if (mt.Op == OpInRange || mt.Op == OpNotInRange) && len(mt.High) != n {
		return mt
	}
	w := *mt
	mask := make([]byte, l)
	for i := 0; i < n; i++ {
		mask[i] = 0xff
	}
	w.Field = cloneField(mt.Field)
	w.Field.Transforms = append(w.Field.Transforms, Transform{Kind: TransformMaskXor, Len: uint32(l), Mask: mask, Xor: make([]byte, l)})
	w.Value = pad(mt.Value, l)
	if mt.High != nil {
		w.High = pad(mt.High, l)
	}
	return &w
}

func cloneField(f Field) Field {
	f.Transforms = append([]Transform(nil), f.Transforms...)
	return f
}

func pad(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}

// foldMasks merges consecutive mask/xor transforms of the same length
// into one: (x & m1 ^ x1) & m2 ^ x2 is x & (m1 & m2) ^ (x1 & m2 ^ x2). A
// chain of them would otherwise print as "& m1 ^ x1 & m2 ^ x2", which nft
// parses with & binding tighter than ^.
func foldMasks(ts []Transform) []Transform {
	var out []Transform
	for _, t := range ts {
		if k := len(out) - 1; k >= 0 && t.Kind == TransformMaskXor && out[k].Kind == TransformMaskXor &&
			len(t.Mask) == len(out[k].Mask) && len(t.Xor) == len(t.Mask) && len(out[k].Xor) == len(t.Mask) {
			prev := out[k]
			m := make([]byte, len(t.Mask))
			x := make([]byte, len(t.Mask))
			for i := range m {
				m[i] = prev.Mask[i] & t.Mask[i]
				x[i] = prev.Xor[i]&t.Mask[i] ^ t.Xor[i]
			}
			out[k] = Transform{Kind: TransformMaskXor, Len: t.Len, Mask: m, Xor: x}
			continue
		}
		out = append(out, t)
	}
	return out
}

var opText = map[Op]string{OpEq: "", OpNeq: "!= ", OpLt: "< ", OpLte: "<= ", OpGt: "> ", OpGte: ">= "}

func (p *printer) setRef(s *Set, typ ValueType, host bool, mask []byte) string {
	if s == nil {
		return "@?"
	}
	if !s.Anonymous() {
		return "@" + s.Name
	}
	elems := make([]string, 0, len(s.Elements))
	for _, e := range s.Elements {
		elems = append(elems, p.element(typ, host, mask, e))
	}
	return "{ " + strings.Join(elems, ", ") + " }"
}

// element prints one set element: a value, a range, or for interface
// names the range of every name with a prefix, nft's "eth*".
func (p *printer) element(typ ValueType, host bool, mask []byte, e SetElement) string {
	if bytes.Equal(e.Low, e.High) {
		return p.value(typ, host, mask, e.Low)
	}
	if bits, ok := rangeIsPrefix(e.Low, e.High); ok && (typ == TypeIPv4 || typ == TypeIPv6) && !host && mask == nil {
		return fmt.Sprintf("%s/%d", p.value(typ, host, mask, e.Low), bits)
	}
	if typ == TypeIfName && len(e.Low) == len(e.High) {
		prefix := strings.TrimRight(string(e.Low), "\x00")
		rest := e.High[len(prefix):]
		if len(prefix) > 0 && strings.IndexByte(prefix, 0) < 0 && strings.HasPrefix(string(e.High), prefix) &&
			len(bytes.Trim(rest, "\xff")) == 0 && len(rest) > 0 {
			return quote(prefix + "*")
		}
	}
	return p.value(typ, host, mask, e.Low) + "-" + p.value(typ, host, mask, e.High)
}

// quote puts s in double quotes as nft reads strings: verbatim, without
// escapes.
func quote(s string) string { return `"` + s + `"` }

func trailingZeros(mask []byte) int {
	n := 0
	for i := len(mask) - 1; i >= 0; i-- {
		if mask[i] == 0 {
			n += 8
			continue
		}
		return n + bits.TrailingZeros8(mask[i])
	}
	return n
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
		return quote(strings.TrimRight(string(b), "\x00"))
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
	case TypeCTState, TypeCTStatus:
		names := ctStateNames
		if typ == TypeCTStatus {
			names = ctStatusNames
		}
		if l, ok := flagList(names, n.Uint64(), " | "); ok && n.IsUint64() {
			if strings.Contains(l, " ") {
				return "(" + l + ")"
			}
			return l
		}
		return fmt.Sprintf("0x%x", n)
	case TypeCTDir:
		if name, ok := map[uint64]string{0: "original", 1: "reply"}[n.Uint64()]; ok && n.IsUint64() {
			return name
		}
		return n.String()
	case TypeAddrType:
		if name := AddrTypeName(uint32(n.Uint64())); name != "" && n.IsUint64() && n.Uint64() < 1<<32 {
			return name
		}
		return n.String()
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

// Package bench measures bpfilter-nft's programs: the cost per packet of
// generated rulesets of growing size (BPF_PROG_TEST_RUN with repeat, as a
// ratio to an empty program of the same type measured in the same run),
// and the time and verifier work to compile and load them.
//
// The rulesets are realistic filter rules ("ip saddr 198.51.100.7 tcp
// dport 1031 drop") generated in three kinds: uniform (every rule the same
// shape, differing in constants), mixed (blocks of rules of four shapes,
// IPv4 and IPv6) and heterogeneous (the shape changes from one rule to the
// next, so that no two neighbours can share a lookup), and three kinds with
// statements beyond a counter: accounting (a counter and no verdict),
// logdrop (a log statement, then drop) and reject. Each rule can be
// written as nft text and as the rule IR nft's netlink messages translate
// to, and comes with a frame that it matches and no earlier rule does.
package bench

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Kind is a kind of generated ruleset.
type Kind string

// Ruleset kinds.
const (
	// Uniform rules are all "ip saddr A tcp dport P drop".
	Uniform Kind = "uniform"
	// Mixed rules come in blocks of MixedBlock rules of one shape; the
	// shapes are IPv4 source and TCP port, IPv6 source and UDP port (an
	// IPv4 destination and UDP port for IPv4-only tables), IPv4
	// destination and TCP port, and TCP port alone.
	Mixed Kind = "mixed"
	// Heterogeneous rules change shape at every rule (the four shapes of
	// Mixed and "ip saddr A udp sport P").
	Heterogeneous Kind = "heterogeneous"
	// Ranges rules are "ip saddr A tcp dport P-Q drop": port ranges of
	// twelve widths, which masked rule groups serve (each range its
	// prefixes).
	Ranges Kind = "ranges"
	// Prefixes rules are "ip saddr N/L tcp dport P drop" with nested
	// networks of the nine lengths /32 to /24 in turn (the longest
	// first, as first-match needs), P changing every nine rules.
	Prefixes Kind = "prefixes"
	// Accounting rules are "ip saddr A tcp dport P counter": they count
	// and go on (no verdict), so a packet crosses every rule.
	Accounting Kind = "accounting"
	// LogDrop rules are "ip saddr A tcp dport P log prefix "blocked: "
	// drop".
	LogDrop Kind = "logdrop"
	// Reject rules are "ip saddr A tcp dport P reject with tcp reset";
	// only tc programs at netdev ingress can reject. Their frames are
	// TCP resets, which the kernel answers with nothing, so that a
	// frame stays the same over repeated runs (BPF_PROG_TEST_RUN runs a
	// program again on the packet it left).
	Reject Kind = "reject"
)

// Kinds lists every kind.
var Kinds = []Kind{Uniform, Mixed, Heterogeneous, Ranges, Prefixes, Accounting, LogDrop, Reject}

// LogPrefix is the prefix of LogDrop rules.
const LogPrefix = "blocked: "

// MixedBlock is the number of consecutive rules of one shape in a Mixed
// ruleset.
const MixedBlock = 64

// Rule is one generated rule: every set field must match.
type Rule struct {
	Src, Dst netip.Addr // unset: not matched
	Proto    uint8      // 0, packet.ProtoTCP or packet.ProtoUDP
	Sport    uint16     // 0: not matched
	Dport    uint16     // 0: not matched
	DportHi  uint16     // nonzero: Dport-DportHi is a range
	// SrcBits, when nonzero, makes Src the network Src/SrcBits (IPv4).
	SrcBits int
	Counter bool
	Accept  bool // else drop
	// Log, when set, is the prefix of a log statement before the
	// verdict; Reject replaces the verdict by "reject with tcp reset";
	// Continue drops the verdict (the rule goes on).
	Log      string
	Reject   bool
	Continue bool
	// QuotaOver, when not 0, puts "quota over QuotaOver bytes" before
	// the counter: the rule ends until its packets passed that many
	// bytes.
	QuotaOver uint64
}

// HitVerdict is the verdict a packet gets that r matches first, in a
// chain of policy accept.
func (r Rule) HitVerdict() ir.VerdictKind {
	switch {
	case r.Continue || r.Accept && !r.Reject:
		return ir.VerdictAccept
	}
	return ir.VerdictDrop
}

// v6 reports whether r matches IPv6 packets only.
func (r Rule) v6() bool { return r.Src.Is6() || r.Dst.Is6() }

// shapes of generated rules; i numbers the rules of one shape.
func shapeRule(shape, i int, v6 bool) Rule {
	port := uint16(1024 + i/250)
	host := byte(1 + i%250)
	switch shape {
	case 0:
		return Rule{Src: netip.AddrFrom4([4]byte{198, 51, 100, host}), Proto: packet.ProtoTCP, Dport: port}
	case 1:
		if v6 {
			a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1}
			a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
			return Rule{Src: netip.AddrFrom16(a), Proto: packet.ProtoUDP, Dport: 53}
		}
		return Rule{Dst: netip.AddrFrom4([4]byte{198, 51, 100, host}), Proto: packet.ProtoUDP, Dport: port}
	case 2:
		return Rule{Dst: netip.AddrFrom4([4]byte{203, 0, 113, host}), Proto: packet.ProtoTCP, Dport: port}
	case 3:
		return Rule{Proto: packet.ProtoTCP, Dport: uint16(40000 + i%25000)}
	case 4:
		return Rule{Src: netip.AddrFrom4([4]byte{192, 0, 2, host}), Proto: packet.ProtoUDP, Sport: port}
	case 6:
		// Nine nested networks around one host per port, /32 first.
		d := i % 9
		host := netip.AddrFrom4([4]byte{198, 51, 100, byte(i / 9 % 256)})
		return Rule{Src: host, SrcBits: 32 - d, Proto: packet.ProtoTCP, Dport: uint16(1024 + i/9)}
	default:
		// Disjoint ranges per source; twelve widths in turn, more
		// shapes than a group takes.
		lo := uint16(1024 + 16*(i/250))
		return Rule{Src: netip.AddrFrom4([4]byte{198, 51, 100, host}), Proto: packet.ProtoTCP, Dport: lo, DportHi: lo + 1 + uint16(i%12)}
	}
}

// Generate returns n rules of kind k; v6 allows IPv6 rules (netdev and
// inet tables). No rule matches MissFrame, and the frame of each rule
// (Rule.Frame) matches no earlier rule.
func Generate(k Kind, n int, v6 bool) []Rule {
	out := make([]Rule, 0, n)
	count := map[int]int{}
	for i := 0; i < n; i++ {
		shape := 0
		switch k {
		case Mixed:
			shape = (i / MixedBlock) % 4
		case Heterogeneous:
			shape = i % 5
		case Ranges:
			shape = 5
		case Prefixes:
			shape = 6
		}
		r := shapeRule(shape, count[shape], v6)
		switch k {
		case Accounting:
			r.Counter, r.Continue = true, true
		case LogDrop:
			r.Log = LogPrefix
		case Reject:
			r.Reject = true
		}
		out = append(out, r)
		count[shape]++
	}
	return out
}

// NFT returns the rule in nft syntax.
func (r Rule) NFT() string {
	var parts []string
	ipv := "ip"
	if r.v6() {
		ipv = "ip6"
	}
	if r.SrcBits != 0 && r.SrcBits != 32 {
		parts = append(parts, fmt.Sprintf("%s saddr %s", ipv, netip.PrefixFrom(r.Src, r.SrcBits).Masked()))
	} else if r.Src.IsValid() {
		parts = append(parts, fmt.Sprintf("%s saddr %s", ipv, r.Src))
	}
	if r.Dst.IsValid() {
		parts = append(parts, fmt.Sprintf("%s daddr %s", ipv, r.Dst))
	}
	l4 := map[uint8]string{packet.ProtoTCP: "tcp", packet.ProtoUDP: "udp"}[r.Proto]
	if r.Sport != 0 {
		parts = append(parts, fmt.Sprintf("%s sport %d", l4, r.Sport))
	}
	if r.Dport != 0 && r.DportHi != 0 {
		parts = append(parts, fmt.Sprintf("%s dport %d-%d", l4, r.Dport, r.DportHi))
	} else if r.Dport != 0 {
		parts = append(parts, fmt.Sprintf("%s dport %d", l4, r.Dport))
	}
	if r.QuotaOver != 0 {
		parts = append(parts, fmt.Sprintf("quota over %d bytes", r.QuotaOver))
	}
	if r.Counter {
		parts = append(parts, "counter")
	}
	if r.Log != "" {
		parts = append(parts, fmt.Sprintf("log prefix %q", r.Log))
	}
	switch {
	case r.Continue:
	case r.Reject:
		parts = append(parts, "reject with tcp reset")
	case r.Accept:
		parts = append(parts, "accept")
	default:
		parts = append(parts, "drop")
	}
	return strings.Join(parts, " ")
}

// IR returns the rule as translated from the netlink messages nft sends
// for a table of family fam: the network protocol dependency (meta
// protocol in netdev tables, meta nfproto in inet tables), the address
// compares, the transport protocol dependency (meta l4proto) and the port
// compares, in nft's order.
func (r Rule) IR(fam ir.Family) *ir.Rule {
	var s []ir.Stmt
	eq := func(f ir.Field, v []byte) { s = append(s, &ir.Match{Field: f, Op: ir.OpEq, Value: v}) }
	meta := func(k ir.MetaKey, n uint32) ir.Field { return ir.Field{Source: ir.SourceMeta, Meta: k, Len: n} }
	pl := func(base ir.PayloadBase, off, n uint32) ir.Field {
		return ir.Field{Source: ir.SourcePayload, Base: base, Offset: off, Len: n}
	}
	if r.Src.IsValid() || r.Dst.IsValid() {
		switch fam {
		case ir.FamilyNetdev, ir.FamilyBridge:
			if r.v6() {
				eq(meta(ir.MetaProtocol, 2), []byte{0x86, 0xdd})
			} else {
				eq(meta(ir.MetaProtocol, 2), []byte{0x08, 0x00})
			}
		case ir.FamilyInet:
			if r.v6() {
				eq(meta(ir.MetaNFProto, 1), []byte{byte(ir.FamilyIPv6)})
			} else {
				eq(meta(ir.MetaNFProto, 1), []byte{byte(ir.FamilyIPv4)})
			}
		}
	}
	if r.Src.IsValid() {
		switch net := netip.PrefixFrom(r.Src, r.SrcBits).Masked().Addr().AsSlice(); {
		case r.SrcBits == 0 || r.SrcBits == 32:
		case r.SrcBits%8 == 0:
			// nft loads the whole bytes of a byte-aligned prefix.
			eq(pl(ir.BaseNetwork, 12, uint32(r.SrcBits/8)), net[:r.SrcBits/8])
		default:
			mask := net4Mask(r.SrcBits)
			f := pl(ir.BaseNetwork, 12, 4)
			f.Transforms = []ir.Transform{{Kind: ir.TransformMaskXor, Len: 4, Mask: mask, Xor: make([]byte, 4)}}
			eq(f, net)
		}
	}
	if r.Src.IsValid() && (r.SrcBits == 0 || r.SrcBits == 32) {
		if r.v6() {
			eq(pl(ir.BaseNetwork, 8, 16), r.Src.AsSlice())
		} else {
			eq(pl(ir.BaseNetwork, 12, 4), r.Src.AsSlice())
		}
	}
	if r.Dst.IsValid() {
		if r.v6() {
			eq(pl(ir.BaseNetwork, 24, 16), r.Dst.AsSlice())
		} else {
			eq(pl(ir.BaseNetwork, 16, 4), r.Dst.AsSlice())
		}
	}
	if r.Sport != 0 || r.Dport != 0 {
		eq(meta(ir.MetaL4Proto, 1), []byte{r.Proto})
	}
	if r.Sport != 0 {
		eq(pl(ir.BaseTransport, 0, 2), []byte{byte(r.Sport >> 8), byte(r.Sport)})
	}
	if r.Dport != 0 && r.DportHi != 0 {
		// nft writes a range of a single field as two compares.
		s = append(s,
			&ir.Match{Field: pl(ir.BaseTransport, 2, 2), Op: ir.OpGte, Value: []byte{byte(r.Dport >> 8), byte(r.Dport)}},
			&ir.Match{Field: pl(ir.BaseTransport, 2, 2), Op: ir.OpLte, Value: []byte{byte(r.DportHi >> 8), byte(r.DportHi)}})
	} else if r.Dport != 0 {
		eq(pl(ir.BaseTransport, 2, 2), []byte{byte(r.Dport >> 8), byte(r.Dport)})
	}
	if r.QuotaOver != 0 {
		s = append(s, &ir.Quota{Bytes: r.QuotaOver, Over: true})
	}
	if r.Counter {
		s = append(s, &ir.Counter{})
	}
	if r.Log != "" {
		s = append(s, &ir.Log{Prefix: r.Log, HasPrefix: true, Level: ir.LogDefault, HasLevel: true})
	}
	switch {
	case r.Continue:
		return &ir.Rule{Stmts: s}
	case r.Reject:
		return &ir.Rule{Stmts: append(s, &ir.Reject{Type: ir.RejectTCPReset})}
	}
	v := ir.VerdictDrop
	if r.Accept {
		v = ir.VerdictAccept
	}
	s = append(s, &ir.Verdict{Kind: v})
	return &ir.Rule{Stmts: s}
}

// net4Mask returns the IPv4 netmask of a prefix length.
func net4Mask(bits int) []byte {
	m := make([]byte, 4)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// Addresses of frames that set no address of their own.
var (
	SenderMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0xbe, 0x01}
	ReceiverMAC = net.HardwareAddr{0x02, 0, 0, 0, 0xbe, 0x02}
	defaultSrc4 = netip.MustParseAddr("192.0.2.1")
	defaultDst4 = netip.MustParseAddr("192.0.2.2")
	defaultSrc6 = netip.MustParseAddr("2001:db8::1")
	defaultDst6 = netip.MustParseAddr("2001:db8::2")
)

// Frame returns an Ethernet frame that r matches.
func (r Rule) Frame() []byte {
	src, dst := r.Src, r.Dst
	if d := 32 - r.SrcBits; r.SrcBits != 0 && d > 0 {
		// The host of the network outside its longer neighbours
		// (Generate's Prefixes): the bit below the prefix flipped.
		a := src.As4()
		v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
		v ^= 1 << (d - 1)
		src = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	if r.v6() {
		if !src.IsValid() {
			src = defaultSrc6
		}
		if !dst.IsValid() {
			dst = defaultDst6
		}
	} else {
		if !src.IsValid() {
			src = defaultSrc4
		}
		if !dst.IsValid() {
			dst = defaultDst4
		}
	}
	sport, dport := r.Sport, r.Dport
	if sport == 0 {
		sport = 40000
	}
	if dport == 0 {
		dport = 9
	}
	flags := packet.TCPSyn
	if r.Reject {
		flags = packet.TCPRst
	}
	return frame(src, dst, r.Proto, sport, dport, flags)
}

// MissFrame is a TCP frame from 192.0.2.1 to 192.0.2.2, port 9, that no
// generated rule matches.
func MissFrame() []byte {
	return frame(defaultSrc4, defaultDst4, packet.ProtoTCP, 40000, 9, packet.TCPSyn)
}

func frame(src, dst netip.Addr, proto uint8, sport, dport, tcpFlags uint16) []byte {
	var l4 packet.Layer
	switch proto {
	case packet.ProtoUDP:
		l4 = &packet.UDP{SrcPort: sport, DstPort: dport}
	default:
		l4 = &packet.TCP{SrcPort: sport, DstPort: dport, Flags: tcpFlags, Window: 512}
	}
	var l3 packet.Layer = &packet.IPv4{Src: src, Dst: dst}
	if src.Is6() {
		l3 = &packet.IPv6{Src: src, Dst: dst}
	}
	return packet.MustBuild(&packet.Ethernet{Dst: ReceiverMAC, Src: SenderMAC}, l3, l4, packet.Payload(make([]byte, 18)))
}

// Ruleset returns rules as an nft -f ruleset: table "bench" of family
// fam with one base chain "input" at hook (on device dev for netdev
// tables) with policy accept.
func Ruleset(fam ir.Family, hook ir.Hook, dev string, rules []Rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s bench {\n\tchain input {\n\t\ttype filter hook %s", fam, hook)
	if fam == ir.FamilyNetdev {
		fmt.Fprintf(&b, " device %q", dev)
	}
	b.WriteString(" priority 0; policy accept;\n")
	for _, r := range rules {
		b.WriteString("\t\t")
		b.WriteString(r.NFT())
		b.WriteByte('\n')
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// Table returns rules as the IR of table "bench" of family fam with one
// base chain "input" at hook with policy accept.
func Table(fam ir.Family, hook ir.Hook, rules []Rule) (*ir.Table, *ir.Chain) {
	c := &ir.Chain{Name: "input", Base: &ir.BaseChain{Type: "filter", Hook: hook, Policy: ir.VerdictAccept}}
	for i, r := range rules {
		ir := r.IR(fam)
		ir.Handle = uint64(i + 1)
		c.Rules = append(c.Rules, ir)
	}
	return &ir.Table{Family: fam, Name: "bench", Chains: []*ir.Chain{c}}, c
}

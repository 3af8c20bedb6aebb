package ir_test

import (
	"encoding/binary"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Values in the byte order nf_tables keeps them in registers.

func b(x ...byte) []byte { return x }

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }

func addr(s string) []byte { return netip.MustParseAddr(s).AsSlice() }

func mac(s ...byte) []byte { return s }

// ifname is an interface name as meta iifname loads it: NUL-padded to 16
// bytes.
func ifname(s string) []byte {
	out := make([]byte, 16)
	copy(out, s)
	return out
}

func ones(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = 0xff
	}
	return out
}

func pl(base ir.PayloadBase, off, n uint32, ts ...ir.Transform) ir.Field {
	return ir.Field{Source: ir.SourcePayload, Base: base, Offset: off, Len: n, Transforms: ts}
}

// metaLen is the register length the kernel gives the meta keys used here.
var metaLen = map[ir.MetaKey]uint32{
	ir.MetaLen: 4, ir.MetaProtocol: 2, ir.MetaMark: 4, ir.MetaIifName: 16, ir.MetaOifName: 16,
	ir.MetaIifType: 2, ir.MetaNFProto: 1, ir.MetaL4Proto: 1, ir.MetaSkUID: 4, ir.MetaPktType: 1,
}

func meta(k ir.MetaKey, ts ...ir.Transform) ir.Field {
	n, ok := metaLen[k]
	if !ok {
		panic("meta key without a length in metaLen")
	}
	return ir.Field{Source: ir.SourceMeta, Meta: k, Len: n, Transforms: ts}
}

// mx is a bitwise mask/xor transform; a nil xor is all zeros.
func mx(mask, xor []byte) ir.Transform {
	if xor == nil {
		xor = make([]byte, len(mask))
	}
	return ir.Transform{Kind: ir.TransformMaskXor, Len: uint32(len(mask)), Mask: mask, Xor: xor}
}

func shr(n, bits uint32) ir.Transform {
	return ir.Transform{Kind: ir.TransformShiftRight, Len: n, Shift: bits}
}

func shl(n, bits uint32) ir.Transform {
	return ir.Transform{Kind: ir.TransformShiftLeft, Len: n, Shift: bits}
}

func hton(n, size uint32) ir.Transform {
	return ir.Transform{Kind: ir.TransformHton, Len: n, Size: size}
}

func cmp(f ir.Field, op ir.Op, v []byte) *ir.Match { return &ir.Match{Field: f, Op: op, Value: v} }

func eq(f ir.Field, v []byte) *ir.Match { return cmp(f, ir.OpEq, v) }

func rng(f ir.Field, op ir.Op, lo, hi []byte) *ir.Match {
	return &ir.Match{Field: f, Op: op, Value: lo, High: hi}
}

func lookup(f ir.Field, op ir.Op, s *ir.Set) *ir.Match { return &ir.Match{Field: f, Op: op, Set: s} }

func el(v []byte) ir.SetElement { return ir.SetElement{Low: v, High: v} }

func span(lo, hi []byte) ir.SetElement { return ir.SetElement{Low: lo, High: hi} }

// anon is an anonymous constant set as nft creates one for { … }.
func anon(keyLen uint32, interval bool, elems ...ir.SetElement) *ir.Set {
	s := &ir.Set{Name: "__set0", Flags: ir.SetAnonymous | ir.SetConstant, KeyLen: keyLen, Elements: elems}
	if interval {
		s.Flags |= ir.SetInterval
	}
	return s
}

var (
	accept  = &ir.Verdict{Kind: ir.VerdictAccept}
	drop    = &ir.Verdict{Kind: ir.VerdictDrop}
	counter = &ir.Counter{}
)

// Field shorthands.
var (
	nfproto  = meta(ir.MetaNFProto)
	l4proto  = meta(ir.MetaL4Proto)
	iiftype  = meta(ir.MetaIifType)
	etherTyp = pl(ir.BaseLL, 12, 2)
	ip4Saddr = pl(ir.BaseNetwork, 12, 4)
	ip4Daddr = pl(ir.BaseNetwork, 16, 4)
	thDport  = pl(ir.BaseTransport, 2, 2)
	tcpFlags = pl(ir.BaseTransport, 13, 1)
)

// Matches that establish a protocol.
var (
	isIPv4   = eq(nfproto, b(2))
	isIPv6   = eq(nfproto, b(10))
	isTCP    = eq(l4proto, b(6))
	isUDP    = eq(l4proto, b(17))
	isEther  = eq(iiftype, le16(1))
	isVLAN   = eq(etherTyp, be16(0x8100))
	vlanID5  = eq(pl(ir.BaseLL, 14, 2, mx(be16(0x0fff), nil)), be16(5))
	ipSaddr1 = eq(ip4Saddr, addr("192.0.2.1"))
)

// reload says what loading a case's printed rule with the real nft and
// lifting it back must give (see TestFormatReloads).
type reload uint8

const (
	// sameIR: the IR the test started from, statement for statement.
	sameIR reload = iota
	// sameText: IR that nft encodes differently but that means the same
	// and prints as the same text.
	sameText
	// accepted: nft accepts the text; its encoding prints differently
	// (nft splits a range into two compares, folds an xor into the value).
	accepted
	// noSyntax: nft has no syntax for this IR; the printed text is for
	// reading only.
	noSyntax
)

type ruleCase struct {
	name    string
	fam     ir.Family
	stmts   []ir.Stmt
	comment string
	want    string
	reload  reload
}

func (c *ruleCase) rule() *ir.Rule { return &ir.Rule{Stmts: c.stmts, Comment: c.comment} }

var ruleCases = []ruleCase{
	// Header fields are named only where the rule establishes their
	// protocol, the way nft's dependency tracking sees it.
	{name: "l4proto establishes tcp", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isTCP, eq(thDport, be16(22)), accept},
		want:  "meta l4proto tcp tcp dport 22 accept"},
	{name: "bare transport load is raw", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(thDport, be16(22)), accept},
		want:  "@th,16,16 0x0016 accept"},
	{name: "udp", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{isUDP, eq(thDport, be16(53))},
		want:  "meta l4proto udp udp dport 53"},
	{name: "unnamed transport protocol", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(l4proto, b(47)), eq(thDport, be16(22))},
		want:  "meta l4proto 47 @th,16,16 0x0016"},
	{name: "l4proto inequality establishes nothing", fam: ir.FamilyInet,
		stmts: []ir.Stmt{cmp(l4proto, ir.OpNeq, b(6)), eq(thDport, be16(22))},
		want:  "meta l4proto != tcp @th,16,16 0x0016"},
	{name: "ip table knows ip", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{ipSaddr1, drop},
		want:  "ip saddr 192.0.2.1 drop"},
	{name: "ip6 table knows ip6", fam: ir.FamilyIPv6,
		stmts: []ir.Stmt{eq(pl(ir.BaseNetwork, 24, 16), addr("2001:db8::1"))},
		want:  "ip6 daddr 2001:db8::1"},
	{name: "inet network load without nfproto is raw", fam: ir.FamilyInet,
		stmts: []ir.Stmt{ipSaddr1},
		want:  "@nh,96,32 0xc0000201"},
	{name: "nfproto establishes ip", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isIPv4, ipSaddr1},
		want:  "meta nfproto ipv4 ip saddr 192.0.2.1"},
	{name: "nfproto establishes ip6", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isIPv6, eq(pl(ir.BaseNetwork, 7, 1), b(64))},
		want:  "meta nfproto ipv6 ip6 hoplimit 64"},
	{name: "meta protocol is no ip dependency in inet", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(meta(ir.MetaProtocol), be16(0x0800)), ipSaddr1},
		want:  "meta protocol ip @nh,96,32 0xc0000201"},
	{name: "meta protocol establishes ip in netdev", fam: ir.FamilyNetdev,
		stmts: []ir.Stmt{eq(meta(ir.MetaProtocol), be16(0x0800)), ipSaddr1},
		want:  "meta protocol ip ip saddr 192.0.2.1"},
	{name: "meta protocol establishes ip6 in bridge", fam: ir.FamilyBridge,
		stmts: []ir.Stmt{eq(meta(ir.MetaProtocol), be16(0x86dd)), eq(pl(ir.BaseNetwork, 6, 1), b(6))},
		want:  "meta protocol ip6 ip6 nexthdr tcp"},
	{name: "nfproto is no ip dependency in netdev", fam: ir.FamilyNetdev,
		stmts: []ir.Stmt{isIPv4, ipSaddr1},
		want:  "meta nfproto ipv4 @nh,96,32 0xc0000201",
		// nft: "meta nfproto is only useful in the inet family".
		reload: noSyntax},
	{name: "ip protocol establishes tcp", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{eq(pl(ir.BaseNetwork, 9, 1), b(6)), eq(thDport, be16(22)), accept},
		want:  "ip protocol tcp tcp dport 22 accept"},
	{name: "ip6 nexthdr establishes udp", fam: ir.FamilyIPv6,
		stmts: []ir.Stmt{eq(pl(ir.BaseNetwork, 6, 1), b(17)), eq(thDport, be16(53))},
		want:  "ip6 nexthdr udp udp dport 53"},
	{name: "ether fields need iiftype in netdev", fam: ir.FamilyNetdev,
		stmts: []ir.Stmt{eq(pl(ir.BaseLL, 6, 6), mac(2, 0, 0, 0, 0, 1)), drop},
		want:  "@ll,48,48 0x020000000001 drop"},
	{name: "iiftype ether establishes ether", fam: ir.FamilyNetdev,
		stmts: []ir.Stmt{isEther, eq(pl(ir.BaseLL, 6, 6), mac(2, 0, 0, 0, 0, 1)), drop},
		want:  "meta iiftype ether ether saddr 02:00:00:00:00:01 drop"},
	{name: "bridge knows ether", fam: ir.FamilyBridge,
		stmts: []ir.Stmt{eq(pl(ir.BaseLL, 0, 6), mac(2, 0, 0, 0, 0, 2))},
		want:  "ether daddr 02:00:00:00:00:02"},
	{name: "vlan id", fam: ir.FamilyNetdev,
		stmts: []ir.Stmt{isEther, isVLAN, vlanID5, drop},
		want:  "meta iiftype ether ether type 8021q vlan id 5 drop"},
	{name: "vlan type establishes ip", fam: ir.FamilyNetdev,
		stmts: []ir.Stmt{isEther, isVLAN, eq(pl(ir.BaseLL, 16, 2), be16(0x0800)), ipSaddr1},
		want:  "meta iiftype ether ether type 8021q vlan type ip ip saddr 192.0.2.1"},
	{name: "vlan fields without the tag are raw", fam: ir.FamilyBridge,
		stmts: []ir.Stmt{vlanID5},
		want:  "@ll,112,16 & 0x0fff == 0x0005"},
	{name: "ether type establishes ip in inet", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isEther, eq(etherTyp, be16(0x0800)), eq(pl(ir.BaseNetwork, 9, 1), b(17)), eq(thDport, be16(53))},
		want:  "meta iiftype ether ether type ip ip protocol udp udp dport 53"},
	{name: "vlan id value outside the field's bits", fam: ir.FamilyNetdev,
		stmts: []ir.Stmt{isEther, isVLAN, eq(pl(ir.BaseLL, 14, 2, mx(be16(0x0fff), nil)), be16(0x1005))},
		want:  "meta iiftype ether ether type 8021q @ll,112,16 & 0x0fff == 0x1005"},
	{name: "one byte of the ether type", fam: ir.FamilyNetdev,
		stmts:  []ir.Stmt{isEther, eq(etherTyp, b(0x81)), eq(pl(ir.BaseLL, 14, 2, mx(be16(0x0fff), nil)), be16(5))},
		want:   "meta iiftype ether ether type & 0xff00 == 8021q @ll,112,16 & 0x0fff == 0x0005",
		reload: sameText},

	// Prefixes.
	{name: "prefix from a 3-byte load", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isIPv4, eq(pl(ir.BaseNetwork, 12, 3), b(192, 0, 2))},
		want:  "meta nfproto ipv4 ip saddr 192.0.2.0/24"},
	{name: "prefix from a mask", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{eq(pl(ir.BaseNetwork, 12, 4, mx(be32(0xfffff000), nil)), addr("192.0.0.0"))},
		want:  "ip saddr 192.0.0.0/20"},
	{name: "prefix from a short compare", fam: ir.FamilyIPv4,
		stmts:  []ir.Stmt{eq(ip4Daddr, b(192, 0, 2))},
		want:   "ip daddr 192.0.2.0/24",
		reload: sameText},
	{name: "negated prefix", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{cmp(pl(ir.BaseNetwork, 12, 3), ir.OpNeq, b(192, 0, 2))},
		want:  "ip saddr != 192.0.2.0/24"},
	{name: "ip6 prefix", fam: ir.FamilyIPv6,
		stmts: []ir.Stmt{eq(pl(ir.BaseNetwork, 24, 16, mx(append(ones(4), 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), nil)), addr("2001:db8::"))},
		want:  "ip6 daddr 2001:db8::/33"},
	{name: "prefix mask with host bits in the value", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{eq(pl(ir.BaseNetwork, 12, 4, mx(be32(0xffffff00), nil)), addr("192.0.2.1"))},
		want:  "ip saddr & 255.255.255.0 == 192.0.2.1"},
	{name: "mask that is no prefix", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{eq(pl(ir.BaseNetwork, 12, 4, mx(be32(0xff00ffff), nil)), addr("192.0.2.1"))},
		want:  "ip saddr & 255.0.255.255 == 192.0.2.1"},
	{name: "short load with a mask that is no prefix", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{eq(pl(ir.BaseNetwork, 12, 3, mx(b(0xff, 0xf0, 0xff), nil)), b(192, 0, 2))},
		want:  "@nh,96,24 & 0xfff0ff == 0xc00002"},
	{name: "prefix without the address protocol", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(pl(ir.BaseNetwork, 12, 3), b(192, 0, 2))},
		want:  "@nh,96,24 0xc00002"},

	// Masks.
	{name: "tcp flags under a mask", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isTCP, eq(pl(ir.BaseTransport, 13, 1, mx(b(0x12), nil)), b(0x02)), accept},
		want:  "meta l4proto tcp tcp flags & (syn | ack) == syn accept"},
	{name: "tcp flags none set", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isTCP, eq(pl(ir.BaseTransport, 13, 1, mx(b(0x12), nil)), b(0))},
		want:  "meta l4proto tcp tcp flags & (syn | ack) == 0x0"},
	{name: "tcp flags exact", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isTCP, eq(tcpFlags, b(0x12))},
		want:  "meta l4proto tcp tcp flags == (syn | ack)"},
	{name: "tcp flags exactly one", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isTCP, eq(tcpFlags, b(0x02))},
		want:  "meta l4proto tcp tcp flags == syn"},
	{name: "meta mark under a mask", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(meta(ir.MetaMark, mx(le32(0xff), nil)), le32(0x10))},
		want:  "meta mark & 0x000000ff == 0x00000010"},
	{name: "meta mark mask and xor in host byte order", fam: ir.FamilyInet,
		stmts:  []ir.Stmt{eq(meta(ir.MetaMark, mx(le32(0xff), le32(0x01))), le32(0x10))},
		want:   "meta mark & 0x000000ff ^ 0x00000001 == 0x00000010",
		reload: accepted},
	{name: "consecutive masks fold into one", fam: ir.FamilyIPv4,
		stmts:  []ir.Stmt{eq(pl(ir.BaseNetwork, 8, 1, mx(b(0xf0), nil), mx(b(0x3c), b(0x01))), b(0x21))},
		want:   "ip ttl & 48 ^ 1 == 33",
		reload: accepted},
	{name: "ip dscp", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{eq(pl(ir.BaseNetwork, 1, 1, mx(b(0xfc), nil)), b(0x20))},
		want:  "ip dscp 0x8"},
	{name: "ip6 flowlabel", fam: ir.FamilyIPv6,
		stmts: []ir.Stmt{eq(pl(ir.BaseNetwork, 1, 3, mx(b(0x0f, 0xff, 0xff), nil)), b(0x01, 0x23, 0x45))},
		want:  "ip6 flowlabel 74565"},
	{name: "ip dscp shifted down for a set", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{lookup(pl(ir.BaseNetwork, 1, 1, mx(b(0xfc), nil), shr(1, 2)), ir.OpInSet, dscpSet)},
		want:  "ip dscp @dscps"},
	{name: "ip dscp shifted down compared", fam: ir.FamilyIPv4,
		stmts:  []ir.Stmt{eq(pl(ir.BaseNetwork, 1, 1, mx(b(0xfc), nil), shr(1, 2)), b(0x2e))},
		want:   "ip dscp 0x2e",
		reload: sameText},
	{name: "a further mask on a sub-byte field is raw", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{eq(pl(ir.BaseNetwork, 1, 1, mx(b(0xfc), nil), mx(b(0xf0), nil)), b(0x20))},
		want:  "@nh,8,8 & 0xf0 == 0x20",
		// nft reads a single mask back.
		reload: sameText},
	{name: "shift on meta", fam: ir.FamilyInet,
		stmts:  []ir.Stmt{eq(meta(ir.MetaMark, shr(4, 8)), le32(0x10))},
		want:   "meta mark >> 8 == 0x00000010",
		reload: noSyntax},
	{name: "shift left on raw payload", fam: ir.FamilyInet,
		stmts:  []ir.Stmt{eq(pl(ir.BaseNetwork, 0, 4, shl(4, 4)), be32(0x10))},
		want:   "@nh,0,32 << 4 == 0x00000010",
		reload: noSyntax},

	// Meta values in host byte order, interface names.
	{name: "meta mark", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(meta(ir.MetaMark), le32(0x10)), accept},
		want:  "meta mark 0x00000010 accept"},
	{name: "meta length equal", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(meta(ir.MetaLen), le32(1000))},
		want:  "meta length 1000"},
	{name: "meta length ordered after hton", fam: ir.FamilyInet,
		stmts: []ir.Stmt{cmp(meta(ir.MetaLen, hton(4, 4)), ir.OpGt, be32(1000)), drop},
		want:  "meta length > 1000 drop"},
	{name: "meta skuid", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(meta(ir.MetaSkUID), le32(1000))},
		want:  "meta skuid 1000"},
	{name: "short compare of the mark", fam: ir.FamilyInet,
		stmts:  []ir.Stmt{eq(meta(ir.MetaMark), b(0x10, 0x00))},
		want:   "meta mark & 0x0000ffff == 0x00000010",
		reload: sameText},
	{name: "ifname wildcard", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(meta(ir.MetaIifName), []byte("eth")), accept},
		want:  `meta iifname "eth*" accept`},
	{name: "ifname wildcard negated", fam: ir.FamilyInet,
		stmts: []ir.Stmt{cmp(meta(ir.MetaOifName), ir.OpNeq, []byte("eth"))},
		want:  `meta oifname != "eth*"`},
	{name: "ifname", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(meta(ir.MetaIifName), ifname("eth0"))},
		want:  `meta iifname "eth0"`},
	{name: "ifname with a short NUL-terminated compare", fam: ir.FamilyInet,
		stmts:  []ir.Stmt{eq(meta(ir.MetaIifName), []byte("eth0\x00"))},
		want:   `meta iifname "eth0"`,
		reload: sameText},
	{name: "nfproto and l4proto names", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isIPv6, eq(l4proto, b(58))},
		want:  "meta nfproto ipv6 meta l4proto icmpv6"},
	{name: "pkttype", fam: ir.FamilyInet,
		stmts: []ir.Stmt{eq(meta(ir.MetaPktType), b(1))},
		want:  "meta pkttype broadcast"},

	// Ranges.
	{name: "range", fam: ir.FamilyInet,
		stmts:  []ir.Stmt{isTCP, rng(thDport, ir.OpInRange, be16(1000), be16(2000))},
		want:   "meta l4proto tcp tcp dport 1000-2000",
		reload: accepted},
	{name: "negated range", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isTCP, rng(thDport, ir.OpNotInRange, be16(1), be16(5))},
		want:  "meta l4proto tcp tcp dport != 1-5"},
	{name: "address range", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{rng(ip4Daddr, ir.OpNotInRange, addr("198.51.100.10"), addr("198.51.100.20"))},
		want:  "ip daddr != 198.51.100.10-198.51.100.20"},
	{name: "masked range", fam: ir.FamilyInet,
		stmts: []ir.Stmt{rng(meta(ir.MetaMark, mx(le32(0xff), nil), hton(4, 4)), ir.OpNotInRange, be32(1), be32(5))},
		want:  "meta mark & 0x000000ff != 0x00000001-0x00000005"},

	// All comparisons.
	{name: "neq", fam: ir.FamilyInet, stmts: []ir.Stmt{isTCP, cmp(thDport, ir.OpNeq, be16(22))},
		want: "meta l4proto tcp tcp dport != 22"},
	{name: "lt", fam: ir.FamilyInet, stmts: []ir.Stmt{isTCP, cmp(thDport, ir.OpLt, be16(1024))},
		want: "meta l4proto tcp tcp dport < 1024"},
	{name: "lte", fam: ir.FamilyInet, stmts: []ir.Stmt{isTCP, cmp(thDport, ir.OpLte, be16(1024))},
		want: "meta l4proto tcp tcp dport <= 1024"},
	{name: "gt", fam: ir.FamilyInet, stmts: []ir.Stmt{isTCP, cmp(thDport, ir.OpGt, be16(1024))},
		want: "meta l4proto tcp tcp dport > 1024"},
	{name: "gte", fam: ir.FamilyInet, stmts: []ir.Stmt{isTCP, cmp(thDport, ir.OpGte, be16(1024))},
		want: "meta l4proto tcp tcp dport >= 1024"},
	{name: "ordered raw compare", fam: ir.FamilyInet, stmts: []ir.Stmt{cmp(pl(ir.BaseNetwork, 8, 1), ir.OpLt, b(2))},
		want: "@nh,64,8 < 0x02"},

	// Sets.
	{name: "anonymous set", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isTCP, lookup(thDport, ir.OpInSet, anon(2, false, el(be16(22)), el(be16(80)), el(be16(443)))), counter, accept},
		want:  "meta l4proto tcp tcp dport { 22, 80, 443 } counter accept"},
	{name: "negated anonymous set", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isTCP, lookup(thDport, ir.OpNotInSet, anon(2, false, el(be16(22)), el(be16(80))))},
		want:  "meta l4proto tcp tcp dport != { 22, 80 }"},
	{name: "anonymous interval set", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isIPv4, lookup(ip4Daddr, ir.OpNotInSet, anon(4, true,
			span(addr("198.51.100.0"), addr("198.51.100.255")), el(addr("203.0.113.5")))), drop},
		want: "meta nfproto ipv4 ip daddr != { 198.51.100.0/24, 203.0.113.5 } drop"},
	{name: "interface name wildcards in a set", fam: ir.FamilyInet,
		stmts: []ir.Stmt{lookup(meta(ir.MetaIifName), ir.OpInSet, anon(16, true,
			span(ifname("eth"), append([]byte("eth"), ones(13)...)), el(ifname("lo"))))},
		want: `meta iifname { "eth*", "lo" }`},
	{name: "mark interval set after hton", fam: ir.FamilyInet,
		stmts: []ir.Stmt{lookup(meta(ir.MetaMark, hton(4, 4)), ir.OpInSet, anon(4, true,
			span(be32(1), be32(2)), el(be32(4))))},
		want: "meta mark { 0x00000001-0x00000002, 0x00000004 }"},
	{name: "mark set in host byte order", fam: ir.FamilyInet,
		stmts: []ir.Stmt{lookup(meta(ir.MetaMark), ir.OpInSet, anon(4, false, el(le32(1)), el(le32(2))))},
		want:  "meta mark { 0x00000001, 0x00000002 }"},
	{name: "tcp flags set", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isTCP, lookup(tcpFlags, ir.OpInSet, anon(1, false, el(b(0x02)), el(b(0x12))))},
		want:  "meta l4proto tcp tcp flags { syn, (syn | ack) }"},
	{name: "vlan ids in a set", fam: ir.FamilyNetdev,
		stmts: []ir.Stmt{isEther, isVLAN, lookup(pl(ir.BaseLL, 14, 2, mx(be16(0x0fff), nil)), ir.OpInSet, anon(2, false, el(be16(1)), el(be16(5))))},
		want:  "meta iiftype ether ether type 8021q vlan id { 1, 5 }"},
	{name: "named set", fam: ir.FamilyIPv4,
		stmts: []ir.Stmt{lookup(ip4Saddr, ir.OpInSet, blockedSet), drop},
		want:  "ip saddr @blocked drop"},
	{name: "negated named set", fam: ir.FamilyInet,
		stmts: []ir.Stmt{isIPv4, lookup(ip4Saddr, ir.OpNotInSet, blockedSet), accept},
		want:  "meta nfproto ipv4 ip saddr != @blocked accept"},

	// Verdicts and comments.
	{name: "jump", fam: ir.FamilyInet, stmts: []ir.Stmt{counter, &ir.Verdict{Kind: ir.VerdictJump, Chain: "other"}},
		want: "counter jump other"},
	{name: "goto", fam: ir.FamilyInet, stmts: []ir.Stmt{&ir.Verdict{Kind: ir.VerdictGoto, Chain: "other"}},
		want: "goto other"},
	{name: "return", fam: ir.FamilyInet, stmts: []ir.Stmt{isTCP, &ir.Verdict{Kind: ir.VerdictReturn}},
		want: "meta l4proto tcp return"},
	{name: "continue", fam: ir.FamilyInet, stmts: []ir.Stmt{&ir.Verdict{Kind: ir.VerdictContinue}},
		want: "continue"},
	{name: "comment", fam: ir.FamilyInet, stmts: []ir.Stmt{eq(l4proto, b(1)), accept}, comment: "ping",
		want: `meta l4proto icmp accept comment "ping"`},
	{name: "comment kept verbatim", fam: ir.FamilyInet, stmts: []ir.Stmt{drop}, comment: `C:\temp	tab`,
		want: `drop comment "C:\temp	tab"`},
	{name: "comment alone", fam: ir.FamilyInet, stmts: []ir.Stmt{counter}, comment: "just counting",
		want: `counter comment "just counting"`},
}

// Named sets the rule cases refer to.
var (
	blockedSet = &ir.Set{Name: "blocked", Flags: ir.SetConstant | ir.SetInterval, KeyType: 7, KeyLen: 4,
		Elements: []ir.SetElement{span(addr("192.0.2.0"), addr("192.0.2.255")), el(addr("203.0.113.9"))}}
	dscpSet = &ir.Set{Name: "dscps", Flags: ir.SetConstant, KeyType: 36, KeyLen: 1,
		Elements: []ir.SetElement{el(b(0x08)), el(b(0x2e))}}
)

func TestFormatRule(t *testing.T) {
	for _, c := range ruleCases {
		t.Run(c.name, func(t *testing.T) {
			if got := ir.FormatRule(c.fam, c.rule()); got != c.want {
				t.Errorf("FormatRule(%s) =\n\t%s\nwant\n\t%s", c.fam, got, c.want)
			}
		})
	}
}

// TestFormatRuleKeepsIR checks that printing does not change the rule it
// prints (the printer rewrites short compares internally).
func TestFormatRuleKeepsIR(t *testing.T) {
	f := meta(ir.MetaMark)
	m := eq(f, b(0x10, 0))
	r := &ir.Rule{Stmts: []ir.Stmt{m}}
	first := ir.FormatRule(ir.FamilyInet, r)
	if len(m.Field.Transforms) != 0 || len(m.Value) != 2 {
		t.Fatalf("FormatRule changed the match: %+v", m)
	}
	if again := ir.FormatRule(ir.FamilyInet, r); again != first {
		t.Fatalf("second print %q differs from first %q", again, first)
	}
}

// TestFormatStmt covers statements printed alone, without what earlier
// matches of a rule establish.
func TestFormatStmt(t *testing.T) {
	for _, c := range []struct {
		fam  ir.Family
		stmt ir.Stmt
		want string
	}{
		{ir.FamilyInet, accept, "accept"},
		{ir.FamilyInet, drop, "drop"},
		{ir.FamilyInet, &ir.Verdict{Kind: ir.VerdictReturn}, "return"},
		{ir.FamilyInet, &ir.Verdict{Kind: ir.VerdictContinue}, "continue"},
		{ir.FamilyInet, &ir.Verdict{Kind: ir.VerdictJump, Chain: "a"}, "jump a"},
		{ir.FamilyInet, &ir.Verdict{Kind: ir.VerdictGoto, Chain: "b"}, "goto b"},
		{ir.FamilyInet, counter, "counter"},
		{ir.FamilyInet, eq(thDport, be16(22)), "@th,16,16 0x0016"},
		{ir.FamilyIPv4, eq(thDport, be16(22)), "@th,16,16 0x0016"},
		{ir.FamilyIPv4, ipSaddr1, "ip saddr 192.0.2.1"},
		{ir.FamilyIPv6, ipSaddr1, "@nh,96,32 0xc0000201"},
		{ir.FamilyInet, ipSaddr1, "@nh,96,32 0xc0000201"},
		{ir.FamilyNetdev, eq(etherTyp, be16(0x0800)), "@ll,96,16 0x0800"},
		{ir.FamilyBridge, eq(etherTyp, be16(0x0800)), "ether type ip"},
		{ir.FamilyBridge, eq(etherTyp, be16(0x1234)), "ether type 0x1234"},
		{ir.FamilyInet, eq(pl(ir.BaseInner, 0, 2), be16(1)), "@ih,0,16 0x0001"},
		{ir.FamilyInet, eq(pl(7, 0, 1), b(1)), "@base7,0,8 0x01"},
		{ir.FamilyInet, eq(meta(ir.MetaIifType), le16(772)), "meta iiftype loopback"},
		{ir.FamilyInet, eq(meta(ir.MetaProtocol), be16(0x0806)), "meta protocol arp"},
		{ir.FamilyInet, lookup(thDport, ir.OpInSet, nil), "@th,16,16 @?"},
	} {
		if got := ir.FormatStmt(c.fam, c.stmt); got != c.want {
			t.Errorf("FormatStmt(%s, %#v) = %q, want %q", c.fam, c.stmt, got, c.want)
		}
	}
}

// TestFormatShortValues checks that values shorter than the named field
// never crash the printer and never print as the whole field.
func TestFormatShortValues(t *testing.T) {
	for _, c := range []struct {
		fam   ir.Family
		stmts []ir.Stmt
		want  string
	}{
		// An ether type compared on one byte once panicked while the
		// printer looked for the network protocol.
		{ir.FamilyBridge, []ir.Stmt{eq(etherTyp, b(0x08)), eq(pl(ir.BaseNetwork, 9, 1), b(6))},
			"ether type & 0xff00 == ip @nh,72,8 0x06"},
		// Empty compares are not valid IR (the lifter refuses them); the
		// printer must still not index into them.
		{ir.FamilyInet, []ir.Stmt{isIPv4, eq(pl(ir.BaseNetwork, 9, 1), []byte{}), eq(thDport, be16(1))},
			"meta nfproto ipv4 ip protocol 0 @th,16,16 0x0001"},
		{ir.FamilyInet, []ir.Stmt{isTCP, eq(thDport, b(0))}, "meta l4proto tcp tcp dport & 65280 == 0"},
		{ir.FamilyInet, []ir.Stmt{isTCP, cmp(thDport, ir.OpLt, b(4))}, "meta l4proto tcp tcp dport & 65280 < 1024"},
		{ir.FamilyNetdev, []ir.Stmt{isEther, eq(pl(ir.BaseLL, 6, 6), b(2, 0, 0))},
			"meta iiftype ether ether saddr & ff:ff:ff:00:00:00 == 02:00:00:00:00:00"},
		{ir.FamilyIPv6, []ir.Stmt{eq(pl(ir.BaseNetwork, 1, 3, mx(b(0x0f, 0xff, 0xff), nil)), b(0x01))},
			"@nh,8,24 & 0x0f0000 == 0x010000"},
		{ir.FamilyInet, []ir.Stmt{eq(meta(ir.MetaIifName), []byte("e\x00x"))},
			`meta iifname & 0xffffff00000000000000000000000000 == 0x65007800000000000000000000000000`},
	} {
		if got := ir.FormatRule(c.fam, &ir.Rule{Stmts: c.stmts}); got != c.want {
			t.Errorf("FormatRule(%s) =\n\t%s\nwant\n\t%s", c.fam, got, c.want)
		}
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{ir.FamilyInet.String(), "inet"},
		{ir.FamilyIPv4.String(), "ip"},
		{ir.FamilyIPv6.String(), "ip6"},
		{ir.FamilyNetdev.String(), "netdev"},
		{ir.FamilyBridge.String(), "bridge"},
		{ir.FamilyARP.String(), "arp"},
		{ir.Family(99).String(), "family99"},
		{ir.HookPrerouting.String(), "prerouting"},
		{ir.HookInput.String(), "input"},
		{ir.HookForward.String(), "forward"},
		{ir.HookOutput.String(), "output"},
		{ir.HookPostrouting.String(), "postrouting"},
		{ir.HookIngress.String(), "ingress"},
		{ir.HookEgress.String(), "egress"},
		{ir.Hook(42).String(), "hook42"},
		{ir.MetaName(ir.MetaL4Proto), "l4proto"},
		{ir.MetaName(ir.MetaBriIifName), "ibrname"},
		{ir.MetaName(30), "time"},
		{ir.MetaName(99), "key99"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestBaseChainHeader(t *testing.T) {
	for _, c := range []struct {
		bc   ir.BaseChain
		want string
	}{
		{ir.BaseChain{Type: "filter", Hook: ir.HookInput, Priority: 0, Policy: ir.VerdictDrop},
			"type filter hook input priority 0; policy drop;"},
		{ir.BaseChain{Type: "filter", Hook: ir.HookForward, Priority: -150, Policy: ir.VerdictAccept},
			"type filter hook forward priority -150; policy accept;"},
		{ir.BaseChain{Type: "filter", Hook: ir.HookIngress, Priority: -10, Policy: ir.VerdictAccept, Devices: []string{"lo"}},
			`type filter hook ingress device "lo" priority -10; policy accept;`},
		{ir.BaseChain{Type: "filter", Hook: ir.HookEgress, Priority: 5, Policy: ir.VerdictDrop, Devices: []string{"va1", "va0"}},
			`type filter hook egress devices = { "va0", "va1" } priority 5; policy drop;`},
		{ir.BaseChain{Type: "route", Hook: ir.HookOutput, Priority: 0, Policy: ir.VerdictAccept},
			"type route hook output priority 0; policy accept;"},
	} {
		if got := c.bc.Header(); got != c.want {
			t.Errorf("Header() = %q, want %q", got, c.want)
		}
	}
}

func TestTableChain(t *testing.T) {
	a, b := &ir.Chain{Name: "a"}, &ir.Chain{Name: "b"}
	tbl := &ir.Table{Chains: []*ir.Chain{a, b}}
	if tbl.Chain("b") != b || tbl.Chain("a") != a || tbl.Chain("c") != nil {
		t.Fatal("Table.Chain finds the wrong chain")
	}
}

// printRuleset is the ruleset of testdata/print.golden: every kind of base
// chain header, named sets of several key types, a dormant table.
func printRuleset() *ir.Ruleset {
	other := &ir.Chain{Name: "other", Rules: []*ir.Rule{
		{Stmts: []ir.Stmt{isIPv4, eq(pl(ir.BaseNetwork, 0, 1, mx(b(0xf0), nil)), b(0x40)), &ir.Verdict{Kind: ir.VerdictReturn}}},
		{Stmts: []ir.Stmt{&ir.Verdict{Kind: ir.VerdictGoto, Chain: "leaf"}}},
	}}
	leaf := &ir.Chain{Name: "leaf", Rules: []*ir.Rule{
		{Stmts: []ir.Stmt{counter}, Comment: "leaf counter"},
	}}
	input := &ir.Chain{Name: "input",
		Base: &ir.BaseChain{Type: "filter", Hook: ir.HookInput, Priority: 0, Policy: ir.VerdictDrop},
		Rules: []*ir.Rule{
			{Handle: 2, Stmts: []ir.Stmt{isIPv4, lookup(ip4Saddr, ir.OpInSet, blockedSet), drop}},
			{Handle: 3, Stmts: []ir.Stmt{isTCP, lookup(thDport, ir.OpInSet, servicesSet), counter, accept}},
			{Handle: 4, Stmts: []ir.Stmt{lookup(meta(ir.MetaMark), ir.OpInSet, marksSet), accept}},
			{Handle: 5, Stmts: []ir.Stmt{lookup(meta(ir.MetaMark, hton(4, 4)), ir.OpInSet, markRangesSet), accept}},
			{Handle: 6, Stmts: []ir.Stmt{lookup(meta(ir.MetaIifName), ir.OpInSet, ifnamesSet), &ir.Verdict{Kind: ir.VerdictJump, Chain: "other"}}},
			{Handle: 7, Stmts: []ir.Stmt{lookup(meta(ir.MetaNFProto), ir.OpInSet, nfprotosSet), lookup(l4proto, ir.OpInSet, protosSet), accept}, Comment: "known protocols"},
		}}
	fwd := &ir.Chain{Name: "forwarding",
		Base: &ir.BaseChain{Type: "filter", Hook: ir.HookForward, Priority: -5, Policy: ir.VerdictAccept}}
	ingress := &ir.Chain{Name: "ing",
		Base: &ir.BaseChain{Type: "filter", Hook: ir.HookIngress, Priority: -10, Policy: ir.VerdictAccept, Devices: []string{"lo"}},
		Rules: []*ir.Rule{
			{Stmts: []ir.Stmt{isEther, lookup(etherTyp, ir.OpInSet, etherTypesSet), accept}},
			{Stmts: []ir.Stmt{isEther, isVLAN, vlanID5, drop}},
		}}
	multi := &ir.Chain{Name: "multi",
		Base:  &ir.BaseChain{Type: "filter", Hook: ir.HookIngress, Priority: 10, Policy: ir.VerdictDrop, Devices: []string{"va0", "va1"}},
		Rules: []*ir.Rule{{Stmts: []ir.Stmt{eq(meta(ir.MetaProtocol), be16(0x86dd)), accept}}}}
	return &ir.Ruleset{Tables: []*ir.Table{
		{Family: ir.FamilyInet, Name: "filter",
			Sets:   []*ir.Set{blockedSet, servicesSet, marksSet, markRangesSet, ifnamesSet, nfprotosSet, protosSet, anon(2, false, el(be16(1)))},
			Chains: []*ir.Chain{input, fwd, other, leaf}},
		{Family: ir.FamilyNetdev, Name: "nd",
			Sets:   []*ir.Set{etherTypesSet},
			Chains: []*ir.Chain{ingress, multi}},
		{Family: ir.FamilyIPv6, Name: "asleep", Flags: 1,
			Chains: []*ir.Chain{{Name: "c", Base: &ir.BaseChain{Type: "filter", Hook: ir.HookOutput, Policy: ir.VerdictAccept}}}},
	}}
}

var (
	servicesSet = &ir.Set{Name: "services", Flags: ir.SetConstant | ir.SetInterval, KeyType: 13, KeyLen: 2,
		Elements: []ir.SetElement{el(be16(22)), span(be16(8000), be16(8080))}}
	marksSet = &ir.Set{Name: "marks", Flags: ir.SetConstant, KeyType: 19, KeyLen: 4,
		Elements: []ir.SetElement{el(le32(0x10)), el(le32(0x20))}}
	markRangesSet = &ir.Set{Name: "markranges", Flags: ir.SetConstant | ir.SetInterval, KeyType: 19, KeyLen: 4,
		Elements: []ir.SetElement{span(be32(0x10), be32(0x20))}}
	ifnamesSet = &ir.Set{Name: "ifnames", Flags: ir.SetConstant | ir.SetInterval, KeyType: 41, KeyLen: 16,
		Elements: []ir.SetElement{span(ifname("eth"), append([]byte("eth"), ones(13)...)), el(ifname("lo"))}}
	nfprotosSet = &ir.Set{Name: "nfprotos", Flags: ir.SetConstant, KeyType: 2, KeyLen: 1,
		Elements: []ir.SetElement{el(b(2)), el(b(10))}}
	protosSet = &ir.Set{Name: "protos", Flags: ir.SetConstant, KeyType: 12, KeyLen: 1,
		Elements: []ir.SetElement{el(b(6)), el(b(17))}}
	etherTypesSet = &ir.Set{Name: "ethertypes", Flags: ir.SetConstant, KeyType: 10, KeyLen: 2,
		Elements: []ir.SetElement{el(be16(0x0800)), el(be16(0x86dd))}}
)

const printGolden = "testdata/print.golden"

func printed(t *testing.T, rs *ir.Ruleset) string {
	t.Helper()
	var sb strings.Builder
	if err := rs.Print(&sb); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

func TestPrint(t *testing.T) {
	got := printed(t, printRuleset())
	if *update {
		if err := os.MkdirAll(filepath.Dir(printGolden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(printGolden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(printGolden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("Print output differs from %s (run with -update to accept):\n%s", printGolden, got)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n == 0 {
		return 0, os.ErrClosed
	}
	w.n--
	return len(p), nil
}

func TestPrintWriteError(t *testing.T) {
	rs := printRuleset()
	for n := 0; n < 3; n++ {
		if err := rs.Print(&failWriter{n: n}); err == nil {
			t.Errorf("Print with a writer failing after %d writes returned no error", n)
		}
	}
}

func TestPrintWithCountersAndHandles(t *testing.T) {
	tab := &ir.Table{Family: ir.FamilyIPv4, Name: "f", Chains: []*ir.Chain{{
		Name: "in",
		Base: &ir.BaseChain{Type: "filter", Hook: ir.HookInput, Policy: ir.VerdictAccept},
		Rules: []*ir.Rule{
			{Handle: 4, Stmts: []ir.Stmt{&ir.Counter{}, &ir.Verdict{Kind: ir.VerdictDrop}}},
			{Handle: 5, Stmts: []ir.Stmt{&ir.Counter{}}},
		},
	}}}
	var b strings.Builder
	err := tab.PrintWith(&b, ir.PrintOptions{
		Handles: true,
		Counters: func(chain string, handle uint64, stmt int) (uint64, uint64, bool) {
			if chain == "in" && handle == 4 && stmt == 0 {
				return 7, 420, true
			}
			return 0, 0, false
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\t\tcounter packets 7 bytes 420 drop # handle 4\n",
		"\t\tcounter # handle 5\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}

package ir

import "encoding/binary"

// CTKey is an NFT_CT_* key: what a ct expression reads from the packet's
// conntrack entry (nft_ct_get_eval in net/netfilter/nft_ct.c).
type CTKey uint32

// Conntrack keys (values are NFT_CT_*).
const (
	CTState      CTKey = 0  // ct state: a bit for the ctinfo (invalid, established, related, new, untracked)
	CTDirection  CTKey = 1  // ct direction: 0 original, 1 reply
	CTStatus     CTKey = 2  // ct status: the entry's IPS_* bits
	CTMark       CTKey = 3  // ct mark
	CTSecmark    CTKey = 4  // ct secmark
	CTExpiration CTKey = 5  // ct expiration
	CTHelper     CTKey = 6  // ct helper
	CTL3Proto    CTKey = 7  // ct l3proto: NFPROTO_* of the entry
	CTSrc        CTKey = 8  // ct original/reply saddr (family-sized)
	CTDst        CTKey = 9  // ct original/reply daddr (family-sized)
	CTProtocol   CTKey = 10 // ct protocol: the entry's IP protocol
	CTProtoSrc   CTKey = 11 // ct original/reply proto-src
	CTProtoDst   CTKey = 12 // ct original/reply proto-dst
	CTLabels     CTKey = 13 // ct label
	CTPkts       CTKey = 14 // ct packets
	CTBytes      CTKey = 15 // ct bytes
	CTAvgPkt     CTKey = 16 // ct avgpkt
	CTZone       CTKey = 17 // ct zone
	CTEventMask  CTKey = 18 // ct event
	CTSrcIP      CTKey = 19 // ct original/reply ip saddr
	CTDstIP      CTKey = 20 // ct original/reply ip daddr
	CTSrcIP6     CTKey = 21 // ct original/reply ip6 saddr
	CTDstIP6     CTKey = 22 // ct original/reply ip6 daddr
	CTID         CTKey = 23 // ct id
)

// CTDir is the tuple direction a ct key reads. Its zero value means the
// key takes no direction; the others are NFTA_CT_DIRECTION plus one.
type CTDir uint8

// Conntrack directions.
const (
	CTDirNone     CTDir = 0
	CTDirOriginal CTDir = 1 // IP_CT_DIR_ORIGINAL
	CTDirReply    CTDir = 2 // IP_CT_DIR_REPLY
)

// Conntrack state bits as "ct state" loads them (NF_CT_STATE_*_BIT).
const (
	CTStateInvalid     = 1
	CTStateEstablished = 2
	CTStateRelated     = 4
	CTStateNew         = 8
	CTStateUntracked   = 64
)

var ctNames = map[CTKey]string{
	CTState: "state", CTDirection: "direction", CTStatus: "status", CTMark: "mark",
	CTSecmark: "secmark", CTExpiration: "expiration", CTHelper: "helper", CTL3Proto: "l3proto",
	CTSrc: "saddr", CTDst: "daddr", CTProtocol: "protocol", CTProtoSrc: "proto-src",
	CTProtoDst: "proto-dst", CTLabels: "label", CTPkts: "packets", CTBytes: "bytes",
	CTAvgPkt: "avgpkt", CTZone: "zone", CTEventMask: "event", CTSrcIP: "ip saddr",
	CTDstIP: "ip daddr", CTSrcIP6: "ip6 saddr", CTDstIP6: "ip6 daddr", CTID: "id",
}

// CTName returns nft's name for a ct key ("state", "proto-src",
// "ip saddr", …), without the direction.
func CTName(k CTKey) string {
	if n, ok := ctNames[k]; ok {
		return n
	}
	return "key" + itoa(uint64(k))
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}

// String returns nft's word for the direction: "original", "reply" or "".
func (d CTDir) String() string {
	switch d {
	case CTDirOriginal:
		return "original"
	case CTDirReply:
		return "reply"
	}
	return ""
}

// CTTakesDirection reports whether key k reads one tuple of the entry and
// so needs a direction (nft_ct_get_init refuses these without one).
func CTTakesDirection(k CTKey) bool {
	switch k {
	case CTSrc, CTDst, CTProtoSrc, CTProtoDst, CTSrcIP, CTDstIP, CTSrcIP6, CTDstIP6:
		return true
	}
	return false
}

// CTLen returns the number of bytes a ct key places in the register in a
// table of family fam, as nft_ct_get_init registers it, and false for keys
// whose length depends on more than the family.
func CTLen(k CTKey, fam Family) (uint32, bool) {
	switch k {
	case CTDirection, CTL3Proto, CTProtocol:
		return 1, true
	case CTState, CTStatus, CTMark, CTSecmark, CTExpiration, CTSrcIP, CTDstIP, CTID:
		return 4, true
	case CTProtoSrc, CTProtoDst, CTZone:
		return 2, true
	case CTSrcIP6, CTDstIP6, CTLabels, CTHelper:
		return 16, true
	case CTPkts, CTBytes, CTAvgPkt:
		return 8, true
	case CTSrc, CTDst:
		switch fam {
		case FamilyIPv4:
			return 4, true
		case FamilyIPv6, FamilyInet:
			return 16, true
		}
	}
	return 0, false
}

// ctFieldTypes gives each ct key's value type and whether the kernel
// stores it in host byte order.
var ctFieldTypes = map[CTKey]struct {
	typ  ValueType
	host bool
}{
	CTState: {TypeCTState, true}, CTDirection: {TypeCTDir, false}, CTStatus: {TypeCTStatus, true},
	CTMark: {TypeHex, true}, CTSecmark: {TypeInteger, true}, CTL3Proto: {TypeNFProto, false},
	CTProtocol: {TypeInetProto, false}, CTProtoSrc: {TypeInteger, false}, CTProtoDst: {TypeInteger, false},
	CTSrcIP: {TypeIPv4, false}, CTDstIP: {TypeIPv4, false}, CTSrcIP6: {TypeIPv6, false}, CTDstIP6: {TypeIPv6, false},
	CTZone: {TypeInteger, true}, CTID: {TypeInteger, true},
}

// ctStateNames and ctStatusNames are nft's names of the ct_state and
// ct_status bits.
var (
	ctStateNames = []flagName{{CTStateInvalid, "invalid"}, {CTStateEstablished, "established"},
		{CTStateRelated, "related"}, {CTStateNew, "new"}, {CTStateUntracked, "untracked"}}
	ctStatusNames = []flagName{{1, "expected"}, {2, "seen-reply"}, {4, "assured"}, {8, "confirmed"},
		{16, "snat"}, {32, "dnat"}, {512, "dying"}}
)

type flagName struct {
	bit  uint64
	name string
}

// flagList names the bits of v joined by sep, or returns false if v is
// zero or has a bit without a name.
func flagList(names []flagName, v uint64, sep string) (string, bool) {
	if v == 0 {
		return "", false
	}
	out := ""
	for _, f := range names {
		if v&f.bit != 0 {
			if out != "" {
				out += sep
			}
			out += f.name
			v &^= f.bit
		}
	}
	return out, v == 0
}

// ctField returns the left-hand side nft prints for a ct load ("ct state",
// "ct original saddr"), and how its value prints.
func (p *printer) ctField(f *Field) (lhs string, typ ValueType, host bool) {
	lhs = "ct "
	if f.CTDir != CTDirNone {
		lhs += f.CTDir.String() + " "
	}
	lhs += CTName(f.CT)
	typ = TypeHex
	if t, ok := ctFieldTypes[f.CT]; ok {
		typ, host = t.typ, t.host
	}
	if f.CT == CTSrc || f.CT == CTDst {
		switch f.Len {
		case 4:
			typ = TypeIPv4
		case 16:
			typ = TypeIPv6
		}
	}
	return lhs, typ, host
}

// ctFlags prints a test for any of a set of ct state or ct status bits,
// (ct & bits) != 0, the way nft writes it: "ct state established,related".
func (p *printer) ctFlags(mt *Match) (string, bool) {
	f := &mt.Field
	if f.Source != SourceCT || (f.CT != CTState && f.CT != CTStatus) || len(f.Transforms) != 1 ||
		mt.Op != OpNeq || len(mt.Value) != 4 || !isZero(mt.Value) || f.Len != 4 {
		return "", false
	}
	t := f.Transforms[0]
	if t.Kind != TransformMaskXor || len(t.Mask) != 4 || !isZero(t.Xor) {
		return "", false
	}
	names := ctStateNames
	if f.CT == CTStatus {
		names = ctStatusNames
	}
	l, ok := flagList(names, uint64(binary.NativeEndian.Uint32(t.Mask)), ",")
	if !ok {
		return "", false
	}
	lhs, _, _ := p.ctField(f)
	return lhs + " " + l, true
}

package ir

import "fmt"

// ExthdrMode says how a SourceExthdr Field reads an IPv6 extension header.
// In every mode the header is looked for as ipv6_find_hdr
// (net/ipv6/exthdrs_core.c) does with the header's number as target and no
// flags: the chain of headers is walked from the fixed IPv6 header; a
// header that is not an extension header (or NEXTHDR_NONE) before the
// target and a non-first fragment on the way mean "not found" (-ENOENT; a
// non-first fragment's own fragment header is found); a header cut short
// by the end of the packet is malformed (-EBADMSG).
type ExthdrMode uint8

// Extension header modes.
const (
	// ExthdrLoad is nft_exthdr's ipv6 load: Len bytes at Offset from the
	// header's start; not found, malformed, a packet that is not IPv6 or
	// bytes beyond the packet end the rule (NFT_BREAK).
	ExthdrLoad ExthdrMode = iota
	// ExthdrPresent is nft_exthdr with NFT_EXTHDR_F_PRESENT: one byte,
	// 1 if the header was found, 0 if not or if the chain is malformed.
	// A packet that is not IPv6 ends the rule.
	ExthdrPresent
	// ExthdrXT is how the xtables extension header matches (ip6t_rt,
	// ip6t_hbh) read it: not found ends the rule; a malformed chain, or
	// a header whose length field (ipv6_optlen) reaches beyond the
	// packet, drops the packet at once (hotdrop: nft_compat returns
	// NF_DROP; older kernels let a header longer than the packet merely
	// not match, the kernel this is tested on drops it); then Len bytes
	// at Offset, which lies inside the header.
	ExthdrXT
)

// IPv6 extension header numbers (NEXTHDR_*).
const (
	NextHdrHop      uint8 = 0
	NextHdrRouting  uint8 = 43
	NextHdrFragment uint8 = 44
	NextHdrAuth     uint8 = 51
	NextHdrDest     uint8 = 60
	NextHdrMobility uint8 = 135
)

// exthdrField is a field of an extension header as nft names it.
type exthdrField struct {
	name   string
	offset uint32
	len    uint32
}

// exthdrNames are nft's names for the IPv6 extension headers it knows and
// their fields (nft's exthdr.c, exthdr_protos).
var exthdrNames = map[uint8]struct {
	name   string
	fields []exthdrField
}{
	NextHdrHop:      {"hbh", []exthdrField{{"nexthdr", 0, 1}, {"hdrlength", 1, 1}}},
	NextHdrRouting:  {"rt", []exthdrField{{"nexthdr", 0, 1}, {"hdrlength", 1, 1}, {"type", 2, 1}, {"seg-left", 3, 1}}},
	NextHdrFragment: {"frag", []exthdrField{{"nexthdr", 0, 1}, {"reserved", 1, 1}, {"id", 4, 4}}},
	NextHdrDest:     {"dst", []exthdrField{{"nexthdr", 0, 1}, {"hdrlength", 1, 1}}},
	NextHdrMobility: {"mh", []exthdrField{{"nexthdr", 0, 1}, {"hdrlength", 1, 1}, {"type", 2, 1}, {"reserved", 3, 1}, {"checksum", 4, 2}}},
}

// ExthdrName returns nft's name of extension header t ("rt", "hbh", …),
// or its number.
func ExthdrName(t uint8) string {
	if h, ok := exthdrNames[t]; ok {
		return h.name
	}
	return fmt.Sprint(t)
}

// exthdrOperand returns how an extension header Field prints: "rt type",
// "exthdr rt exists"'s left side "exthdr rt", or a raw
// "exthdr TYPE @OFFSET,LEN" form (in bits, like raw payloads) for fields
// nft has no name for.
func exthdrOperand(f *Field) string {
	name := ExthdrName(f.Exthdr)
	if f.ExthdrMode == ExthdrPresent {
		return "exthdr " + name
	}
	if h, ok := exthdrNames[f.Exthdr]; ok {
		for _, x := range h.fields {
			if x.offset == f.Offset && x.len == f.Len {
				return name + " " + x.name
			}
		}
	}
	return fmt.Sprintf("exthdr %s @%d,%d", name, f.Offset*8, f.Len*8)
}

// exthdrPresence prints a presence test as nft does: "exthdr rt exists"
// or "exthdr rt missing".
func exthdrPresence(mt *Match) (string, bool) {
	f := &mt.Field
	if f.Source != SourceExthdr || f.ExthdrMode != ExthdrPresent || len(f.Transforms) != 0 ||
		len(mt.Value) != 1 || mt.Value[0] > 1 || (mt.Op != OpEq && mt.Op != OpNeq) {
		return "", false
	}
	exists := (mt.Value[0] == 1) == (mt.Op == OpEq)
	word := "missing"
	if exists {
		word = "exists"
	}
	return exthdrOperand(f) + " " + word, true
}

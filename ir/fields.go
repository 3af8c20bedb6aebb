package ir

// HeaderField describes a protocol header field the way nft names it.
type HeaderField struct {
	Proto  string // "ether", "vlan", "ip", "ip6", "tcp", …
	Name   string // "saddr", "dport", …
	Base   PayloadBase
	Offset uint32 // bytes from the header start
	Len    uint32 // bytes nft loads
	Mask   []byte // nil when the field is whole bytes
	Type   ValueType
}

// ValueType says how a field's value is printed.
type ValueType uint8

// Value types.
const (
	TypeInteger ValueType = iota
	TypeHex
	TypeIPv4
	TypeIPv6
	TypeEther
	TypeEtherType
	TypeInetProto
	TypeIfName
	TypeNFProto
	TypePktType
	TypeIfType
	TypeTCPFlags
	TypeICMPType
	TypeICMPv6Type
	TypeDSCP
	TypeCTState  // ct_state bits
	TypeCTStatus // ct_status bits
	TypeCTDir    // ct_dir: original, reply
	TypeAddrType // fib_addrtype: unicast, local, … (host order)
)

func m(b ...byte) []byte { return b }

// headerFields lists the header fields the printer recognises.
var headerFields = []HeaderField{
	{"ether", "daddr", BaseLL, 0, 6, nil, TypeEther},
	{"ether", "saddr", BaseLL, 6, 6, nil, TypeEther},
	{"ether", "type", BaseLL, 12, 2, nil, TypeEtherType},
	{"vlan", "id", BaseLL, 14, 2, m(0x0f, 0xff), TypeInteger},
	{"vlan", "pcp", BaseLL, 14, 1, m(0xe0), TypeInteger},
	{"vlan", "dei", BaseLL, 14, 1, m(0x10), TypeInteger},
	{"vlan", "type", BaseLL, 16, 2, nil, TypeEtherType},

	{"ip", "version", BaseNetwork, 0, 1, m(0xf0), TypeInteger},
	{"ip", "hdrlength", BaseNetwork, 0, 1, m(0x0f), TypeInteger},
	{"ip", "dscp", BaseNetwork, 1, 1, m(0xfc), TypeDSCP},
	{"ip", "ecn", BaseNetwork, 1, 1, m(0x03), TypeInteger},
	{"ip", "length", BaseNetwork, 2, 2, nil, TypeInteger},
	{"ip", "id", BaseNetwork, 4, 2, nil, TypeInteger},
	{"ip", "frag-off", BaseNetwork, 6, 2, nil, TypeHex},
	{"ip", "ttl", BaseNetwork, 8, 1, nil, TypeInteger},
	{"ip", "protocol", BaseNetwork, 9, 1, nil, TypeInetProto},
	{"ip", "checksum", BaseNetwork, 10, 2, nil, TypeInteger},
	{"ip", "saddr", BaseNetwork, 12, 4, nil, TypeIPv4},
	{"ip", "daddr", BaseNetwork, 16, 4, nil, TypeIPv4},

	{"ip6", "version", BaseNetwork, 0, 1, m(0xf0), TypeInteger},
	{"ip6", "dscp", BaseNetwork, 0, 2, m(0x0f, 0xc0), TypeDSCP},
	{"ip6", "ecn", BaseNetwork, 1, 1, m(0x30), TypeInteger},
	{"ip6", "flowlabel", BaseNetwork, 1, 3, m(0x0f, 0xff, 0xff), TypeInteger},
	{"ip6", "length", BaseNetwork, 4, 2, nil, TypeInteger},
	{"ip6", "nexthdr", BaseNetwork, 6, 1, nil, TypeInetProto},
	{"ip6", "hoplimit", BaseNetwork, 7, 1, nil, TypeInteger},
	{"ip6", "saddr", BaseNetwork, 8, 16, nil, TypeIPv6},
	{"ip6", "daddr", BaseNetwork, 24, 16, nil, TypeIPv6},

	{"tcp", "sport", BaseTransport, 0, 2, nil, TypeInteger},
	{"tcp", "dport", BaseTransport, 2, 2, nil, TypeInteger},
	{"tcp", "sequence", BaseTransport, 4, 4, nil, TypeInteger},
	{"tcp", "ackseq", BaseTransport, 8, 4, nil, TypeInteger},
	{"tcp", "doff", BaseTransport, 12, 1, m(0xf0), TypeInteger},
	{"tcp", "flags", BaseTransport, 13, 1, nil, TypeTCPFlags},
	{"tcp", "window", BaseTransport, 14, 2, nil, TypeInteger},
	{"tcp", "checksum", BaseTransport, 16, 2, nil, TypeInteger},
	{"tcp", "urgptr", BaseTransport, 18, 2, nil, TypeInteger},

	{"udp", "sport", BaseTransport, 0, 2, nil, TypeInteger},
	{"udp", "dport", BaseTransport, 2, 2, nil, TypeInteger},
	{"udp", "length", BaseTransport, 4, 2, nil, TypeInteger},
	{"udp", "checksum", BaseTransport, 6, 2, nil, TypeInteger},

	{"udplite", "sport", BaseTransport, 0, 2, nil, TypeInteger},
	{"udplite", "dport", BaseTransport, 2, 2, nil, TypeInteger},
	{"udplite", "csumcov", BaseTransport, 4, 2, nil, TypeInteger},
	{"udplite", "checksum", BaseTransport, 6, 2, nil, TypeInteger},

	{"sctp", "sport", BaseTransport, 0, 2, nil, TypeInteger},
	{"sctp", "dport", BaseTransport, 2, 2, nil, TypeInteger},
	{"sctp", "vtag", BaseTransport, 4, 4, nil, TypeInteger},
	{"sctp", "checksum", BaseTransport, 8, 4, nil, TypeInteger},

	{"icmp", "type", BaseTransport, 0, 1, nil, TypeICMPType},
	{"icmp", "code", BaseTransport, 1, 1, nil, TypeInteger},
	{"icmp", "checksum", BaseTransport, 2, 2, nil, TypeInteger},
	{"icmp", "id", BaseTransport, 4, 2, nil, TypeInteger},
	{"icmp", "sequence", BaseTransport, 6, 2, nil, TypeInteger},
	{"icmp", "gateway", BaseTransport, 4, 4, nil, TypeIPv4},

	{"icmpv6", "type", BaseTransport, 0, 1, nil, TypeICMPv6Type},
	{"icmpv6", "code", BaseTransport, 1, 1, nil, TypeInteger},
	{"icmpv6", "checksum", BaseTransport, 2, 2, nil, TypeInteger},
	{"icmpv6", "id", BaseTransport, 4, 2, nil, TypeInteger},
	{"icmpv6", "sequence", BaseTransport, 6, 2, nil, TypeInteger},
	{"icmpv6", "mtu", BaseTransport, 4, 4, nil, TypeInteger},

	{"th", "sport", BaseTransport, 0, 2, nil, TypeInteger},
	{"th", "dport", BaseTransport, 2, 2, nil, TypeInteger},
}

// transportProtos maps IP protocol numbers to the header name nft uses.
var transportProtos = map[byte]string{1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 136: "udplite"}

// metaTypes gives each meta key's value type and whether the kernel stores
// it in host byte order.
var metaTypes = map[MetaKey]struct {
	typ  ValueType
	host bool
}{
	MetaLen: {TypeInteger, true}, MetaProtocol: {TypeEtherType, false}, MetaPriority: {TypeHex, true},
	MetaMark: {TypeHex, true}, MetaIif: {TypeInteger, true}, MetaOif: {TypeInteger, true},
	MetaIifName: {TypeIfName, false}, MetaOifName: {TypeIfName, false},
	MetaIifType: {TypeIfType, true}, MetaOifType: {TypeIfType, true},
	MetaSkUID: {TypeInteger, true}, MetaSkGID: {TypeInteger, true}, MetaNFTrace: {TypeInteger, false},
	MetaRtClassid: {TypeInteger, true}, MetaSecmark: {TypeInteger, true}, MetaNFProto: {TypeNFProto, false},
	MetaL4Proto: {TypeInetProto, false}, MetaBriIifName: {TypeIfName, false}, MetaBriOifName: {TypeIfName, false},
	MetaPktType: {TypePktType, false}, MetaCPU: {TypeInteger, true}, MetaIifGroup: {TypeInteger, true},
	MetaOifGroup: {TypeInteger, true}, MetaCgroup: {TypeInteger, true}, MetaPRandom: {TypeInteger, true},
}

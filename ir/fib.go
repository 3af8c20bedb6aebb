package ir

import "strings"

// FIBFlags are the NFTA_FIB_F_* flags of a fib expression: which address
// of the packet is looked up and which device restricts the answer.
type FIBFlags uint32

// fib flags (linux/netfilter/nf_tables.h).
const (
	FIBSaddr   FIBFlags = 1 << 0 // NFTA_FIB_F_SADDR: look up the source address
	FIBDaddr   FIBFlags = 1 << 1 // NFTA_FIB_F_DADDR: look up the destination address
	FIBMark    FIBFlags = 1 << 2 // NFTA_FIB_F_MARK (no effect on the address type)
	FIBIif     FIBFlags = 1 << 3 // NFTA_FIB_F_IIF: restrict to the input device
	FIBOif     FIBFlags = 1 << 4 // NFTA_FIB_F_OIF: restrict to the output device
	FIBPresent FIBFlags = 1 << 5 // NFTA_FIB_F_PRESENT (no effect on the address type)
	FIBAll              = FIBSaddr | FIBDaddr | FIBMark | FIBIif | FIBOif | FIBPresent
)

// Address types (RTN_*): the values "fib … type" places in its register,
// as a host-order u32, and the bits xt_addrtype's type masks test.
const (
	AddrUnspec      uint32 = 0
	AddrUnicast     uint32 = 1
	AddrLocal       uint32 = 2
	AddrBroadcast   uint32 = 3
	AddrAnycast     uint32 = 4
	AddrMulticast   uint32 = 5
	AddrBlackhole   uint32 = 6
	AddrUnreachable uint32 = 7
	AddrProhibit    uint32 = 8
	AddrThrow       uint32 = 9
	AddrNAT         uint32 = 10
	AddrXResolve    uint32 = 11
)

// addrTypeNames are nft's names of the address types (fib_addr_type).
var addrTypeNames = []string{"unspec", "unicast", "local", "broadcast", "anycast", "multicast",
	"blackhole", "unreachable", "prohibit", "throw", "nat", "xresolve"}

// AddrTypeName returns nft's name of an RTN_* address type, or "" for a
// number without one.
func AddrTypeName(t uint32) string {
	if int(t) < len(addrTypeNames) {
		return addrTypeNames[t]
	}
	return ""
}

// AddrTypeByName returns the RTN_* value of an address type named as nft
// (lower case) or iptables (upper case) names it.
func AddrTypeByName(name string) (uint32, bool) {
	n := strings.ToLower(name)
	for i, s := range addrTypeNames {
		if s == n {
			return uint32(i), true
		}
	}
	return 0, false
}

// FIBKeyType is nft's datatype id of fib address types (TYPE_FIB_ADDR),
// the key type of a set of them.
const FIBKeyType uint32 = 38

// fibField returns the left-hand side nft prints for a fib load:
// "fib daddr . iif type".
func fibField(f *Field) string {
	var b strings.Builder
	b.WriteString("fib ")
	if f.FIB&FIBSaddr != 0 {
		b.WriteString("saddr")
	} else {
		b.WriteString("daddr")
	}
	if f.FIB&FIBMark != 0 {
		b.WriteString(" . mark")
	}
	if f.FIB&FIBIif != 0 {
		b.WriteString(" . iif")
	}
	if f.FIB&FIBOif != 0 {
		b.WriteString(" . oif")
	}
	b.WriteString(" type")
	return b.String()
}

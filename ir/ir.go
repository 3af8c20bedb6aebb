// Package ir is bpfilter-nft's rule intermediate representation.
//
// The translator (package translate) lifts nf_tables expressions into this
// form; the code generator (package codegen) compiles it to BPF. The IR keeps
// nf_tables semantics exactly: a Match compares bytes the way nft_cmp,
// nft_range and nft_lookup do (memcmp over register bytes), and a Field whose
// value cannot be obtained for a packet (a payload beyond the packet's end, a
// transport header of a non-first fragment, an input interface on an output
// hook) makes the whole rule not match, as NFT_BREAK does in the kernel.
package ir

// Family is a table's address family; values are NFPROTO_* numbers.
type Family uint8

// Table families.
const (
	FamilyInet   Family = 1
	FamilyIPv4   Family = 2
	FamilyARP    Family = 3
	FamilyNetdev Family = 5
	FamilyBridge Family = 7
	FamilyIPv6   Family = 10
)

// Hook is a base chain's hook point.
type Hook uint8

// Hook points. The netfilter hooks keep their NF_INET_* numbers; the netdev
// hooks are numbered after them so that one type covers both.
const (
	HookPrerouting  Hook = 0 // NF_INET_PRE_ROUTING
	HookInput       Hook = 1 // NF_INET_LOCAL_IN
	HookForward     Hook = 2 // NF_INET_FORWARD
	HookOutput      Hook = 3 // NF_INET_LOCAL_OUT
	HookPostrouting Hook = 4 // NF_INET_POST_ROUTING
	HookIngress     Hook = 5 // NF_NETDEV_INGRESS (and NF_INET_INGRESS)
	HookEgress      Hook = 6 // NF_NETDEV_EGRESS
)

// Ruleset is a set of tables, in load order.
type Ruleset struct {
	Tables []*Table
}

// Table is an nf_tables table.
type Table struct {
	Family Family
	Name   string
	Flags  uint32
	Chains []*Chain
	Sets   []*Set
	// Objects are the table's named stateful objects, in load order.
	Objects []*Object
}

// Chain is a base chain (Base != nil) or a user chain.
type Chain struct {
	Name  string
	Base  *BaseChain
	Rules []*Rule
}

// BaseChain holds what makes a chain a base chain.
type BaseChain struct {
	Type     string // "filter", "nat", "route"
	Hook     Hook
	Priority int32
	Policy   VerdictKind // VerdictAccept or VerdictDrop
	Devices  []string
}

// Rule is one rule: statements evaluated in order. A rule whose statements
// all run without a Match failing and that has no Verdict statement lets
// evaluation continue with the next rule.
type Rule struct {
	Handle  uint64
	Comment string
	Stmts   []Stmt
}

// Stmt is a statement of a rule: *Match, *Counter or *Verdict.
type Stmt interface {
	isStmt()
}

// Source says where a Field's bytes come from.
type Source uint8

// Field sources.
const (
	SourcePayload Source = iota // packet bytes at Base+Offset
	SourceMeta                  // packet metadata (NFT_META_*)
	SourceCT                    // the packet's conntrack entry (NFT_CT_*), see ct.go
	SourceExthdr                // an IPv6 extension header found as ipv6_find_hdr does, see exthdr.go
	SourceFIB                   // the address type of an address (fib … type), see fib.go
)

// PayloadBase is the header a payload offset is relative to (NFT_PAYLOAD_*).
type PayloadBase uint8

// Payload bases.
const (
	BaseLL        PayloadBase = 0 // link-layer header
	BaseNetwork   PayloadBase = 1 // network header
	BaseTransport PayloadBase = 2 // transport header
	BaseInner     PayloadBase = 3
)

// MetaKey is an NFT_META_* key.
type MetaKey uint32

// Meta keys used by filter rules (values are NFT_META_*).
const (
	MetaLen        MetaKey = 0
	MetaProtocol   MetaKey = 1
	MetaPriority   MetaKey = 2
	MetaMark       MetaKey = 3
	MetaIif        MetaKey = 4
	MetaOif        MetaKey = 5
	MetaIifName    MetaKey = 6
	MetaOifName    MetaKey = 7
	MetaIifType    MetaKey = 8
	MetaOifType    MetaKey = 9
	MetaSkUID      MetaKey = 10
	MetaSkGID      MetaKey = 11
	MetaNFTrace    MetaKey = 12
	MetaRtClassid  MetaKey = 13
	MetaSecmark    MetaKey = 14
	MetaNFProto    MetaKey = 15
	MetaL4Proto    MetaKey = 16
	MetaBriIifName MetaKey = 17
	MetaBriOifName MetaKey = 18
	MetaPktType    MetaKey = 19
	MetaCPU        MetaKey = 20
	MetaIifGroup   MetaKey = 21
	MetaOifGroup   MetaKey = 22
	MetaCgroup     MetaKey = 23
	MetaPRandom    MetaKey = 24
)

// Field is a value a rule reads: Len bytes from a payload base and offset
// or from a meta key, laid out as nf_tables puts them in a register, then
// passed through Transforms in order.
type Field struct {
	Source Source
	Base   PayloadBase // SourcePayload only
	Offset uint32      // SourcePayload only, in bytes
	Meta   MetaKey     // SourceMeta only
	CT     CTKey       // SourceCT only
	CTDir  CTDir       // SourceCT only: the tuple direction of address and port keys
	// Exthdr is the IPv6 extension header (NEXTHDR_*) and ExthdrMode how
	// it is read; SourceExthdr only. Offset is then from the header's start.
	Exthdr     uint8
	ExthdrMode ExthdrMode
	FIB        FIBFlags // SourceFIB only: the address looked up and the device restriction
	// Len is the number of bytes the load places in the register.
	Len uint32
	// Transforms are applied in order after the load.
	Transforms []Transform
}

// TransformKind is the kind of a Transform.
type TransformKind uint8

// Transform kinds.
const (
	// TransformMaskXor is bitwise: reg = (reg & Mask) ^ Xor over Len bytes.
	TransformMaskXor TransformKind = iota
	// TransformShiftLeft and TransformShiftRight shift the register,
	// taken as a sequence of host-endian 32-bit words, by Shift bits
	// (nft_bitwise NFT_BITWISE_LSHIFT/RSHIFT).
	TransformShiftLeft
	TransformShiftRight
	// TransformHton and TransformNtoh are nft_byteorder: Len bytes taken
	// as Len/Size integers of Size bytes, each converted.
	TransformHton
	TransformNtoh
)

// Transform is one register operation applied to a Field's bytes.
type Transform struct {
	Kind  TransformKind
	Len   uint32 // bytes operated on
	Mask  []byte // TransformMaskXor
	Xor   []byte // TransformMaskXor
	Shift uint32 // shifts
	Size  uint32 // byte order: element size (2, 4 or 8)
}

// Op is a comparison.
type Op uint8

// Comparisons. Eq…Gte compare len(Value) bytes with memcmp, as nft_cmp
// does; InRange/NotInRange compare against [Value, High] with memcmp, as
// nft_range does; InSet/NotInSet look the Field up in Set.
const (
	OpEq Op = iota
	OpNeq
	OpLt
	OpLte
	OpGt
	OpGte
	OpInRange
	OpNotInRange
	OpInSet
	OpNotInSet
)

// Match is a statement that ends the rule (the packet moves on to the next
// rule) unless Field compares true.
type Match struct {
	Field Field
	Op    Op
	Value []byte // compared bytes; may be shorter than Field.Len (prefix compare)
	High  []byte // OpInRange, OpNotInRange: inclusive upper bound
	Set   *Set   // OpInSet, OpNotInSet
}

// Counter is the "counter" statement: it counts the packets and bytes that
// reach it.
type Counter struct{}

// VerdictKind is what a Verdict does.
type VerdictKind uint8

// Verdict kinds.
const (
	VerdictContinue VerdictKind = iota
	VerdictAccept
	VerdictDrop
	VerdictReturn
	VerdictJump
	VerdictGoto
)

// Verdict ends rule evaluation (or, for VerdictContinue, does nothing).
type Verdict struct {
	Kind  VerdictKind
	Chain string // VerdictJump, VerdictGoto
}

func (*Match) isStmt()   {}
func (*Counter) isStmt() {}
func (*Verdict) isStmt() {}

// SetFlags are nf_tables set flags (NFT_SET_*).
type SetFlags uint32

// Set flags.
const (
	SetAnonymous SetFlags = 0x1
	SetConstant  SetFlags = 0x2
	SetInterval  SetFlags = 0x4
	SetMap       SetFlags = 0x8
	SetTimeout   SetFlags = 0x10
	SetEval      SetFlags = 0x20
	SetObject    SetFlags = 0x40
	SetConcat    SetFlags = 0x80
)

// Set is a named or anonymous set of keys. Elements are normalised to
// inclusive ranges: an exact element has Low == High.
type Set struct {
	Name    string
	Flags   SetFlags
	KeyType uint32 // nft datatype id (for printing)
	KeyLen  uint32
	// Size is the set's declared maximum number of elements (nft's
	// "size"); 0 if none was declared.
	Size uint32
	// Fields are the lengths in bytes of the fields of a concatenated
	// key (NFTA_SET_DESC_CONCAT); each takes a multiple of 4 bytes of
	// the key (see KeyLayout). Nil for a key of one field.
	Fields []uint32
	// DataType and DataLen describe a map's values (NFTA_SET_DATA_TYPE:
	// DataVerdict for verdict maps).
	DataType uint32
	DataLen  uint32
	// Timeout is the default element timeout in milliseconds (0: none).
	Timeout  uint64
	Elements []SetElement
}

// SetElement is an inclusive range of keys, compared with memcmp. In a
// set of concatenated keys with the interval flag each field has its own
// range: a key matches when every field lies between that field's bytes in
// Low and in High.
type SetElement struct {
	Low, High []byte
	// Verdict is the element's verdict in a verdict map.
	Verdict *Verdict
	// Data is the element's value in a data map (register bytes).
	Data []byte
	// Timeout is the element's timeout and Expires the time left until
	// it expires, in milliseconds, as the kernel reported them (0: none).
	Timeout, Expires uint64
	// Deadline, when not 0, is the CLOCK_MONOTONIC time in nanoseconds
	// at which the element expires, taken from a running set's map (the
	// map is the source of truth for live elements); 0 means the
	// element's time counts from when its map is written (Expires).
	Deadline uint64
}

// Anonymous reports whether the set is an anonymous (inline) set.
func (s *Set) Anonymous() bool { return s.Flags&SetAnonymous != 0 }

// LimitUnit values are the seconds nft sends as NFTA_LIMIT_UNIT.
const (
	LimitSecond uint64 = 1
	LimitMinute uint64 = 60
	LimitHour   uint64 = 3600
	LimitDay    uint64 = 86400
	LimitWeek   uint64 = 604800
)

// Limit is the "limit" statement (nft_limit): a token bucket that ends the
// rule when the packet finds too few tokens (or, with Over, enough).
type Limit struct {
	Rate  uint64 // packets or bytes per Unit (NFTA_LIMIT_RATE)
	Unit  uint64 // seconds (NFTA_LIMIT_UNIT)
	Burst uint32 // NFTA_LIMIT_BURST; packets or bytes
	Bytes bool   // NFT_LIMIT_PKT_BYTES: the cost of a packet is its length
	Over  bool   // NFT_LIMIT_F_INV
}

// Quota is the "quota" statement (nft_quota): it counts the bytes of the
// packets reaching it and ends the rule once they exceed Bytes (or, with
// Over, until they do).
type Quota struct {
	Bytes uint64 // NFTA_QUOTA_BYTES
	Used  uint64 // NFTA_QUOTA_CONSUMED at load time
	Over  bool   // NFT_QUOTA_F_INV
}

// Log levels (syslog levels, and nft's "audit").
const (
	LogEmerg   uint32 = 0
	LogAlert   uint32 = 1
	LogCrit    uint32 = 2
	LogErr     uint32 = 3
	LogWarn    uint32 = 4
	LogNotice  uint32 = 5
	LogInfo    uint32 = 6
	LogDebug   uint32 = 7
	LogAudit   uint32 = 8
	LogDefault        = LogWarn
)

// Log flags (NF_LOG_*).
const (
	LogTCPSeq    uint32 = 0x01
	LogTCPOpt    uint32 = 0x02
	LogIPOpt     uint32 = 0x04
	LogUID       uint32 = 0x08
	LogMACDecode uint32 = 0x20
	LogAllFlags  uint32 = 0x2f
)

// Log is the "log" statement (nft_log).
type Log struct {
	Prefix    string
	HasPrefix bool
	Level     uint32 // syslog level; LogDefault when none was given
	HasLevel  bool
	Flags     uint32 // NF_LOG_* (LogTCPSeq, …)
	Group     uint16 // nflog group (HasGroup)
	HasGroup  bool
	Snaplen   uint32
	QThresh   uint16
}

// MetaSet is "meta KEY set VALUE" with a constant value, as the register
// image nft_meta_set reads (Value has the key's register length).
type MetaSet struct {
	Key   MetaKey
	Value []byte
}

// Reject types (NFT_REJECT_*).
const (
	RejectICMPUnreach  uint32 = 0 // ICMP (ip) or ICMPv6 (ip6) destination unreachable, code Code
	RejectTCPReset     uint32 = 1
	RejectICMPXUnreach uint32 = 2 // family-independent code (NFT_REJECT_ICMPX_*)
)

// Reject is the "reject" statement (nft_reject): the packet is dropped
// and a TCP reset or an ICMP error is sent back.
type Reject struct {
	Type uint32
	Code uint8
}

func (*Reject) isStmt()  {}
func (*Limit) isStmt()   {}
func (*Quota) isStmt()   {}
func (*Log) isStmt()     {}
func (*MetaSet) isStmt() {}

// Stateful reports whether s keeps state or acts beyond the verdict
// (counters, limits, quotas, logs, metadata writes): a statement a pending
// register load must not be moved across.
func Stateful(s Stmt) bool {
	switch s.(type) {
	case *Counter, *Limit, *Quota, *Log, *MetaSet, *Reject, *MetaSetMap, *ObjRef:
		return true
	}
	return false
}

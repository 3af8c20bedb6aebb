// Package nlmsg decodes nf_tables netlink messages (NFT_MSG_NEWTABLE,
// NEWCHAIN, NEWSET, NEWSETELEM and NEWRULE) into plain Go values.
//
// Unlike google/nftables, which skips expression kinds it does not know,
// this package keeps every NFTA_LIST_ELEM of a rule: an expression it has no
// typed decoder for becomes an *Opaque carrying its kind and raw attributes,
// so that a later stage can refuse it by name instead of silently dropping it.
package nlmsg

// Family is an nf_tables address family (NFPROTO_*).
type Family uint8

// Address families used by nf_tables tables.
const (
	FamilyInet   Family = 1  // NFPROTO_INET
	FamilyIPv4   Family = 2  // NFPROTO_IPV4 ("ip")
	FamilyARP    Family = 3  // NFPROTO_ARP
	FamilyNetdev Family = 5  // NFPROTO_NETDEV
	FamilyBridge Family = 7  // NFPROTO_BRIDGE
	FamilyIPv6   Family = 10 // NFPROTO_IPV6 ("ip6")
)

// Ruleset is everything one dump (or one batch) describes, in message order.
type Ruleset struct {
	Tables []*Table
	Chains []*Chain
	Sets   []*Set
	Elems  []*SetElems
	Rules  []*Rule
	Objs   []*Obj
}

// Table is an NFT_MSG_NEWTABLE message.
type Table struct {
	Family Family
	Name   string
	Handle uint64
	Flags  uint32
}

// Chain is an NFT_MSG_NEWCHAIN message.
type Chain struct {
	Family Family
	Table  string
	Name   string
	Handle uint64
	ID     uint32 // NFTA_CHAIN_ID (batches only)
	Flags  uint32
	// Hook is set for base chains only.
	Hook *ChainHook
	// Policy is NFTA_CHAIN_POLICY (NF_ACCEPT or NF_DROP); nil when absent.
	Policy *uint32
	// Type is NFTA_CHAIN_TYPE: "filter", "nat" or "route".
	Type string
}

// ChainHook is NFTA_CHAIN_HOOK.
type ChainHook struct {
	Num      uint32 // NF_INET_* or NF_NETDEV_* hook number
	Priority int32
	Devices  []string // NFTA_HOOK_DEV or NFTA_HOOK_DEVS
}

// Set is an NFT_MSG_NEWSET message.
type Set struct {
	Family    Family
	Table     string
	Name      string
	Handle    uint64
	ID        uint32 // NFTA_SET_ID
	Flags     uint32 // NFT_SET_* flags
	KeyType   uint32
	KeyLen    uint32
	DataType  uint32
	DataLen   uint32
	ObjType   uint32
	Policy    uint32
	Size      uint32   // NFTA_SET_DESC_SIZE
	Concat    []uint32 // NFTA_SET_DESC_CONCAT field lengths, in bytes
	Timeout   uint64   // milliseconds
	GCInt     uint32
	Userdata  []byte
	HasExprs  bool // NFTA_SET_EXPR / NFTA_SET_EXPRESSIONS present
	ExprKinds []string
}

// SetElems is an NFT_MSG_NEWSETELEM message: elements added to one set.
type SetElems struct {
	Family Family
	Table  string
	Set    string
	SetID  uint32
	Elems  []SetElem
}

// SetElem is one NFTA_LIST_ELEM of NFTA_SET_ELEM_LIST_ELEMENTS.
type SetElem struct {
	Key        []byte
	KeyEnd     []byte
	Data       []byte   // NFTA_SET_ELEM_DATA as NFTA_DATA_VALUE
	Verdict    *Verdict // NFTA_SET_ELEM_DATA as NFTA_DATA_VERDICT
	Flags      uint32   // NFT_SET_ELEM_INTERVAL_END, NFT_SET_ELEM_CATCHALL
	Timeout    uint64
	Expiration uint64
	Userdata   []byte
	ObjRef     string
	ExprKinds  []string
}

// Rule is an NFT_MSG_NEWRULE message.
type Rule struct {
	Family   Family
	Table    string
	Chain    string
	Handle   uint64
	Position uint64
	ID       uint32
	Userdata []byte // NFTA_RULE_USERDATA (holds the comment as a TLV)
	Exprs    []Expr
}

// Verdict is an NFTA_DATA_VERDICT.
type Verdict struct {
	Code    int32  // NF_DROP, NF_ACCEPT, NFT_CONTINUE, NFT_BREAK, NFT_JUMP, NFT_GOTO, NFT_RETURN
	Chain   string // for NFT_JUMP and NFT_GOTO
	ChainID uint32
}

// Verdict codes (NF_* and NFT_* from linux/netfilter*.h).
const (
	VerdictDrop     int32 = 0
	VerdictAccept   int32 = 1
	VerdictQueue    int32 = 3
	VerdictContinue int32 = -1
	VerdictBreak    int32 = -2
	VerdictJump     int32 = -3
	VerdictGoto     int32 = -4
	VerdictReturn   int32 = -5
)

// Expr is one expression of a rule. Kind returns the kernel's name for it
// ("payload", "cmp", …), as in NFTA_EXPR_NAME.
type Expr interface {
	Kind() string
}

// Payload is the "payload" expression: a load (DReg set) or a write
// (SReg set, with checksum fields).
type Payload struct {
	Base       uint32 // NFT_PAYLOAD_LL_HEADER, NETWORK_HEADER, TRANSPORT_HEADER, INNER_HEADER, TUN_HEADER
	Offset     uint32
	Len        uint32
	DReg       uint32
	SReg       uint32
	CsumType   uint32
	CsumOffset uint32
	CsumFlags  uint32
}

// Meta is the "meta" expression: a load (DReg set) or a write (SReg set).
type Meta struct {
	Key  uint32 // NFT_META_*
	DReg uint32
	SReg uint32
}

// Cmp is the "cmp" expression.
type Cmp struct {
	Op   uint32 // NFT_CMP_EQ, NEQ, LT, LTE, GT, GTE
	SReg uint32
	Data []byte
}

// Bitwise is the "bitwise" expression.
type Bitwise struct {
	SReg  uint32
	DReg  uint32
	Len   uint32
	Op    uint32 // NFT_BITWISE_MASK_XOR (0, "bool"), LSHIFT, RSHIFT, AND, OR, XOR
	Mask  []byte
	Xor   []byte
	Data  []byte // shift amount, for LSHIFT and RSHIFT
	SReg2 uint32 // for register-register AND/OR/XOR
}

// Range is the "range" expression.
type Range struct {
	Op       uint32 // NFT_RANGE_EQ or NFT_RANGE_NEQ
	SReg     uint32
	FromData []byte
	ToData   []byte
}

// Lookup is the "lookup" expression.
type Lookup struct {
	SReg    uint32
	DReg    uint32
	HasDReg bool
	Set     string
	SetID   uint32
	Flags   uint32 // NFT_LOOKUP_F_INV
}

// Immediate is the "immediate" expression: a verdict (DReg 0) or data.
type Immediate struct {
	DReg    uint32
	Data    []byte
	Verdict *Verdict
}

// Counter is the "counter" expression.
type Counter struct {
	Packets uint64
	Bytes   uint64
}

// Byteorder is the "byteorder" expression.
type Byteorder struct {
	SReg uint32
	DReg uint32
	Op   uint32 // NFT_BYTEORDER_NTOH or NFT_BYTEORDER_HTON
	Len  uint32
	Size uint32
}

// Ct is the "ct" expression.
type Ct struct {
	Key          uint32
	DReg         uint32
	SReg         uint32
	Direction    uint8
	HasDirection bool
}

// Opaque is any other expression: its kind and the raw NFTA_EXPR_DATA
// attributes, kept so that it can be named in an error.
type Opaque struct {
	Name string
	Data []byte
}

func (*Payload) Kind() string   { return "payload" }
func (*Meta) Kind() string      { return "meta" }
func (*Cmp) Kind() string       { return "cmp" }
func (*Bitwise) Kind() string   { return "bitwise" }
func (*Range) Kind() string     { return "range" }
func (*Lookup) Kind() string    { return "lookup" }
func (*Immediate) Kind() string { return "immediate" }
func (*Counter) Kind() string   { return "counter" }
func (*Byteorder) Kind() string { return "byteorder" }
func (*Ct) Kind() string        { return "ct" }

// Kind returns the expression's kernel name.
func (o *Opaque) Kind() string { return o.Name }

// Package codegen compiles a base chain of the rule IR into one eBPF program
// that decides every packet as the kernel's nf_tables would.
//
// The program starts with a prologue that computes what nf_tables keeps in
// struct nft_pktinfo (network and transport header offsets, the L4PROTO flag,
// the transport protocol and the fragment offset) with the same validation
// rules, and stores it in fixed stack slots. Rules follow as straight-line
// code: every match loads its field into a 64-byte stack buffer laid out as
// an nf_tables register, applies the transforms in place and compares; a
// failing match or a field that nf_tables could not load (NFT_BREAK) jumps to
// the next rule. User chains reached by jump or goto are inlined at the call
// site with their own return label, which keeps nft's jump stack semantics.
// Runs of rules that differ only in the constants they compare are rule
// groups instead (group.go): one hash lookup per rule shape finds the first
// matching rule, its counter slot and its verdict (Options.Linear turns
// them off). A chain whose code is longer than a verifier-friendly budget
// is cut at rule boundaries into programs that continue one another by
// tail calls (split.go).
// Packet bytes are always read with a helper (bpf_xdp_load_bytes,
// bpf_skb_load_bytes or bpf_dynptr_read), so offsets never need to be proven
// to the verifier and loads beyond the packet fail exactly where
// skb_copy_bits fails.
package codegen

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// ProgramType selects the BPF program type / attach flavour.
type ProgramType int

// Program types.
const (
	XDP ProgramType = iota
	TC
	CgroupSKB
	Netfilter
)

// String returns the short name of the program type.
func (t ProgramType) String() string {
	switch t {
	case XDP:
		return "xdp"
	case TC:
		return "tc"
	case CgroupSKB:
		return "cgroup"
	case Netfilter:
		return "nf"
	}
	return fmt.Sprintf("ProgramType(%d)", int(t))
}

// ParseProgramType parses the names String returns.
func ParseProgramType(s string) (ProgramType, error) {
	switch s {
	case "xdp":
		return XDP, nil
	case "tc", "tcx":
		return TC, nil
	case "cgroup", "cgroup_skb":
		return CgroupSKB, nil
	case "nf", "netfilter":
		return Netfilter, nil
	}
	return 0, fmt.Errorf("unknown program type %q (want xdp, tc, cgroup or nf)", s)
}

// Target says where the program will run.
type Target struct {
	Type   ProgramType
	Family ir.Family // table family
	Hook   ir.Hook   // the base chain's hook
	// ProtoFamily is NFPROTO_IPV4 or NFPROTO_IPV6 for Netfilter and
	// CgroupSKB programs of an inet table (one program per protocol
	// family); for ip/ip6 tables it equals the table family. For
	// CgroupSKB programs of an inet table it may also be FamilyInet: the
	// program then serves both families, chosen by skb->protocol.
	ProtoFamily ir.Family
	// Egress is true for TC egress and cgroup_skb egress programs.
	Egress bool
	// Device describes the one device a netdev-chain program (XDP/TC) is
	// attached to; nil when unknown. Where a meta key can be answered
	// exactly only from it (iifname, iiftype, pkttype at XDP), it is used;
	// if nil, those keys are refused.
	Device *Device
}

// Device describes a network device.
type Device struct {
	Index uint32
	Name  string
	Type  uint16 // ARPHRD_*
	MAC   [6]byte
}

// DefaultTarget returns the default program type for a base chain per
// design.md: netdev ingress → XDP, netdev egress → TC egress, ip/ip6/inet
// hooks → Netfilter. For an inet table it returns the IPv4 target; see
// DefaultTargets for both.
func DefaultTarget(t *ir.Table, c *ir.Chain) (Target, error) {
	ts, err := DefaultTargets(t, c)
	if err != nil {
		return Target{}, err
	}
	return ts[0], nil
}

// DefaultTargets returns the targets a base chain needs by default: one,
// or two (IPv4 and IPv6) for a Netfilter chain of an inet table.
func DefaultTargets(t *ir.Table, c *ir.Chain) ([]Target, error) {
	if c.Base == nil {
		return nil, fmt.Errorf("chain %s is not a base chain", c.Name)
	}
	h := c.Base.Hook
	switch t.Family {
	case ir.FamilyNetdev:
		switch h {
		case ir.HookIngress:
			return []Target{{Type: XDP, Family: t.Family, Hook: h, ProtoFamily: t.Family}}, nil
		case ir.HookEgress:
			return []Target{{Type: TC, Family: t.Family, Hook: h, ProtoFamily: t.Family, Egress: true}}, nil
		}
	case ir.FamilyIPv4, ir.FamilyIPv6:
		if h <= ir.HookPostrouting {
			return []Target{{Type: Netfilter, Family: t.Family, Hook: h, ProtoFamily: t.Family}}, nil
		}
	case ir.FamilyInet:
		if h <= ir.HookPostrouting {
			return []Target{
				{Type: Netfilter, Family: t.Family, Hook: h, ProtoFamily: ir.FamilyIPv4},
				{Type: Netfilter, Family: t.Family, Hook: h, ProtoFamily: ir.FamilyIPv6},
			}, nil
		}
	}
	return nil, fmt.Errorf("chain %s: no BPF attach point for family %d hook %d", c.Name, t.Family, h)
}

// Program is a compiled base chain.
type Program struct {
	Spec         *ebpf.ProgramSpec // ready for ebpf.NewProgram once maps are associated (see Load)
	Counters     *ebpf.MapSpec     // BPF_MAP_TYPE_PERCPU_ARRAY, value {packets u64, bytes u64}
	CounterSlots []CounterSlot     // slot i ↔ (chain, rule handle, statement index)
	// Sets holds the maps backing the named sets the program looks up
	// (see InMap), without contents; instructions refer to the slot of
	// set s (NewSetSlot), which holds its map, by SetSymbol(s).
	// Anonymous sets are compiled into compare chains.
	Sets map[*ir.Set]*ebpf.MapSpec
	// Groups are the hash maps behind rule groups (see Options), with
	// their contents; Load and LoadShared create them.
	Groups []*GroupMap
	// Annotations say which instructions came from which rule.
	Annotations []Annotation
	// State is the map of limit and quota state (StateMapSpec), nil if
	// the program has none; StateSlots[i] is the statement whose state
	// the program keeps in slot i.
	State      *ebpf.MapSpec
	StateSlots []CounterSlot
	// Events is the ring buffer log statements write to (EventsMapSpec),
	// nil if the program logs nothing.
	Events *ebpf.MapSpec
	// Tail holds the rest of a chain too long for one program (split.go):
	// Spec is then its first part, and Tail[i] the program in slot i of
	// the program array TailCalls (BPF_MAP_TYPE_PROG_ARRAY), which the
	// parts tail-call to continue. Both are empty for a chain that fits
	// one program.
	Tail      []TailPart
	TailCalls *ebpf.MapSpec
}

// CounterSlot identifies the counter statement a counter map slot belongs to.
type CounterSlot struct {
	Chain  string
	Handle uint64
	Stmt   int
	// Object, in a state slot, is the identity (ir.Object.Identity) of
	// the named object of the program's table the slot belongs to;
	// Chain, Handle and Stmt are then zero.
	Object string
}

// Annotation maps an instruction range to the rule it came from.
type Annotation struct {
	Start, End int // instruction index range [Start,End) in Spec.Instructions
	Chain      string
	Handle     uint64
	Text       string // nft text of the rule or "prologue"/"policy"
}

// UnsupportedError reports a rule expression that cannot be compiled exactly.
type UnsupportedError struct {
	Chain  string
	Handle uint64
	Stmt   string // nft text of the expression
	Reason string
}

func (e *UnsupportedError) Error() string {
	if e.Stmt == "" {
		return fmt.Sprintf("chain %s, rule handle %d: %s", e.Chain, e.Handle, e.Reason)
	}
	return fmt.Sprintf("chain %s, rule handle %d: %q: %s", e.Chain, e.Handle, e.Stmt, e.Reason)
}

// Verdict return codes.
const (
	xdpDrop  = 1
	xdpPass  = 2
	tcxNext  = -1
	tcShot   = 2
	nfDrop   = 0
	nfAccept = 1
)

// ReturnCode returns the value the program of type t returns for an accept
// (accept true) or drop verdict.
func ReturnCode(t ProgramType, accept bool) int32 {
	switch t {
	case XDP:
		if accept {
			return xdpPass
		}
		return xdpDrop
	case TC:
		if accept {
			return tcxNext
		}
		return tcShot
	default: // cgroup_skb and netfilter: 1 accept, 0 drop
		if accept {
			return nfAccept
		}
		return nfDrop
	}
}

// VerdictOf maps a program's return value back to accept or drop. It
// returns an error for values the generated code never returns.
func VerdictOf(t ProgramType, retval uint32) (ir.VerdictKind, error) {
	switch int32(retval) {
	case ReturnCode(t, true):
		return ir.VerdictAccept, nil
	case ReturnCode(t, false):
		return ir.VerdictDrop, nil
	}
	return 0, fmt.Errorf("%s program returned unexpected value %d", t, int32(retval))
}

func (t Target) progType() ebpf.ProgramType {
	switch t.Type {
	case XDP:
		return ebpf.XDP
	case TC:
		return ebpf.SchedCLS
	case CgroupSKB:
		return ebpf.CGroupSKB
	}
	return ebpf.Netfilter
}

func (t Target) attachType() ebpf.AttachType {
	switch t.Type {
	case XDP:
		return ebpf.AttachXDP
	case TC:
		if t.Egress {
			return ebpf.AttachTCXEgress
		}
		return ebpf.AttachTCXIngress
	case CgroupSKB:
		if t.Egress {
			return ebpf.AttachCGroupInetEgress
		}
		return ebpf.AttachCGroupInetIngress
	}
	return ebpf.AttachNetfilter
}

// validate checks that the target makes sense for the table and chain.
func (t Target) validate(tab *ir.Table, c *ir.Chain) error {
	if c.Base == nil {
		return fmt.Errorf("chain %s is not a base chain", c.Name)
	}
	if t.Family != tab.Family || t.Hook != c.Base.Hook {
		return fmt.Errorf("chain %s: target family/hook %d/%d differ from the chain's %d/%d", c.Name, t.Family, t.Hook, tab.Family, c.Base.Hook)
	}
	if c.Base.Policy != ir.VerdictAccept && c.Base.Policy != ir.VerdictDrop {
		return fmt.Errorf("chain %s: policy must be accept or drop", c.Name)
	}
	if c.Base.Type != "" && c.Base.Type != "filter" {
		return &UnsupportedError{Chain: c.Name, Reason: fmt.Sprintf("chain type %q is not supported (only filter)", c.Base.Type)}
	}
	switch t.Type {
	case XDP:
		if tab.Family != ir.FamilyNetdev || t.Hook != ir.HookIngress || t.Egress {
			return &UnsupportedError{Chain: c.Name, Reason: "xdp programs serve only netdev ingress chains"}
		}
	case TC:
		if tab.Family != ir.FamilyNetdev || (t.Hook == ir.HookIngress) == t.Egress || (t.Hook != ir.HookIngress && t.Hook != ir.HookEgress) {
			return &UnsupportedError{Chain: c.Name, Reason: "tc programs serve only netdev ingress/egress chains (Egress must match the hook)"}
		}
	case CgroupSKB:
		if tab.Family != ir.FamilyIPv4 && tab.Family != ir.FamilyIPv6 && tab.Family != ir.FamilyInet {
			return &UnsupportedError{Chain: c.Name, Reason: "cgroup_skb programs serve only ip, ip6 and inet tables"}
		}
		if !(t.Hook == ir.HookInput && !t.Egress) && !(t.Hook == ir.HookOutput && t.Egress) {
			return &UnsupportedError{Chain: c.Name, Reason: "cgroup_skb programs serve only input (ingress) and output (egress) chains"}
		}
		if err := t.checkProto(tab, c, true); err != nil {
			return err
		}
	case Netfilter:
		if tab.Family != ir.FamilyIPv4 && tab.Family != ir.FamilyIPv6 && tab.Family != ir.FamilyInet {
			return &UnsupportedError{Chain: c.Name, Reason: "netfilter programs serve only ip, ip6 and inet tables"}
		}
		if t.Hook > ir.HookPostrouting {
			return &UnsupportedError{Chain: c.Name, Reason: "netfilter programs serve only the prerouting, input, forward, output and postrouting hooks"}
		}
		if err := t.checkProto(tab, c, false); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown program type %d", t.Type)
	}
	return nil
}

func (t Target) checkProto(tab *ir.Table, c *ir.Chain, inetOK bool) error {
	switch tab.Family {
	case ir.FamilyIPv4, ir.FamilyIPv6:
		if t.ProtoFamily != tab.Family {
			return fmt.Errorf("chain %s: ProtoFamily %d must equal the table family %d", c.Name, t.ProtoFamily, tab.Family)
		}
	case ir.FamilyInet:
		if t.ProtoFamily == ir.FamilyInet && inetOK {
			return nil
		}
		if t.ProtoFamily != ir.FamilyIPv4 && t.ProtoFamily != ir.FamilyIPv6 {
			return fmt.Errorf("chain %s: inet table needs ProtoFamily ipv4 or ipv6", c.Name)
		}
	}
	return nil
}

// Compile builds the program for base chain c of table t (user chains
// reached by jump/goto are compiled into it). It returns *UnsupportedError
// for anything it cannot do exactly.
func Compile(t *ir.Table, c *ir.Chain, tgt Target) (*Program, error) {
	return CompileWith(t, c, tgt, Options{})
}

// CompileWith is Compile with options.
func CompileWith(t *ir.Table, c *ir.Chain, tgt Target, opts Options) (*Program, error) {
	if err := tgt.validate(t, c); err != nil {
		return nil, err
	}
	g, err := newGen(t, tgt)
	if err != nil {
		return nil, err
	}
	g.opts = opts
	if err := g.compile(c); err != nil {
		return nil, err
	}
	insns, err := g.b.finish()
	if err != nil {
		return nil, err
	}
	main, tail, err := g.split(insns)
	if err != nil {
		return nil, err
	}
	nslots := len(g.slots)
	if nslots == 0 {
		nslots = 1
	}
	p := &Program{
		Spec: &ebpf.ProgramSpec{
			Name:         "nft_" + sanitize(c.Name),
			Type:         tgt.progType(),
			AttachType:   tgt.attachType(),
			Instructions: main.insns,
			License:      "GPL",
		},
		Counters: &ebpf.MapSpec{
			Name:       "nft_counters",
			Type:       ebpf.PerCPUArray,
			KeySize:    4,
			ValueSize:  16,
			MaxEntries: uint32(nslots),
		},
		CounterSlots: g.slots,
		Sets:         g.sets,
		Groups:       g.groups,
		Annotations:  main.anns,
		StateSlots:   g.stateSlots,
	}
	p.setTail(tail)
	if len(g.stateSlots) > 0 {
		p.State = StateMapSpec(uint32(len(g.stateSlots)))
	}
	if g.events {
		p.Events = EventsMapSpec()
	}
	return p, nil
}

// maxInsns keeps programs well below the kernel's limit of 1M processed
// instructions: the verifier processes 1.5 to 1.8 instructions per
// instruction of straight-line rules, and fails in other ways (EFAULT
// copying its log) on programs approaching 500,000 instructions.
const maxInsns = 300000

func sanitize(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(out) < 11; i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' {
			out = append(out, c)
		}
	}
	return string(out)
}

// counterMapSymbol is the reference name of the counter map in
// instructions that count in a constant slot; counterDynSymbol in those
// whose slot comes from a group map's value.
const (
	counterMapSymbol = "nft_counters"
	counterDynSymbol = "nft_counters_dyn"
)

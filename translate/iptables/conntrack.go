package iptables

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// The conntrack and state matches (xt_conntrack.c, xt_state.c) become
// native ct expressions, the ones iptables-translate writes: iptables-nft
// 1.8.9 itself keeps the xt match, so equality with the kernel is checked
// by verdicts (TestDifferentialIptablesNft).
//
// xt_conntrack evaluates its options as a conjunction, with one twist:
// when the packet has no conntrack entry the match is decided by the
// state test alone, and every other option is skipped. nft's ct keys
// other than state end the rule without an entry instead, so a state test
// that passes without an entry (for INVALID or UNTRACKED packets) combined
// with other options has no nf_tables equivalent and is refused.

// NFT_CT_* keys the matches use.
const (
	ctKeyState     = 0
	ctKeyDirection = 1
	ctKeyStatus    = 2
	ctKeyMark      = 3
	ctKeySrc       = 8
	ctKeyDst       = 9
	ctKeyProtocol  = 10
	ctKeyProtoSrc  = 11
	ctKeyProtoDst  = 12
)

// State bits of the xt matches (XT_CONNTRACK_STATE_*, XT_STATE_*): the
// ctinfo bits are nft's; the rest are xt's own.
const (
	xtStateInvalid     = 1 << 0
	xtStateEstablished = 1 << 1
	xtStateRelated     = 1 << 2
	xtStateNew         = 1 << 3
	xtStateSNAT        = 1 << 6 // conntrack only: IPS_SRC_NAT set
	xtStateDNAT        = 1 << 7 // conntrack only: IPS_DST_NAT set
	// xtCTUntracked is XT_CONNTRACK_STATE_UNTRACKED; the parser uses it
	// for -m state's UNTRACKED (XT_STATE_UNTRACKED, 1 << 6) too.
	xtCTUntracked = 1 << 8

	nftStateUntracked = 1 << 6
	ipsSrcNAT         = 1 << 4
	ipsDstNAT         = 1 << 5
)

var ctStateNames = map[string]uint32{
	"INVALID": xtStateInvalid, "ESTABLISHED": xtStateEstablished, "RELATED": xtStateRelated,
	"NEW": xtStateNew, "UNTRACKED": xtCTUntracked, "SNAT": xtStateSNAT, "DNAT": xtStateDNAT,
}

var ctStatusNames = map[string]uint32{"NONE": 0, "EXPECTED": 1, "SEEN_REPLY": 2, "ASSURED": 4, "CONFIRMED": 8}

// ctAddrOpt is an address option of -m conntrack.
type ctAddrOpt struct {
	key uint32
	dir uint8 // IP_CT_DIR_*
	a   addr
	inv bool
}

// ctPortOpt is a port option of -m conntrack.
type ctPortOpt struct {
	key uint32
	dir uint8
	r   [2]uint16
	inv bool
}

// conntrackMatch is -m conntrack, and -m state (module "state": only
// --state).
type conntrackMatch struct {
	fam   nlmsg.Family
	state bool // the module is "state"

	hasState, invState   bool
	stateMask            uint32
	hasStatus, invStatus bool
	statusMask           uint32
	hasDir               bool
	reply                bool
	hasProto, invProto   bool
	proto                uint8
	addrs                []ctAddrOpt
	ports                []ctPortOpt
	expire               bool
}

func (m *conntrackMatch) name() string {
	if m.state {
		return "state"
	}
	return "conntrack"
}

func (m *conntrackMatch) options() []string {
	if m.state {
		return []string{"state"}
	}
	return []string{"ctstate", "ctproto", "ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst",
		"ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport", "ctstatus", "ctexpire", "ctdir"}
}

func (m *conntrackMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	if !strings.HasPrefix(opt, "ct") && opt != "state" {
		return false, nil
	}
	if m.state != (opt == "state") {
		return false, nil
	}
	v, err := arg()
	if err != nil {
		return true, err
	}
	switch opt {
	case "state", "ctstate":
		mask := uint32(0)
		for _, s := range strings.Split(v, ",") {
			bit, ok := ctStateNames[strings.ToUpper(s)]
			if !ok || (m.state && bit&(xtStateSNAT|xtStateDNAT) != 0) {
				return true, fmt.Errorf("bad %s %q", opt, s)
			}
			mask |= bit
		}
		m.hasState, m.invState, m.stateMask = true, inv, mask
	case "ctstatus":
		mask := uint32(0)
		for _, s := range strings.Split(v, ",") {
			bit, ok := ctStatusNames[strings.ToUpper(s)]
			if !ok {
				return true, fmt.Errorf("bad ctstatus %q", s)
			}
			mask |= bit
		}
		m.hasStatus, m.invStatus, m.statusMask = true, inv, mask
	case "ctdir":
		switch strings.ToUpper(v) {
		case "ORIGINAL":
			m.reply = false
		case "REPLY":
			m.reply = true
		default:
			return true, fmt.Errorf("bad ctdir %q", v)
		}
		if inv {
			return true, fmt.Errorf("--ctdir cannot be inverted")
		}
		m.hasDir = true
	case "ctproto":
		p, err := parseProtocol(v)
		if err != nil {
			return true, err
		}
		if p == 0 {
			return true, fmt.Errorf("conntrack: --ctproto 0 is not supported")
		}
		m.hasProto, m.invProto, m.proto = true, inv, p
	case "ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst":
		a, err := parseAddr(m.fam, v)
		if err != nil {
			return true, err
		}
		o := ctAddrOpt{key: ctKeySrc, a: a, inv: inv}
		if strings.HasSuffix(opt, "dst") {
			o.key = ctKeyDst
		}
		if strings.HasPrefix(opt, "ctrepl") {
			o.dir = 1
		}
		m.addrs = append(m.addrs, o)
	case "ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport":
		r, err := parsePortRange(v, 0)
		if err != nil {
			return true, err
		}
		if r[0] > r[1] {
			return true, fmt.Errorf("invalid portrange %q specified", v)
		}
		o := ctPortOpt{key: ctKeyProtoSrc, r: r, inv: inv}
		if strings.HasSuffix(opt, "dstport") {
			o.key = ctKeyProtoDst
		}
		if strings.HasPrefix(opt, "ctrepl") {
			o.dir = 1
		}
		m.ports = append(m.ports, o)
	case "ctexpire":
		lo, hi, isRange := strings.Cut(v, ":")
		a, err := strconv.ParseUint(lo, 10, 32)
		b := a
		if err == nil && isRange {
			b, err = strconv.ParseUint(hi, 10, 32)
		}
		if err != nil || a > b {
			return true, fmt.Errorf("bad ctexpire %q", v)
		}
		m.expire = true
	default:
		return false, nil
	}
	return true, nil
}

func (m *conntrackMatch) final(*ruleSpec) error {
	others := m.hasStatus || m.hasDir || m.hasProto || len(m.addrs) > 0 || len(m.ports) > 0 || m.expire
	if !m.hasState && !others {
		if m.state {
			return fmt.Errorf("state match: you must specify \"--state\"")
		}
		return fmt.Errorf("conntrack: at least one option is required")
	}
	if m.expire {
		return unsupported("--ctexpire: the remaining lifetime of an entry is not supported")
	}
	if m.hasState {
		nat := m.stateMask & (xtStateSNAT | xtStateDNAT)
		if nat != 0 && (nat != m.stateMask || m.invState) {
			return unsupported("--ctstate SNAT/DNAT together with other states, or inverted, has no nf_tables equivalent")
		}
		// A packet without an entry is INVALID or UNTRACKED.
		passes := func(bit uint32) bool { return (m.stateMask&bit != 0) != m.invState }
		if others && (passes(xtStateInvalid) || passes(xtCTUntracked)) {
			return unsupported("a --ctstate test that packets without a conntrack entry pass, together with other options, has no nf_tables equivalent (xt_conntrack skips the other options for them)")
		}
	}
	return nil
}

func (m *conntrackMatch) ct(key uint32, dir uint8, hasDir bool) *nlmsg.Ct {
	return &nlmsg.Ct{Key: key, DReg: reg1, Direction: dir, HasDirection: hasDir}
}

func (m *conntrackMatch) emit(r *ruleSpec, e *exprs) error {
	if m.hasState {
		if nat := m.stateMask & (xtStateSNAT | xtStateDNAT); nat != 0 {
			// The virtual states are status bits: ct status snat,dnat.
			status := uint32(0)
			if nat&xtStateSNAT != 0 {
				status |= ipsSrcNAT
			}
			if nat&xtStateDNAT != 0 {
				status |= ipsDstNAT
			}
			e.add(m.ct(ctKeyStatus, 0, false))
			e.mask(ne32(status))
			e.cmp(cmpNeq, ne32(0))
		} else {
			mask := m.stateMask &^ xtCTUntracked
			if m.stateMask&xtCTUntracked != 0 {
				mask |= nftStateUntracked
			}
			e.add(m.ct(ctKeyState, 0, false))
			e.mask(ne32(mask))
			op := uint32(cmpNeq)
			if m.invState {
				op = cmpEq
			}
			e.cmp(op, ne32(0))
		}
	}
	if m.hasDir {
		e.add(m.ct(ctKeyDirection, 0, false))
		d := byte(0)
		if m.reply {
			d = 1
		}
		e.cmp(cmpEq, []byte{d})
	}
	for _, a := range m.addrs {
		e.add(m.ct(a.key, a.dir, true))
		full := true
		for _, b := range a.a.mask {
			full = full && b == 0xff
		}
		if !full {
			e.mask(append([]byte(nil), a.a.mask...))
		}
		e.cmp(opOf(a.inv), append([]byte(nil), a.a.ip...))
	}
	if m.hasProto {
		e.add(m.ct(ctKeyProtocol, 0, true))
		e.cmp(opOf(m.invProto), []byte{m.proto})
	}
	for _, p := range m.ports {
		e.add(m.ct(p.key, p.dir, true))
		if p.r[0] == p.r[1] {
			e.cmp(opOf(p.inv), be16(p.r[0]))
			continue
		}
		op := uint32(rangeEq)
		if p.inv {
			op = rangeNeq
		}
		e.rng(op, be16(p.r[0]), be16(p.r[1]))
	}
	if m.hasStatus {
		e.add(m.ct(ctKeyStatus, 0, false))
		e.mask(ne32(m.statusMask))
		op := uint32(cmpNeq)
		if m.invStatus {
			op = cmpEq
		}
		e.cmp(op, ne32(0))
	}
	return nil
}

// connmarkMatch is -m connmark: (ct mark & mask) == mark, no match
// without an entry (xt_connmark.c), which is nft's "ct mark & mask ==
// mark" exactly: the ct load ends the rule without an entry, inverted or
// not. The mark is compared as given, bits outside the mask included.
type connmarkMatch struct {
	mark, mask uint32
	set, inv   bool
}

func (m *connmarkMatch) name() string      { return "connmark" }
func (m *connmarkMatch) options() []string { return []string{"mark"} }

func (m *connmarkMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	if opt != "mark" {
		return false, nil
	}
	v, err := arg()
	if err != nil {
		return true, err
	}
	mk, ms, _, err := parseMarkMask(v)
	if err != nil {
		return true, fmt.Errorf("bad connmark value %q", v)
	}
	m.mark, m.mask, m.set, m.inv = mk, ms, true, inv
	return true, nil
}

func (m *connmarkMatch) final(*ruleSpec) error {
	if !m.set {
		return fmt.Errorf("connmark match: --mark is required")
	}
	return nil
}

func (m *connmarkMatch) emit(r *ruleSpec, e *exprs) error {
	e.add(&nlmsg.Ct{Key: ctKeyMark, DReg: reg1})
	if m.mask != 0xffffffff {
		e.mask(ne32(m.mask))
	}
	e.cmp(opOf(m.inv), ne32(m.mark))
	return nil
}

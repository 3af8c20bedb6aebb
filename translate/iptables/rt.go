package iptables

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// rtMatch is -m rt (ip6tables only): the IPv6 routing header. It is
// emitted as iptables-nft does, as the xtables match "rt" carried by
// nft_compat with its struct ip6t_rt, because the match drops packets with
// a malformed extension header chain, which no native nf_tables expression
// does; the translator lifts it into routing header Matches.
type rtMatch struct {
	info translate.RTInfo
	seen map[string]bool
}

func (m *rtMatch) name() string { return "rt" }

func (m *rtMatch) options() []string {
	return []string{"rt-type", "rt-segsleft", "rt-len", "rt-0-res", "rt-0-addrs", "rt-0-not-strict"}
}

// Flags of struct ip6t_rt (linux/netfilter_ipv6/ip6t_rt.h).
const (
	rtTyp      = 0x01
	rtSgs      = 0x02
	rtLen      = 0x04
	rtRes      = 0x08
	rtFst      = 0x10
	rtNStrict  = 0x20
	rtInvTyp   = 0x01
	rtInvSgs   = 0x02
	rtInvLen   = 0x04
	rtMatchRev = 0
)

func (m *rtMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	switch opt {
	case "rt-type", "rt-segsleft", "rt-len", "rt-0-res", "rt-0-addrs", "rt-0-not-strict":
	default:
		return false, nil
	}
	if m.seen == nil {
		m.seen = map[string]bool{}
		m.info.SegsLeft[1] = ^uint32(0) // rt_init
	}
	if m.seen[opt] {
		return true, fmt.Errorf("rt: option \"--%s\" can only be used once", opt)
	}
	m.seen[opt] = true
	if inv && (opt == "rt-0-res" || opt == "rt-0-addrs" || opt == "rt-0-not-strict") {
		return true, fmt.Errorf("rt: option \"--%s\" cannot be inverted", opt)
	}
	ri := &m.info
	switch opt {
	case "rt-type", "rt-len":
		v, err := arg()
		if err != nil {
			return true, err
		}
		n, err := strconv.ParseUint(v, 0, 32)
		if err != nil {
			return true, fmt.Errorf("rt: bad value for option \"--%s\", or out of range (0-4294967295)", opt)
		}
		if opt == "rt-type" {
			ri.Type, ri.Flags = uint32(n), ri.Flags|rtTyp
			if inv {
				ri.InvFlags |= rtInvTyp
			}
		} else {
			ri.HdrLen, ri.Flags = uint32(n), ri.Flags|rtLen
			if inv {
				ri.InvFlags |= rtInvLen
			}
		}
	case "rt-segsleft":
		v, err := arg()
		if err != nil {
			return true, err
		}
		lo, hi, err := parseU32Range(v)
		if err != nil {
			return true, fmt.Errorf("rt: bad value for option \"--rt-segsleft\": %w", err)
		}
		ri.SegsLeft, ri.Flags = [2]uint32{lo, hi}, ri.Flags|rtSgs
		if inv {
			ri.InvFlags |= rtInvSgs
		}
	case "rt-0-res":
		if ri.Flags&rtTyp == 0 || ri.Type != 0 || ri.InvFlags&rtInvTyp != 0 {
			return true, fmt.Errorf("`--rt-type 0' required before `--rt-0-res'")
		}
		ri.Flags |= rtRes
	case "rt-0-addrs":
		if _, err := arg(); err != nil {
			return true, err
		}
		if ri.Flags&rtTyp == 0 || ri.Type != 0 || ri.InvFlags&rtInvTyp != 0 {
			return true, fmt.Errorf("`--rt-type 0' required before `--rt-0-addrs'")
		}
		return true, unsupported("-m rt --rt-0-addrs (routing header addresses) is not supported")
	case "rt-0-not-strict":
		return true, fmt.Errorf("`--rt-0-addr ...' required before `--rt-0-not-strict'")
	}
	return true, nil
}

// parseU32Range parses XTTYPE_UINT32RC: N, N:M, N: or :M.
func parseU32Range(s string) (uint32, uint32, error) {
	parse := func(x string, def uint32) (uint32, error) {
		if x == "" {
			return def, nil
		}
		n, err := strconv.ParseUint(x, 0, 32)
		return uint32(n), err
	}
	a, b, isRange := strings.Cut(s, ":")
	if !isRange {
		if a == "" {
			return 0, 0, fmt.Errorf("empty value")
		}
		n, err := parse(a, 0)
		return n, n, err
	}
	lo, err := parse(a, 0)
	if err != nil {
		return 0, 0, err
	}
	hi, err := parse(b, ^uint32(0))
	return lo, hi, err
}

func (m *rtMatch) final(r *ruleSpec) error {
	if r.family != nlmsg.FamilyIPv6 {
		return fmt.Errorf("rt match is for IPv6 only")
	}
	if m.seen == nil {
		m.info.SegsLeft[1] = ^uint32(0)
	}
	// The same checks the translator applies, so that an invalid
	// combination fails while parsing.
	_, err := translate.RTMatches(m.info)
	return err
}

func (m *rtMatch) emit(r *ruleSpec, e *exprs) error {
	e.add(&nlmsg.Opaque{Name: "match", Data: exprData(
		nlattr{1, append([]byte("rt"), 0)}, // NFTA_MATCH_NAME
		nlattr{2, be32(rtMatchRev)},        // NFTA_MATCH_REV
		nlattr{3, m.info.Marshal()},        // NFTA_MATCH_INFO
	)})
	return nil
}

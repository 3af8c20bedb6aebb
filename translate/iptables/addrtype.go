package iptables

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/mdlayher/netlink"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// addrtypeMatch is -m addrtype (xt_addrtype revision 1): the source and
// destination address types, each tested as mask & (1 << type) with its
// own inversion, optionally with the lookup restricted to the input or
// output device. It is emitted as nft's fib … type expression, which
// answers with the same inet_dev_addr_type (what iptables-translate
// writes: fib daddr [. iif|. oif] type [!=] { … }).
type addrtypeMatch struct {
	src, dst       []uint32
	invSrc, invDst bool
	limitIn        bool
	limitOut       bool
}

// Attributes of the fib expression (linux/netfilter/nf_tables.h).
const (
	nftaFibDreg          = 1
	nftaFibResult        = 2
	nftaFibFlags         = 3
	nftFibResultAddrtype = 3
)

func (m *addrtypeMatch) name() string { return "addrtype" }

func (m *addrtypeMatch) options() []string {
	return []string{"src-type", "dst-type", "limit-iface-in", "limit-iface-out"}
}

func (m *addrtypeMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	switch opt {
	case "src-type", "dst-type":
		v, err := arg()
		if err != nil {
			return true, err
		}
		types, err := parseAddrTypes(v)
		if err != nil {
			return true, err
		}
		if opt == "src-type" {
			if m.src != nil {
				return true, fmt.Errorf("addrtype: can't specify src-type twice")
			}
			m.src, m.invSrc = types, inv
		} else {
			if m.dst != nil {
				return true, fmt.Errorf("addrtype: can't specify dst-type twice")
			}
			m.dst, m.invDst = types, inv
		}
	case "limit-iface-in", "limit-iface-out":
		if inv {
			return true, fmt.Errorf("addrtype: --%s cannot be inverted", opt)
		}
		if m.limitIn || m.limitOut {
			return true, fmt.Errorf("addrtype: you can't specify both --limit-iface-in and --limit-iface-out")
		}
		m.limitIn, m.limitOut = opt == "limit-iface-in", opt == "limit-iface-out"
	default:
		return false, nil
	}
	return true, nil
}

// parseAddrTypes reads a comma-separated list of type names (UNICAST,
// LOCAL, …; case-insensitive, as libxt_addrtype reads them).
func parseAddrTypes(v string) ([]uint32, error) {
	seen := map[uint32]bool{}
	var out []uint32
	for _, name := range strings.Split(v, ",") {
		t, ok := ir.AddrTypeByName(name)
		if !ok {
			return nil, fmt.Errorf("addrtype: bad type %q", name)
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

func (m *addrtypeMatch) final(r *ruleSpec) error {
	if m.src == nil && m.dst == nil {
		return fmt.Errorf("addrtype: you must specify --src-type or --dst-type")
	}
	if r.family != nlmsg.FamilyIPv4 {
		return unsupported("-m addrtype in ip6tables is not supported: the IPv6 address type (ipv6_chk_addr and rt6 lookups) is not implemented, only the IPv4 one")
	}
	return nil
}

func (m *addrtypeMatch) emit(r *ruleSpec, e *exprs) error {
	var dev ir.FIBFlags
	switch {
	case m.limitIn:
		dev = ir.FIBIif
	case m.limitOut:
		dev = ir.FIBOif
	}
	if m.src != nil {
		if err := emitAddrType(e, ir.FIBSaddr|dev, m.src, m.invSrc); err != nil {
			return err
		}
	}
	if m.dst != nil {
		if err := emitAddrType(e, ir.FIBDaddr|dev, m.dst, m.invDst); err != nil {
			return err
		}
	}
	return nil
}

// emitAddrType emits fib … type and its compare with types (one type: a
// compare; several: a lookup in an anonymous set).
func emitAddrType(e *exprs, flags ir.FIBFlags, types []uint32, inv bool) error {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(nftaFibDreg, binary.BigEndian.AppendUint32(nil, reg1))
	ae.Bytes(nftaFibResult, binary.BigEndian.AppendUint32(nil, nftFibResultAddrtype))
	ae.Bytes(nftaFibFlags, binary.BigEndian.AppendUint32(nil, uint32(flags)))
	data, err := ae.Encode()
	if err != nil {
		return err
	}
	e.add(&nlmsg.Opaque{Name: "fib", Data: data})
	if len(types) == 1 {
		e.cmp(opOf(inv), ne32(types[0]))
		return nil
	}
	ranges := make([][2][]byte, len(types))
	for i, t := range types {
		ranges[i] = [2][]byte{ne32(t), ne32(t)}
	}
	// The set's elements are compared as bytes: order them so.
	sort.Slice(ranges, func(i, j int) bool { return string(ranges[i][0]) < string(ranges[j][0]) })
	e.lookupRanges(ir.FIBKeyType, 4, ranges, inv)
	return nil
}

package iptables

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// protocols are the protocol names iptables knows without /etc/protocols.
var protocols = map[string]uint8{
	"all": 0, "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
	"icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "mh": 135, "ipv6-mh": 135, "udplite": 136,
	"dccp": 33,
}

var (
	etcOnce      sync.Once
	etcProtocols map[string]uint8
	etcServices  map[string]uint16 // "name/proto"
)

func loadEtc() {
	etcProtocols = map[string]uint8{}
	etcServices = map[string]uint16{}
	if f, err := os.Open("/etc/protocols"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			fields := strings.Fields(strings.SplitN(s.Text(), "#", 2)[0])
			if len(fields) < 2 {
				continue
			}
			n, err := strconv.ParseUint(fields[1], 10, 8)
			if err != nil {
				continue
			}
			for _, name := range append([]string{fields[0]}, fields[2:]...) {
				etcProtocols[name] = uint8(n)
			}
		}
		f.Close()
	}
	if f, err := os.Open("/etc/services"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			fields := strings.Fields(strings.SplitN(s.Text(), "#", 2)[0])
			if len(fields) < 2 {
				continue
			}
			port, proto, ok := strings.Cut(fields[1], "/")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(port, 10, 16)
			if err != nil {
				continue
			}
			for _, name := range append([]string{fields[0]}, fields[2:]...) {
				if _, dup := etcServices[name+"/"+proto]; !dup {
					etcServices[name+"/"+proto] = uint16(n)
				}
			}
		}
		f.Close()
	}
}

// parseProtocol parses the argument of -p: a number or a name (iptables
// lower-cases it first).
func parseProtocol(s string) (uint8, error) {
	s = strings.ToLower(s)
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		return uint8(n), nil
	}
	if n, ok := protocols[s]; ok {
		return n, nil
	}
	etcOnce.Do(loadEtc)
	if n, ok := etcProtocols[s]; ok {
		return n, nil
	}
	return 0, fmt.Errorf("unknown protocol %q specified", s)
}

// protoName is the name the port matches use to look up services.
func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 132:
		return "sctp"
	case 33:
		return "dccp"
	case 136:
		return "udplite"
	}
	return ""
}

// parsePort parses a port number or service name.
func parsePort(s string, proto uint8) (uint16, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		if n > 65535 {
			return 0, fmt.Errorf("port %q out of range", s)
		}
		return uint16(n), nil
	}
	etcOnce.Do(loadEtc)
	for _, p := range []string{protoName(proto), "tcp", "udp"} {
		if n, ok := etcServices[s+"/"+p]; ok && p != "" {
			return n, nil
		}
	}
	return 0, fmt.Errorf("invalid port/service %q specified", s)
}

// parsePortRange parses "N", "N:M", ":M", "N:" or ":".
func parsePortRange(s string, proto uint8) ([2]uint16, error) {
	lo, hi, isRange := strings.Cut(s, ":")
	if !isRange {
		p, err := parsePort(s, proto)
		return [2]uint16{p, p}, err
	}
	r := [2]uint16{0, 65535}
	var err error
	if lo != "" {
		if r[0], err = parsePort(lo, proto); err != nil {
			return r, err
		}
	}
	if hi != "" {
		if r[1], err = parsePort(hi, proto); err != nil {
			return r, err
		}
	}
	if r[0] > r[1] {
		return r, fmt.Errorf("invalid port range %q: start above end", s)
	}
	return r, nil
}

// icmpName is one named ICMP or ICMPv6 type (and code range).
type icmpName struct {
	name       string
	typ        uint8
	codeMin    uint8
	codeMax    uint8
	anyMatches bool // "any": every type
}

var icmpNames = []icmpName{
	{name: "any", typ: 0xff, codeMin: 0, codeMax: 0xff, anyMatches: true},
	{"echo-reply", 0, 0, 0xff, false},
	{"destination-unreachable", 3, 0, 0xff, false},
	{"network-unreachable", 3, 0, 0, false},
	{"host-unreachable", 3, 1, 1, false},
	{"protocol-unreachable", 3, 2, 2, false},
	{"port-unreachable", 3, 3, 3, false},
	{"fragmentation-needed", 3, 4, 4, false},
	{"source-route-failed", 3, 5, 5, false},
	{"network-unknown", 3, 6, 6, false},
	{"host-unknown", 3, 7, 7, false},
	{"network-prohibited", 3, 9, 9, false},
	{"host-prohibited", 3, 10, 10, false},
	{"TOS-network-unreachable", 3, 11, 11, false},
	{"TOS-host-unreachable", 3, 12, 12, false},
	{"communication-prohibited", 3, 13, 13, false},
	{"host-precedence-violation", 3, 14, 14, false},
	{"precedence-cutoff", 3, 15, 15, false},
	{"source-quench", 4, 0, 0xff, false},
	{"redirect", 5, 0, 0xff, false},
	{"network-redirect", 5, 0, 0, false},
	{"host-redirect", 5, 1, 1, false},
	{"TOS-network-redirect", 5, 2, 2, false},
	{"TOS-host-redirect", 5, 3, 3, false},
	{"echo-request", 8, 0, 0xff, false},
	{"router-advertisement", 9, 0, 0xff, false},
	{"router-solicitation", 10, 0, 0xff, false},
	{"time-exceeded", 11, 0, 0xff, false},
	{"ttl-exceeded", 11, 0, 0xff, false},
	{"ttl-zero-during-transit", 11, 0, 0, false},
	{"ttl-zero-during-reassembly", 11, 1, 1, false},
	{"parameter-problem", 12, 0, 0xff, false},
	{"ip-header-bad", 12, 0, 0, false},
	{"required-option-missing", 12, 1, 1, false},
	{"timestamp-request", 13, 0, 0xff, false},
	{"timestamp-reply", 14, 0, 0xff, false},
	{"address-mask-request", 17, 0, 0xff, false},
	{"address-mask-reply", 18, 0, 0xff, false},
}

var icmp6Names = []icmpName{
	{"destination-unreachable", 1, 0, 0xff, false},
	{"no-route", 1, 0, 0, false},
	{"communication-prohibited", 1, 1, 1, false},
	{"beyond-scope", 1, 2, 2, false},
	{"address-unreachable", 1, 3, 3, false},
	{"port-unreachable", 1, 4, 4, false},
	{"failed-policy", 1, 5, 5, false},
	{"reject-route", 1, 6, 6, false},
	{"packet-too-big", 2, 0, 0xff, false},
	{"time-exceeded", 3, 0, 0xff, false},
	{"ttl-exceeded", 3, 0, 0xff, false},
	{"ttl-zero-during-transit", 3, 0, 0, false},
	{"ttl-zero-during-reassembly", 3, 1, 1, false},
	{"parameter-problem", 4, 0, 0xff, false},
	{"bad-header", 4, 0, 0, false},
	{"unknown-header-type", 4, 1, 1, false},
	{"unknown-option", 4, 2, 2, false},
	{"echo-request", 128, 0, 0xff, false},
	{"ping", 128, 0, 0xff, false},
	{"echo-reply", 129, 0, 0xff, false},
	{"pong", 129, 0, 0xff, false},
	{"mld-listener-query", 130, 0, 0xff, false},
	{"mld-listener-report", 131, 0, 0xff, false},
	{"mld-listener-done", 132, 0, 0xff, false},
	{"mld-listener-reduction", 132, 0, 0xff, false},
	{"router-solicitation", 133, 0, 0xff, false},
	{"router-advertisement", 134, 0, 0xff, false},
	{"neighbour-solicitation", 135, 0, 0xff, false},
	{"neighbor-solicitation", 135, 0, 0xff, false},
	{"neighbour-advertisement", 136, 0, 0xff, false},
	{"neighbor-advertisement", 136, 0, 0xff, false},
	{"redirect", 137, 0, 0xff, false},
}

// parseICMPType parses --icmp-type / --icmpv6-type: a name (a unique
// case-insensitive prefix, as iptables accepts) or TYPE[/CODE[:CODE]].
func parseICMPType(s string, names []icmpName) (icmpName, error) {
	if s != "" && s[0] >= '0' && s[0] <= '9' {
		typ, code, hasCode := strings.Cut(s, "/")
		t, err := strconv.ParseUint(typ, 10, 8)
		if err != nil {
			return icmpName{}, fmt.Errorf("invalid ICMP type %q", s)
		}
		r := icmpName{name: s, typ: uint8(t), codeMin: 0, codeMax: 0xff}
		if hasCode {
			lo, hi, isRange := strings.Cut(code, ":")
			l, err := strconv.ParseUint(lo, 10, 8)
			if err != nil {
				return icmpName{}, fmt.Errorf("invalid ICMP code %q", s)
			}
			h := l
			if isRange {
				if h, err = strconv.ParseUint(hi, 10, 8); err != nil || h < l {
					return icmpName{}, fmt.Errorf("invalid ICMP code %q", s)
				}
			}
			r.codeMin, r.codeMax = uint8(l), uint8(h)
		}
		if names[0].anyMatches && r.typ == 0xff && r.codeMin == 0 && r.codeMax == 0xff {
			r.anyMatches = true
		}
		return r, nil
	}
	var found *icmpName
	for i := range names {
		n := &names[i]
		if strings.EqualFold(n.name, s) {
			return *n, nil
		}
		if len(s) <= len(n.name) && strings.EqualFold(n.name[:len(s)], s) {
			if found != nil && (found.typ != n.typ || found.codeMin != n.codeMin || found.codeMax != n.codeMax) {
				return icmpName{}, fmt.Errorf("ambiguous ICMP type name %q", s)
			}
			found = n
		}
	}
	if found == nil || s == "" {
		return icmpName{}, fmt.Errorf("invalid ICMP type %q", s)
	}
	return *found, nil
}

// tcpFlagBits are the names --tcp-flags takes.
var tcpFlagBits = map[string]uint8{
	"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20,
	"ALL": 0x3f, "NONE": 0,
}

func parseTCPFlags(s string) (uint8, error) {
	var v uint8
	for _, f := range strings.Split(s, ",") {
		b, ok := tcpFlagBits[strings.ToUpper(f)]
		if !ok {
			return 0, fmt.Errorf("unknown TCP flag %q", f)
		}
		v |= b
	}
	return v, nil
}

package iptables

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// unsupportedMatches are xtables matches that exist but are not translated,
// with the reason.
var unsupportedMatches = map[string]string{
	"hashlimit": "rate limits (stateful) are not supported yet",
	"set":       "ipset sets are not supported (no set is provided)",
	"recent":    "stateful matches are not supported",
	"connlimit": "counting connections (ct count) is not supported",
	"connbytes": "conntrack accounting (ct packets/bytes) is not supported",
	"connlabel": "conntrack labels are not supported",
	"helper":    "conntrack helpers are not supported",
	"quota":     "stateful matches are not supported",
	"statistic": "stateful matches are not supported",
	"owner":     "socket owner matches are not supported",
	"socket":    "socket matches are not supported",
	"cgroup":    "cgroup matches are not supported",
	"time":      "time matches are not supported",
	"string":    "string matches are not supported",
	"u32":       "u32 matches are not supported",
	"bpf":       "bpf matches are not supported",
	"policy":    "IPsec policy matches are not supported",
	"physdev":   "bridge port matches are not supported",
}

// otherMatches are the remaining xtables match names: valid, untranslated.
var otherMatches = strings.Fields(`ah esp ipcomp sctp dccp dscp tos ecn tcpmss realm rpfilter
	osf ipvs cpu devgroup cluster nfacct rateest hbh dst frag mh ipv6header eui64 srh
	iprange6 devgroup length2 l2tp mac2 cgroup2 multiport2`)

// knownTargets are xtables targets other than the standard verdicts:
// valid, untranslated.
var knownTargets = map[string]bool{}

func init() {
	for _, t := range strings.Fields(`LOG REJECT ULOG NFLOG NFQUEUE QUEUE MARK CONNMARK CONNSECMARK CT
		NOTRACK TCPMSS TCPOPTSTRIP TEE TRACE TOS DSCP ECN TTL HL CLASSIFY CHECKSUM SECMARK AUDIT
		IDLETIMER LED RATEEST SET SYNPROXY HMARK TPROXY SNAT DNAT MASQUERADE REDIRECT NETMAP
		CLUSTERIP NPTPROTO SNPT DNPT`) {
		knownTargets[t] = true
	}
}

// newMatch loads match module name.
func newMatch(fam nlmsg.Family, name string) (match, error) {
	switch name {
	case "tcp":
		return &portMatch{proto: 6, mname: "tcp", tcp: true}, nil
	case "udp":
		return &portMatch{proto: 17, mname: "udp"}, nil
	case "icmp":
		if fam != nlmsg.FamilyIPv4 {
			break
		}
		return &icmpMatch{mname: "icmp", proto: 1, opt: "icmp-type", names: icmpNames}, nil
	case "icmp6":
		if fam != nlmsg.FamilyIPv6 {
			break
		}
		return &icmpMatch{mname: "icmp6", proto: 58, opt: "icmpv6-type", names: icmp6Names}, nil
	case "multiport":
		return &multiportMatch{}, nil
	case "iprange":
		return &iprangeMatch{}, nil
	case "comment":
		return &commentMatch{}, nil
	case "mark":
		return &markMatch{}, nil
	case "length":
		return &lengthMatch{}, nil
	case "ttl":
		if fam != nlmsg.FamilyIPv4 {
			break
		}
		return &ttlMatch{mname: "ttl", prefix: "ttl", off: 8}, nil
	case "hl":
		if fam != nlmsg.FamilyIPv6 {
			break
		}
		return &ttlMatch{mname: "hl", prefix: "hl", off: 7}, nil
	case "pkttype":
		return &pkttypeMatch{}, nil
	case "mac":
		return &macMatch{}, nil
	case "limit":
		return &limitMatch{}, nil
	case "conntrack":
		return &conntrackMatch{fam: fam}, nil
	case "state":
		return &conntrackMatch{fam: fam, state: true}, nil
	case "connmark":
		return &connmarkMatch{}, nil
	case "rt":
		if fam != nlmsg.FamilyIPv6 {
			break
		}
		return &rtMatch{}, nil
	case "addrtype":
		return &addrtypeMatch{}, nil
	}
	if reason, ok := unsupportedMatches[name]; ok {
		return nil, unsupported("-m %s: %s", name, reason)
	}
	for _, n := range otherMatches {
		if n == name {
			return nil, unsupported("-m %s is not supported", name)
		}
	}
	return nil, fmt.Errorf("couldn't load match `%s'", name)
}

// needProto checks that the rule's protocol is one of protos, not inverted.
func needProto(r *ruleSpec, mname string, protos ...uint8) error {
	if r.hasProto && !r.invProto {
		for _, p := range protos {
			if r.proto == p {
				return nil
			}
		}
	}
	return fmt.Errorf("%s match: only valid for protocol %v", mname, protos)
}

// portMatch is -m tcp and -m udp.
type portMatch struct {
	proto      uint8
	mname      string
	tcp        bool
	spts, dpts *[2]uint16
	invS, invD bool
	flagMask   uint8
	flagCmp    uint8
	hasFlags   bool
	invFlags   bool
}

func (m *portMatch) name() string { return m.mname }

func (m *portMatch) options() []string {
	o := []string{"source-port", "sport", "destination-port", "dport"}
	if m.tcp {
		o = append(o, "tcp-flags", "syn", "tcp-option")
	}
	return o
}

func (m *portMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	switch opt {
	case "source-port", "sport", "destination-port", "dport":
		v, err := arg()
		if err != nil {
			return true, err
		}
		r, err := parsePortRange(v, m.proto)
		if err != nil {
			return true, err
		}
		if opt == "source-port" || opt == "sport" {
			if m.spts != nil {
				return true, fmt.Errorf("only one --source-port allowed")
			}
			m.spts, m.invS = &r, inv
		} else {
			if m.dpts != nil {
				return true, fmt.Errorf("only one --destination-port allowed")
			}
			m.dpts, m.invD = &r, inv
		}
	case "tcp-flags", "syn":
		if m.hasFlags {
			return true, fmt.Errorf("only one of --syn or --tcp-flags allowed")
		}
		m.hasFlags, m.invFlags = true, inv
		if opt == "syn" {
			m.flagMask, m.flagCmp = 0x17, 0x02 // FIN,SYN,RST,ACK SYN
			break
		}
		mask, err := arg()
		if err != nil {
			return true, err
		}
		cmp, err := arg()
		if err != nil {
			return true, err
		}
		if m.flagMask, err = parseTCPFlags(mask); err != nil {
			return true, err
		}
		if m.flagCmp, err = parseTCPFlags(cmp); err != nil {
			return true, err
		}
	case "tcp-option":
		if _, err := arg(); err != nil {
			return true, err
		}
		return true, unsupported("--tcp-option is not supported")
	default:
		return false, nil
	}
	return true, nil
}

func (m *portMatch) final(r *ruleSpec) error { return needProto(r, m.mname, m.proto) }

func (m *portMatch) emit(r *ruleSpec, e *exprs) error {
	if m.hasFlags {
		e.payload(baseTransport, 13, 1)
		e.mask([]byte{m.flagMask})
		e.cmp(opOf(m.invFlags), []byte{m.flagCmp})
	}
	s, d := m.spts, m.dpts
	// One four-byte compare for an exact source and destination port, as
	// iptables-nft does; only without inversion, where it means the same
	// as two compares.
	if s != nil && d != nil && s[0] == s[1] && d[0] == d[1] && s[0] != 0 && d[0] != 0 && !m.invS && !m.invD {
		e.payload(baseTransport, 0, 4)
		e.cmp(cmpEq, append(be16(s[0]), be16(d[0])...))
		return nil
	}
	if s != nil {
		emitPorts(e, 0, *s, m.invS)
	}
	if d != nil {
		emitPorts(e, 2, *d, m.invD)
	}
	return nil
}

func emitPorts(e *exprs, off uint32, r [2]uint16, inv bool) {
	e.payload(baseTransport, off, 2)
	if r[0] == r[1] {
		e.cmp(opOf(inv), be16(r[0]))
		return
	}
	if r[0] == 0 {
		// From zero: one compare, as iptables-nft does.
		op := uint32(cmpLte)
		if inv {
			op = cmpGt
		}
		e.cmp(op, be16(r[1]))
		return
	}
	op := uint32(rangeEq)
	if inv {
		op = rangeNeq
	}
	e.rng(op, be16(r[0]), be16(r[1]))
}

// icmpMatch is -m icmp (--icmp-type) and -m icmp6 (--icmpv6-type).
type icmpMatch struct {
	mname, opt string
	proto      uint8
	names      []icmpName
	typ        *icmpName
	inv        bool
}

func (m *icmpMatch) name() string      { return m.mname }
func (m *icmpMatch) options() []string { return []string{m.opt} }

func (m *icmpMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	if opt != m.opt {
		return false, nil
	}
	v, err := arg()
	if err != nil {
		return true, err
	}
	t, err := parseICMPType(v, m.names)
	if err != nil {
		return true, err
	}
	m.typ, m.inv = &t, inv
	return true, nil
}

func (m *icmpMatch) final(r *ruleSpec) error {
	if err := needProto(r, m.mname, m.proto); err != nil {
		return err
	}
	if m.typ == nil {
		return fmt.Errorf("--%s is required", m.opt)
	}
	return nil
}

func (m *icmpMatch) emit(r *ruleSpec, e *exprs) error {
	t := m.typ
	switch {
	case t.anyMatches:
		// Every type: only that the header can be read, as the xt
		// match requires.
		e.payload(baseTransport, 0, 1)
		op := uint32(rangeEq)
		if m.inv {
			op = rangeNeq
		}
		e.rng(op, []byte{0}, []byte{0xff})
	case t.codeMin == 0 && t.codeMax == 0xff:
		e.payload(baseTransport, 0, 1)
		e.cmp(opOf(m.inv), []byte{t.typ})
	case t.codeMin == t.codeMax:
		e.payload(baseTransport, 0, 2)
		e.cmp(opOf(m.inv), []byte{t.typ, t.codeMin})
	default:
		e.payload(baseTransport, 0, 2)
		op := uint32(rangeEq)
		if m.inv {
			op = rangeNeq
		}
		e.rng(op, []byte{t.typ, t.codeMin}, []byte{t.typ, t.codeMax})
	}
	return nil
}

// multiportMatch is -m multiport.
type multiportMatch struct {
	off    uint32
	set    bool
	ranges [][2]uint16
	inv    bool
	either bool
	raw    string
}

func (m *multiportMatch) name() string { return "multiport" }
func (m *multiportMatch) options() []string {
	return []string{"source-ports", "sports", "destination-ports", "dports", "ports"}
}

func (m *multiportMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	switch opt {
	case "source-ports", "sports":
		m.off = 0
	case "destination-ports", "dports":
		m.off = 2
	case "ports":
		m.either = true
	default:
		return false, nil
	}
	if m.set {
		return true, fmt.Errorf("multiport can only have one option")
	}
	v, err := arg()
	if err != nil {
		return true, err
	}
	m.set, m.inv, m.raw = true, inv, v
	slots := 0
	for _, p := range strings.Split(v, ",") {
		r, err := parsePortRange(p, 0)
		if err != nil {
			return true, err
		}
		if strings.Contains(p, ":") {
			slots += 2
		} else {
			slots++
		}
		m.ranges = append(m.ranges, r)
	}
	if slots > 15 {
		return true, fmt.Errorf("too many ports specified")
	}
	return true, nil
}

func (m *multiportMatch) final(r *ruleSpec) error {
	if !m.set {
		return fmt.Errorf("no ports specified")
	}
	if err := needProto(r, "multiport", 6, 17, 132, 33, 136); err != nil {
		return err
	}
	if m.either {
		return unsupported("-m multiport --ports (source or destination port) has no single-rule nf_tables form")
	}
	return nil
}

func (m *multiportMatch) emit(r *ruleSpec, e *exprs) error {
	rs := append([][2]uint16(nil), m.ranges...)
	sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
	var merged [][2]uint16
	for _, x := range rs {
		if n := len(merged); n > 0 && uint32(x[0]) <= uint32(merged[n-1][1])+1 {
			if x[1] > merged[n-1][1] {
				merged[n-1][1] = x[1]
			}
			continue
		}
		merged = append(merged, x)
	}
	var ranges [][2][]byte
	for _, x := range merged {
		ranges = append(ranges, [2][]byte{be16(x[0]), be16(x[1])})
	}
	e.payload(baseTransport, m.off, 2)
	e.lookupRanges(typeInetService, 2, ranges, m.inv)
	return nil
}

// iprangeMatch is -m iprange.
type iprangeMatch struct {
	src, dst       *[2][]byte
	invSrc, invDst bool
}

func (m *iprangeMatch) name() string      { return "iprange" }
func (m *iprangeMatch) options() []string { return []string{"src-range", "dst-range"} }

func (m *iprangeMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	if opt != "src-range" && opt != "dst-range" {
		return false, nil
	}
	v, err := arg()
	if err != nil {
		return true, err
	}
	lo, hi, ok := strings.Cut(v, "-")
	if !ok {
		hi = lo
	}
	a, err1 := netip.ParseAddr(lo)
	b, err2 := netip.ParseAddr(hi)
	if err1 != nil || err2 != nil || a.Zone() != "" || b.Zone() != "" || a.Is4() != b.Is4() {
		return true, fmt.Errorf("invalid address range %q", v)
	}
	rg := &[2][]byte{a.AsSlice(), b.AsSlice()}
	if opt == "src-range" {
		m.src, m.invSrc = rg, inv
	} else {
		m.dst, m.invDst = rg, inv
	}
	return true, nil
}

func (m *iprangeMatch) final(r *ruleSpec) error {
	if m.src == nil && m.dst == nil {
		return fmt.Errorf("--src-range or --dst-range is required")
	}
	want := 4
	if r.family == nlmsg.FamilyIPv6 {
		want = 16
	}
	for _, rg := range []*[2][]byte{m.src, m.dst} {
		if rg != nil && len(rg[0]) != want {
			return fmt.Errorf("address of the wrong family")
		}
	}
	return nil
}

func (m *iprangeMatch) emit(r *ruleSpec, e *exprs) error {
	srcOff, dstOff := uint32(12), uint32(16)
	if r.family == nlmsg.FamilyIPv6 {
		srcOff, dstOff = 8, 24
	}
	emit := func(off uint32, rg *[2][]byte, inv bool) {
		e.payload(baseNetwork, off, uint32(len(rg[0])))
		if bytes.Compare(rg[0], rg[1]) > 0 {
			// xt_iprange: a range whose start is above its end
			// matches nothing (everything when inverted).
			op := uint32(rangeNeq)
			if inv {
				op = rangeEq
			}
			e.rng(op, make([]byte, len(rg[0])), bytes.Repeat([]byte{0xff}, len(rg[0])))
			return
		}
		op := uint32(rangeEq)
		if inv {
			op = rangeNeq
		}
		e.rng(op, rg[0], rg[1])
	}
	if m.src != nil {
		emit(srcOff, m.src, m.invSrc)
	}
	if m.dst != nil {
		emit(dstOff, m.dst, m.invDst)
	}
	return nil
}

// commentMatch is -m comment: it becomes the rule's comment.
type commentMatch struct{ text *string }

func (m *commentMatch) name() string      { return "comment" }
func (m *commentMatch) options() []string { return []string{"comment"} }

func (m *commentMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	if opt != "comment" {
		return false, nil
	}
	if inv {
		return true, fmt.Errorf("cannot invert comment")
	}
	v, err := arg()
	if err != nil {
		return true, err
	}
	if len(v) > 255 {
		return true, fmt.Errorf("comment too long (at most 255 characters)")
	}
	m.text = &v
	return true, nil
}

func (m *commentMatch) final(r *ruleSpec) error {
	if m.text == nil {
		return fmt.Errorf("--comment is required")
	}
	if r.hasComment {
		r.comment += " " + *m.text
	} else {
		r.comment, r.hasComment = *m.text, true
	}
	return nil
}

func (m *commentMatch) emit(*ruleSpec, *exprs) error { return nil }

// markMatch is -m mark.
type markMatch struct {
	mark, mask uint32
	set, inv   bool
}

func (m *markMatch) name() string      { return "mark" }
func (m *markMatch) options() []string { return []string{"mark"} }

func (m *markMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	if opt != "mark" {
		return false, nil
	}
	v, err := arg()
	if err != nil {
		return true, err
	}
	mk, ms, _, err := parseMarkMask(v)
	if err != nil {
		return true, fmt.Errorf("bad mark value %q", v)
	}
	m.mark, m.mask, m.set, m.inv = mk, ms, true, inv
	return true, nil
}

func parseU32(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 0, 32)
	return uint32(n), err
}

func (m *markMatch) final(*ruleSpec) error {
	if !m.set {
		return fmt.Errorf("--mark is required")
	}
	return nil
}

func (m *markMatch) emit(r *ruleSpec, e *exprs) error {
	e.meta(metaMark)
	if m.mask != 0xffffffff {
		e.mask(ne32(m.mask))
	}
	e.cmp(opOf(m.inv), ne32(m.mark&m.mask))
	return nil
}

// lengthMatch is -m length: the layer 3 packet length, meta len.
type lengthMatch struct {
	lo, hi   uint16
	set, inv bool
}

func (m *lengthMatch) name() string      { return "length" }
func (m *lengthMatch) options() []string { return []string{"length"} }

func (m *lengthMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	if opt != "length" {
		return false, nil
	}
	v, err := arg()
	if err != nil {
		return true, err
	}
	lo, hi, isRange := strings.Cut(v, ":")
	l, h := uint64(0), uint64(0xffff)
	if lo != "" || !isRange {
		if l, err = strconv.ParseUint(lo, 10, 16); err != nil {
			return true, fmt.Errorf("bad length %q", v)
		}
	}
	if !isRange {
		h = l
	} else if hi != "" {
		if h, err = strconv.ParseUint(hi, 10, 16); err != nil {
			return true, fmt.Errorf("bad length %q", v)
		}
	}
	if l > h {
		return true, fmt.Errorf("bad length %q: start above end", v)
	}
	m.lo, m.hi, m.set, m.inv = uint16(l), uint16(h), true, inv
	return true, nil
}

func (m *lengthMatch) final(*ruleSpec) error {
	if !m.set {
		return fmt.Errorf("--length is required")
	}
	return nil
}

func (m *lengthMatch) emit(r *ruleSpec, e *exprs) error {
	e.meta(metaLen)
	if m.lo == m.hi {
		e.cmp(opOf(m.inv), ne32(uint32(m.lo)))
		return nil
	}
	e.hton(4)
	op := uint32(rangeEq)
	if m.inv {
		op = rangeNeq
	}
	e.rng(op, be32(uint32(m.lo)), be32(uint32(m.hi)))
	return nil
}

// ttlMatch is -m ttl (IPv4 TTL) and -m hl (IPv6 hop limit).
type ttlMatch struct {
	mname, prefix string
	off           uint32
	op            uint32
	val           uint8
	set           bool
}

func (m *ttlMatch) name() string { return m.mname }
func (m *ttlMatch) options() []string {
	return []string{m.prefix + "-eq", m.prefix + "-lt", m.prefix + "-gt"}
}

func (m *ttlMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	var op uint32
	switch strings.TrimPrefix(opt, m.prefix) {
	case "-eq":
		op = opOf(inv)
	case "-lt":
		op = cmpLt
	case "-gt":
		op = cmpGt
	default:
		return false, nil
	}
	if inv && op != cmpNeq {
		return true, fmt.Errorf("unexpected ! for --%s", opt)
	}
	if m.set {
		return true, fmt.Errorf("can't specify %s option twice", m.mname)
	}
	v, err := arg()
	if err != nil {
		return true, err
	}
	n, err := strconv.ParseUint(v, 10, 8)
	if err != nil {
		return true, fmt.Errorf("invalid %s value %q", m.mname, v)
	}
	m.op, m.val, m.set = op, uint8(n), true
	return true, nil
}

func (m *ttlMatch) final(*ruleSpec) error {
	if !m.set {
		return fmt.Errorf("one of --%s-eq, --%s-lt, --%s-gt is required", m.prefix, m.prefix, m.prefix)
	}
	return nil
}

func (m *ttlMatch) emit(r *ruleSpec, e *exprs) error {
	e.payload(baseNetwork, m.off, 1)
	e.cmp(m.op, []byte{m.val})
	return nil
}

// pkttypeMatch is -m pkttype.
type pkttypeMatch struct {
	typ      uint8
	set, inv bool
}

var pktTypes = map[string]uint8{"unicast": 0, "host": 0, "broadcast": 1, "multicast": 2}

func (m *pkttypeMatch) name() string      { return "pkttype" }
func (m *pkttypeMatch) options() []string { return []string{"pkt-type"} }

func (m *pkttypeMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	if opt != "pkt-type" {
		return false, nil
	}
	v, err := arg()
	if err != nil {
		return true, err
	}
	t, ok := pktTypes[strings.ToLower(v)]
	if !ok {
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil {
			return true, fmt.Errorf("bad packet type %q", v)
		}
		t = uint8(n)
	}
	m.typ, m.set, m.inv = t, true, inv
	return true, nil
}

func (m *pkttypeMatch) final(*ruleSpec) error {
	if !m.set {
		return fmt.Errorf("--pkt-type is required")
	}
	return nil
}

func (m *pkttypeMatch) emit(r *ruleSpec, e *exprs) error {
	e.meta(metaPktType)
	e.cmp(opOf(m.inv), []byte{m.typ})
	return nil
}

// macMatch is -m mac --mac-source: ether saddr, behind nft's check that the
// input device is an Ethernet device.
type macMatch struct {
	mac      net.HardwareAddr
	set, inv bool
}

func (m *macMatch) name() string      { return "mac" }
func (m *macMatch) options() []string { return []string{"mac-source"} }

func (m *macMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	if opt != "mac-source" {
		return false, nil
	}
	v, err := arg()
	if err != nil {
		return true, err
	}
	mac, err := net.ParseMAC(v)
	if err != nil || len(mac) != 6 {
		return true, fmt.Errorf("bad mac address %q", v)
	}
	m.mac, m.set, m.inv = mac, true, inv
	return true, nil
}

func (m *macMatch) final(*ruleSpec) error {
	if !m.set {
		return fmt.Errorf("--mac-source is required")
	}
	return nil
}

func (m *macMatch) emit(r *ruleSpec, e *exprs) error {
	e.meta(metaIifType)
	e.cmp(cmpEq, binary.NativeEndian.AppendUint16(nil, 1)) // ARPHRD_ETHER
	e.payload(baseLL, 6, 6)
	e.cmp(opOf(m.inv), append([]byte(nil), m.mac...))
	return nil
}

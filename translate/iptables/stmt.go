package iptables

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/mdlayher/netlink"

	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// The limit match and the LOG, REJECT and MARK targets become the native
// nf_tables expressions with the same effect: -m limit the "limit"
// expression exactly as iptables-nft 1.8.9 emits it; LOG, REJECT and MARK,
// which iptables-nft keeps as xt targets, the "log", "reject" and "meta
// set" expressions nft would use for the same statement (iptables-translate
// prints them), which the translator lifts like any nft rule.

// xtLimitScale is XT_LIMIT_SCALE: xt_rateinfo.avg is in 1/10000 s.
const xtLimitScale = 10000

// limitMatch is -m limit.
type limitMatch struct {
	avg, burst uint32
}

func (m *limitMatch) name() string      { return "limit" }
func (m *limitMatch) options() []string { return []string{"limit", "limit-burst"} }

func (m *limitMatch) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	if opt != "limit" && opt != "limit-burst" {
		return false, nil
	}
	if inv {
		return true, fmt.Errorf("--%s cannot be inverted", opt)
	}
	v, err := arg()
	if err != nil {
		return true, err
	}
	if opt == "limit-burst" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n > 10000 {
			return true, fmt.Errorf("bad --limit-burst `%s'", v)
		}
		m.burst = uint32(n)
		return true, nil
	}
	// libxt_limit's parse_rate: N[/second|/minute|/hour|/day] (any prefix
	// of the unit).
	num, unit, hasUnit := strings.Cut(v, "/")
	r, err := strconv.ParseUint(num, 10, 32)
	if err != nil || r == 0 {
		return true, fmt.Errorf("bad rate \"%s\"", v)
	}
	mult := uint64(1)
	if hasUnit {
		switch {
		case unit != "" && strings.HasPrefix("second", unit):
			mult = 1
		case unit != "" && strings.HasPrefix("minute", unit):
			mult = 60
		case unit != "" && strings.HasPrefix("hour", unit):
			mult = 3600
		case unit != "" && strings.HasPrefix("day", unit):
			mult = 86400
		default:
			return true, fmt.Errorf("bad rate \"%s\"", v)
		}
	}
	avg := xtLimitScale * mult / r
	if avg == 0 || avg > 0xffffffff {
		return true, fmt.Errorf("rate too fast \"%s\"", v)
	}
	m.avg = uint32(avg)
	return true, nil
}

func (m *limitMatch) final(*ruleSpec) error {
	if m.avg == 0 {
		m.avg = xtLimitScale * 3600 / 3 // 3/hour
	}
	if m.burst == 0 {
		m.burst = 5
	}
	return nil
}

// emit converts the xt rate back to a rate per unit as iptables-nft's
// add_nft_limit does: the largest unit (day, hour, minute, second) the
// average still divides well.
func (m *limitMatch) emit(r *ruleSpec, e *exprs) error {
	mult := []uint32{xtLimitScale * 86400, xtLimitScale * 3600, xtLimitScale * 60, xtLimitScale}
	i := 1
	for ; i < len(mult); i++ {
		if m.avg > mult[i] || mult[i]/m.avg < mult[i]%m.avg {
			break
		}
	}
	rate, unit := uint64(mult[i-1]/m.avg), uint64(mult[i-1]/xtLimitScale)
	e.add(&nlmsg.Opaque{Name: "limit", Data: exprData(
		attr64(1, rate), attr64(2, unit), attr32(3, m.burst), attr32(4, 0), attr32(5, 0),
	)})
	return nil
}

type nlattr struct {
	typ  uint16
	data []byte
}

func attr64(t uint16, v uint64) nlattr { return nlattr{t, binary.BigEndian.AppendUint64(nil, v)} }
func attr32(t uint16, v uint32) nlattr { return nlattr{t, binary.BigEndian.AppendUint32(nil, v)} }

func exprData(attrs ...nlattr) []byte {
	ae := netlink.NewAttributeEncoder()
	for _, a := range attrs {
		ae.Bytes(a.typ, a.data)
	}
	b, err := ae.Encode()
	if err != nil {
		panic(err) // only fixed-size attributes are encoded
	}
	return b
}

// targetModule is a target with options (LOG, REJECT, MARK): like a match,
// it takes options and emits expressions, after the counter.
type targetModule interface {
	match
}

// newTarget loads target t's module; nil for the standard targets and
// user chains.
func newTarget(fam nlmsg.Family, t string) (targetModule, error) {
	switch t {
	case "LOG":
		return &logTarget{level: 4}, nil
	case "REJECT":
		return &rejectTarget{family: fam}, nil
	case "MARK":
		return &markTarget{}, nil
	}
	return nil, nil
}

// logTarget is -j LOG.
type logTarget struct {
	prefix    string
	hasPrefix bool
	level     uint32
	flags     uint32
}

var logLevels = map[string]uint32{"emerg": 0, "panic": 0, "alert": 1, "crit": 2, "error": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}

var logFlags = map[string]uint32{"log-tcp-sequence": 0x01, "log-tcp-options": 0x02, "log-ip-options": 0x04, "log-uid": 0x08, "log-macdecode": 0x20}

func (t *logTarget) name() string { return "LOG" }
func (t *logTarget) options() []string {
	return []string{"log-prefix", "log-level", "log-tcp-sequence", "log-tcp-options", "log-ip-options", "log-uid", "log-macdecode"}
}

func (t *logTarget) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	if inv {
		return true, fmt.Errorf("unexpected ! before --%s", opt)
	}
	switch opt {
	case "log-prefix":
		v, err := arg()
		if err != nil {
			return true, err
		}
		if len(v) > 29 {
			//lint:ignore ST1005 this is iptables' own message, word for word
			return true, fmt.Errorf("Maximum prefix length 29 for --log-prefix")
		}
		if strings.ContainsRune(v, '\n') {
			return true, fmt.Errorf("newlines not allowed in --log-prefix")
		}
		t.prefix, t.hasPrefix = v, true
	case "log-level":
		v, err := arg()
		if err != nil {
			return true, err
		}
		l, ok := logLevels[v]
		if !ok {
			n, err := strconv.ParseUint(v, 10, 8)
			if err != nil || n > 7 {
				return true, fmt.Errorf("log level `%s' unknown", v)
			}
			l = uint32(n)
		}
		t.level = l
	default:
		f, ok := logFlags[opt]
		if !ok {
			return false, nil
		}
		t.flags |= f
	}
	return true, nil
}

func (t *logTarget) final(*ruleSpec) error { return nil }

// emit gives the "log" expression of `log [prefix P] level L [flags …]`
// (xt_LOG and nft_log both call nf_log_packet with an NF_LOG_TYPE_LOG
// loginfo of this level, flags and prefix).
func (t *logTarget) emit(r *ruleSpec, e *exprs) error {
	var attrs []nlattr
	if t.hasPrefix {
		attrs = append(attrs, nlattr{2, append([]byte(t.prefix), 0)})
	}
	attrs = append(attrs, attr32(5, t.level))
	if t.flags != 0 {
		attrs = append(attrs, attr32(6, t.flags))
	}
	e.add(&nlmsg.Opaque{Name: "log", Data: exprData(attrs...)})
	return nil
}

// rejectTarget is -j REJECT.
type rejectTarget struct {
	family nlmsg.Family
	typ    uint32
	code   uint8
	set    bool
}

var rejectWith4 = map[string]uint8{
	"icmp-net-unreachable": 0, "net-unreach": 0, "icmp-host-unreachable": 1, "host-unreach": 1,
	"icmp-proto-unreachable": 2, "proto-unreach": 2, "icmp-port-unreachable": 3, "port-unreach": 3,
	"icmp-net-prohibited": 9, "net-prohib": 9, "icmp-host-prohibited": 10, "host-prohib": 10,
	"icmp-admin-prohibited": 13, "admin-prohib": 13,
}

var rejectWith6 = map[string]uint8{
	"icmp6-no-route": 0, "no-route": 0, "icmp6-adm-prohibited": 1, "adm-prohibited": 1,
	"icmp6-addr-unreachable": 3, "addr-unreach": 3, "icmp6-port-unreachable": 4, "port-unreach": 4,
	"icmp6-policy-fail": 5, "policy-fail": 5, "icmp6-reject-route": 6, "reject-route": 6,
}

func (t *rejectTarget) name() string      { return "REJECT" }
func (t *rejectTarget) options() []string { return []string{"reject-with"} }

func (t *rejectTarget) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	if opt != "reject-with" {
		return false, nil
	}
	v, err := arg()
	if err != nil {
		return true, err
	}
	if v == "tcp-reset" || v == "tcp-rst" {
		t.typ, t.code, t.set = 1, 0, true
		return true, nil
	}
	names := rejectWith4
	if t.family == nlmsg.FamilyIPv6 {
		names = rejectWith6
	}
	c, ok := names[v]
	if !ok {
		return true, fmt.Errorf("unknown reject type \"%s\"", v)
	}
	t.typ, t.code, t.set = 0, c, true
	return true, nil
}

func (t *rejectTarget) final(r *ruleSpec) error {
	if !t.set {
		t.code = 3
		if t.family == nlmsg.FamilyIPv6 {
			t.code = 4
		}
	}
	if t.typ == 1 && !(r.hasProto && !r.invProto && r.proto == 6) {
		return fmt.Errorf("TCP_RESET invalid for non-tcp")
	}
	return nil
}

func (t *rejectTarget) emit(r *ruleSpec, e *exprs) error {
	attrs := []nlattr{attr32(1, t.typ)}
	if t.typ == 0 {
		attrs = append(attrs, nlattr{2, []byte{t.code}})
	}
	e.add(&nlmsg.Opaque{Name: "reject", Data: exprData(attrs...)})
	return nil
}

// markTarget is -j MARK. Only setting the whole mark to a constant has an
// exact nf_tables form without reading the mark first (meta mark set C).
type markTarget struct {
	mark, mask uint32
	op         string
}

func (t *markTarget) name() string { return "MARK" }
func (t *markTarget) options() []string {
	return []string{"set-mark", "set-xmark", "and-mark", "or-mark", "xor-mark"}
}

func (t *markTarget) option(opt string, inv bool, arg func() (string, error)) (bool, error) {
	switch opt {
	case "set-mark", "set-xmark", "and-mark", "or-mark", "xor-mark":
	default:
		return false, nil
	}
	if t.op != "" {
		return true, fmt.Errorf("MARK target: Can't specify --%s twice", opt)
	}
	v, err := arg()
	if err != nil {
		return true, err
	}
	mk, ms, hasMask, err := parseMarkMask(v)
	if err != nil || hasMask && opt != "set-mark" && opt != "set-xmark" {
		return true, fmt.Errorf("bad MARK value %q", v)
	}
	if opt == "set-mark" {
		ms |= mk // libxt_MARK: --set-mark v/m is --set-xmark v/(m|v)
	}
	t.op, t.mark, t.mask = opt, mk, ms
	return true, nil
}

func (t *markTarget) final(*ruleSpec) error {
	if t.op == "" {
		return fmt.Errorf("MARK target: Parameter --set/and/or/xor-mark is required")
	}
	return nil
}

func (t *markTarget) emit(r *ruleSpec, e *exprs) error {
	if (t.op != "set-mark" && t.op != "set-xmark") || t.mask != 0xffffffff {
		return unsupported("-j MARK --%s: changing part of the mark needs the mark read first (meta mark set mark and … xor …), which is not supported; only setting the whole mark is", t.op)
	}
	e.add(&nlmsg.Immediate{DReg: reg1, Data: ne32(t.mark)}, &nlmsg.Meta{Key: metaMark, SReg: reg1})
	return nil
}

// parseMarkMask parses iptables' "value[/mask]" mark syntax; the mask is
// all ones when absent, and hasMask says whether one was given.
func parseMarkMask(v string) (mark, mask uint32, hasMask bool, err error) {
	val, m, hasMask := strings.Cut(v, "/")
	if mark, err = parseU32(val); err != nil {
		return 0, 0, false, err
	}
	mask = 0xffffffff
	if hasMask {
		if mask, err = parseU32(m); err != nil {
			return 0, 0, false, err
		}
	}
	return mark, mask, hasMask, nil
}

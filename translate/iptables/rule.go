package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// ErrUnsupported marks valid iptables input that is not translated (yet):
// a table other than filter, a match or target without an exact
// translation.
var ErrUnsupported = errors.New("unsupported")

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}

// ifNameSize is IFNAMSIZ.
const ifNameSize = 16

// verdictKind is what a rule does when it matches.
type verdictKind int

const (
	targetNone verdictKind = iota
	targetAccept
	targetDrop
	targetReturn
	targetJump
	targetGoto
)

// addr is one -s/-d operand: an address and its mask.
type addr struct {
	ip, mask []byte
}

// ruleSpec is a parsed rule: iptables' fixed header fields, the matches in
// the order given, and the target.
type ruleSpec struct {
	family nlmsg.Family

	inIface, outIface  string
	invIn, invOut      bool
	proto              uint8
	hasProto, invProto bool
	src, dst           []addr
	invSrc, invDst     bool
	hasSrc, hasDst     bool
	frag, invFrag      bool
	matches            []match
	target             verdictKind
	chain              string // jump/goto target
	// targetMod is the module of a target with options (LOG, REJECT,
	// MARK); its expressions follow the counter.
	targetMod  targetModule
	comment    string
	hasComment bool
}

// match is one loaded match module (-m NAME, or the protocol's implicit
// match).
type match interface {
	name() string
	// option handles --opt (inv: preceded by "!"); arg fetches its
	// argument. ok is false when the module has no such option.
	option(opt string, inv bool, arg func() (string, error)) (ok bool, err error)
	// options lists the long option names, for abbreviations.
	options() []string
	// final checks the module's options once the whole rule is read.
	final(r *ruleSpec) error
	// emit appends the module's expressions.
	emit(r *ruleSpec, e *exprs) error
}

// mainOptions are iptables' own long options and their short forms.
var mainOptions = map[string]string{
	"source": "s", "src": "s", "destination": "d", "dst": "d", "in-interface": "i",
	"out-interface": "o", "protocol": "p", "jump": "j", "goto": "g", "match": "m",
	"fragment": "f", "set-counters": "c", "ipv4": "4", "ipv6": "6", "verbose": "v",
}

// parseRule parses the rule specification args for chain.
func parseRule(fam nlmsg.Family, chain string, args []string) (*ruleSpec, error) {
	r := &ruleSpec{family: fam}
	var (
		inv    bool
		seen   = map[string]bool{}
		target string
	)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "!" {
			if inv {
				return nil, fmt.Errorf("multiple consecutive ! not allowed")
			}
			inv = true
			continue
		}
		if len(a) < 2 || a[0] != '-' {
			return nil, fmt.Errorf("bad argument `%s'", a)
		}
		arg := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("option %q requires an argument", a)
			}
			i++
			return args[i], nil
		}
		var short string
		var long string
		switch {
		case strings.HasPrefix(a, "--"):
			long = a[2:]
			if name, val, ok := strings.Cut(long, "="); ok {
				long = name
				v := val
				arg = func() (string, error) { return v, nil }
			}
			short = resolveMain(long)
		case len(a) == 2:
			short = a[1:]
		default:
			// -sADDR style: short option with its argument attached.
			short = a[1:2]
			v := a[2:]
			arg = func() (string, error) { return v, nil }
		}
		if short != "" && !(short == "m" || short == "c") {
			if seen[short] {
				return nil, fmt.Errorf("multiple -%s flags not allowed", short)
			}
			seen[short] = true
		}
		var err error
		switch short {
		case "s", "d":
			v, e := arg()
			if e != nil {
				return nil, e
			}
			var list []addr
			list, err = parseAddrs(fam, v)
			if short == "s" {
				r.src, r.invSrc, r.hasSrc = list, inv, true
			} else {
				r.dst, r.invDst, r.hasDst = list, inv, true
			}
		case "i", "o":
			v, e := arg()
			if e != nil {
				return nil, e
			}
			if len(v) >= ifNameSize {
				return nil, fmt.Errorf("interface name `%s' must be shorter than IFNAMSIZ (%d)", v, ifNameSize)
			}
			if v == "" {
				return nil, fmt.Errorf("empty interface name")
			}
			if short == "i" {
				r.inIface, r.invIn = v, inv
			} else {
				r.outIface, r.invOut = v, inv
			}
		case "p":
			v, e := arg()
			if e != nil {
				return nil, e
			}
			r.proto, err = parseProtocol(v)
			r.hasProto, r.invProto = true, inv
			if err == nil && r.proto == 0 && inv {
				err = fmt.Errorf("rule would never match protocol")
			}
		case "f":
			if fam != nlmsg.FamilyIPv4 {
				return nil, fmt.Errorf("-f is not supported for IPv6")
			}
			r.frag, r.invFrag = true, inv
		case "j", "g":
			if inv {
				return nil, fmt.Errorf("cannot have ! before -%s", short)
			}
			if target != "" {
				return nil, fmt.Errorf("multiple -j/-g flags not allowed")
			}
			if target, err = arg(); err != nil {
				return nil, err
			}
			if target == "" {
				return nil, fmt.Errorf("empty target name")
			}
			if short == "g" {
				r.target, r.chain = targetGoto, target
			} else {
				err = r.setTarget(target)
			}
		case "m":
			if inv {
				return nil, fmt.Errorf("unexpected ! flag before --match")
			}
			v, e := arg()
			if e != nil {
				return nil, e
			}
			var m match
			if m, err = newMatch(fam, v); err == nil {
				r.matches = append(r.matches, m)
			}
		case "c":
			// -c PKTS BYTES, or -c PKTS,BYTES.
			var v string
			if v, err = arg(); err == nil {
				if p, b, ok := strings.Cut(v, ","); ok {
					if !isDigits(p) || !isDigits(b) {
						err = fmt.Errorf("bad counters %q", v)
					}
				} else if !isDigits(v) {
					err = fmt.Errorf("bad counters %q", v)
				} else if v, err = arg(); err == nil && !isDigits(v) {
					err = fmt.Errorf("bad counters %q", v)
				}
			}
		case "4":
			if fam != nlmsg.FamilyIPv4 {
				return nil, errIgnoredLine
			}
		case "6":
			if fam != nlmsg.FamilyIPv6 {
				return nil, errIgnoredLine
			}
		case "v":
		case "":
			err = r.moduleOption(long, inv, arg)
		default:
			return nil, fmt.Errorf("unknown option %q", a)
		}
		if err != nil {
			if short == "m" {
				return nil, err
			}
			return nil, fmt.Errorf("%s: %w", a, err)
		}
		inv = false
	}
	if inv {
		return nil, fmt.Errorf("! without an option")
	}
	for _, m := range r.matches {
		if err := m.final(r); err != nil {
			return nil, fmt.Errorf("-m %s: %w", m.name(), err)
		}
	}
	if r.targetMod != nil {
		if err := r.targetMod.final(r); err != nil {
			return nil, fmt.Errorf("-j %s: %w", r.targetMod.name(), err)
		}
	}
	return r, nil
}

// errIgnoredLine reports a rule that -4/-6 restricts to the other family:
// iptables-restore skips it.
var errIgnoredLine = errors.New("rule for the other family")

// resolveMain maps a long option (or an unambiguous prefix of one) to
// iptables' short option, "" when it is not one of the main options.
func resolveMain(long string) string {
	if s, ok := mainOptions[long]; ok {
		return s
	}
	return ""
}

// setTarget handles -j.
func (r *ruleSpec) setTarget(t string) error {
	m, err := newTarget(r.family, t)
	if err != nil || m != nil {
		r.targetMod = m
		return err
	}
	switch t {
	case "ACCEPT":
		r.target = targetAccept
	case "DROP":
		r.target = targetDrop
	case "RETURN":
		r.target = targetReturn
	default:
		if knownTargets[t] {
			return unsupported("target %s is not supported yet", t)
		}
		r.target, r.chain = targetJump, t
	}
	return nil
}

// moduleOption hands --long to the loaded match that has it, loading the
// protocol's own match implicitly (as iptables does for -p tcp --dport).
func (r *ruleSpec) moduleOption(long string, inv bool, arg func() (string, error)) error {
	try := func() (bool, error) {
		mods := r.matches
		if r.targetMod != nil {
			mods = append(append([]match(nil), mods...), r.targetMod)
		}
		for i := len(mods) - 1; i >= 0; i-- {
			m := mods[i]
			name, err := resolveOption(m, long)
			if err != nil {
				return true, err
			}
			if name == "" {
				continue
			}
			ok, err := m.option(name, inv, arg)
			if ok || err != nil {
				return true, err
			}
		}
		return false, nil
	}
	if ok, err := try(); ok {
		return err
	}
	if r.hasProto && !r.invProto {
		if name := implicitMatch(r.family, r.proto); name != "" {
			loaded := false
			for _, m := range r.matches {
				if m.name() == name {
					loaded = true
				}
			}
			if !loaded {
				m, err := newMatch(r.family, name)
				if err != nil {
					return err
				}
				r.matches = append(r.matches, m)
				if ok, err := try(); ok {
					return err
				}
			}
		}
	}
	return fmt.Errorf("unknown option \"--%s\"", long)
}

// resolveOption finds the option of m that long names, exactly or as an
// unambiguous prefix (getopt_long's rule).
func resolveOption(m match, long string) (string, error) {
	var found []string
	for _, o := range m.options() {
		if o == long {
			return o, nil
		}
		if strings.HasPrefix(o, long) {
			found = append(found, o)
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("option \"--%s\" is ambiguous", long)
}

func implicitMatch(fam nlmsg.Family, proto uint8) string {
	switch proto {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		if fam == nlmsg.FamilyIPv4 {
			return "icmp"
		}
	case 58:
		if fam == nlmsg.FamilyIPv6 {
			return "icmp6"
		}
	}
	return ""
}

// parseAddrs parses a comma-separated list of ADDR[/MASK]; the address is
// masked, as iptables stores it.
func parseAddrs(fam nlmsg.Family, s string) ([]addr, error) {
	var out []addr
	for _, part := range strings.Split(s, ",") {
		a, err := parseAddr(fam, part)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func parseAddr(fam nlmsg.Family, s string) (addr, error) {
	size := 4
	if fam == nlmsg.FamilyIPv6 {
		size = 16
	}
	host, maskStr, hasMask := strings.Cut(s, "/")
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" || (size == 4) != ip.Is4() {
		if fam == nlmsg.FamilyIPv6 && err == nil && ip.Is4In6() {
			return addr{}, fmt.Errorf("host/network `%s' not found", host)
		}
		return addr{}, fmt.Errorf("host/network `%s' not found", host)
	}
	mask := bytes.Repeat([]byte{0xff}, size)
	if hasMask {
		if n, err := strconv.Atoi(maskStr); err == nil && maskStr != "" && maskStr[0] != '+' && maskStr[0] != '-' {
			if n < 0 || n > size*8 {
				return addr{}, fmt.Errorf("invalid mask `%s' specified", maskStr)
			}
			mask = make([]byte, size)
			for i := 0; i < n; i++ {
				mask[i/8] |= 0x80 >> (i % 8)
			}
		} else if m, err := netip.ParseAddr(maskStr); err == nil && m.BitLen() == size*8 && m.Zone() == "" {
			mask = m.AsSlice()
		} else {
			return addr{}, fmt.Errorf("invalid mask `%s' specified", maskStr)
		}
	}
	b := ip.AsSlice()
	for i := range b {
		b[i] &= mask[i]
	}
	return addr{ip: b, mask: mask}, nil
}

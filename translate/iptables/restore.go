// Package iptables reads iptables-restore and ip6tables-restore input and
// produces the nf_tables objects iptables-nft would create for it: table
// "filter" in family ip or ip6, the base chains INPUT, FORWARD and OUTPUT at
// their hooks with priority 0 (filter) and their policies, user chains, and
// rules made of native payload, meta, cmp, bitwise, range and lookup
// expressions, a counter and an immediate verdict. The result goes through
// the same lifter and code generator as an nft ruleset.
//
// Where iptables-nft keeps an xtables match (multiport, iprange, icmp,
// length, ttl/hl, pkttype, mac, conntrack, state), the rule gets the native
// expressions nft itself emits for the same test (iptables-translate's
// translation, with the xt match's exact semantics; see conntrack.go for
// the conntrack options refused). Comments go into the rule's user data, as
// nft stores them. Matches and targets without an exact translation
// (limit, set, addrtype, LOG, REJECT, …) and tables other
// than filter are refused with an error wrapping ErrUnsupported that names
// the line and the option.
package iptables

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// Error is a problem at one line of the input.
type Error struct {
	Line int
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Options configure Restore.
type Options struct {
	// Family is nlmsg.FamilyIPv4 (iptables-restore) or nlmsg.FamilyIPv6
	// (ip6tables-restore).
	Family nlmsg.Family
	// Noflush keeps what the tables hold already (--noflush); otherwise
	// every table the input names is replaced.
	Noflush bool
	// Current is the ruleset in place; its objects are kept, except the
	// tables the input replaces. Nil means an empty ruleset.
	Current *nlmsg.Ruleset
}

// TableName is the only table translated.
const TableName = "filter"

// Builtin chains of the filter table: hook numbers (NF_INET_*).
var builtinHooks = map[string]uint32{"INPUT": 1, "FORWARD": 2, "OUTPUT": 3}

// builtinOrder is the order iptables-nft lists the base chains in.
var builtinOrder = []string{"INPUT", "FORWARD", "OUTPUT"}

// chain is a chain of the table being built.
type chain struct {
	name    string
	builtin bool
	policy  uint32
	rules   []*builtRule
}

// builtRule is one rule, ready to be written out.
type builtRule struct {
	line     int
	exprs    []nlmsg.Expr
	sets     []*anonSet
	userdata []byte
	// target is the chain a jump or goto names ("" for none).
	target string
}

// table is the filter table being built.
type table struct {
	chains []*chain
	// kept are the current table's sets and elements (--noflush).
	keptSets  []*nlmsg.Set
	keptElems []*nlmsg.SetElems
}

func (t *table) chain(name string) *chain {
	for _, c := range t.chains {
		if c.name == name {
			return c
		}
	}
	return nil
}

// builtinChain returns builtin chain name, creating it (policy accept) as
// iptables-nft does on first use.
func (t *table) builtinChain(name string) *chain {
	if c := t.chain(name); c != nil {
		return c
	}
	c := &chain{name: name, builtin: true, policy: uint32(nlmsg.VerdictAccept)}
	t.chains = append(t.chains, c)
	return c
}

// lookupChain finds a chain a command names: an existing one, or a
// builtin chain, created on demand.
func (t *table) lookupChain(name string) (*chain, error) {
	if _, ok := builtinHooks[name]; ok {
		return t.builtinChain(name), nil
	}
	if c := t.chain(name); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("chain '%s' does not exist", name)
}

// Restore reads iptables-restore input from r and returns the ruleset that
// results: opts.Current with the tables the input names replaced (or, with
// Noflush, changed). Nothing is returned on any error; an error at a line
// is an *Error.
func Restore(r io.Reader, opts Options) (*nlmsg.Ruleset, error) {
	if opts.Family != nlmsg.FamilyIPv4 && opts.Family != nlmsg.FamilyIPv6 {
		return nil, fmt.Errorf("family %d: want ip or ip6", opts.Family)
	}
	p := &parser{opts: opts}
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			p.line++
			if perr := p.parseLine(strings.TrimRight(line, "\r\n")); perr != nil {
				return nil, &Error{Line: p.line, Err: perr}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if p.cur != nil {
		return nil, &Error{Line: p.line + 1, Err: errors.New("COMMIT expected")}
	}
	return p.output(), nil
}

type parser struct {
	opts Options
	line int
	// cur is the table between *filter and COMMIT.
	cur *table
	// done is the committed filter table, nil when the input names none.
	done *table
	// curLine is the line of the current *table.
	curLine int
}

func (p *parser) parseLine(line string) error {
	trimmed := strings.TrimSpace(line)
	if trimmed == "" || trimmed[0] == '#' {
		return nil
	}
	switch {
	case trimmed[0] == '*':
		if p.cur != nil {
			return fmt.Errorf("table `%s' started before COMMIT of the previous one", trimmed[1:])
		}
		name := strings.TrimSpace(trimmed[1:])
		if name != TableName {
			switch name {
			case "nat", "mangle", "raw", "security":
				return unsupported("table %s: only the filter table is supported", name)
			}
			return fmt.Errorf("table '%s' does not exist", name)
		}
		p.cur, p.curLine = p.startTable(), p.line
		return nil
	case trimmed == "COMMIT":
		if p.cur == nil {
			return errors.New("COMMIT without a table")
		}
		if err := p.checkTable(p.cur); err != nil {
			return err
		}
		p.done, p.cur = p.cur, nil
		return nil
	}
	if p.cur == nil {
		return errors.New("no table specified")
	}
	if trimmed[0] == ':' {
		return p.chainLine(trimmed[1:])
	}
	rest := trimmed
	if trimmed[0] == '[' {
		// [pkts:bytes] before a rule: counters, which start at zero here.
		end := strings.IndexByte(trimmed, ']')
		if end < 0 || !validCounters(trimmed[1:end]) {
			return errors.New("bad counters")
		}
		rest = trimmed[end+1:]
	}
	args, err := splitLine(rest)
	if err != nil {
		return err
	}
	return p.command(args)
}

func validCounters(s string) bool {
	a, b, ok := strings.Cut(s, ":")
	return ok && isDigits(a) && isDigits(b)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// startTable begins the filter table: empty, or (--noflush) what is in
// place.
func (p *parser) startTable() *table {
	if p.done != nil && p.opts.Noflush {
		return p.done
	}
	t := &table{}
	if !p.opts.Noflush || p.opts.Current == nil {
		return t
	}
	cur := p.opts.Current
	for _, c := range cur.Chains {
		if c.Family != p.opts.Family || c.Table != TableName {
			continue
		}
		nc := &chain{name: c.Name, policy: uint32(nlmsg.VerdictAccept)}
		if c.Hook != nil {
			nc.builtin = true
			if c.Policy != nil {
				nc.policy = *c.Policy
			}
		}
		t.chains = append(t.chains, nc)
	}
	for _, r := range cur.Rules {
		if r.Family != p.opts.Family || r.Table != TableName {
			continue
		}
		if c := t.chain(r.Chain); c != nil {
			br := &builtRule{exprs: r.Exprs, userdata: r.Userdata}
			for _, e := range r.Exprs {
				if im, ok := e.(*nlmsg.Immediate); ok && im.Verdict != nil && im.Verdict.Chain != "" {
					br.target = im.Verdict.Chain
				}
			}
			c.rules = append(c.rules, br)
		}
	}
	for _, s := range cur.Sets {
		if s.Family == p.opts.Family && s.Table == TableName {
			t.keptSets = append(t.keptSets, s)
		}
	}
	for _, e := range cur.Elems {
		if e.Family == p.opts.Family && e.Table == TableName {
			t.keptElems = append(t.keptElems, e)
		}
	}
	return t
}

// chainLine handles ":NAME POLICY [pkts:bytes]".
func (p *parser) chainLine(s string) error {
	f := strings.Fields(s)
	if len(f) < 2 || len(f) > 3 {
		return errors.New("bad chain line")
	}
	name, policy := f[0], f[1]
	if len(f) == 3 && (!strings.HasPrefix(f[2], "[") || !strings.HasSuffix(f[2], "]") || !validCounters(f[2][1:len(f[2])-1])) {
		return errors.New("bad counters")
	}
	t := p.cur
	if _, ok := builtinHooks[name]; ok {
		c := t.builtinChain(name)
		switch policy {
		case "ACCEPT":
			c.policy = uint32(nlmsg.VerdictAccept)
		case "DROP":
			c.policy = uint32(nlmsg.VerdictDrop)
		default:
			return fmt.Errorf("invalid policy `%s' for chain %s", policy, name)
		}
		return nil
	}
	if policy != "-" {
		return fmt.Errorf("can't set policy `%s' on user-defined chain `%s'", policy, name)
	}
	if err := validChainName(name); err != nil {
		return err
	}
	if c := t.chain(name); c != nil {
		// With --noflush an existing chain is flushed.
		c.rules = nil
		return nil
	}
	t.chains = append(t.chains, &chain{name: name})
	return nil
}

// maxChainName is XT_EXTENSION_MAXNAMELEN - 1.
const maxChainName = 28

func validChainName(name string) error {
	switch {
	case len(name) > maxChainName:
		return fmt.Errorf("chain name `%s' too long (must be under %d chars)", name, maxChainName+1)
	case name == "" || name[0] == '-' || name[0] == '!':
		return fmt.Errorf("invalid chain name `%s'", name)
	case strings.ContainsAny(name, " \t"):
		return fmt.Errorf("invalid chain name `%s'", name)
	case name == "ACCEPT" || name == "DROP" || name == "RETURN" || name == "QUEUE" || knownTargets[name]:
		return fmt.Errorf("chain name `%s' is a target name", name)
	}
	return nil
}

// command handles one -A/-I/-N/-X/-F/-P line.
func (p *parser) command(args []string) error {
	if len(args) == 0 {
		return nil
	}
	t := p.cur
	cmd := args[0]
	switch cmd {
	case "--append":
		cmd = "-A"
	case "--insert":
		cmd = "-I"
	case "--new-chain", "--new":
		cmd = "-N"
	case "--delete-chain":
		cmd = "-X"
	case "--flush":
		cmd = "-F"
	case "--policy":
		cmd = "-P"
	}
	rest := args[1:]
	switch cmd {
	case "-A", "-I":
		if len(rest) == 0 {
			return fmt.Errorf("%s requires a chain", cmd)
		}
		c, err := t.lookupChain(rest[0])
		if err != nil {
			return err
		}
		pos := len(c.rules)
		rest = rest[1:]
		if cmd == "-I" {
			pos = 0
			if len(rest) > 0 && isDigits(rest[0]) {
				var n int
				fmt.Sscan(rest[0], &n)
				if n < 1 || n > len(c.rules)+1 {
					return fmt.Errorf("index of insertion too big")
				}
				pos = n - 1
				rest = rest[1:]
			}
		}
		rules, err := p.rules(c, rest)
		if errors.Is(err, errIgnoredLine) {
			return nil
		}
		if err != nil {
			return err
		}
		c.rules = append(c.rules[:pos], append(rules, c.rules[pos:]...)...)
	case "-N":
		if len(rest) != 1 {
			return errors.New("-N takes one chain name")
		}
		if err := validChainName(rest[0]); err != nil {
			return err
		}
		if _, ok := builtinHooks[rest[0]]; ok || t.chain(rest[0]) != nil {
			return errors.New("chain already exists")
		}
		t.chains = append(t.chains, &chain{name: rest[0]})
	case "-X":
		switch len(rest) {
		case 0:
			var keep []*chain
			for _, c := range t.chains {
				if c.builtin {
					keep = append(keep, c)
				}
			}
			for _, c := range keep {
				for _, r := range c.rules {
					if r.target != "" {
						return fmt.Errorf("chain %s is still referenced", r.target)
					}
				}
			}
			t.chains = keep
		case 1:
			c := t.chain(rest[0])
			if c == nil || c.builtin {
				return fmt.Errorf("chain '%s' does not exist or is builtin", rest[0])
			}
			if len(c.rules) > 0 {
				return fmt.Errorf("chain '%s' is not empty", rest[0])
			}
			for _, o := range t.chains {
				for _, r := range o.rules {
					if r.target == c.name {
						return fmt.Errorf("chain '%s' is still referenced", rest[0])
					}
				}
			}
			for i, o := range t.chains {
				if o == c {
					t.chains = append(t.chains[:i], t.chains[i+1:]...)
					break
				}
			}
		default:
			return errors.New("-X takes at most one chain name")
		}
	case "-F":
		switch len(rest) {
		case 0:
			for _, c := range t.chains {
				c.rules = nil
			}
		case 1:
			c, err := t.lookupChain(rest[0])
			if err != nil {
				return err
			}
			c.rules = nil
		default:
			return errors.New("-F takes at most one chain name")
		}
	case "-P":
		if len(rest) != 2 {
			return errors.New("-P takes a chain and a policy")
		}
		if _, ok := builtinHooks[rest[0]]; !ok {
			return fmt.Errorf("can't set policy on user-defined chain `%s'", rest[0])
		}
		c := t.builtinChain(rest[0])
		switch rest[1] {
		case "ACCEPT":
			c.policy = uint32(nlmsg.VerdictAccept)
		case "DROP":
			c.policy = uint32(nlmsg.VerdictDrop)
		default:
			return fmt.Errorf("invalid policy `%s'", rest[1])
		}
	case "-D", "-R", "-Z", "-E", "-L", "-S", "-C":
		return unsupported("command %s is not supported in restore input", cmd)
	default:
		return fmt.Errorf("unknown command `%s'", args[0])
	}
	return nil
}

// rules parses a rule specification for c.
func (p *parser) rules(c *chain, args []string) ([]*builtRule, error) {
	spec, err := parseRule(p.opts.Family, c.name, args)
	if err != nil {
		return nil, err
	}
	switch {
	case c.name == "INPUT" && spec.outIface != "":
		return nil, errors.New("can't use -o with INPUT")
	case c.name == "OUTPUT" && spec.inIface != "":
		return nil, errors.New("can't use -i with OUTPUT")
	}
	if spec.target == targetJump || spec.target == targetGoto {
		if _, builtin := builtinHooks[spec.chain]; builtin {
			return nil, fmt.Errorf("cannot jump to builtin chain %s", spec.chain)
		}
		if p.cur.chain(spec.chain) == nil {
			if spec.target == targetJump {
				return nil, fmt.Errorf("couldn't load target `%s'", spec.chain)
			}
			return nil, fmt.Errorf("chain '%s' does not exist", spec.chain)
		}
	}
	all, err := spec.build()
	if err != nil {
		return nil, err
	}
	var out []*builtRule
	for _, e := range all {
		br := &builtRule{line: p.line, exprs: e.list, sets: e.sets}
		if spec.target == targetJump || spec.target == targetGoto {
			br.target = spec.chain
		}
		if spec.hasComment {
			br.userdata = commentUserdata(spec.comment)
		}
		out = append(out, br)
	}
	return out, nil
}

// commentUserdata encodes a rule comment as nft does: the
// NFTNL_UDATA_RULE_COMMENT record, NUL-terminated.
func commentUserdata(s string) []byte {
	v := append([]byte(s), 0)
	return append([]byte{0, byte(len(v))}, v...)
}

// checkTable checks a table at COMMIT: every jump has its chain, and no
// chain loop (the kernel refuses loops).
func (p *parser) checkTable(t *table) error {
	for _, c := range t.chains {
		for _, r := range c.rules {
			if r.target != "" && t.chain(r.target) == nil {
				return fmt.Errorf("chain '%s' (line %d) does not exist", r.target, r.line)
			}
		}
	}
	state := map[string]int{}
	var visit func(c *chain) error
	visit = func(c *chain) error {
		switch state[c.name] {
		case 1:
			return fmt.Errorf("chain %s is part of a loop of jumps", c.name)
		case 2:
			return nil
		}
		state[c.name] = 1
		for _, r := range c.rules {
			if r.target != "" {
				if err := visit(t.chain(r.target)); err != nil {
					return err
				}
			}
		}
		state[c.name] = 2
		return nil
	}
	for _, c := range t.chains {
		if err := visit(c); err != nil {
			return err
		}
	}
	return nil
}

// output writes the result: the current ruleset's other objects, then the
// filter table.
func (p *parser) output() *nlmsg.Ruleset {
	fam := p.opts.Family
	rs := &nlmsg.Ruleset{}
	replaced := p.done != nil
	mine := func(f nlmsg.Family, tab string) bool { return replaced && f == fam && tab == TableName }
	var handle uint64
	if cur := p.opts.Current; cur != nil {
		for _, t := range cur.Tables {
			if !mine(t.Family, t.Name) {
				rs.Tables = append(rs.Tables, t)
			}
			handle = max(handle, t.Handle)
		}
		for _, c := range cur.Chains {
			if !mine(c.Family, c.Table) {
				rs.Chains = append(rs.Chains, c)
			}
		}
		for _, s := range cur.Sets {
			if !mine(s.Family, s.Table) {
				rs.Sets = append(rs.Sets, s)
			}
		}
		for _, e := range cur.Elems {
			if !mine(e.Family, e.Table) {
				rs.Elems = append(rs.Elems, e)
			}
		}
		for _, r := range cur.Rules {
			if !mine(r.Family, r.Table) {
				rs.Rules = append(rs.Rules, r)
			}
		}
	}
	if !replaced {
		return rs
	}
	t := p.done
	rs.Tables = append(rs.Tables, &nlmsg.Table{Family: fam, Name: TableName, Handle: handle + 1})
	// Base chains first, in iptables-nft's order, then user chains.
	var ordered []*chain
	for _, name := range builtinOrder {
		if c := t.chain(name); c != nil && c.builtin {
			ordered = append(ordered, c)
		}
	}
	for _, c := range t.chains {
		if !c.builtin {
			ordered = append(ordered, c)
		}
	}
	h := uint64(0)
	next := func() uint64 { h++; return h }
	for _, c := range ordered {
		nc := &nlmsg.Chain{Family: fam, Table: TableName, Name: c.name, Handle: next()}
		if c.builtin {
			pol := c.policy
			nc.Hook = &nlmsg.ChainHook{Num: builtinHooks[c.name], Priority: 0}
			nc.Policy = &pol
			nc.Type = "filter"
		}
		rs.Chains = append(rs.Chains, nc)
	}
	usedNames := map[string]bool{}
	for _, s := range t.keptSets {
		usedNames[s.Name] = true
		rs.Sets = append(rs.Sets, s)
	}
	rs.Elems = append(rs.Elems, t.keptElems...)
	setNo := 0
	for _, c := range ordered {
		for _, r := range c.rules {
			for _, s := range r.sets {
				name := fmt.Sprintf("__set%d", setNo)
				for usedNames[name] {
					setNo++
					name = fmt.Sprintf("__set%d", setNo)
				}
				usedNames[name] = true
				setNo++
				id := uint32(setNo)
				s.lookup.Set, s.lookup.SetID = name, id
				rs.Sets = append(rs.Sets, &nlmsg.Set{
					Family: fam, Table: TableName, Name: name, Handle: next(), ID: id,
					Flags: setAnonymous | setConstant | setInterval, KeyType: s.keyType, KeyLen: s.keyLen,
				})
				rs.Elems = append(rs.Elems, &nlmsg.SetElems{Family: fam, Table: TableName, Set: name, SetID: id, Elems: s.elements()})
			}
			rs.Rules = append(rs.Rules, &nlmsg.Rule{
				Family: fam, Table: TableName, Chain: c.name, Handle: next(),
				Userdata: r.userdata, Exprs: r.exprs,
			})
		}
	}
	return rs
}

package ir

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// String returns nft's name for the family.
func (f Family) String() string {
	switch f {
	case FamilyInet:
		return "inet"
	case FamilyIPv4:
		return "ip"
	case FamilyIPv6:
		return "ip6"
	case FamilyNetdev:
		return "netdev"
	case FamilyARP:
		return "arp"
	case FamilyBridge:
		return "bridge"
	}
	return fmt.Sprintf("family%d", uint8(f))
}

// String returns nft's name for the hook.
func (h Hook) String() string {
	switch h {
	case HookPrerouting:
		return "prerouting"
	case HookInput:
		return "input"
	case HookForward:
		return "forward"
	case HookOutput:
		return "output"
	case HookPostrouting:
		return "postrouting"
	case HookIngress:
		return "ingress"
	case HookEgress:
		return "egress"
	}
	return fmt.Sprintf("hook%d", uint8(h))
}

// Chain returns the chain called name, or nil.
func (t *Table) Chain(name string) *Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// PrintOptions tune PrintWith.
type PrintOptions struct {
	// Handles appends "# handle N" to every rule, as nft -a does.
	Handles bool
	// Counters, when set, gives the live values of the counter statement
	// stmt (its index in the rule's Stmts) of a rule; they print as
	// "counter packets N bytes M".
	Counters func(chain string, handle uint64, stmt int) (packets, bytes uint64, ok bool)
	// Quotas, when set, gives the bytes consumed so far by the quota
	// statement stmt of a rule; they print as "used N".
	Quotas func(chain string, handle uint64, stmt int) (used uint64, ok bool)
	// Objects, when set, gives the live state of a named object of the
	// table; counters print it as "packets N bytes M", quotas as "used N".
	Objects func(fam Family, table string, o *Object) (ObjectState, bool)
	// RuleText, when set, gives a rule's text (FormatRule) where no live
	// value goes into it, for callers that have formatted the rules
	// already.
	RuleText func(fam Family, r *Rule) string
}

// Print writes the ruleset in nft syntax, as `nft list ruleset` would.
func (rs *Ruleset) Print(w io.Writer) error { return rs.PrintWith(w, PrintOptions{}) }

// PrintWith writes the ruleset in nft syntax with the given options.
func (rs *Ruleset) PrintWith(w io.Writer, opts PrintOptions) error {
	for i, t := range rs.Tables {
		if i > 0 {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		if err := t.PrintWith(w, opts); err != nil {
			return err
		}
	}
	return nil
}

// Print writes the table in nft syntax.
func (t *Table) Print(w io.Writer) error { return t.PrintWith(w, PrintOptions{}) }

// PrintWith writes the table in nft syntax with the given options.
func (t *Table) PrintWith(w io.Writer, opts PrintOptions) error {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", t.Family, t.Name)
	first := true
	if t.Flags&tableDormant != 0 {
		b.WriteString("\tflags dormant\n")
		first = false
	}
	sep := func() {
		if !first {
			b.WriteString("\n")
		}
		first = false
	}
	for _, s := range t.Sets {
		if s.Anonymous() {
			continue
		}
		sep()
		printSet(&b, t.Family, s)
	}
	for _, o := range t.Objects {
		sep()
		if opts.Objects != nil {
			if st, ok := opts.Objects(t.Family, t.Name, o); ok {
				o = o.Live(st)
			}
		}
		PrintObject(&b, o)
	}
	for _, c := range t.Chains {
		sep()
		fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
		if c.Base != nil {
			fmt.Fprintf(&b, "\t\t%s\n", c.Base.Header())
		}
		for _, r := range c.Rules {
			var ro ruleOptions
			if opts.Counters != nil {
				chain, handle := c.Name, r.Handle
				ro.counter = func(stmt int) (uint64, uint64, bool) { return opts.Counters(chain, handle, stmt) }
			}
			if opts.Quotas != nil {
				chain, handle := c.Name, r.Handle
				ro.quota = func(stmt int) (uint64, bool) { return opts.Quotas(chain, handle, stmt) }
			}
			var line string
			if opts.RuleText != nil && ro.counter == nil && ro.quota == nil {
				line = opts.RuleText(t.Family, r)
			} else {
				line = formatRule(t.Family, r, ro)
			}
			if opts.Handles {
				line += fmt.Sprintf(" # handle %d", r.Handle)
			}
			fmt.Fprintf(&b, "\t\t%s\n", line)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// NFT_TABLE_F_DORMANT: the table is loaded but does not filter.
const tableDormant = 0x1

// Header returns the base chain's definition line, e.g.
// `type filter hook input priority 0; policy drop;`.
func (bc *BaseChain) Header() string {
	var b strings.Builder
	fmt.Fprintf(&b, "type %s hook %s", bc.Type, bc.Hook)
	switch len(bc.Devices) {
	case 0:
	case 1:
		fmt.Fprintf(&b, " device %s", quote(bc.Devices[0]))
	default:
		// The kernel keeps no order among a chain's devices (it lists them
		// newest first); sorted, the header prints the same after a reload.
		quoted := make([]string, len(bc.Devices))
		for i, d := range bc.Devices {
			quoted[i] = quote(d)
		}
		sort.Strings(quoted)
		fmt.Fprintf(&b, " devices = { %s }", strings.Join(quoted, ", "))
	}
	fmt.Fprintf(&b, " priority %d; policy %s;", bc.Priority, (&Verdict{Kind: bc.Policy}).String())
	return b.String()
}

// setTypes names nft datatypes by id (nftables' enum datatypes); host
// says the type is in host byte order (except in interval sets, whose keys
// nft stores big-endian).
var setTypes = map[uint32]struct {
	name string
	typ  ValueType
	host bool
}{
	2: {"nf_proto", TypeNFProto, false}, 7: {"ipv4_addr", TypeIPv4, false},
	8: {"ipv6_addr", TypeIPv6, false}, 9: {"ether_addr", TypeEther, false}, 10: {"ether_type", TypeEtherType, false},
	12: {"inet_proto", TypeInetProto, false}, 13: {"inet_service", TypeInteger, false},
	14: {"icmp_type", TypeICMPType, false}, 15: {"tcp_flag", TypeTCPFlags, false},
	19: {"mark", TypeHex, true}, 20: {"iface_index", TypeInteger, true}, 21: {"iface_type", TypeIfType, true},
	29: {"icmpv6_type", TypeICMPv6Type, false}, 31: {"pkt_type", TypePktType, false},
	36: {"dscp", TypeDSCP, false}, 41: {"ifname", TypeIfName, false},
}

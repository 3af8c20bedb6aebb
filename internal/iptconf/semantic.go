package iptconf

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// txlateTables declares the filter table and base chains the .txlate rules
// are added to.
func txlateTables(famName string) string {
	return fmt.Sprintf("table %s filter {\n chain INPUT { type filter hook input priority 0; }\n chain FORWARD { type filter hook forward priority 0; }\n chain OUTPUT { type filter hook output priority 0; }\n}\n", famName)
}

// chainRule is a rule in nft syntax and the chain it belongs to.
type chainRule struct {
	chain, text string
}

// liftChainRules lifts rs and returns its rules in nft syntax with their
// chains (counters kept: the kernel comparison drops them on both sides).
func liftChainRules(rs *nlmsg.Ruleset) ([]chainRule, error) {
	l, err := translate.Lift(rs)
	if err != nil {
		return nil, err
	}
	if len(l.Failed) > 0 {
		return nil, fmt.Errorf("%w: %v", errRefused, l.Failed[0].Err)
	}
	var out []chainRule
	for _, t := range l.Ruleset.Tables {
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				out = append(out, chainRule{c.Name, ir.FormatRule(t.Family, r)})
			}
		}
	}
	return out, nil
}

// kernelExprs loads text (nft commands) into a scratch network namespace
// with the system's nft and returns the kernel's expressions of every rule
// as "nft --debug=netlink list ruleset" shows them, normalised so that two
// rulesets that evaluate alike compare equal: rules become their chain
// name and their expressions, anonymous sets are replaced by their
// elements (sorted), handles and counters are left out; in ip tables "ip
// protocol" reads as "meta l4proto" (see ipProtocol), and neighbouring
// matches are put in a canonical order (see commuteMatches).
func kernelExprs(text string) ([]string, error) {
	ns, err := netnstest.New()
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	if _, err := ns.Run(text, "nft", "-f", "-"); err != nil {
		return nil, err
	}
	out, err := ns.Run("", "nft", "--debug=netlink", "list", "ruleset")
	if err != nil {
		return nil, err
	}
	return normaliseExprs(out), nil
}

// normaliseExprs is kernelExprs' normalisation of a debug listing.
func normaliseExprs(listing string) []string {
	type block struct {
		head  string
		lines []string
	}
	var blocks []*block
	var cur *block
	for _, line := range strings.Split(listing, "\n") {
		switch {
		case strings.HasPrefix(line, "table ") || strings.HasPrefix(line, "}"):
			// The listing proper, after the debug output.
			cur = nil
		case strings.TrimSpace(line) == "":
			cur = nil
		case line[0] != ' ' && line[0] != '\t':
			cur = &block{head: line}
			blocks = append(blocks, cur)
		case cur != nil:
			cur.lines = append(cur.lines, strings.TrimSpace(line))
		}
	}
	sets := map[string]string{}
	for _, b := range blocks {
		f := strings.Fields(b.head)
		if len(f) >= 3 && strings.HasPrefix(f[2], "@") {
			els := append([]string(nil), b.lines...)
			for i, e := range els {
				els[i] = strings.Join(strings.Fields(e), " ")
			}
			sort.Strings(els)
			sets[strings.TrimPrefix(f[2], "@")] = "{" + strings.Join(els, ", ") + "}"
		}
	}
	var out []string
	for _, b := range blocks {
		f := strings.Fields(b.head)
		if len(f) < 4 || strings.HasPrefix(f[2], "@") {
			continue
		}
		var exprs []string
		for _, e := range b.lines {
			if strings.HasPrefix(e, "[ counter ") {
				continue
			}
			ef := strings.Fields(e)
			for i := 0; i+1 < len(ef); i++ {
				if ef[i] == "set" {
					if s, ok := sets[ef[i+1]]; ok {
						ef[i+1] = s
					}
				}
			}
			e = strings.Join(ef, " ")
			if f[0] == "ip" {
				e = ipProtocol.ReplaceAllString(e, "[ meta load l4proto => reg $1 ]")
			}
			exprs = append(exprs, e)
		}
		out = append(out, f[2]+": "+strings.Join(commuteMatches(exprs), " "))
	}
	return out
}

// ipProtocol is "ip protocol": in an ip table it loads what "meta
// l4proto" loads, the same register image (nft_set_pktinfo_ipv4 sets
// pkt->tprot from that byte and NFT_PKTINFO_L4PROTO for every packet, and
// both loads zero the rest of the register word), and neither can fail on
// a packet the hook sees.
var ipProtocol = regexp.MustCompile(`^\[ payload load 1b @ network header \+ 9 => reg (\d+) \]$`)

// commuteMatches puts the matches of a rule in a canonical order where
// their order cannot change what the rule does: a match (loads into
// registers, then the compares, ranges or lookups that read them) has no
// effect other than ending the rule, so neighbouring matches commute; any
// other expression (a verdict, log, limit, …) stays where it is and keeps
// the matches before and after it apart. Each match's compares are
// rewritten as the values they accept (see canonicalValues).
func commuteMatches(exprs []string) []string {
	var out, run []string
	var loads, tests []string
	endUnit := func() {
		if len(tests) > 0 {
			run = append(run, strings.Join(append(loads, canonicalValues(loads, tests)...), " "))
		} else {
			run = append(run, loads...)
		}
		loads, tests = nil, nil
	}
	flush := func() {
		endUnit()
		sort.Strings(run)
		out = append(out, run...)
		run = nil
	}
	for _, e := range exprs {
		switch {
		case strings.HasPrefix(e, "[ payload load"), strings.HasPrefix(e, "[ meta load"),
			strings.HasPrefix(e, "[ ct load"), strings.HasPrefix(e, "[ exthdr load"),
			strings.HasPrefix(e, "[ bitwise"), strings.HasPrefix(e, "[ byteorder"):
			if len(tests) > 0 {
				endUnit()
			}
			loads = append(loads, e)
		case strings.HasPrefix(e, "[ cmp"), strings.HasPrefix(e, "[ range"),
			strings.HasPrefix(e, "[ lookup") && !strings.Contains(e, "dreg"):
			tests = append(tests, e)
		default:
			flush()
			out = append(out, e)
		}
	}
	flush()
	return out
}

// loadLen returns the number of bytes the last load of a match places in
// the register, for the loads whose length the listing shows or implies.
func loadLen(loads []string) int {
	for i := len(loads) - 1; i >= 0; i-- {
		f := strings.Fields(loads[i])
		switch {
		case len(f) > 3 && f[1] == "payload" && f[2] == "load":
			n, err := strconv.Atoi(strings.TrimSuffix(f[3], "b"))
			if err != nil {
				return 0
			}
			return n
		case len(f) > 3 && f[1] == "meta" && f[2] == "load":
			return metaLens[f[3]]
		case f[1] == "byteorder" || f[1] == "bitwise":
			continue
		}
		return 0
	}
	return 0
}

// metaLens are the register lengths of meta keys.
var metaLens = map[string]int{"l4proto": 1, "nfproto": 1, "pkttype": 1, "len": 4, "mark": 4, "protocol": 2, "iiftype": 2, "oiftype": 2, "iif": 4, "oif": 4}

// canonicalValues rewrites the compares, ranges and lookups that read one
// loaded value as the set of values they all accept ("[ in N ranges ]", a
// sorted list of inclusive ranges of the value read as an N-byte big-endian
// number: nft_cmp, nft_range and set lookups order values with memcmp,
// which is that order). Values longer than 8 bytes, and forms it cannot
// read, are left as they are.
func canonicalValues(loads, tests []string) []string {
	n := loadLen(loads)
	if n == 0 || n > 8 {
		return tests
	}
	max := uint64(1)<<(8*uint(n)) - 1
	if n == 8 {
		max = ^uint64(0)
	}
	acc := []valueRange{{0, max}}
	for _, t := range tests {
		rs, ok := testRanges(t, n, max)
		if !ok {
			return tests
		}
		acc = intersect(acc, rs)
	}
	parts := make([]string, len(acc))
	for i, r := range acc {
		parts[i] = fmt.Sprintf("%#x-%#x", r.lo, r.hi)
	}
	return []string{fmt.Sprintf("[ in %d {%s} ]", n, strings.Join(parts, ","))}
}

type valueRange struct{ lo, hi uint64 }

// value reads the first n bytes of register words as printed (host-endian
// 32-bit words, with or without 0x) as a big-endian number.
func value(words []string, n int) (uint64, bool) {
	var b []byte
	for _, w := range words {
		x, err := strconv.ParseUint(strings.TrimPrefix(w, "0x"), 16, 32)
		if err != nil {
			return 0, false
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	if len(b) < n || len(b) > (n+3)/4*4 {
		return 0, false
	}
	var v uint64
	for _, c := range b[:n] {
		v = v<<8 | uint64(c)
	}
	return v, true
}

// testRanges returns the values one compare, range or lookup accepts.
func testRanges(t string, n int, max uint64) ([]valueRange, bool) {
	f := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(t, "[ "), " ]"))
	if len(f) < 4 || (f[2] != "reg" && f[0] != "lookup") {
		return nil, false
	}
	switch f[0] {
	case "cmp":
		v, ok := value(f[4:], n)
		if !ok {
			return nil, false
		}
		switch f[1] {
		case "eq":
			return []valueRange{{v, v}}, true
		case "neq":
			return complement([]valueRange{{v, v}}, max), true
		case "lt":
			if v == 0 {
				return nil, true
			}
			return []valueRange{{0, v - 1}}, true
		case "lte":
			return []valueRange{{0, v}}, true
		case "gt":
			if v == max {
				return nil, true
			}
			return []valueRange{{v + 1, max}}, true
		case "gte":
			return []valueRange{{v, max}}, true
		}
	case "range":
		w := f[4:]
		if len(w)%2 != 0 {
			return nil, false
		}
		lo, ok1 := value(w[:len(w)/2], n)
		hi, ok2 := value(w[len(w)/2:], n)
		if !ok1 || !ok2 {
			return nil, false
		}
		var r []valueRange
		if lo <= hi {
			r = []valueRange{{lo, hi}}
		}
		if f[1] == "neq" {
			r = complement(r, max)
		}
		return r, true
	case "lookup":
		// lookup reg N set {element W… : FLAGS [end], …} INV
		open, end := strings.Index(t, "{"), strings.LastIndex(t, "}")
		if open < 0 || end < open {
			return nil, false
		}
		inv := strings.TrimSpace(strings.TrimSuffix(t[end+1:], "]")) == "0x1"
		type elem struct {
			v     uint64
			isEnd bool
		}
		var els []elem
		interval := false
		for _, e := range strings.Split(t[open+1:end], ",") {
			ef := strings.Fields(e)
			colon := -1
			for i, x := range ef {
				if x == ":" {
					colon = i
				}
			}
			if len(ef) < 3 || ef[0] != "element" || colon < 2 || colon+1 >= len(ef) {
				return nil, false
			}
			v, ok := value(ef[1:colon], n)
			if !ok {
				return nil, false
			}
			flags, err := strconv.ParseUint(ef[colon+1], 0, 32)
			if err != nil {
				return nil, false
			}
			isEnd := flags&1 != 0 // NFT_SET_ELEM_INTERVAL_END
			interval = interval || isEnd
			els = append(els, elem{v, isEnd})
		}
		sort.Slice(els, func(i, j int) bool { return els[i].v < els[j].v })
		var r []valueRange
		for i, e := range els {
			switch {
			case !interval:
				r = append(r, valueRange{e.v, e.v})
			case e.isEnd:
			case i+1 < len(els):
				r = append(r, valueRange{e.v, els[i+1].v - 1})
			default:
				r = append(r, valueRange{e.v, max})
			}
		}
		r = normalise(r)
		if inv {
			r = complement(r, max)
		}
		return r, true
	}
	return nil, false
}

// normalise sorts ranges and merges overlapping and adjacent ones.
func normalise(rs []valueRange) []valueRange {
	sort.Slice(rs, func(i, j int) bool { return rs[i].lo < rs[j].lo })
	var out []valueRange
	for _, r := range rs {
		if k := len(out); k > 0 && (r.lo <= out[k-1].hi || r.lo == out[k-1].hi+1) {
			if r.hi > out[k-1].hi {
				out[k-1].hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// complement returns the values of [0, max] not in rs.
func complement(rs []valueRange, max uint64) []valueRange {
	rs = normalise(rs)
	var out []valueRange
	next := uint64(0)
	done := false
	for _, r := range rs {
		if r.lo > next {
			out = append(out, valueRange{next, r.lo - 1})
		}
		if r.hi == max {
			done = true
			break
		}
		next = r.hi + 1
	}
	if !done {
		out = append(out, valueRange{next, max})
	}
	return out
}

// intersect returns the values in both a and b.
func intersect(a, b []valueRange) []valueRange {
	a, b = normalise(a), normalise(b)
	var out []valueRange
	for _, x := range a {
		for _, y := range b {
			lo, hi := x.lo, x.hi
			if y.lo > lo {
				lo = y.lo
			}
			if y.hi < hi {
				hi = y.hi
			}
			if lo <= hi {
				out = append(out, valueRange{lo, hi})
			}
		}
	}
	return normalise(out)
}

// semanticCheck loads the expected nft commands and the translation (as
// nft rules) into scratch namespaces and compares the kernel's expressions.
// It returns "" when they are the same, else what differs.
func semanticCheck(famName string, expected []string, got []chainRule) (string, error) {
	var want, ours strings.Builder
	want.WriteString(txlateTables(famName))
	ours.WriteString(txlateTables(famName))
	for _, c := range expected {
		want.WriteString(c + "\n")
	}
	for _, r := range got {
		fmt.Fprintf(&ours, "add rule %s filter %s %s\n", famName, r.chain, r.text)
	}
	w, err := kernelExprs(want.String())
	if err != nil {
		return "", fmt.Errorf("expected rule: %w", err)
	}
	o, err := kernelExprs(ours.String())
	if err != nil {
		return "", fmt.Errorf("translation: %w", err)
	}
	if strings.Join(w, "\n") == strings.Join(o, "\n") {
		return "", nil
	}
	return fmt.Sprintf("kernel expressions differ:\n    expected %s\n    got      %s", strings.Join(w, " | "), strings.Join(o, " | ")), nil
}

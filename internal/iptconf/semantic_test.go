package iptconf

import (
	"strings"
	"testing"
)

// TestNormaliseExprs: listings that evaluate alike normalise to the same
// text, listings that do not to different texts.
func TestNormaliseExprs(t *testing.T) {
	rule := func(fam string, exprs ...string) string {
		return fam + " filter INPUT 4 3\n  " + strings.Join(exprs, "\n  ") + "\n\n"
	}
	set := func(fam, name string, elems ...string) string {
		return fam + " filter @" + name + "\n\t" + strings.Join(elems, "\n\t") + "\n"
	}
	const (
		l4       = "[ meta load l4proto => reg 1 ]"
		ipProto  = "[ payload load 1b @ network header + 9 => reg 1 ]"
		tcp      = "[ cmp eq reg 1 0x00000006 ]"
		dport    = "[ payload load 2b @ transport header + 2 => reg 1 ]"
		saddr    = "[ payload load 4b @ network header + 12 => reg 1 ]"
		saddrEq  = "[ cmp eq reg 1 0x0100000a ]"
		accept   = "[ immediate reg 0 accept ]"
		logStmt  = "[ log prefix x level 4 ]"
		counter  = "[ counter pkts 3 bytes 180 ]"
		port8081 = "[ lookup reg 1 set __set0 0x0 ]"
	)
	exact8081 := set("ip", "__set0", "element 00005000  : 0 [end]", "element 00005100  : 0 [end]")
	for _, c := range []struct {
		name string
		a, b string
		same bool
	}{
		{"ip protocol is meta l4proto in ip", rule("ip", ipProto, tcp, accept), rule("ip", l4, tcp, accept), true},
		{"ip6 nexthdr is not meta l4proto", rule("ip6", "[ payload load 1b @ network header + 6 => reg 1 ]", tcp), rule("ip6", l4, tcp), false},
		{"counters and handles do not count", rule("ip", l4, tcp, counter, accept), "ip filter INPUT 9\n  " + l4 + "\n  " + tcp + "\n  " + accept + "\n\n", true},
		{"matches commute", rule("ip", saddr, saddrEq, l4, tcp, accept), rule("ip", l4, tcp, saddr, saddrEq, accept), true},
		{"not across a log", rule("ip", saddr, saddrEq, logStmt, l4, tcp), rule("ip", l4, tcp, logStmt, saddr, saddrEq), false},
		{"a set of 80 and 81 is the range 80-81", exact8081 + rule("ip", dport, port8081),
			rule("ip", dport, "[ cmp gte reg 1 0x00005000 ]", "[ cmp lte reg 1 0x00005100 ]"), true},
		{"range eq is gte and lte", rule("ip", dport, "[ range eq reg 1 0x00005000 0x00005100 ]"),
			rule("ip", dport, "[ cmp gte reg 1 0x00005000 ]", "[ cmp lte reg 1 0x00005100 ]"), true},
		{"an interval set", set("ip", "__set1", "element 00000000  : 1 [end]", "element 00005000  : 0 [end]", "element 00005200  : 1 [end]") +
			rule("ip", dport, "[ lookup reg 1 set __set1 0x0 ]"), rule("ip", dport, "[ range eq reg 1 0x00005000 0x00005100 ]"), true},
		{"an inverted set", exact8081 + rule("ip", dport, "[ lookup reg 1 set __set0 0x1 ]"),
			rule("ip", dport, "[ range neq reg 1 0x00005000 0x00005100 ]"), true},
		{"never: != 0-65535 and > 65535", rule("ip", dport, "[ range neq reg 1 0x00000000 0x0000ffff ]"),
			rule("ip", dport, "[ cmp gt reg 1 0x0000ffff ]"), true},
		{"the load stays: <= 65535 is not no test", rule("ip", l4, tcp, dport, "[ cmp lte reg 1 0x0000ffff ]"), rule("ip", l4, tcp), false},
		{"different ports", rule("ip", dport, "[ cmp eq reg 1 0x00005000 ]"), rule("ip", dport, "[ cmp eq reg 1 0x00005100 ]"), false},
		{"different verdicts", rule("ip", l4, tcp, accept), rule("ip", l4, tcp, "[ immediate reg 0 drop ]"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := strings.Join(normaliseExprs(c.a), "\n")
			b := strings.Join(normaliseExprs(c.b), "\n")
			if (a == b) != c.same {
				t.Errorf("same %v, want %v:\n  %s\n  %s", a == b, c.same, a, b)
			}
		})
	}
}

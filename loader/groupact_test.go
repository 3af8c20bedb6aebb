package loader

import (
	"fmt"
	"strings"
	"testing"
)

// TestGroupedQuotaReload loads a rule group of "quota over 300 bytes
// counter drop" rules (state per rule, in the slot the group's map value
// names) at XDP, tcx and netfilter input and sends real traffic: the
// first five 60-byte datagrams to a port pass, the rest are dropped and
// counted. A reload that adds a first rule keeps every rule's quota, so
// that none passes afterwards.
func TestGroupedQuotaReload(t *testing.T) {
	ruleset := func(c attachCase, ports []int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "table %s t {\n\tchain c {\n\t\t%s policy accept;\n", c.family, c.header)
		for _, p := range ports {
			fmt.Fprintf(&b, "\t\tip daddr %s udp dport %d quota over 300 bytes counter drop\n", addrB, p)
		}
		b.WriteString("\t}\n}\n")
		return b.String()
	}
	var ports []int
	for p := 11; p <= 20; p++ {
		ports = append(ports, p)
	}
	for _, c := range attachCases {
		switch c.name {
		case "xdp", "tcx ingress", "netfilter input":
		default:
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			tp := newTopo(t)
			ns := netns(t, c.where(tp))
			st := stateDir(t, ns)
			rc := listen(t, tp.b, 12, 15)
			snd := dial(t, tp.a)
			for round, rules := range [][]int{ports, append([]int{21}, ports...)} {
				res := translate(t, ns, ruleset(c, rules), c.typ)
				if len(res.Programs) == 0 || len(res.Programs[0].Program.Groups) == 0 {
					t.Fatal("the ruleset compiled without rule groups")
				}
				if err := Apply(ns, st, res, Options{}); err != nil {
					t.Fatal(err)
				}
				rc.reset()
				snd.send(15, 10)
				if round == 1 {
					snd.send(12, 3)
				}
				got := rc.settle()
				want15, want12 := 5, 0
				if round == 1 {
					want15, want12 = 0, 3
				}
				if got[15] != want15 || got[12] != want12 {
					t.Errorf("round %d: received %d on port 15 and %d on 12, want %d and %d", round, got[15], got[12], want15, want12)
				}
			}
			if n := counterOf(t, st, "dport 15 quota"); n != 15 {
				t.Errorf("the port 15 rule counted %d packets, want 15", n)
			}
			if n := counterOf(t, st, "dport 12 quota"); n != 0 {
				t.Errorf("the port 12 rule counted %d packets, want 0", n)
			}
		})
	}
}

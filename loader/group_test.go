package loader

import (
	"fmt"
	"strings"
	"testing"
)

// TestGroupedCounters loads a chain whose rules form a rule group (one
// hash lookup whose values carry counter slots) at XDP, tcx and netfilter
// input, sends real traffic, and checks what arrives and that every rule's
// counter, in the namespace's shared counter map, counted its own packets.
func TestGroupedCounters(t *testing.T) {
	drop := []int{9}
	for p := 11; p <= 20; p++ {
		drop = append(drop, p)
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
			rc := listen(t, tp.b, 7, 9, 15)
			snd := dial(t, tp.a)

			res := translate(t, ns, c.ruleset(drop...), c.typ)
			groups := 0
			for _, p := range res.Programs {
				groups += len(p.Program.Groups)
			}
			if groups == 0 {
				t.Fatal("the ruleset compiled without rule groups")
			}
			if err := Apply(ns, st, res, Options{}); err != nil {
				t.Fatal(err)
			}
			const n = 20
			snd.send(7, n)
			snd.send(9, n)
			snd.send(15, 2*n)
			got := rc.settle()
			if got[7] != n || got[9] != 0 || got[15] != 0 {
				t.Errorf("received %d on port 7, %d on 9, %d on 15; want %d, 0, 0", got[7], got[9], got[15], n)
			}
			for port, want := range map[int]uint64{7: n, 9: n, 15: 2 * n, 11: 0, 20: 0} {
				if c := counterOf(t, st, fmt.Sprintf("dport %d counter", port)); c != want {
					t.Errorf("counter of the rule for port %d: %d, want %d", port, c, want)
				}
			}

			// A new first rule: the kept rules keep their counter
			// slots, the new one gets a fresh slot, so the group's
			// counter indexes no longer equal the slots.
			res = translate(t, ns, c.ruleset(append([]int{21}, drop...)...), c.typ)
			if err := Apply(ns, st, res, Options{}); err != nil {
				t.Fatal(err)
			}
			rc.reset()
			snd.send(15, n)
			snd.send(7, n)
			if got := rc.settle(); got[7] != n || got[15] != 0 {
				t.Errorf("after reload: received %d on port 7, %d on 15; want %d, 0", got[7], got[15], n)
			}
			for port, want := range map[int]uint64{7: 2 * n, 15: 3 * n, 21: 0, 9: n} {
				if c := counterOf(t, st, fmt.Sprintf("dport %d counter", port)); c != want {
					t.Errorf("after reload: counter of the rule for port %d: %d, want %d", port, c, want)
				}
			}

			// Only a constant changes (15 becomes 25): the program's
			// instructions are the same but for the group map, which
			// must not pass for an unchanged ruleset.
			changed := append([]int{21}, drop...)
			for i, p := range changed {
				if p == 15 {
					changed[i] = 25
				}
			}
			res = translate(t, ns, c.ruleset(changed...), c.typ)
			if err := Apply(ns, st, res, Options{}); err != nil {
				t.Fatal(err)
			}
			rc2 := listen(t, tp.b, 25)
			rc.reset()
			snd.send(15, n)
			snd.send(25, n)
			if got, got25 := rc.settle(), rc2.settle(); got[15] != n || got25[25] != 0 {
				t.Errorf("after changing 15 to 25: received %d on port 15, %d on 25; want %d, 0", got[15], got25[25], n)
			}
			if c := counterOf(t, st, "dport 25 counter"); c != n {
				t.Errorf("counter of the new rule for port 25: %d, want %d", c, n)
			}
		})
	}
}

// TestGroupConstantChange reloads a chain whose rule group changes in one
// constant only and has no counters: the programs' instructions differ
// only in the group map they refer to, and the reload must still replace
// the program (a loader that took it for an unchanged ruleset would keep
// dropping the old port).
func TestGroupConstantChange(t *testing.T) {
	ruleset := func(c attachCase, ports []int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "table %s t {\n\tchain c {\n\t\t%s policy accept;\n", c.family, c.header)
		for _, p := range ports {
			fmt.Fprintf(&b, "\t\tip daddr %s udp dport %d drop\n", addrB, p)
		}
		b.WriteString("\t}\n}\n")
		return b.String()
	}
	before := []int{30, 31, 32, 33, 34, 35, 36, 37, 38, 39}
	after := []int{30, 31, 32, 33, 34, 45, 36, 37, 38, 39}
	for _, c := range attachCases {
		if c.name != "xdp" && c.name != "netfilter input" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			tp := newTopo(t)
			ns := netns(t, c.where(tp))
			st := stateDir(t, ns)
			rc := listen(t, tp.b, 35, 45)
			snd := dial(t, tp.a)
			for i, ports := range [][]int{before, after} {
				res := translate(t, ns, ruleset(c, ports), c.typ)
				if len(res.Programs) == 0 || len(res.Programs[0].Program.Groups) == 0 {
					t.Fatal("the ruleset compiled without rule groups")
				}
				if err := Apply(ns, st, res, Options{}); err != nil {
					t.Fatal(err)
				}
				rc.reset()
				const n = 10
				snd.send(35, n)
				snd.send(45, n)
				got := rc.settle()
				want35, want45 := 0, n
				if i == 1 {
					want35, want45 = n, 0
				}
				if got[35] != want35 || got[45] != want45 {
					t.Errorf("ruleset %d: received %d on port 35 and %d on 45, want %d and %d", i, got[35], got[45], want35, want45)
				}
			}
		})
	}
}

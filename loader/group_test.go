package loader

import (
	"fmt"
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
		})
	}
}

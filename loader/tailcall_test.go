package loader

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

// splitRuleset has rules rules (each its own port range, compiled as
// straight-line code) in front of the rules the traffic meets, so that the chain
// is split into several programs and the traffic crosses every part; drop
// lists the ports dropped at the end.
func (c attachCase) splitRuleset(rules int, drop ...int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s t {\n\tchain c {\n\t\t%s policy accept;\n", c.family, c.header)
	for i := 0; i < rules; i++ {
		fmt.Fprintf(&b, "\t\tip daddr %s udp dport %d-%d counter drop\n", addrB, 1000+10*i, 1000+10*i+1+i%7)
	}
	for _, p := range drop {
		fmt.Fprintf(&b, "\t\tip daddr %s udp dport %d counter drop\n", addrB, p)
	}
	fmt.Fprintf(&b, "\t\tip daddr %s udp dport 7 counter accept\n\t}\n}\n", addrB)
	return b.String()
}

// translateLinear is translate compiling straight-line code (no rule
// groups), which these rules need to be long enough to split.
func translateLinear(t *testing.T, ns *nsctx.NetNS, ruleset string, typ *codegen.ProgramType) *pipeline.Result {
	t.Helper()
	res, err := pipeline.TranslateReader("test.nft", strings.NewReader(ruleset), pipeline.Options{NetNS: ns, Type: typ, Linear: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestSplitChainAttached applies a chain split into tail-called programs
// at every kind of attach point: real traffic gets the verdicts of the
// chain's last rules, counters count, the program array is pinned with
// the programs, a reload replaces it, and a flush leaves nothing.
func TestSplitChainAttached(t *testing.T) {
	for _, c := range attachCases {
		switch c.name {
		case "xdp", "tcx ingress", "netfilter input", "netfilter output":
		default:
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			tp := newTopo(t)
			ns := netns(t, c.where(tp))
			st := stateDir(t, ns)
			rc := listen(t, tp.b, 7, 9, 10)
			snd := dial(t, tp.a)

			res := translateLinear(t, ns, c.splitRuleset(1500, 9), c.typ)
			for _, cp := range res.Programs {
				if cp.Program.Parts() < 3 {
					t.Fatalf("chain compiled into %d parts, want at least 3", cp.Program.Parts())
				}
			}
			if err := Apply(ns, st, res, Options{}); err != nil {
				t.Fatal(err)
			}
			m, err := st.ReadManifest("state")
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range m.Points {
				if p.Tail == "" || !st.Exists(p.Tail) {
					t.Fatalf("point %s: program array %q not pinned", p.Key, p.Tail)
				}
			}
			checkClean(t, st)
			const n = 20
			snd.send(7, n)
			snd.send(9, n)
			snd.send(10, n)
			got := rc.settleFor(map[int]int{7: n, 10: n})
			if got[7] != n || got[9] != 0 || got[10] != n {
				t.Errorf("received %d on port 7, %d on 9, %d on 10; want %d, 0, %d", got[7], got[9], got[10], n, n)
			}
			if c7, c9 := counterOf(t, st, "dport 7 "), counterOf(t, st, "dport 9 "); c7 != n || c9 != n {
				t.Errorf("counters: port 7 %d, port 9 %d; want %d and %d", c7, c9, n, n)
			}

			// Reload: port 10 dropped too; a new array replaces the old.
			old := m.Points[0].Tail
			if err := Apply(ns, st, translateLinear(t, ns, c.splitRuleset(1500, 9, 10), c.typ), Options{}); err != nil {
				t.Fatal(err)
			}
			m, err = st.ReadManifest("state")
			if err != nil {
				t.Fatal(err)
			}
			if m.Points[0].Tail == old || st.Exists(old) {
				t.Errorf("after reload: array %q (old %q, still pinned: %v)", m.Points[0].Tail, old, st.Exists(old))
			}
			checkClean(t, st)
			rc.reset()
			snd.send(7, n)
			snd.send(10, n)
			if got := rc.settleFor(map[int]int{7: n}); got[7] != n || got[10] != 0 {
				t.Errorf("after reload: received %d on port 7 and %d on 10; want %d and 0", got[7], got[10], n)
			}
			if c7 := counterOf(t, st, "dport 7 "); c7 != 2*n {
				t.Errorf("after reload: port 7 counted %d, want %d", c7, 2*n)
			}

			// The same ruleset again: the running programs are kept, and
			// with them their pinned array. (The reload above changed
			// only the last part, and was not kept: the fingerprint and
			// the shape cover every part.)
			kept := m.Points[0].Tail
			var stats Stats
			if err := Apply(ns, st, translateLinear(t, ns, c.splitRuleset(1500, 9, 10), c.typ), Options{Stats: &stats}); err != nil {
				t.Fatal(err)
			}
			if m, err = st.ReadManifest("state"); err != nil {
				t.Fatal(err)
			}
			if stats.Loaded != 0 || m.Points[0].Tail != kept || !st.Exists(kept) {
				t.Errorf("identical reload: loaded %d programs, array %q (was %q)", stats.Loaded, m.Points[0].Tail, kept)
			}
			checkClean(t, st)
			rc.reset()
			snd.send(7, n)
			snd.send(10, n)
			if got := rc.settleFor(map[int]int{7: n}); got[7] != n || got[10] != 0 {
				t.Errorf("after identical reload: received %d on port 7 and %d on 10; want %d and 0", got[7], got[10], n)
			}

			// Another table added: the split chain keeps its running
			// programs and array (reuseRunning), the new chain is loaded.
			// (The test's type option applies to every chain: only where
			// it is the default.)
			if c.typ == nil {
				extra := c.splitRuleset(1500, 9, 10) + "table ip t2 {\n\tchain c2 {\n\t\ttype filter hook output priority 10; policy accept;\n\t\tudp dport 11 counter drop\n\t}\n}\n"
				stats = Stats{}
				if err := Apply(ns, st, translateLinear(t, ns, extra, c.typ), Options{Stats: &stats}); err != nil {
					t.Fatal(err)
				}
				if m, err = st.ReadManifest("state"); err != nil {
					t.Fatal(err)
				}
				tails := 0
				for _, p := range m.Points {
					if p.Tail != "" {
						tails++
						if p.Tail != kept {
							t.Errorf("split chain reloaded with array %q, want the running %q kept", p.Tail, kept)
						}
					}
				}
				if stats.Kept != 1 || stats.Loaded != 1 || tails != 1 {
					t.Errorf("another table added: kept %d, loaded %d, %d arrays", stats.Kept, stats.Loaded, tails)
				}
				checkClean(t, st)
				rc.reset()
				snd.send(7, n)
				snd.send(10, n)
				if got := rc.settleFor(map[int]int{7: n}); got[7] != n || got[10] != 0 {
					t.Errorf("after adding a table: received %d on port 7 and %d on 10; want %d and 0", got[7], got[10], n)
				}

			}

			if err := Flush(st); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Entries(); err == nil {
				t.Error("state directory still exists after Flush")
			}
			rc.reset()
			snd.send(9, n)
			if got := rc.settleFor(map[int]int{9: n}); got[9] != n {
				t.Errorf("after Flush: received %d of %d on port 9", got[9], n)
			}
		})
	}
}

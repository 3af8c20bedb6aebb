package codegen

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// saddrPort is "ip saddr 198.51.100.a tcp dport p v" as nft writes it.
func saddrPort(a byte, p uint16, stmts ...ir.Stmt) *ir.Rule {
	s := []ir.Stmt{
		eq(meta(ir.MetaProtocol), u16(ethPIP)),
		eq(nh(12, 4), ip4(198, 51, 100, a)),
		eq(meta(ir.MetaL4Proto), b(protoTCP)),
		eq(th(2, 2), u16(p)),
	}
	return rule(append(s, stmts...)...)
}

// udpPort is "udp dport p v".
func udpPort(p uint16, stmts ...ir.Stmt) *ir.Rule {
	s := []ir.Stmt{eq(meta(ir.MetaL4Proto), b(protoUDP)), eq(th(2, 2), u16(p))}
	return rule(append(s, stmts...)...)
}

// dnet is "ip daddr 198.51.100.a/30 v" (payload, bitwise, cmp).
func dnet(a byte, stmts ...ir.Stmt) *ir.Rule {
	s := []ir.Stmt{
		eq(meta(ir.MetaProtocol), u16(ethPIP)),
		eq(nh(16, 4, mask(b(255, 255, 255, 252), b(0, 0, 0, 0))), ip4(198, 51, 100, a&^3)),
	}
	return rule(append(s, stmts...)...)
}

func TestPlanGroups(t *testing.T) {
	ranged := func(lo, hi uint16) *ir.Rule {
		return rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), rng(th(2, 2), false, u16(lo), u16(hi)), drop)
	}
	mid := func(p uint16) *ir.Rule { // counter before a match
		return rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), counter, eq(th(2, 2), u16(p)), drop)
	}
	n := func(k int, f func(i int) *ir.Rule) []*ir.Rule {
		var out []*ir.Rule
		for i := 0; i < k; i++ {
			out = append(out, f(i))
		}
		return out
	}
	cat := func(parts ...[]*ir.Rule) []*ir.Rule {
		var out []*ir.Rule
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name  string
		rules []*ir.Rule
		// want lists [start, end, classes, keys, guards] per group
		// (keys and guards of the first class).
		want [][5]int
	}{
		{"one run", n(10, func(i int) *ir.Rule { return saddrPort(byte(i), 22, drop) }),
			[][5]int{{0, 10, 1, 1, 3}}},
		{"two keys", n(10, func(i int) *ir.Rule { return saddrPort(byte(i), uint16(i), counter, accept) }),
			[][5]int{{0, 10, 1, 2, 2}}},
		{"shape change splits", cat(
			n(5, func(i int) *ir.Rule { return saddrPort(byte(i), 22, drop) }),
			n(4, func(i int) *ir.Rule { return udpPort(uint16(i), accept) })),
			[][5]int{{0, 9, 2, 1, 3}}},
		{"short shape runs split without classes", cat(
			n(5, func(i int) *ir.Rule { return saddrPort(byte(i), 22, drop) }),
			n(2, func(i int) *ir.Rule { return udpPort(uint16(i), accept) })),
			[][5]int{{0, 5, 1, 1, 3}}},
		{"alternating shapes form classes", n(12, func(i int) *ir.Rule {
			switch i % 3 {
			case 0:
				return saddrPort(byte(i), 22, counter, drop)
			case 1:
				return udpPort(uint16(i), accept)
			}
			return dnet(byte(4*i), ret)
		}), [][5]int{{0, 12, 3, 1, 3}}},
		{"a jump ends classes", cat(
			n(8, func(i int) *ir.Rule {
				if i%2 == 0 {
					return udpPort(uint16(i), drop)
				}
				return saddrPort(byte(i), 22, drop)
			}),
			[]*ir.Rule{udpPort(100, jump("u"))},
			n(8, func(i int) *ir.Rule {
				if i%2 == 0 {
					return saddrPort(byte(i), 22, drop)
				}
				return udpPort(uint16(i), accept)
			})),
			[][5]int{{0, 8, 2, 1, 1}, {9, 17, 2, 1, 3}}},
		{"too short", n(2, func(i int) *ir.Rule { return udpPort(uint16(i), accept) }), nil},
		{"repeated key after a jump ends the run", []*ir.Rule{
			udpPort(1, drop), udpPort(2, jump("u")), udpPort(3, drop), udpPort(2, accept), udpPort(4, drop), udpPort(5, drop)},
			[][5]int{{0, 3, 1, 1, 1}, {3, 6, 1, 1, 1}}},
		{"repeated key after a verdict stays", []*ir.Rule{
			udpPort(1, drop), udpPort(2, accept), udpPort(1, accept), udpPort(4, drop)},
			[][5]int{{0, 4, 1, 1, 1}}},
		{"differing ranges form a masked group (groupmask.go)", n(6, func(i int) *ir.Rule { return ranged(uint16(i), 100) }),
			[][5]int{{0, 6, 1, 0, 0}}},
		{"equal ranges are guards", n(6, func(i int) *ir.Rule {
			return rule(rng(th(0, 2), false, u16(1), u16(1023)), eq(th(2, 2), u16(uint16(i))), drop)
		}), [][5]int{{0, 6, 1, 1, 1}}},
		{"counter between matches", n(6, func(i int) *ir.Rule { return mid(uint16(i)) }), nil},
		{"no verdict (accounting)", n(6, func(i int) *ir.Rule { return udpPort(uint16(i), counter) }),
			[][5]int{{0, 6, 1, 1, 1}}},
		{"repeated key after a rule without verdict ends the run", []*ir.Rule{
			udpPort(1, counter), udpPort(2, counter), udpPort(3, drop), udpPort(1, accept), udpPort(4, drop), udpPort(5, drop)},
			[][5]int{{0, 3, 1, 1, 1}, {3, 6, 1, 1, 1}}},
		{"a rule without verdict ends classes", cat(
			n(4, func(i int) *ir.Rule { return udpPort(uint16(i), drop) }),
			n(4, func(i int) *ir.Rule { return saddrPort(byte(i), 22, drop) }),
			[]*ir.Rule{udpPort(100, counter)},
			n(4, func(i int) *ir.Rule { return saddrPort(byte(i), 22, drop) })),
			[][5]int{{0, 8, 2, 1, 1}, {9, 13, 1, 1, 3}}},
		{"log and mark statements", n(6, func(i int) *ir.Rule {
			return udpPort(uint16(i), counter, &ir.Log{Prefix: fmt.Sprint(i % 2)}, &ir.MetaSet{Key: ir.MetaMark, Value: u32le(1)}, drop)
		}), [][5]int{{0, 6, 1, 1, 1}}},
		{"reject", n(6, func(i int) *ir.Rule {
			return udpPort(uint16(i), counter, &ir.Reject{Type: ir.RejectICMPUnreach, Code: 3})
		}),
			[][5]int{{0, 6, 1, 1, 1}}},
		{"limit", n(6, func(i int) *ir.Rule { return udpPort(uint16(i), &ir.Limit{Rate: 1, Unit: 1}, counter, drop) }),
			[][5]int{{0, 6, 1, 1, 1}}},
		{"limit and quota stay straight-line", n(6, func(i int) *ir.Rule {
			return udpPort(uint16(i), &ir.Limit{Rate: 1, Unit: 1}, &ir.Quota{Bytes: 9}, drop)
		}), nil},
		{"repeated key after a limit ends the run", []*ir.Rule{
			udpPort(1, drop), udpPort(2, &ir.Quota{Bytes: 9}, drop), udpPort(3, drop), udpPort(2, accept), udpPort(4, drop), udpPort(5, drop)},
			[][5]int{{0, 3, 1, 1, 1}, {3, 6, 1, 1, 1}}},
		{"two counters stay straight-line", n(6, func(i int) *ir.Rule { return udpPort(uint16(i), counter, counter, drop) }), nil},
		{"statement after the verdict", n(6, func(i int) *ir.Rule { return udpPort(uint16(i), drop, counter) }), nil},
		{"same values everywhere", n(6, func(int) *ir.Rule { return udpPort(7, drop) }), nil},
		{"prefix as key", n(6, func(i int) *ir.Rule { return dnet(byte(4*i), drop) }), [][5]int{{0, 6, 1, 1, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, c := table(ir.FamilyNetdev, ir.HookIngress, ir.VerdictAccept, tt.rules,
				&ir.Chain{Name: "u", Rules: []*ir.Rule{rule(drop)}})
			g, err := newGen(tab, Target{Type: XDP, Family: ir.FamilyNetdev, Hook: ir.HookIngress})
			if err != nil {
				t.Fatal(err)
			}
			g.opts.GroupMin = 3
			plans := g.planGroups(c)
			var got [][5]int
			for i := range tt.rules {
				if p := plans[i]; p != nil {
					cl := p.classes[0]
					got = append(got, [5]int{p.start, p.end, len(p.classes), len(cl.keys), len(cl.guards)})
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("groups %v, want %v", got, tt.want)
			}
		})
	}
}

// randomGroupRuleset returns a base chain and two user chains whose rules
// come in runs of the same shape with few distinct values, so that keys
// repeat and packets hit rules often.
func randomGroupRuleset(rng *rand.Rand, n, runMax int, jumps bool) ([]*ir.Rule, []*ir.Chain) {
	verdict := func(user bool) *ir.Verdict {
		switch k := rng.IntN(10); {
		case k < 4:
			return drop
		case k < 7:
			return accept
		case k < 8 && !user && jumps:
			return jump("u1")
		case k < 9 && !user:
			return gotoV("u2")
		default:
			return ret
		}
	}
	stmts := func(user bool) []ir.Stmt {
		if rng.IntN(2) == 0 {
			return []ir.Stmt{counter, verdict(user)}
		}
		return []ir.Stmt{verdict(user)}
	}
	gen := func(count int, user bool) []*ir.Rule {
		var out []*ir.Rule
		for len(out) < count {
			runLen := 1 + rng.IntN(runMax)
			shape := rng.IntN(3)
			for i := 0; i < runLen && len(out) < count; i++ {
				switch shape {
				case 0:
					out = append(out, saddrPort(byte(1+rng.IntN(4)), uint16(20+rng.IntN(5)), stmts(user)...))
				case 1:
					out = append(out, udpPort(uint16(20+rng.IntN(6)), stmts(user)...))
				default:
					out = append(out, dnet(byte(rng.IntN(12)), stmts(user)...))
				}
			}
		}
		return out
	}
	user := []*ir.Chain{{Name: "u1", Rules: gen(n/4, true)}, {Name: "u2", Rules: gen(n/4, true)}}
	return gen(n, false), user
}

// groupTestFrames are TCP and UDP frames from 198.51.100.1-5 to
// 198.51.100.0-11, ports 19-25, plus a non-first fragment and a
// truncated frame.
func groupTestFrames() [][]byte {
	var out [][]byte
	for a := byte(1); a <= 5; a++ {
		for p := uint16(19); p <= 25; p++ {
			d := ip4(198, 51, 100, (a*7+byte(p))%12)
			out = append(out,
				eth(ethPIP, v4{proto: protoTCP, src: ip4(198, 51, 100, a), dst: d}.build(tcp(40000, p, 0x02))),
				eth(ethPIP, v4{proto: protoUDP, src: ip4(198, 51, 100, a), dst: d}.build(udp(40000, p, nil))))
		}
	}
	frag := eth(ethPIP, v4{proto: protoTCP, src: ip4(198, 51, 100, 1), frag: 0x10}.build(tcp(40000, 22, 0x02)))
	short := eth(ethPIP, v4{proto: protoTCP, src: ip4(198, 51, 100, 2), totLen: 22}.build(tcp(40000, 22, 0x02))[:22])
	return append(out, frag, short)
}

// TestGroupsMatchLinear compiles random rulesets with rule groups and as
// straight-line code and requires the same verdict for every frame and
// the same counters at the end, on every program type.
func TestGroupsMatchLinear(t *testing.T) {
	privileged(t)
	frames := groupTestFrames()
	var fls []flavour
	for _, fl := range allFlavours(ir.FamilyIPv4) {
		switch fl.name {
		case "xdp", "tc-ingress", "nf-input", "cgroup-ingress":
			fls = append(fls, fl)
		}
	}
	counted := 0
	t.Cleanup(func() {
		if counted == 0 && !t.Failed() {
			t.Error("no counter counted anything in any ruleset")
		}
	})
	for seed := uint64(1); seed <= 8; seed++ {
		rng := rand.New(rand.NewPCG(seed, 42))
		// Odd seeds: long runs of one shape and jumps (one class per
		// group); even seeds: short runs and no jumps (groups of
		// several classes).
		multi := seed%2 == 0
		runMax, jumps := 12, true
		if multi {
			runMax, jumps = 3, false
		}
		rules, user := randomGroupRuleset(rng, 60, runMax, jumps)
		pol := ir.VerdictAccept
		if seed%2 == 0 {
			pol = ir.VerdictDrop
		}
		for _, fl := range fls {
			t.Run(fmt.Sprintf("seed%d/%s", seed, fl.name), func(t *testing.T) {
				tab, c := table(fl.fam, fl.hook, pol, rules, user...)
				tab.Family, c.Base.Hook = fl.fam, fl.hook
				load := func(opts Options) (*Loaded, *Program) {
					p, err := CompileWith(tab, c, fl.tgt, opts)
					if err != nil {
						t.Fatalf("compile: %v", err)
					}
					l, err := p.Load()
					if err != nil {
						t.Fatalf("load: %v", err)
					}
					t.Cleanup(func() { l.Close() })
					return l, p
				}
				lin, linP := load(Options{Linear: true})
				grp, grpP := load(Options{GroupMin: 2})
				if len(grpP.Groups) == 0 {
					t.Fatal("no rule groups formed")
				}
				classes := false
				for _, a := range grpP.Annotations {
					classes = classes || strings.Contains(a.Text, "rules") && !strings.Contains(a.Text, " in 1 hash lookups")
				}
				if multi && !classes {
					t.Fatal("no group of several classes formed")
				}
				hits := map[ir.VerdictKind]int{}
				for i, f := range frames {
					want := run(t, fl, lin, f)
					if got := run(t, fl, grp, f); got != want {
						t.Errorf("frame %d (%x): grouped %s, linear %s", i, f, vname(got), vname(want))
					}
					hits[want]++
				}
				if hits[ir.VerdictAccept] == 0 || hits[ir.VerdictDrop] == 0 {
					t.Errorf("frames do not exercise both verdicts: %v", hits)
				}
				nonzero := sameCounters(t, lin, linP, grp, grpP)
				counted += nonzero
				t.Logf("%d frames, %d groups, verdicts %v, %d counters hit", len(frames), len(grpP.Groups), hits, nonzero)
			})
		}
	}
}

// TestGroupMapBudget: a chain of more runs than a program may have maps
// groups the longest runs up to the budget, leaves the rest straight-line
// code, and loads.
func TestGroupMapBudget(t *testing.T) {
	var rules []*ir.Rule
	for run := 0; run < 60; run++ {
		size := 8 + run%5
		for i := 0; i < size; i++ {
			rules = append(rules, udpPort(uint16(100*run+i), drop))
		}
		rules = append(rules, rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), counter)) // ends the run
	}
	tab, c := table(ir.FamilyNetdev, ir.HookIngress, ir.VerdictAccept, rules)
	tgt := Target{Type: XDP, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}
	g, err := newGen(tab, tgt)
	if err != nil {
		t.Fatal(err)
	}
	plans := g.planGroups(c)
	maps, minKept := 0, 1<<30
	for _, p := range plans {
		maps += len(p.classes)
		minKept = min(minKept, len(p.rules))
	}
	if maps != maxGroupMaps {
		t.Errorf("%d group maps planned, want the budget %d", maps, maxGroupMaps)
	}
	if minKept < 9 { // runs of 12, 11 and 10 rules fill 36 maps, four of 9 the rest
		t.Errorf("a run of %d rules was grouped while longer ones were left out", minKept)
	}
	privileged(t)
	fl := netdevFlavours()[0]
	l := loadFlavour(t, fl, tab, c)
	if v := run(t, fl, l, udp4(uint16(100*59+8))); v != ir.VerdictDrop {
		t.Errorf("last run's rule: got %s", vname(v))
	}
	if v := run(t, fl, l, udp4(uint16(100*3+7))); v != ir.VerdictDrop {
		t.Errorf("run 3's rule 7: got %s", vname(v))
	}
	if v := run(t, fl, l, udp4(99)); v != ir.VerdictAccept {
		t.Errorf("no rule: got %s", vname(v))
	}
}

// TestEmptyChain: a chain without rules gives its policy on every program
// type; where no prologue can decide first (tc, or an accept policy), the
// program is the policy alone.
func TestEmptyChain(t *testing.T) {
	privileged(t)
	for _, pol := range []ir.VerdictKind{ir.VerdictAccept, ir.VerdictDrop} {
		for _, fl := range allFlavours(ir.FamilyIPv4) {
			t.Run(fmt.Sprintf("%s/%s", vname(pol), fl.name), func(t *testing.T) {
				tab, c := table(fl.fam, fl.hook, pol, nil)
				tab.Family, c.Base.Hook = fl.fam, fl.hook
				p, err := Compile(tab, c, fl.tgt)
				if err != nil {
					t.Fatal(err)
				}
				short := fl.tgt.Type == TC || pol == ir.VerdictAccept
				if n := len(p.Spec.Instructions); (n == 2) != short {
					t.Errorf("%d instructions; policy alone: %v", n, short)
				}
				l := loadFlavour(t, fl, tab, c)
				for _, f := range [][]byte{tcp4(22), udp4(53)} {
					if got := run(t, fl, l, f); got != pol {
						t.Errorf("frame %x: got %s, want the policy %s", f, vname(got), vname(pol))
					}
				}
			})
		}
	}
}

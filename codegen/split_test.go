package codegen

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// splitRule is a rule of the split tests: "ip saddr 198.51.100.src tcp
// dport lo-hi counter verdict", compiled as straight-line code
// (Options.Linear).
type splitRule struct {
	src    byte
	lo, hi uint16
	v      *ir.Verdict
	// exact compares the port for equality (lo) instead of a range, so
	// that runs of such rules form rule groups; twice gives the rule two
	// counters, so that it is never part of one.
	exact, twice bool
}

func (r splitRule) matches(src byte, dport uint16) bool {
	if r.exact {
		return r.src == src && dport == r.lo
	}
	return r.src == src && dport >= r.lo && dport <= r.hi
}

// splitRuleset is a ruleset of splitRules with user chains, and a model
// of how nf_tables evaluates it.
type splitRuleset struct {
	chains map[string][]splitRule
	order  []string // "base" first
	// handles[chain][i] is the handle of rule i of chain.
	handles map[string][]uint64
}

func (rs *splitRuleset) add(chain string, r splitRule) {
	if rs.chains == nil {
		rs.chains, rs.handles = map[string][]splitRule{}, map[string][]uint64{}
	}
	if _, ok := rs.chains[chain]; !ok {
		rs.order = append(rs.order, chain)
	}
	rs.chains[chain] = append(rs.chains[chain], r)
}

// table builds the IR, every rule with a counter.
func (rs *splitRuleset) table(fam ir.Family, hook ir.Hook, policy ir.VerdictKind) (*ir.Table, *ir.Chain) {
	var base *ir.Chain
	var user []*ir.Chain
	for _, name := range rs.order {
		c := &ir.Chain{Name: name}
		rs.handles[name] = nil
		for _, r := range rs.chains[name] {
			port := ir.Stmt(rng(th(2, 2), false, u16(r.lo), u16(r.hi)))
			if r.exact {
				port = eq(th(2, 2), u16(r.lo))
			}
			stmts := []ir.Stmt{eq(nh(12, 4), ip4(198, 51, 100, r.src)), port, counter}
			if r.twice {
				stmts = append(stmts, &ir.Counter{})
			}
			ru := rule(append(stmts, r.v)...)
			rs.handles[name] = append(rs.handles[name], ru.Handle)
			c.Rules = append(c.Rules, ru)
		}
		if name == "base" {
			base = c
		} else {
			user = append(user, c)
		}
	}
	t, b := table(fam, hook, policy, base.Rules, user...)
	return t, b
}

// eval returns the verdict of chain for a packet (decided false: the chain
// ended or returned) and counts the rules that matched in hits.
func (rs *splitRuleset) eval(chain string, src byte, dport uint16, hits map[uint64]int) (ir.VerdictKind, bool) {
	for i, r := range rs.chains[chain] {
		if !r.matches(src, dport) {
			continue
		}
		hits[rs.handles[chain][i]]++
		switch r.v.Kind {
		case ir.VerdictAccept, ir.VerdictDrop:
			return r.v.Kind, true
		case ir.VerdictReturn:
			return 0, false
		case ir.VerdictJump:
			if v, ok := rs.eval(r.v.Chain, src, dport, hits); ok {
				return v, true
			}
		case ir.VerdictGoto:
			return rs.eval(r.v.Chain, src, dport, hits)
		}
	}
	return 0, false
}

// splitTestRuleset is long enough for several parts, with jumps and gotos
// into user chains that are themselves cut, returns from inside them, and
// rules behind them reached past a cut.
func splitTestRuleset() *splitRuleset {
	rs := &splitRuleset{}
	verdict := func(i int) *ir.Verdict {
		if i%2 == 0 {
			return accept
		}
		return drop
	}
	// Source 1: the base chain's own rules, before and after the jumps.
	for i := 0; i < 150; i++ {
		rs.add("base", splitRule{src: 1, lo: uint16(1000 + 10*i), hi: uint16(1000 + 10*i + i%7), v: verdict(i)})
	}
	// Source 2 jumps to "big", which returns for ports 5000-5099 and
	// jumps on to "inner" for ports 6000-6999.
	rs.add("base", splitRule{src: 2, lo: 0, hi: 65535, v: jump("big")})
	for i := 0; i < 300; i++ {
		if i == 120 {
			rs.add("big", splitRule{src: 2, lo: 5000, hi: 5099, v: ret})
			rs.add("big", splitRule{src: 2, lo: 6000, hi: 6999, v: jump("inner")})
		}
		rs.add("big", splitRule{src: 2, lo: uint16(1000 + 10*i), hi: uint16(1000 + 10*i + i%5), v: verdict(i + 1)})
	}
	for i := 0; i < 200; i++ {
		rs.add("inner", splitRule{src: 2, lo: uint16(6000 + 4*i), hi: uint16(6001 + 4*i), v: verdict(i)})
	}
	rs.add("inner", splitRule{src: 2, lo: 6900, hi: 6999, v: ret})
	// Source 2 continues here after "big" returned.
	for i := 0; i < 150; i++ {
		rs.add("base", splitRule{src: 2, lo: uint16(5000 + 2*i), hi: uint16(5000 + 2*i), v: verdict(i)})
	}
	// Source 3 goes to "tail", whose end is the base chain's policy.
	rs.add("base", splitRule{src: 3, lo: 0, hi: 65535, v: gotoV("tail")})
	for i := 0; i < 200; i++ {
		rs.add("tail", splitRule{src: 3, lo: uint16(1000 + 10*i), hi: uint16(1000 + 10*i + 3), v: verdict(i)})
	}
	for i := 0; i < 100; i++ {
		rs.add("base", splitRule{src: 4, lo: uint16(1000 + 10*i), hi: uint16(1000 + 10*i + 3), v: verdict(i + 1)})
	}
	return rs
}

// splitPackets are the packets the tests send: for every rule, its first
// and last port and the ports just outside; and sources no rule has.
func (rs *splitRuleset) packets() [][2]uint16 {
	seen := map[[2]uint16]bool{}
	var out [][2]uint16
	add := func(src byte, port uint16) {
		k := [2]uint16{uint16(src), port}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, name := range rs.order {
		for _, r := range rs.chains[name] {
			add(r.src, r.lo)
			if r.exact {
				add(r.src, r.lo+1)
				continue
			}
			add(r.src, r.hi)
			if r.lo > 0 {
				add(r.src, r.lo-1)
			}
			if r.hi < 65535 {
				add(r.src, r.hi+1)
			}
		}
	}
	add(9, 1000)
	return out
}

func TestSplitCompile(t *testing.T) {
	rs := splitTestRuleset()
	tab, c := rs.table(ir.FamilyNetdev, ir.HookIngress, ir.VerdictAccept)
	for _, tc := range []struct {
		name string
		tgt  Target
	}{
		{"xdp", Target{Type: XDP, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}},
		{"tc", Target{Type: TC, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := CompileWith(tab, c, tc.tgt, Options{Linear: true})
			if err != nil {
				t.Fatal(err)
			}
			if p.Parts() < 4 || p.Parts() > maxParts {
				t.Fatalf("%d parts, want 4…%d", p.Parts(), maxParts)
			}
			if p.TailCalls == nil || int(p.TailCalls.MaxEntries) != len(p.Tail) || p.TailCalls.Type != ebpf.ProgramArray {
				t.Fatalf("program array %+v for %d tail programs", p.TailCalls, len(p.Tail))
			}
			extra := len(p.Tail) - (p.Parts() - 1)
			if extra < 1 {
				t.Errorf("no program enters a part behind its start; the test wants jumps across parts")
			}
			// Every rule is in exactly one part (in its first program or
			// in one entered behind the part's start), and every program
			// is small.
			parts := map[uint64]map[int]bool{}
			check := func(name string, part, insns int, anns []Annotation) {
				if insns > maxPartInsns {
					t.Errorf("%s: %d instructions", name, insns)
				}
				for _, a := range anns {
					if a.Handle != 0 {
						if parts[a.Handle] == nil {
							parts[a.Handle] = map[int]bool{}
						}
						parts[a.Handle][part] = true
					}
				}
			}
			check("part 0", 0, len(p.Spec.Instructions), p.Annotations)
			for i, tp := range p.Tail {
				if tp.Spec.Type != p.Spec.Type || tp.Spec.AttachType != p.Spec.AttachType {
					t.Errorf("slot %d: type %s/%s, want %s/%s", i, tp.Spec.Type, tp.Spec.AttachType, p.Spec.Type, p.Spec.AttachType)
				}
				if tp.Part < 1 || tp.Part >= p.Parts() || (i < p.Parts()-1 && tp.Part != i+1) {
					t.Errorf("slot %d runs part %d of %d", i, tp.Part, p.Parts())
				}
				check(fmt.Sprintf("slot %d", i), tp.Part, len(tp.Spec.Instructions), tp.Annotations)
			}
			seen := map[uint64]int{}
			for h, ps := range parts {
				seen[h] = len(ps)
			}
			for _, name := range rs.order {
				for _, h := range rs.handles[name] {
					if seen[h] != 1 {
						t.Errorf("chain %s rule %d is in %d parts", name, h, seen[h])
					}
				}
			}
		})
	}
}

// TestSplitVerdicts runs a chain split into several programs with every
// program type and checks every packet's verdict and the counter of every
// rule against a model of nf_tables: the first and last rule of each part,
// jumps into user chains cut in the middle, returns and gotos across parts.
func TestSplitVerdicts(t *testing.T) {
	privileged(t)
	checkSplit(t, splitTestRuleset(), Options{Linear: true}, []flavour{
		netdevFlavours()[0], netdevFlavours()[1], ipFlavours(ir.FamilyIPv4)[1], ipFlavours(ir.FamilyIPv4)[3],
	})
}

// TestSplitWithGroups: rule groups and straight-line rules in turn, the
// chain cut behind groups as well as behind rules.
func TestSplitWithGroups(t *testing.T) {
	privileged(t)
	rs := &splitRuleset{}
	for b := 0; b < 6; b++ {
		src := byte(10 + b)
		for i := 0; i < 24; i++ {
			v := accept
			if i%3 == 0 {
				v = drop
			}
			rs.add("base", splitRule{src: src, lo: uint16(2000 + 7*i), exact: true, v: v})
		}
		for i := 0; i < 90; i++ {
			rs.add("base", splitRule{src: src, lo: uint16(3000 + 5*i), hi: uint16(3001 + 5*i), twice: true, v: map[bool]*ir.Verdict{true: accept, false: drop}[i%2 == 0]})
		}
	}
	tab, c := rs.table(ir.FamilyNetdev, ir.HookIngress, ir.VerdictAccept)
	p, err := Compile(tab, c, Target{Type: XDP, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Groups) < 6 || p.Parts() < 3 {
		t.Fatalf("%d groups in %d parts, want 6 groups and at least 3 parts", len(p.Groups), p.Parts())
	}
	checkSplit(t, rs, Options{}, []flavour{netdevFlavours()[0], ipFlavours(ir.FamilyIPv4)[1]})
}

// checkSplit runs every packet of rs through the chain compiled with opts
// for each flavour, which must be split, and compares verdicts and
// counters with the model.
func checkSplit(t *testing.T, rs *splitRuleset, opts Options, flavours []flavour) {
	pkts := rs.packets()
	for _, fl := range flavours {
		t.Run(fl.name, func(t *testing.T) {
			for _, policy := range []ir.VerdictKind{ir.VerdictAccept, ir.VerdictDrop} {
				tab, c := rs.table(fl.fam, fl.hook, policy)
				p, err := CompileWith(tab, c, fl.tgt, opts)
				if err != nil {
					t.Fatal(err)
				}
				l := loadFlavourWith(t, fl, tab, c, opts)
				if len(l.Tail) != len(p.Tail) || len(l.Tail) == 0 {
					t.Fatalf("%d tail programs loaded, want %d", len(l.Tail), len(p.Tail))
				}
				slots := map[uint64][]int{}
				for i, s := range p.CounterSlots {
					slots[s.Handle] = append(slots[s.Handle], i)
				}
				hits := map[uint64]int{}
				for _, pk := range pkts {
					src, port := byte(pk[0]), pk[1]
					step := map[uint64]int{}
					want, ok := rs.eval("base", src, port, step)
					if !ok {
						want = policy
					}
					frame := eth(0x0800, v4{proto: protoTCP, src: ip4(198, 51, 100, src)}.build(tcp(40000, port, 0x02)))
					if got := run(t, fl, l, frame); got != want {
						t.Fatalf("policy %s, source .%d port %d: %s, want %s", vname(policy), src, port, vname(got), vname(want))
					}
					for h, n := range step {
						hits[h] += n
					}
				}
				got, err := l.ReadCounters()
				if err != nil {
					t.Fatal(err)
				}
				var bad []string
				for _, name := range rs.order {
					for _, h := range rs.handles[name] {
						if len(slots[h]) == 0 {
							bad = append(bad, fmt.Sprintf("%s/%d: no counter", name, h))
						}
						for _, i := range slots[h] {
							if n := got[i].Packets; n != uint64(hits[h]) {
								bad = append(bad, fmt.Sprintf("%s/%d: %d, want %d", name, h, n, hits[h]))
							}
						}
					}
				}
				if len(bad) > 0 {
					t.Fatalf("policy %s: counters differ (%d): %s", vname(policy), len(bad), strings.Join(bad[:min(len(bad), 10)], "; "))
				}
			}
		})
	}
}

// TestSplitLimits: a chain too long even for the largest parts is refused
// when compiled, with the numbers, never loaded into a verifier failure.
func TestSplitLimits(t *testing.T) {
	rs := &splitRuleset{}
	for i := 0; i < 100000; i++ {
		rs.add("base", splitRule{src: byte(i % 250), lo: uint16(i), hi: uint16(i + 1), v: drop})
	}
	tab, c := rs.table(ir.FamilyNetdev, ir.HookIngress, ir.VerdictAccept)
	_, err := CompileWith(tab, c, Target{Type: XDP, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}, Options{Linear: true})
	var ue *UnsupportedError
	if !errors.As(err, &ue) {
		t.Fatalf("got %v, want an UnsupportedError", err)
	}
	for _, want := range []string{"100000 rules", "instructions", "tail", "sets or maps"} {
		if !strings.Contains(ue.Error(), want) {
			t.Errorf("error %q does not say %q", ue.Error(), want)
		}
	}
}

package codegen

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// ternHolds reports whether the register image reg matches one of ts.
func ternHolds(ts []tern, reg []byte) bool {
	for _, t := range ts {
		ok := true
		for i := range t.val {
			if reg[i]&t.mask[i] != t.val[i] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// memcmpHolds evaluates m over a register image as nft_cmp/nft_range do.
func memcmpHolds(m *ir.Match, reg []byte) bool {
	c := bytes.Compare(reg[:len(m.Value)], m.Value)
	switch m.Op {
	case ir.OpEq:
		return c == 0
	case ir.OpNeq:
		return c != 0
	case ir.OpLt:
		return c < 0
	case ir.OpLte:
		return c <= 0
	case ir.OpGt:
		return c > 0
	case ir.OpGte:
		return c >= 0
	case ir.OpInRange, ir.OpNotInRange:
		in := c >= 0 && bytes.Compare(reg[:len(m.High)], m.High) <= 0
		return in == (m.Op == ir.OpInRange)
	}
	panic("op")
}

// TestMaskConstraints checks every compare a masked group rewrites
// against memcmp over all values of a 16-bit field (a port): the
// ternaries hold for exactly the values the compare holds for, are
// disjoint, and a range takes at most 2w-2 = 30 of them.
func TestMaskConstraints(t *testing.T) {
	tests := []struct {
		name  string
		ms    []*ir.Match // compares of one rule on the field
		terns int         // ternaries expected (-1: do not check)
	}{
		{"eq", []*ir.Match{cmp(th(2, 2), ir.OpEq, u16(22))}, 1},
		{"eq 0", []*ir.Match{cmp(th(2, 2), ir.OpEq, u16(0))}, 1},
		{"neq", []*ir.Match{cmp(th(2, 2), ir.OpNeq, u16(22))}, -1},
		{"lt 1024", []*ir.Match{cmp(th(2, 2), ir.OpLt, u16(1024))}, 1},
		{"lt 0 (empty)", []*ir.Match{cmp(th(2, 2), ir.OpLt, u16(0))}, 0},
		{"gt 65535 (empty)", []*ir.Match{cmp(th(2, 2), ir.OpGt, u16(65535))}, 0},
		{"lte 65535 (all)", []*ir.Match{cmp(th(2, 2), ir.OpLte, u16(65535))}, 1},
		{"gte 1", []*ir.Match{cmp(th(2, 2), ir.OpGte, u16(1))}, 16},
		{"nft range 1000-1999", []*ir.Match{cmp(th(2, 2), ir.OpGte, u16(1000)), cmp(th(2, 2), ir.OpLte, u16(1999))}, -1},
		{"range 1-65534 (worst case)", []*ir.Match{rng(th(2, 2), false, u16(1), u16(65534))}, 30},
		{"range 1024-1039", []*ir.Match{rng(th(2, 2), false, u16(1024), u16(1039))}, 1},
		{"range 0-0", []*ir.Match{rng(th(2, 2), false, u16(0), u16(0))}, 1},
		{"range 65535-65535", []*ir.Match{rng(th(2, 2), false, u16(65535), u16(65535))}, 1},
		{"range reversed (empty)", []*ir.Match{rng(th(2, 2), false, u16(9), u16(8))}, 0},
		{"not in range", []*ir.Match{rng(th(2, 2), true, u16(1000), u16(1999))}, -1},
		{"not in 0-65535 (empty)", []*ir.Match{rng(th(2, 2), true, u16(0), u16(65535))}, 0},
		{"first byte only", []*ir.Match{cmp(th(2, 2), ir.OpGte, b(4))}, -1},
		{"range and neq inside", []*ir.Match{rng(th(2, 2), false, u16(100), u16(200)), cmp(th(2, 2), ir.OpNeq, u16(150))}, -1},
		{"byte range and word compare", []*ir.Match{cmp(th(2, 2), ir.OpGte, b(4)), cmp(th(2, 2), ir.OpLt, u16(1500))}, -1},
		{"masked eq", []*ir.Match{eq(th(2, 2, mask(b(0xff, 0xf0), b(0, 0))), u16(0x1230))}, 1},
		{"masked eq, bit outside the mask (never)", []*ir.Match{eq(th(2, 2, mask(b(0xff, 0xf0), b(0, 0))), u16(0x1231))}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mt := &maskTable{index: map[maskColKey]int{}}
			var cs []colConstraint
			for _, m := range tt.ms {
				ci, fmask, ok := mt.column(&m.Field)
				if !ok || ci != 0 {
					t.Fatalf("column %d, ok %v", ci, ok)
				}
				c, ok := constraint(m, 4, fmask)
				if !ok {
					t.Fatalf("%v: not a constraint", m.Op)
				}
				cs = append(cs, c)
			}
			ts := resolve(cs, 4)
			if tt.terns >= 0 && len(ts) != tt.terns {
				t.Errorf("%d ternaries, want %d", len(ts), tt.terns)
			}
			reg := make([]byte, 4)
			for v := 0; v < 1<<16; v++ {
				reg[0], reg[1] = byte(v>>8), byte(v)
				want := true
				for _, m := range tt.ms {
					r := reg
					if len(m.Field.Transforms) > 0 {
						tr := m.Field.Transforms[0]
						r = []byte{reg[0] & tr.Mask[0], reg[1] & tr.Mask[1], 0, 0}
					}
					want = want && memcmpHolds(m, r)
				}
				hits := 0
				for _, x := range ts {
					if ternHolds([]tern{x}, reg) {
						hits++
					}
				}
				if (hits > 0) != want || hits > 1 {
					t.Fatalf("port %d: %d ternaries hold, compare holds: %v", v, hits, want)
				}
			}
		})
	}
}

// TestPrefixes128 checks the prefix cover of ranges of IPv6 addresses
// (16-byte integers) at their ends and one past them.
func TestPrefixes128(t *testing.T) {
	addr := func(last ...byte) []byte {
		a := []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		copy(a[16-len(last):], last)
		return a
	}
	lo, hi := addr(0x01, 0x00, 0x05), addr(0x07, 0xff, 0x00)
	m := rng(nh(8, 16), false, lo, hi)
	c, ok := constraint(m, 16, nil)
	if !ok {
		t.Fatal("not a constraint")
	}
	ts := resolve([]colConstraint{c}, 16)
	if len(ts) == 0 || len(ts) > 2*128-2 {
		t.Fatalf("%d prefixes", len(ts))
	}
	for _, tc := range []struct {
		a    []byte
		want bool
	}{
		{lo, true}, {hi, true}, {addr(0x01, 0x00, 0x04), false}, {addr(0x07, 0xff, 0x01), false},
		{addr(0x04, 0x00, 0x00), true}, {addr(0x01, 0x00, 0x00), false}, {addr(0x08, 0, 0), false},
	} {
		if got := ternHolds(ts, tc.a); got != tc.want {
			t.Errorf("%x: %v, want %v", tc.a, got, tc.want)
		}
	}
}

// portRange is "tcp dport lo-hi" as nft writes it (two compares).
func portRange(lo, hi uint16, stmts ...ir.Stmt) *ir.Rule {
	s := []ir.Stmt{
		eq(meta(ir.MetaL4Proto), b(protoTCP)),
		cmp(th(2, 2), ir.OpGte, u16(lo)),
		cmp(th(2, 2), ir.OpLte, u16(hi)),
	}
	return rule(append(s, stmts...)...)
}

// srcRange is "ip saddr 198.51.100.a tcp dport lo-hi".
func srcRange(a byte, lo, hi uint16, stmts ...ir.Stmt) *ir.Rule {
	s := []ir.Stmt{
		eq(meta(ir.MetaProtocol), u16(ethPIP)),
		eq(nh(12, 4), ip4(198, 51, 100, a)),
		eq(meta(ir.MetaL4Proto), b(protoTCP)),
		cmp(th(2, 2), ir.OpGte, u16(lo)),
		cmp(th(2, 2), ir.OpLte, u16(hi)),
	}
	return rule(append(s, stmts...)...)
}

// srcNet is "ip saddr net/plen" as nft writes it: a load of the whole
// bytes of the prefix, and a bitwise mask for the rest.
func srcNet(net []byte, plen int, stmts ...ir.Stmt) *ir.Rule {
	var m *ir.Match
	switch {
	case plen%8 == 0 && plen > 0:
		m = eq(nh(12, uint32(plen/8)), net[:plen/8])
	default:
		mk := make([]byte, 4)
		for i := 0; i < plen; i++ {
			mk[i/8] |= 0x80 >> (i % 8)
		}
		v := make([]byte, 4)
		for i := range v {
			v[i] = net[i] & mk[i]
		}
		m = eq(nh(12, 4, mask(mk, b(0, 0, 0, 0))), v)
	}
	s := []ir.Stmt{eq(meta(ir.MetaProtocol), u16(ethPIP)), m}
	return rule(append(s, stmts...)...)
}

func TestPlanMaskGroups(t *testing.T) {
	n := func(k int, f func(i int) *ir.Rule) []*ir.Rule {
		var out []*ir.Rule
		for i := 0; i < k; i++ {
			out = append(out, f(i))
		}
		return out
	}
	udpRange := func(lo, hi uint16, v ir.Stmt) *ir.Rule {
		return rule(eq(meta(ir.MetaL4Proto), b(protoUDP)), rng(th(2, 2), false, u16(lo), u16(hi)), v)
	}
	dns := inSet(th(0, 2), false, 2, el(u16(53)))
	tests := []struct {
		name  string
		rules []*ir.Rule
		// want lists [start, end, classes] per group; masked says
		// whether the first group is a masked one.
		want   [][3]int
		masked bool
	}{
		{"twelve range widths", n(48, func(i int) *ir.Rule {
			lo := uint16(1024 + 16*i)
			return srcRange(byte(1+i%7), lo, lo+1+uint16(i%12), drop)
		}), [][3]int{{0, 48, 1}}, true},
		{"ranges of every width merge into few lookups", n(40, func(i int) *ir.Rule {
			return portRange(uint16(i*1000+7), uint16(i*1000+7+i*i*17), accept)
		}), [][3]int{{0, 40, -1}}, true},
		{"prefixes of mixed lengths", n(24, func(i int) *ir.Rule {
			return srcNet(ip4(198, 51, 100, byte(16*i)), []int{24, 28, 32, 30, 16, 20}[i%6], drop)
		}), [][3]int{{0, 24, -1}}, true},
		{"inequalities", n(40, func(i int) *ir.Rule {
			return rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), cmp(th(2, 2), ir.OpNeq, u16(uint16(i))), cmp(th(0, 2), ir.OpLt, u16(uint16(100*i))), drop)
		}), [][3]int{{0, 40, -1}}, true},
		{"equalities stay equality groups", n(12, func(i int) *ir.Rule { return saddrPort(byte(i), 22, drop) }),
			[][3]int{{0, 12, 1}}, false},
		{"a jump keeps one class", []*ir.Rule{
			udpRange(16, 31, drop), udpRange(32, 63, jump("u")), udpRange(64, 127, drop), udpRange(128, 255, accept),
			udpRange(256, 300, drop), udpRange(512, 1023, drop), udpRange(1024, 2047, drop), udpRange(2048, 4095, drop)},
			[][3]int{{2, 8, -1}}, true},
		{"a set of differing elements ends the run", append(n(8, func(i int) *ir.Rule {
			return udpRange(uint16(10*i), uint16(10*i+5), drop)
		}), rule(inSet(th(2, 2), false, 2, el(u16(1))), drop), rule(inSet(th(2, 2), false, 2, el(u16(2))), drop)),
			[][3]int{{0, 8, -1}}, true},
		{"one set as guard joins", n(10, func(i int) *ir.Rule {
			return rule(dns, rng(th(2, 2), false, u16(uint16(10*i)), u16(uint16(10*i+3))), drop)
		}), [][3]int{{0, 10, 1}}, true},
		{"different sets as guards: a class each, too many", n(10, func(i int) *ir.Rule {
			return rule(inSet(th(0, 2), false, 2, el(u16(53))), rng(th(2, 2), false, u16(uint16(10*i)), u16(uint16(10*i+3))), drop)
		}), nil, false},
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
			var got [][3]int
			for i := range tt.rules {
				if p := plans[i]; p != nil {
					if len(p.classes) > maxGroupClasses {
						t.Errorf("group at %d: %d classes", i, len(p.classes))
					}
					got = append(got, [3]int{p.start, p.end, len(p.classes)})
					if len(got) == 1 && (p.classes[0].mask != nil) != tt.masked {
						t.Errorf("masked group: %v, want %v", p.classes[0].mask != nil, tt.masked)
					}
					t.Logf("group %d-%d: %d classes", p.start, p.end, len(p.classes))
				}
			}
			for i := range got {
				if i < len(tt.want) && tt.want[i][2] < 0 {
					got[i][2] = -1
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("groups %v, want %v", got, tt.want)
			}
		})
	}
}

// rangeFrames are frames at the edges of the ranges and prefixes of
// randomMaskRuleset: every port near a multiple of 8 and at 0 and 65535,
// from sources at the edges of the /24…/32 nets of 198.51.100.0/24, TCP
// and UDP, plus a non-first fragment and a truncated frame.
func rangeFrames(rnd *rand.Rand) [][]byte {
	var out [][]byte
	ports := []uint16{0, 1, 65534, 65535}
	for i := 0; i < 40; i++ {
		base := uint16(rnd.IntN(400)) * 8
		ports = append(ports, base-1, base, base+1, base+7)
	}
	srcs := [][]byte{ip4(198, 51, 100, 0), ip4(198, 51, 100, 255), ip4(192, 0, 2, 9)}
	for i := 0; i < 12; i++ {
		a := byte(rnd.IntN(256))
		srcs = append(srcs, ip4(198, 51, 100, a&^7), ip4(198, 51, 100, a|7), ip4(198, 51, 100, (a&^15)-1))
	}
	for i, p := range ports {
		s := srcs[i%len(srcs)]
		sp := ports[(i*7)%len(ports)]
		out = append(out,
			eth(ethPIP, v4{proto: protoTCP, src: s}.build(tcp(sp, p, 0x02))),
			eth(ethPIP, v4{proto: protoUDP, src: srcs[(i+1)%len(srcs)]}.build(udp(sp, p, nil))))
	}
	frag := eth(ethPIP, v4{proto: protoTCP, src: ip4(198, 51, 100, 1), frag: 0x10}.build(tcp(40000, 22, 0x02)))
	short := eth(ethPIP, v4{proto: protoTCP, src: ip4(198, 51, 100, 2), totLen: 22}.build(tcp(40000, 22, 0x02))[:22])
	return append(out, frag, short)
}

// randomMaskRuleset returns a base chain and two user chains of rules
// with port ranges (as two compares and as nft_range), inequalities,
// prefixes of every length, counters and every verdict, in runs of one
// shape; ranges overlap, so that first-match decides.
func randomMaskRuleset(rnd *rand.Rand, n int, jumps bool) ([]*ir.Rule, []*ir.Chain) {
	verdict := func(user bool) *ir.Verdict {
		switch k := rnd.IntN(10); {
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
		if rnd.IntN(2) == 0 {
			return []ir.Stmt{counter, verdict(user)}
		}
		return []ir.Stmt{verdict(user)}
	}
	port := func() uint16 { return uint16(rnd.IntN(400)) * 8 }
	gen := func(count int, user bool) []*ir.Rule {
		var out []*ir.Rule
		shape, left := 0, 0
		for len(out) < count {
			if left == 0 {
				// Runs of 1 to 16 rules of one shape.
				shape, left = rnd.IntN(5), 1+rnd.IntN(16)
			}
			left--
			lo := port()
			hi := lo + uint16(rnd.IntN(200))
			switch shape {
			case 0:
				out = append(out, portRange(lo, hi, stmts(user)...))
			case 1:
				out = append(out, srcRange(byte(rnd.IntN(256)), lo, hi, stmts(user)...))
			case 2:
				out = append(out, srcNet(ip4(198, 51, 100, byte(rnd.IntN(256))), 24+rnd.IntN(9), stmts(user)...))
			case 3:
				out = append(out, rule(append([]ir.Stmt{eq(meta(ir.MetaL4Proto), b(protoUDP)),
					rng(th(2, 2), rnd.IntN(3) == 0, u16(lo), u16(hi))}, stmts(user)...)...))
			default:
				out = append(out, rule(append([]ir.Stmt{eq(meta(ir.MetaL4Proto), b(protoTCP)),
					cmp(th(2, 2), ir.OpNeq, u16(lo)), cmp(th(0, 2), ir.OpLt, u16(hi))}, stmts(user)...)...))
			}
		}
		return out
	}
	user := []*ir.Chain{{Name: "u1", Rules: gen(n/4, true)}, {Name: "u2", Rules: gen(n/4, true)}}
	return gen(n, false), user
}

// TestMaskGroupsMatchLinear compiles random rulesets of ranges,
// inequalities and prefixes with masked rule groups and as straight-line
// code and requires the same verdict for every frame (frames at the
// edges of the ranges and prefixes) and the same counters, on every
// program type.
func TestMaskGroupsMatchLinear(t *testing.T) {
	privileged(t)
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
	for seed := uint64(1); seed <= 4; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 8))
		jumps := seed%2 == 1
		rules, user := randomMaskRuleset(rnd, 80, jumps)
		frames := rangeFrames(rnd)
		pol := ir.VerdictAccept
		if seed%3 == 0 {
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
				grp, grpP := load(Options{GroupMin: 4})
				masked := 0
				for _, a := range grpP.Annotations {
					if strings.HasPrefix(a.Text, "group of") {
						masked++
					}
				}
				if masked == 0 {
					t.Fatal("no rule groups formed")
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
				lv, err := lin.ReadCounters()
				if err != nil {
					t.Fatal(err)
				}
				gv, err := grp.ReadCounters()
				if err != nil {
					t.Fatal(err)
				}
				gc := map[CounterSlot]CounterValue{}
				for i, s := range grpP.CounterSlots {
					gc[s] = gv[i]
				}
				nonzero := 0
				for i, s := range linP.CounterSlots {
					if gc[s] != lv[i] {
						t.Errorf("counter %+v: grouped %+v, linear %+v", s, gc[s], lv[i])
					}
					if lv[i].Packets > 0 {
						nonzero++
					}
				}
				counted += nonzero
				t.Logf("%d frames, %d groups (%d maps), verdicts %v, %d counters hit", len(frames), masked, len(grpP.Groups), hits, nonzero)
			})
		}
	}
}

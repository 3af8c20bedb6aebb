package codegen

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Expectations follow what BPF_PROG_TEST_RUN builds: the device is the
// namespace's loopback (ifindex 1, type ARPHRD_LOOPBACK, address zero);
// the netfilter test run sets only state->out (its hook switch looks at the
// default LOCAL_OUT hook), so iif is 0 there.
func TestMetaVerdicts(t *testing.T) {
	lo := &Device{Index: 1, Name: "lo", Type: 772}
	frame := tcp4(22)
	name := func(s string) []byte { v := make([]byte, 16); copy(v, s); return v }
	w := func(def ir.VerdictKind, over ...any) pkt {
		p := pkt{name: "tcp", frame: frame, want: def, wantFor: map[string]ir.VerdictKind{}}
		for i := 0; i < len(over); i += 2 {
			p.wantFor[over[i].(string)] = over[i+1].(ir.VerdictKind)
		}
		return p
	}
	noXDP := []string{"tc", "nf", "cgroup"}
	cases := []verdictCase{
		{name: "len", rules: []*ir.Rule{rule(eq(meta(ir.MetaLen), u32le(40)), drop)}, pkts: []pkt{w(D, "tc-egress", A)}},
		{name: "len tc-egress", rules: []*ir.Rule{rule(eq(meta(ir.MetaLen), u32le(54)), drop)}, pkts: []pkt{w(A, "tc-egress", D)}},
		{name: "protocol", rules: []*ir.Rule{rule(eq(meta(ir.MetaProtocol), u16(0x0800)), drop)}, pkts: []pkt{w(D)}},
		{name: "nfproto", rules: []*ir.Rule{rule(eq(meta(ir.MetaNFProto), b(2)), drop)}, pkts: []pkt{w(D, "xdp", A, "tc", A)}},
		{name: "nfproto netdev", rules: []*ir.Rule{rule(eq(meta(ir.MetaNFProto), b(5)), drop)}, pkts: []pkt{w(A, "xdp", D, "tc", D)}},
		{name: "mark", only: noXDP, rules: []*ir.Rule{rule(eq(meta(ir.MetaMark), u32le(0)), drop)}, pkts: []pkt{w(D)}},
		{name: "mark miss", only: noXDP, rules: []*ir.Rule{rule(eq(meta(ir.MetaMark), u32le(7)), drop)}, pkts: []pkt{w(A)}},
		{name: "iif", rules: []*ir.Rule{rule(eq(meta(ir.MetaIif), u32le(1)), drop)}, pkts: []pkt{w(D, "tc-egress", A, "cgroup-egress", A, "nf", A)}},
		{name: "iif 0", rules: []*ir.Rule{rule(eq(meta(ir.MetaIif), u32le(0)), drop)}, pkts: []pkt{w(A, "tc-egress", D, "cgroup-egress", D, "nf", D)}},
		{name: "oif", rules: []*ir.Rule{rule(eq(meta(ir.MetaOif), u32le(1)), drop)}, pkts: []pkt{w(A, "tc-egress", D, "cgroup-egress", D, "nf-output", D)}},
		{name: "iifname", dev: lo, rules: []*ir.Rule{rule(eq(meta(ir.MetaIifName), name("lo")), drop)}, pkts: []pkt{w(D, "tc-egress", A, "cgroup-egress", A, "nf", A)}},
		{name: "iifname wildcard", dev: lo, rules: []*ir.Rule{rule(eq(meta(ir.MetaIifName), []byte("l")), drop)}, pkts: []pkt{w(D, "tc-egress", A, "cgroup-egress", A, "nf", A)}},
		{name: "iifname empty", dev: lo, rules: []*ir.Rule{rule(eq(meta(ir.MetaIifName), name("")), drop)}, pkts: []pkt{w(A, "tc-egress", D, "cgroup-egress", D, "nf", D)}},
		{name: "oifname", rules: []*ir.Rule{rule(eq(meta(ir.MetaOifName), name("lo")), drop)}, pkts: []pkt{w(A, "tc-egress", D, "cgroup-egress", D, "nf-output", D)}},
		{name: "oifname prefix miss", rules: []*ir.Rule{rule(eq(meta(ir.MetaOifName), []byte("eth")), drop)}, pkts: []pkt{w(A)}},
		{name: "iiftype", dev: lo, rules: []*ir.Rule{rule(eq(meta(ir.MetaIifType), u32le(772)[:2]), drop)}, pkts: []pkt{w(D, "tc-egress", A, "cgroup-egress", A, "nf", A)}},
		{name: "iiftype absent breaks", dev: lo, rules: []*ir.Rule{rule(cmp(meta(ir.MetaIifType), ir.OpNeq, u32le(1)[:2]), drop)}, pkts: []pkt{w(D, "tc-egress", A, "cgroup-egress", A, "nf", A)}},
		{name: "oiftype", rules: []*ir.Rule{rule(eq(meta(ir.MetaOifType), u32le(772)[:2]), drop)}, pkts: []pkt{w(A, "tc-egress", D, "cgroup-egress", D, "nf-output", D)}},
		{name: "pkttype otherhost", dev: lo, rules: []*ir.Rule{rule(eq(meta(ir.MetaPktType), b(3)), drop)}, pkts: []pkt{w(D, "nf-output", A)}},
		{name: "pkttype host at xdp", only: []string{"xdp"}, dev: &Device{Index: 1, Name: "x", Type: 1, MAC: [6]byte(macDst)}, rules: []*ir.Rule{
			rule(eq(meta(ir.MetaPktType), b(0)), drop),
			rule(eq(meta(ir.MetaPktType), b(1)), accept),
		}, pol: D, pkts: []pkt{
			{name: "host", frame: frame, want: D},
			{name: "broadcast", frame: append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, frame[6:]...), want: A},
			{name: "multicast", frame: append([]byte{0x01, 0, 0x5e, 0, 0, 1}, frame[6:]...), want: D},
		}},
		{name: "l4proto udp", rules: []*ir.Rule{rule(eq(meta(ir.MetaL4Proto), b(protoUDP)), drop)}, pkts: []pkt{w(A), {name: "udp", frame: udp4(53), want: D}}},
	}
	runVerdictCases(t, cases)
}

func TestCounters(t *testing.T) {
	privileged(t)
	for _, fl := range allFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			r1 := rule(counter, eq(th(2, 2), u16(22)), counter, drop)
			tab, c := table(fl.fam, fl.hook, ir.VerdictAccept, []*ir.Rule{r1})
			p, err := Compile(tab, c, fl.tgt)
			if err != nil {
				t.Fatal(err)
			}
			want := []CounterSlot{{Chain: "base", Handle: r1.Handle, Stmt: 0}, {Chain: "base", Handle: r1.Handle, Stmt: 2}}
			if fmt.Sprint(p.CounterSlots) != fmt.Sprint(want) {
				t.Fatalf("slots %v, want %v", p.CounterSlots, want)
			}
			l := loadFlavour(t, fl, tab, c)
			for _, port := range []uint16{22, 22, 80} {
				run(t, fl, l, tcp4(port))
			}
			got, err := l.ReadCounters()
			if err != nil {
				t.Fatal(err)
			}
			size := uint64(40)
			if fl.name == "tc-egress" {
				size = 54
			}
			exp := []CounterValue{{3, 3 * size}, {2, 2 * size}}
			if fmt.Sprint(got) != fmt.Sprint(exp) {
				t.Errorf("counters %v, want %v", got, exp)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	xdp := Target{Type: XDP, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}
	nf := Target{Type: Netfilter, Family: ir.FamilyIPv4, Hook: ir.HookInput, ProtoFamily: ir.FamilyIPv4}
	cg := Target{Type: CgroupSKB, Family: ir.FamilyIPv4, Hook: ir.HookInput, ProtoFamily: ir.FamilyIPv4}
	loop := &ir.Chain{Name: "loop", Rules: []*ir.Rule{rule(jump("loop"))}}
	var deep []*ir.Chain
	for i := 0; i < 17; i++ {
		deep = append(deep, &ir.Chain{Name: fmt.Sprintf("d%d", i), Rules: []*ir.Rule{rule(jump(fmt.Sprintf("d%d", i+1)))}})
	}
	deep = append(deep, &ir.Chain{Name: "d17"})
	concat := inSet(nh(12, 8), false, 8, elr(make([]byte, 8), []byte{1, 2, 3, 4, 5, 6, 7, 8}))
	concat.Set.Flags |= ir.SetConcat
	cases := []struct {
		name   string
		tgt    Target
		rules  []*ir.Rule
		user   []*ir.Chain
		reason string
	}{
		{"mark at xdp", xdp, []*ir.Rule{rule(eq(meta(ir.MetaMark), u32le(1)), drop)}, nil, "meta mark is not available at XDP"},
		{"iifname at xdp without device", xdp, []*ir.Rule{rule(eq(meta(ir.MetaIifName), []byte("eth0")), drop)}, nil, "needs the device"},
		{"pkttype at xdp without device", xdp, []*ir.Rule{rule(eq(meta(ir.MetaPktType), b(0)), drop)}, nil, "MAC address"},
		{"unsupported meta", nf, []*ir.Rule{rule(eq(ir.Field{Source: ir.SourceMeta, Meta: ir.MetaCPU, Len: 4}, u32le(0)), drop)}, nil, "not supported"},
		{"compare longer than field", nf, []*ir.Rule{rule(eq(nh(9, 1), b(6, 0, 0, 0, 0)), drop)}, nil, "does not fit"},
		{"multi-word shift by zero", nf, []*ir.Rule{rule(eq(nh(0, 8, ir.Transform{Kind: ir.TransformShiftLeft, Len: 8}), u32le(0)), drop)}, nil, "shift by 0 over 2 words"},
		{"shift by 32", nf, []*ir.Rule{rule(eq(nh(0, 4, ir.Transform{Kind: ir.TransformShiftRight, Len: 4, Shift: 32}), u32le(0)), drop)}, nil, "shift by 32"},
		{"64-bit byteorder", nf, []*ir.Rule{rule(eq(nh(8, 16, ir.Transform{Kind: ir.TransformNtoh, Len: 16, Size: 8}), make([]byte, 16)), drop)}, nil, "64-bit byteorder"},
		{"missing chain", nf, []*ir.Rule{rule(jump("nope"))}, nil, "does not exist"},
		{"loop", nf, []*ir.Rule{rule(jump("loop"))}, []*ir.Chain{loop}, "chain loop"},
		{"jump depth", nf, []*ir.Rule{rule(jump("d0"))}, deep, "jump depth"},
		{"concat interval set", nf, []*ir.Rule{rule(concat, drop)}, nil, "concatenated"},
		{"inner header", nf, []*ir.Rule{rule(eq(pl(ir.BaseInner, 0, 1), b(0)), drop)}, nil, "inner header"},
		{"inner header at cgroup", cg, []*ir.Rule{rule(eq(pl(ir.BaseInner, 0, 1), b(0)), drop)}, nil, "inner header"},
		{"xdp on ip table", Target{Type: XDP, Family: ir.FamilyIPv4, Hook: ir.HookInput, ProtoFamily: ir.FamilyIPv4}, []*ir.Rule{rule(drop)}, nil, "xdp programs serve only netdev ingress"},
	}
	for _, tc := range cases {
		if tc.reason == "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			tab, c := table(tc.tgt.Family, tc.tgt.Hook, ir.VerdictAccept, tc.rules, tc.user...)
			_, err := Compile(tab, c, tc.tgt)
			var ue *UnsupportedError
			if !errors.As(err, &ue) {
				t.Fatalf("got %v, want *UnsupportedError", err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not mention %q", err, tc.reason)
			}
			t.Log(err)
		})
	}
}

// maxVerified bounds the instructions the verifier may process for a
// large chain: half of the kernel's limit of one million.
const maxVerified = 500_000

// maxVerifiedRatio bounds verifier-processed instructions per program
// instruction for a large chain. The rules are verified about once each
// (see forgetPktinfo), plus short stretches where the verifier kept no
// state to prune against; several walks over the chain would mean that
// states from the prologue or from earlier rules no longer prune.
const maxVerifiedRatio = 2.0

// checkVerifierCost logs how many instructions the verifier processed for
// l and fails if that is more than maxVerified or maxVerifiedRatio times
// the program's length.
func checkVerifierCost(t *testing.T, l *Loaded, rules int) {
	t.Helper()
	n, insns := checkVerifierTotal(t, l, rules)
	ratio := float64(n) / float64(insns)
	if ratio > maxVerifiedRatio {
		t.Errorf("verifier processed %.2f instructions per instruction, more than %.2f", ratio, maxVerifiedRatio)
	}
}

// checkVerifierTotal logs how many instructions the verifier processed for
// l and fails if that is more than maxVerified. It returns that number and
// the program's length.
func checkVerifierTotal(t *testing.T, l *Loaded, rules int) (uint32, int) {
	t.Helper()
	info, err := l.Program.Info()
	if err != nil {
		t.Fatal(err)
	}
	n, ok := info.VerifiedInstructions()
	if !ok {
		t.Fatal("the kernel does not report verified instructions")
	}
	insns, err := info.Instructions()
	if err != nil {
		t.Fatal(err)
	}
	ratio := float64(n) / float64(len(insns))
	t.Logf("%d rules: %d instructions, verifier processed %d (%.0f per rule, %.2f per instruction)", rules, len(insns), n, float64(n)/float64(rules), ratio)
	if n > maxVerified {
		t.Errorf("verifier processed %d instructions, more than %d", n, maxVerified)
	}
	return n, len(insns)
}

// largeChain is a 1000-rule chain with a packet its last rules drop and
// one that falls through to the accept policy.
type largeChain struct {
	name      string
	pf        ir.Family
	rules     func() ([]*ir.Rule, []*ir.Chain)
	hit, miss []byte
}

func largeChains() []largeChain {
	v6src := func(last byte) []byte { a := append([]byte(nil), srcV6...); a[15] = last; return a }
	return []largeChain{
		{
			name: "v4 saddr dport",
			pf:   ir.FamilyIPv4,
			rules: func() ([]*ir.Rule, []*ir.Chain) {
				var rules []*ir.Rule
				for i := 0; i < 1000; i++ {
					rules = append(rules, rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), eq(nh(12, 4), ip4(192, 0, 2, byte(i%250))), eq(th(2, 2), u16(uint16(1000+i))), counter, drop))
				}
				return rules, nil
			},
			hit:  eth(0x0800, v4{proto: protoTCP, src: ip4(192, 0, 2, byte(999%250))}.build(tcp(1, 1999, 2))),
			miss: tcp4(80),
		},
		{
			// Five rule shapes in turn: 16-byte compares, sets with
			// ranges, masks, meta ranges, negations, a rule without a
			// verdict and a jump to a user chain (inlined at each of its
			// 200 call sites).
			name: "v6 mixed",
			pf:   ir.FamilyIPv6,
			rules: func() ([]*ir.Rule, []*ir.Chain) {
				user := &ir.Chain{Name: "u", Rules: []*ir.Rule{
					rule(eq(th(0, 2), u16(7)), drop),
					rule(eq(th(0, 2), u16(9)), ret),
					rule(cmp(nh(7, 1), ir.OpLt, b(2)), drop),
				}}
				var rules []*ir.Rule
				for i := 0; i < 1000; i++ {
					var r *ir.Rule
					switch i % 5 {
					case 0:
						r = rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), eq(nh(8, 16), v6src(byte(i))),
							inSet(th(2, 2), false, 2, el(u16(22)), el(u16(80)), elr(u16(8000), u16(8080))), counter, drop)
					case 1:
						r = rule(eq(meta(ir.MetaL4Proto), b(protoUDP)), rng(nh(24, 16), false, dstV6, v6src(byte(i))),
							cmp(th(0, 2), ir.OpNeq, u16(53)), counter, drop)
					case 2:
						r = rule(eq(nh(0, 4, mask(b(0, 0x0f, 0xff, 0xff), b(0, 0, 0, 0))), u32be(uint32(i))), drop)
					case 3:
						r = rule(rng(meta(ir.MetaLen), false, u32le(uint32(1000+i)), u32le(uint32(2000+i))),
							inSet(meta(ir.MetaL4Proto), true, 1, el(b(protoTCP)), el(b(protoUDP))), counter)
					case 4:
						r = rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), eq(th(13, 1, mask(b(0x12), b(0))), b(0x02)),
							eq(th(2, 2), u16(uint16(1000+i))), jump("u"))
					}
					rules = append(rules, r)
				}
				return rules, []*ir.Chain{user}
			},
			hit:  eth(0x86dd, v6{nexthdr: protoTCP, src: v6src(byte(995 % 256))}.build(tcp(1, 22, 2))),
			miss: tcp6(80),
		},
	}
}

func TestLargeChain(t *testing.T) {
	privileged(t)
	for _, lc := range largeChains() {
		for _, fl := range allFlavours(lc.pf) {
			t.Run(lc.name+"/"+fl.name, func(t *testing.T) {
				for _, linear := range []bool{true, false} {
					rules, user := lc.rules()
					tab, c := table(fl.fam, fl.hook, ir.VerdictAccept, rules, user...)
					l := loadFlavourWith(t, fl, tab, c, Options{Linear: linear})
					if linear {
						checkVerifierCost(t, l, len(rules))
					} else {
						// Rule groups: a short program, whatever
						// the ratio.
						checkVerifierTotal(t, l, len(rules))
					}
					if v := run(t, fl, l, lc.hit); v != ir.VerdictDrop {
						t.Errorf("linear %v: last rules: got %s", linear, vname(v))
					}
					if v := run(t, fl, l, lc.miss); v != ir.VerdictAccept {
						t.Errorf("linear %v: no rule: got %s", linear, vname(v))
					}
				}
			})
		}
	}
}

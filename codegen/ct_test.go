package codegen

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

func ctf(k ir.CTKey, dir ir.CTDir, fam ir.Family, tr ...ir.Transform) ir.Field {
	n, ok := ir.CTLen(k, fam)
	if !ok {
		panic("ct key without a length")
	}
	return ir.Field{Source: ir.SourceCT, CT: k, CTDir: dir, Len: n, Transforms: tr}
}

// ctKeyCase is one ct key as a table of family fam loads it, with a
// value that never matches an entry-less packet.
type ctKeyCase struct {
	key ir.CTKey
	dir ir.CTDir
	fam ir.Family
}

func (c ctKeyCase) String() string {
	name := ir.CTName(c.key)
	if c.dir != ir.CTDirNone {
		name = c.dir.String() + " " + name
	}
	return c.fam.String() + "/" + name
}

// ctKeyCases lists every ct key codegen supports, per family it is
// valid in.
func ctKeyCases() []ctKeyCase {
	var out []ctKeyCase
	for _, fam := range []ir.Family{ir.FamilyIPv4, ir.FamilyIPv6, ir.FamilyInet} {
		for _, k := range []ir.CTKey{ir.CTState, ir.CTDirection, ir.CTStatus, ir.CTMark, ir.CTL3Proto, ir.CTProtocol} {
			out = append(out, ctKeyCase{k, ir.CTDirNone, fam})
		}
		for _, k := range []ir.CTKey{ir.CTSrc, ir.CTDst, ir.CTProtoSrc, ir.CTProtoDst, ir.CTSrcIP, ir.CTDstIP, ir.CTSrcIP6, ir.CTDstIP6} {
			if fam == ir.FamilyInet && (k == ir.CTSrc || k == ir.CTDst) {
				continue // refused by translate: see translate/ct.go
			}
			for _, d := range []ir.CTDir{ir.CTDirOriginal, ir.CTDirReply} {
				out = append(out, ctKeyCase{k, d, fam})
			}
		}
	}
	return out
}

// TestCTKeysLoad compiles every ct key for every netfilter hook and has
// the verifier load it; a key compared with a value keeps the program
// from folding the load away.
func TestCTKeysLoad(t *testing.T) {
	privileged(t)
	hooks := []ir.Hook{ir.HookPrerouting, ir.HookInput, ir.HookForward, ir.HookOutput, ir.HookPostrouting}
	for _, c := range ctKeyCases() {
		for _, hook := range hooks {
			pfs := []ir.Family{c.fam}
			if c.fam == ir.FamilyInet {
				pfs = []ir.Family{ir.FamilyIPv4, ir.FamilyIPv6}
			}
			for _, pf := range pfs {
				t.Run(fmt.Sprintf("%s/%s/%s", c, hook, pf), func(t *testing.T) {
					f := ctf(c.key, c.dir, c.fam)
					r := rule(cmp(f, ir.OpNeq, make([]byte, f.Len)), drop)
					tab, ch := table(c.fam, hook, ir.VerdictAccept, []*ir.Rule{r})
					fl := flavour{name: "nf", fam: c.fam, hook: hook,
						tgt: Target{Type: Netfilter, Family: c.fam, Hook: hook, ProtoFamily: pf}, l2: hook == ir.HookPrerouting || hook == ir.HookInput}
					loadFlavour(t, fl, tab, ch)
				})
			}
		}
	}
}

// TestCTRefusedTargets checks the refusal of ct keys where the program
// type has no conntrack entry to read.
func TestCTRefusedTargets(t *testing.T) {
	for _, c := range []struct {
		fl   flavour
		want string
	}{
		{netdevFlavours()[0], "ct state is not supported at xdp: XDP runs before the stack builds an skb"},
		{netdevFlavours()[1], "ct state is not supported at tc: tc programs serve netdev tables, where the kernel refuses ct"},
		{netdevFlavours()[2], "ct state is not supported at tc:"},
		{ipFlavours(ir.FamilyIPv4)[3], "ct state is not supported at cgroup: cgroup_skb programs run after the netfilter hooks"},
		{ipFlavours(ir.FamilyIPv4)[4], "ct state is not supported at cgroup: cgroup_skb programs run after the netfilter hooks"},
	} {
		t.Run(c.fl.name, func(t *testing.T) {
			f := ctf(ir.CTState, ir.CTDirNone, ir.FamilyIPv4, mask(u32le(2), u32le(0)))
			tab, ch := table(c.fl.fam, c.fl.hook, ir.VerdictAccept, []*ir.Rule{rule(cmp(f, ir.OpNeq, u32le(0)), accept)})
			_, err := Compile(tab, ch, c.fl.tgt)
			var ue *UnsupportedError
			if !errors.As(err, &ue) {
				t.Fatalf("compile: %v, want an UnsupportedError", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q\ndoes not contain %q", err, c.want)
			}
			if ue.Stmt != "ct state established" {
				t.Errorf("error names statement %q, want %q", ue.Stmt, "ct state established")
			}
		})
	}
}

// TestCTWithoutEntry runs ct rules on packets BPF_PROG_TEST_RUN makes:
// their skb has no conntrack entry, so ct state is invalid and every
// other key ends the rule (NFT_BREAK), as in nft_ct_get_eval.
func TestCTWithoutEntry(t *testing.T) {
	state := func(bits uint32) *ir.Match {
		return cmp(ctf(ir.CTState, ir.CTDirNone, ir.FamilyIPv4, mask(u32le(bits), u32le(0))), ir.OpNeq, u32le(0))
	}
	var cases []verdictCase
	for _, pf := range []ir.Family{ir.FamilyIPv4, ir.FamilyIPv6} {
		frame := tcp4(22)
		if pf == ir.FamilyIPv6 {
			frame = tcp6(22)
		}
		only := []string{"nf-"}
		cases = append(cases,
			verdictCase{name: "state invalid drops " + pf.String(), pf: pf, only: only,
				rules: []*ir.Rule{rule(state(ir.CTStateInvalid), drop)},
				pkts:  []pkt{{name: "tcp", frame: frame, want: ir.VerdictDrop}}},
			verdictCase{name: "state established,related,new,untracked misses " + pf.String(), pf: pf, only: only,
				rules: []*ir.Rule{rule(state(ir.CTStateEstablished|ir.CTStateRelated|ir.CTStateNew|ir.CTStateUntracked), drop)},
				pkts:  []pkt{{name: "tcp", frame: frame, want: ir.VerdictAccept}}},
			verdictCase{name: "state == invalid " + pf.String(), pf: pf, only: only, pol: ir.VerdictDrop,
				rules: []*ir.Rule{rule(eq(ctf(ir.CTState, ir.CTDirNone, ir.FamilyIPv4), u32le(1)), accept)},
				pkts:  []pkt{{name: "tcp", frame: frame, want: ir.VerdictAccept}}},
		)
		// Runs of rules comparing one ct key with different values are
		// compiled as one map lookup (see group.go): the key is loaded
		// once, and a missing entry still breaks every rule of the run.
		var stateRun, markRun []*ir.Rule
		for i, v := range []uint32{2, 4, 8, 64, 16, 32, 128, 1} {
			stateRun = append(stateRun, rule(eq(ctf(ir.CTState, ir.CTDirNone, ir.FamilyIPv4), u32le(v)), counter, drop))
			markRun = append(markRun, rule(eq(ctf(ir.CTMark, ir.CTDirNone, ir.FamilyIPv4), u32le(uint32(i))), counter, drop))
		}
		cases = append(cases,
			verdictCase{name: "grouped ct state rules " + pf.String(), pf: pf, only: only,
				rules: stateRun, pkts: []pkt{{name: "tcp", frame: frame, want: ir.VerdictDrop}}},
			verdictCase{name: "grouped ct state rules without invalid " + pf.String(), pf: pf, only: only,
				rules: stateRun[:7], pkts: []pkt{{name: "tcp", frame: frame, want: ir.VerdictAccept}}},
			verdictCase{name: "grouped ct mark rules " + pf.String(), pf: pf, only: only,
				rules: markRun, pkts: []pkt{{name: "tcp", frame: frame, want: ir.VerdictAccept}}},
		)
		// Every other key breaks the rule, whether it compares equal or
		// not equal to anything.
		for _, c := range ctKeyCases() {
			if c.key == ir.CTState || c.fam != pf {
				continue
			}
			f := ctf(c.key, c.dir, c.fam)
			only := only
			if c.key == ir.CTSrc || c.key == ir.CTDst {
				// nf-prerouting runs an inet table, where these are refused.
				only = []string{"nf-input", "nf-output"}
			}
			cases = append(cases, verdictCase{name: "no entry breaks " + c.String(), pf: pf, only: only,
				rules: []*ir.Rule{rule(cmp(f, ir.OpNeq, make([]byte, f.Len)), drop), rule(eq(f, make([]byte, f.Len)), drop)},
				pkts:  []pkt{{name: "tcp", frame: frame, want: ir.VerdictAccept}}})
		}
	}
	runVerdictCases(t, cases)
}

// TestCTGroupPlan checks that runs of ct rules differing only in the
// compared value are planned as groups, like payload and meta rules: one
// class per ct key.
func TestCTGroupPlan(t *testing.T) {
	var rules []*ir.Rule
	for i := 0; i < 10; i++ {
		rules = append(rules, rule(eq(ctf(ir.CTMark, ir.CTDirNone, ir.FamilyIPv4), u32le(uint32(i))), accept))
	}
	for i := 0; i < 10; i++ {
		rules = append(rules, rule(eq(ctf(ir.CTProtoDst, ir.CTDirOriginal, ir.FamilyIPv4), u16(uint16(i))), drop))
	}
	tab, c := table(ir.FamilyIPv4, ir.HookInput, ir.VerdictAccept, rules)
	g, err := newGen(tab, Target{Type: Netfilter, Family: ir.FamilyIPv4, Hook: ir.HookInput, ProtoFamily: ir.FamilyIPv4})
	if err != nil {
		t.Fatal(err)
	}
	plans := g.planGroups(c)
	p := plans[0]
	if p == nil || p.end != 20 {
		t.Fatalf("no group of the 20 rules: %+v", p)
	}
	if len(p.classes) != 2 {
		t.Errorf("%d classes, want 2 (ct mark and ct original proto-dst apart)", len(p.classes))
	}
}

package codegen

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// ---- IR construction ----

func pl(base ir.PayloadBase, off, n uint32, tr ...ir.Transform) ir.Field {
	return ir.Field{Source: ir.SourcePayload, Base: base, Offset: off, Len: n, Transforms: tr}
}

func nh(off, n uint32, tr ...ir.Transform) ir.Field { return pl(ir.BaseNetwork, off, n, tr...) }
func th(off, n uint32, tr ...ir.Transform) ir.Field { return pl(ir.BaseTransport, off, n, tr...) }
func ll(off, n uint32, tr ...ir.Transform) ir.Field { return pl(ir.BaseLL, off, n, tr...) }

func meta(k ir.MetaKey, tr ...ir.Transform) ir.Field {
	return ir.Field{Source: ir.SourceMeta, Meta: k, Len: metaLen[k], Transforms: tr}
}

func mask(m, x []byte) ir.Transform {
	return ir.Transform{Kind: ir.TransformMaskXor, Len: uint32(len(m)), Mask: m, Xor: x}
}

func cmp(f ir.Field, op ir.Op, v []byte) *ir.Match { return &ir.Match{Field: f, Op: op, Value: v} }
func eq(f ir.Field, v []byte) *ir.Match            { return cmp(f, ir.OpEq, v) }

func rng(f ir.Field, neg bool, lo, hi []byte) *ir.Match {
	op := ir.OpInRange
	if neg {
		op = ir.OpNotInRange
	}
	return &ir.Match{Field: f, Op: op, Value: lo, High: hi}
}

func inSet(f ir.Field, neg bool, keyLen uint32, elems ...[2][]byte) *ir.Match {
	s := &ir.Set{Name: "__set0", Flags: ir.SetAnonymous | ir.SetConstant, KeyLen: keyLen}
	for _, e := range elems {
		if string(e[0]) != string(e[1]) {
			s.Flags |= ir.SetInterval
		}
		s.Elements = append(s.Elements, ir.SetElement{Low: e[0], High: e[1]})
	}
	op := ir.OpInSet
	if neg {
		op = ir.OpNotInSet
	}
	return &ir.Match{Field: f, Op: op, Set: s}
}

func el(v []byte) [2][]byte       { return [2][]byte{v, v} }
func elr(lo, hi []byte) [2][]byte { return [2][]byte{lo, hi} }

var (
	accept   = &ir.Verdict{Kind: ir.VerdictAccept}
	drop     = &ir.Verdict{Kind: ir.VerdictDrop}
	ret      = &ir.Verdict{Kind: ir.VerdictReturn}
	contin   = &ir.Verdict{Kind: ir.VerdictContinue}
	counter  = &ir.Counter{}
	handleNo uint64
)

func jump(c string) *ir.Verdict  { return &ir.Verdict{Kind: ir.VerdictJump, Chain: c} }
func gotoV(c string) *ir.Verdict { return &ir.Verdict{Kind: ir.VerdictGoto, Chain: c} }
func rule(s ...ir.Stmt) *ir.Rule { handleNo++; return &ir.Rule{Handle: handleNo, Stmts: s} }
func u16(v uint16) []byte        { return binary.BigEndian.AppendUint16(nil, v) }
func u32be(v uint32) []byte      { return binary.BigEndian.AppendUint32(nil, v) }
func u32le(v uint32) []byte      { return binary.LittleEndian.AppendUint32(nil, v) }
func b(v ...byte) []byte         { return v }
func ip4(a, b, c, d byte) []byte { return []byte{a, b, c, d} }

// table builds a table with a base chain "base" and optional user chains.
func table(fam ir.Family, hook ir.Hook, policy ir.VerdictKind, rules []*ir.Rule, user ...*ir.Chain) (*ir.Table, *ir.Chain) {
	base := &ir.Chain{Name: "base", Base: &ir.BaseChain{Type: "filter", Hook: hook, Policy: policy}, Rules: rules}
	t := &ir.Table{Family: fam, Name: "t", Chains: append([]*ir.Chain{base}, user...)}
	return t, base
}

// ---- targets ----

// flavour is one program type/hook combination tests run on.
type flavour struct {
	name string
	fam  ir.Family
	hook ir.Hook
	tgt  Target
	// l2 says whether test input is an Ethernet frame (else an IP packet).
	l2 bool
}

func netdevFlavours() []flavour {
	return []flavour{
		{"xdp", ir.FamilyNetdev, ir.HookIngress, Target{Type: XDP, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}, true},
		{"tc-ingress", ir.FamilyNetdev, ir.HookIngress, Target{Type: TC, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}, true},
		{"tc-egress", ir.FamilyNetdev, ir.HookEgress, Target{Type: TC, Family: ir.FamilyNetdev, Hook: ir.HookEgress, ProtoFamily: ir.FamilyNetdev, Egress: true}, true},
	}
}

// ipFlavours are targets for ip/ip6/inet tables serving family pf.
func ipFlavours(pf ir.Family) []flavour {
	return []flavour{
		{"nf-prerouting", ir.FamilyInet, ir.HookPrerouting, Target{Type: Netfilter, Family: ir.FamilyInet, Hook: ir.HookPrerouting, ProtoFamily: pf}, true},
		{"nf-input", pf, ir.HookInput, Target{Type: Netfilter, Family: pf, Hook: ir.HookInput, ProtoFamily: pf}, true},
		{"nf-output", pf, ir.HookOutput, Target{Type: Netfilter, Family: pf, Hook: ir.HookOutput, ProtoFamily: pf}, false},
		{"cgroup-ingress", ir.FamilyInet, ir.HookInput, Target{Type: CgroupSKB, Family: ir.FamilyInet, Hook: ir.HookInput, ProtoFamily: ir.FamilyInet}, true},
		{"cgroup-egress", pf, ir.HookOutput, Target{Type: CgroupSKB, Family: pf, Hook: ir.HookOutput, ProtoFamily: pf, Egress: true}, true},
	}
}

func allFlavours(pf ir.Family) []flavour { return append(netdevFlavours(), ipFlavours(pf)...) }

// privileged skips t unless it can load BPF programs and run them with
// BPF_PROG_TEST_RUN, and records it as a privileged test.
func privileged(t testing.TB) {
	t.Helper()
	privtest.Require(t)
}

// loadFlavour compiles and loads a chain for fl.
func loadFlavour(t *testing.T, fl flavour, tab *ir.Table, c *ir.Chain) *Loaded {
	t.Helper()
	return loadFlavourWith(t, fl, tab, c, Options{})
}

// loadFlavourWith is loadFlavour with compile options.
func loadFlavourWith(t *testing.T, fl flavour, tab *ir.Table, c *ir.Chain, opts Options) *Loaded {
	t.Helper()
	tab.Family = fl.fam
	c.Base.Hook = fl.hook
	p, err := CompileWith(tab, c, fl.tgt, opts)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	l, err := p.Load()
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			lines := ve.Log
			if len(lines) > 60 {
				lines = lines[len(lines)-60:]
			}
			t.Fatalf("load: %v\n%s", err, strings.Join(lines, "\n"))
		}
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// nfHookStateCtx builds the struct nf_hook_state test_run accepts as ctx.
func nfHookStateCtx(t *testing.T, pf ir.Family, hook ir.Hook) []byte {
	t.Helper()
	spec, err := loadKernelBTF()
	if err != nil {
		t.Fatal(err)
	}
	var st interface{ TypeName() string }
	_ = st
	hm, err := kernelMember("nf_hook_state", "hook")
	if err != nil {
		t.Fatal(err)
	}
	pm, err := kernelMember("nf_hook_state", "pf")
	if err != nil {
		t.Fatal(err)
	}
	_ = spec
	ctx := make([]byte, 8)
	ctx[hm.Off] = byte(hook)
	ctx[pm.Off] = byte(pf)
	return ctx
}

// run runs the program on a frame (an Ethernet frame; for non-l2 flavours
// the Ethernet header is stripped) and returns the verdict.
func run(t *testing.T, fl flavour, l *Loaded, frame []byte) ir.VerdictKind {
	t.Helper()
	opts := &ebpf.RunOptions{Data: frame, Repeat: 1}
	if fl.tgt.Type == Netfilter {
		pf := fl.tgt.ProtoFamily
		opts.Context = nfHookStateCtx(t, pf, fl.hook)
		if !fl.l2 {
			opts.Data = frame[14:]
		}
	}
	ret, err := l.Program.Run(opts)
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	v, err := VerdictOf(fl.tgt.Type, ret)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func vname(v ir.VerdictKind) string {
	return (&ir.Verdict{Kind: v}).String()
}

// sameCounters reports every rule counter whose value differs between the
// straight-line program lin and the grouped program grp (compiled from the
// same rules), and returns how many counters counted a packet.
func sameCounters(t *testing.T, lin *Loaded, linP *Program, grp *Loaded, grpP *Program) (nonzero int) {
	t.Helper()
	counts := func(l *Loaded, p *Program) map[CounterSlot]CounterValue {
		vals, err := l.ReadCounters()
		if err != nil {
			t.Fatal(err)
		}
		out := map[CounterSlot]CounterValue{}
		for i, s := range p.CounterSlots {
			out[s] = vals[i]
		}
		return out
	}
	lc, gc := counts(lin, linP), counts(grp, grpP)
	for s, v := range lc {
		if gc[s] != v {
			t.Errorf("counter %+v: grouped %+v, linear %+v", s, gc[s], v)
		}
		if v.Packets > 0 {
			nonzero++
		}
	}
	return nonzero
}

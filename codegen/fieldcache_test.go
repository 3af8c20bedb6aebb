package codegen

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// cacheTestRules returns n rules "ip saddr 198.51.100.i tcp dport i drop"
// as nft emits them at netdev ingress (with their protocol dependencies).
func cacheTestRules(n int) []*ir.Rule {
	var rules []*ir.Rule
	for i := 0; i < n; i++ {
		rules = append(rules, rule(
			eq(meta(ir.MetaProtocol), u16(0x0800)),
			eq(nh(12, 4), ip4(198, 51, 100, byte(i))),
			eq(meta(ir.MetaL4Proto), b(6)),
			eq(th(2, 2), u16(uint16(i))),
			drop))
	}
	return rules
}

// TestFieldCachePlan checks which chains get a field cache, which fields
// it holds and where.
func TestFieldCachePlan(t *testing.T) {
	xdp := Target{Type: XDP, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}
	tc := Target{Type: TC, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}
	fibRule := rule(eq(ir.Field{Source: ir.SourceFIB, FIB: ir.FIBDaddr, Len: 4}, u32le(2)), drop)
	tests := []struct {
		name  string
		tgt   Target
		rules []*ir.Rule
		want  []cacheKey // nil: no cache
	}{
		{"short chain", xdp, cacheTestRules(cacheMinRules - 1), nil},
		{"long chain", xdp, cacheTestRules(40), []cacheKey{
			{source: ir.SourcePayload, base: ir.BaseNetwork, off: 12, len: 4},
			{source: ir.SourcePayload, base: ir.BaseTransport, off: 2, len: 2},
			{source: ir.SourceMeta, meta: ir.MetaProtocol, len: 2},
			{source: ir.SourceMeta, meta: ir.MetaL4Proto, len: 1},
		}},
		{"with fib", xdp, append(cacheTestRules(40), fibRule), nil},
		{"rare fields stay", xdp, append(cacheTestRules(20), func() []*ir.Rule {
			var rules []*ir.Rule
			for i := 0; i < cacheMinUses-1; i++ {
				rules = append(rules, rule(eq(nh(16, 4), ip4(192, 0, 2, byte(i))), drop))
			}
			return rules
		}()...), []cacheKey{
			{source: ir.SourcePayload, base: ir.BaseNetwork, off: 12, len: 4},
			{source: ir.SourcePayload, base: ir.BaseTransport, off: 2, len: 2},
			{source: ir.SourceMeta, meta: ir.MetaProtocol, len: 2},
			{source: ir.SourceMeta, meta: ir.MetaL4Proto, len: 1},
		}},
		{"tc vlan path stays", tc, func() []*ir.Rule {
			var rules []*ir.Rule
			for i := 0; i < 20; i++ {
				rules = append(rules, rule(eq(ll(12, 2), u16(0x0800)), eq(ll(6, 6), b(2, 0, 0, 0, 0, byte(i))), drop))
			}
			return rules
		}(), []cacheKey{{source: ir.SourcePayload, base: ir.BaseLL, off: 6, len: 6}}},
		{"ipv6 addresses", xdp, func() []*ir.Rule {
			var rules []*ir.Rule
			for i := 0; i < 20; i++ {
				a := []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(i)}
				rules = append(rules, rule(eq(nh(8, 16), a), eq(nh(24, 16), a), eq(nh(6, 1), b(17)), drop))
			}
			return rules
		}(), []cacheKey{
			{source: ir.SourcePayload, base: ir.BaseNetwork, off: 6, len: 1},
			{source: ir.SourcePayload, base: ir.BaseNetwork, off: 8, len: 16},
			{source: ir.SourcePayload, base: ir.BaseNetwork, off: 24, len: 16},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, c := table(ir.FamilyNetdev, ir.HookIngress, ir.VerdictAccept, tt.rules)
			g, err := newGen(tab, tt.tgt)
			if err != nil {
				t.Fatal(err)
			}
			g.opts.Linear = true
			fc := g.planFieldCache(c)
			if tt.want == nil {
				if fc != nil {
					t.Fatalf("got a cache of %d fields, want none", len(fc.fields))
				}
				return
			}
			if fc == nil {
				t.Fatal("no cache")
			}
			got := map[cacheKey]cachedField{}
			for _, f := range fc.fields {
				got[f.key] = f
			}
			if len(got) != len(tt.want) {
				t.Errorf("cached %v, want %v", fc.fields, tt.want)
			}
			used := map[int16]bool{}
			bits := map[uint32]bool{}
			for _, k := range tt.want {
				f, ok := got[k]
				if !ok {
					t.Errorf("%+v is not cached", k)
					continue
				}
				size := int16(round4(k.len))
				if f.off < cacheStart || f.off+size > cacheEnd {
					t.Errorf("%+v at %d…%d, outside the cache region", k, f.off, f.off+size)
				}
				if align := int16(4); size > 4 && f.off%8 != 0 || f.off%align != 0 {
					t.Errorf("%+v at %d is not aligned", k, f.off)
				}
				for o := f.off; o < f.off+size; o++ {
					if used[o] {
						t.Errorf("%+v at %d overlaps another field", k, f.off)
					}
					used[o] = true
				}
				if f.always != (k.source == ir.SourceMeta && k.meta != ir.MetaL4Proto) {
					t.Errorf("%+v: always %v", k, f.always)
				}
				if !f.always {
					if bits[f.bit] {
						t.Errorf("%+v: bit %d used twice", k, f.bit)
					}
					bits[f.bit] = true
				}
			}
		})
	}
}

// TestFieldCacheCode checks the shape of a cached rule: no helper call
// between the fill and the policy, and far fewer instructions than
// without the cache.
func TestFieldCacheCode(t *testing.T) {
	tgt := Target{Type: XDP, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}
	sizes := map[int]int{}
	for _, n := range []int{cacheMinRules - 1, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			tab, c := table(ir.FamilyNetdev, ir.HookIngress, ir.VerdictAccept, cacheTestRules(n))
			p, err := CompileWith(tab, c, tgt, Options{Linear: true})
			if err != nil {
				t.Fatal(err)
			}
			insns := p.Spec.Instructions
			fill := -1
			for i, ins := range insns {
				if ins.OpCode.Class() == asm.StXClass && ins.Dst == asm.R10 && ins.Offset == cacheBits {
					fill = i
				}
			}
			calls := 0
			for _, ins := range insns[fill+1:] {
				if ins.IsBuiltinCall() && ins.Constant != int64(asm.FnMapLookupElem) {
					calls++
				}
			}
			switch {
			case n < cacheMinRules && fill >= 0:
				t.Errorf("%d rules fill a cache", n)
			case n >= cacheMinRules && fill < 0:
				t.Errorf("%d rules fill no cache", n)
			case n >= cacheMinRules && calls > 0:
				t.Errorf("%d helper calls other than counters behind the fill", calls)
			}
			sizes[n] = len(insns)
			t.Logf("%d rules: %d instructions", n, len(insns))
		})
	}
	// Per rule, with counters: ~50 instructions without the cache, ~20
	// with it.
	if per := sizes[100] / 100; per*2 > sizes[cacheMinRules-1]/(cacheMinRules-1) {
		t.Errorf("%d instructions per cached rule, want less than half of %d", per, sizes[cacheMinRules-1]/(cacheMinRules-1))
	}
}

package codegen

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// TestLoadShared compiles a chain with three counter statements, loads it
// with its counters moved to chosen slots of a larger map, runs one frame
// and checks exactly those slots counted it (bytes as nf_tables counts them at
// netdev ingress: without the Ethernet header).
func TestLoadShared(t *testing.T) {
	privtest.Require(t)
	c := &ir.Chain{Name: "c", Base: &ir.BaseChain{Type: "filter", Hook: ir.HookIngress, Policy: ir.VerdictAccept},
		Rules: []*ir.Rule{
			{Handle: 1, Stmts: []ir.Stmt{&ir.Counter{}}},
			{Handle: 2, Stmts: []ir.Stmt{&ir.Counter{}, &ir.Counter{}, &ir.Verdict{Kind: ir.VerdictDrop}}},
		}}
	tab := &ir.Table{Family: ir.FamilyNetdev, Name: "t", Chains: []*ir.Chain{c}}
	p, err := Compile(tab, c, Target{Type: XDP, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev,
		Device: &Device{Index: 1, Name: "lo"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.CounterSlots) != 3 {
		t.Fatalf("%d counter slots, want 3", len(p.CounterSlots))
	}
	spec := p.Counters.Copy()
	spec.MaxEntries = 16
	m, err := ebpf.NewMap(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	slots := []uint32{9, 4, 0}
	prog, err := p.LoadShared(m, slots, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	frame := make([]byte, 60)
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := VerdictOf(XDP, ret); err != nil || v != ir.VerdictDrop {
		t.Fatalf("verdict %v (%v), want drop", v, err)
	}
	want := map[uint32]bool{9: true, 4: true, 0: true}
	for i := uint32(0); i < 16; i++ {
		var vals []CounterValue
		if err := m.Lookup(i, &vals); err != nil {
			t.Fatal(err)
		}
		var sum CounterValue
		for _, v := range vals {
			sum.Packets += v.Packets
			sum.Bytes += v.Bytes
		}
		if want[i] && (sum.Packets != 1 || sum.Bytes != 60-14) || !want[i] && sum != (CounterValue{}) {
			t.Errorf("slot %d counted %+v", i, sum)
		}
	}
	// Mismatched slot lists and maps are refused.
	if _, err := p.LoadShared(m, []uint32{1}, nil); err == nil {
		t.Error("LoadShared with too few slots succeeded")
	}
	if _, err := p.LoadShared(m, []uint32{1, 2, 16}, nil); err == nil {
		t.Error("LoadShared with a slot beyond the map succeeded")
	}
}

package codegen

import (
	"encoding/binary"

	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// metaSetMap emits "meta mark set KEY map @m": the key is looked up in the
// data map (a map, or a compare chain for a small anonymous one); the
// element's value becomes skb->mark; no element: the rule ends (next).
// Like meta mark set, it needs a writable skb: tc and cgroup_skb.
func (g *gen) metaSetMap(m *ir.MetaSetMap, next string) error {
	s := m.Map
	if m.Meta != ir.MetaMark || s == nil || !isDataMap(s) {
		return g.unsupported("only meta mark set from a map of 4-byte values is supported")
	}
	switch g.tgt.Type {
	case XDP:
		return g.unsupported("meta mark set: XDP runs before the kernel has an skb, so there is no mark to set (use the tcx backend)")
	case Netfilter:
		return g.unsupported("meta mark set: BPF netfilter programs see the skb read-only and cannot set its mark")
	}
	if err := g.loadKey(m.Key, s, next); err != nil {
		return err
	}
	if InMap(s) {
		if err := g.mapLookup(s, next); err != nil {
			return err
		}
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R0, setDataOff(s), asm.Word),
			asm.StoreMem(asm.R6, skbMark, asm.R1, asm.Word),
		)
		return nil
	}
	if !s.Anonymous() {
		return g.unsupported("named map %s cannot be backed by a map", s.Name)
	}
	done := g.b.newLabel("datamap_done")
	for _, e := range s.Elements {
		miss := g.b.newLabel("datamap_next")
		if err := g.elementTest(s, e, miss); err != nil {
			return err
		}
		if len(e.Data) != 4 {
			return g.unsupported("map %s: element without a 4-byte value", s.Name)
		}
		v := binary.NativeEndian.Uint32(e.Data)
		g.b.emit(asm.StoreImm(asm.R6, skbMark, int64(int32(v)), asm.Word), asm.Ja.Label(done))
		g.b.label(miss)
	}
	g.b.emit(asm.LongJump(next))
	g.b.label(done)
	return nil
}

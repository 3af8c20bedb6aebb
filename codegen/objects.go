package codegen

import (
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Named stateful objects: every reference to an object ("counter name
// "c1"", "quota name "q1"", "limit name "l1"") uses the object's one state
// slot, whose StateSlots entry names the object (CounterSlot.Object)
// instead of a rule's statement, so that the loader gives every rule and
// chain referring to the object the same map slot. A counter object keeps
// its packets in StateValue.A and its bytes in StateValue.B; quota and
// limit objects use their slot as the statements do (nft_quota_obj_eval
// and nft_limit_obj_eval run the statements' code on the object's state).

// ObjectSlot returns the state slot identity of the named object o.
func ObjectSlot(o *ir.Object) CounterSlot {
	return CounterSlot{Object: o.Identity()}
}

// objRef compiles a reference to a named object. next is the label of the
// next rule.
func (g *gen) objRef(r *ir.ObjRef, next string) error {
	o := r.Object
	slot := ObjectSlot(o)
	switch o.Type {
	case ir.ObjectCounter:
		idx := g.stateSlot(slot)
		g.lookupState(idx, next)
		g.b.emit(
			asm.Mov.Imm(asm.R1, 1),
			asm.AddAtomic.Mem(asm.R7, asm.R1, asm.DWord, stateA),
			asm.LoadMem(asm.R1, asm.R10, slotLen, asm.DWord),
			asm.AddAtomic.Mem(asm.R7, asm.R1, asm.DWord, stateB),
		)
		return nil
	case ir.ObjectQuota:
		if o.Quota == nil {
			return g.unsupported("quota object %q without parameters", o.Name)
		}
		return g.quota(slot, o.Quota, next)
	case ir.ObjectLimit:
		if o.Limit == nil {
			return g.unsupported("limit object %q without parameters", o.Name)
		}
		return g.limit(slot, o.Limit, next)
	}
	return g.unsupported("%s objects are not supported", o.Type)
}

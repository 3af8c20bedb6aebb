package codegen

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Stateful statements (limit, quota) keep their state in one array map
// shared by every CPU (the kernel keeps one nft_limit / nft_quota per rule
// expression, not per CPU). A slot is a StateValue; a limit uses it under
// its bpf_spin_lock, a quota with atomic adds. Like counter slots, state
// slots are numbered per program (StateSlots) and renumbered at load time
// (LoadWith), so that a loader can keep an unchanged rule's state across
// reloads.

// stateMapSymbol is the reference name of the state map in instructions.
const stateMapSymbol = "nft_state"

// StateValue is the value of a state map slot. For a limit, A is the time
// of the last update (bpf_ktime_get_ns, CLOCK_MONOTONIC as the kernel's
// ktime_get_ns; 0: the bucket was never used and is full) and B the
// tokens in nanoseconds. For a quota, A is the bytes consumed since the
// slot was created (the rule's "used" value is added to it).
type StateValue struct {
	Lock uint32 // struct bpf_spin_lock
	_    uint32
	A, B uint64
}

// stateValueSize is sizeof(StateValue).
const stateValueSize = 24

// State value field offsets.
const (
	stateA = 8
	stateB = 16
)

// StateMapSpec returns the spec of a state map of n slots. The value
// carries BTF, which the kernel needs to find the bpf_spin_lock.
func StateMapSpec(n uint32) *ebpf.MapSpec {
	u32 := &btf.Int{Name: "__u32", Size: 4}
	u64 := &btf.Int{Name: "__u64", Size: 8}
	lock := &btf.Struct{Name: "bpf_spin_lock", Size: 4, Members: []btf.Member{{Name: "val", Type: u32}}}
	value := &btf.Struct{Name: "nft_state", Size: stateValueSize, Members: []btf.Member{
		{Name: "lock", Type: lock, Offset: 0},
		{Name: "pad", Type: u32, Offset: 32},
		{Name: "a", Type: u64, Offset: 64},
		{Name: "b", Type: u64, Offset: 128},
	}}
	return &ebpf.MapSpec{
		Name:       "nft_state",
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  stateValueSize,
		MaxEntries: max(n, 1),
		Key:        u32,
		Value:      value,
	}
}

// stateSlot returns the program-local state slot of a statement.
func (g *gen) stateSlot(s CounterSlot) int {
	idx, ok := g.stateIndex[s]
	if !ok {
		idx = len(g.stateSlots)
		g.stateSlots = append(g.stateSlots, s)
		g.stateIndex[s] = idx
	}
	return idx
}

// lookupState emits the lookup of state slot idx: R7 points to the value
// afterwards. A failed lookup (impossible: the key is in range) ends the
// rule.
func (g *gen) lookupState(idx int, fail string) {
	if g.groupState {
		// The slot of the rule a group lookup found.
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R10, slotGroupState, asm.DWord),
			asm.StoreMem(asm.R10, slotKey, asm.R1, asm.DWord),
			asm.LoadMapPtr(asm.R1, 0).WithReference(stateDynSymbol),
			asm.Mov.Reg(asm.R2, asm.R10),
			asm.Add.Imm(asm.R2, slotKey),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, fail),
			asm.Mov.Reg(asm.R7, asm.R0),
		)
		return
	}
	g.b.emit(
		asm.LoadMapPtr(asm.R1, 0).WithReference(stateMapSymbol),
		stImm64(asm.R10, slotKey, int64(idx)),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, slotKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, fail),
		asm.Mov.Reg(asm.R7, asm.R0),
	)
}

// statement compiles the statements beyond match, counter and verdict.
// next is the label of the next rule (where NFT_BREAK goes).
func (g *gen) statement(chain string, r *ir.Rule, i int, s ir.Stmt, next string) error {
	switch s := s.(type) {
	case *ir.Limit:
		return g.limit(CounterSlot{Chain: chain, Handle: r.Handle, Stmt: i}, s, next)
	case *ir.Quota:
		return g.quota(CounterSlot{Chain: chain, Handle: r.Handle, Stmt: i}, s, next)
	case *ir.Log:
		return g.log(r, s)
	case *ir.MetaSet:
		return g.metaSet(s)
	case *ir.Reject:
		return g.reject(s)
	case *ir.ObjRef:
		return g.objRef(s, next)
	}
	return g.unsupported("statement type %T is not supported", s)
}

// limit reproduces nft_limit_eval under the slot's spin lock. The clock is
// read before the lock is taken (no helper may run under a bpf_spin_lock);
// a CPU that read the clock before another CPU's later update finds
// "now" behind "last" and uses "last", where the kernel, reading the clock
// under its lock, never sees time run backwards.
func (g *gen) limit(slot CounterSlot, l *ir.Limit, fail string) error {
	p, err := l.Params()
	if err != nil {
		return g.unsupported("%v", err)
	}
	idx := g.stateSlot(slot)
	pass := g.b.newLabel("limit_pass")
	enough, short := pass, fail
	if l.Over {
		enough, short = fail, pass
	}
	haveTokens := g.b.newLabel("limit_tokens")
	clockOK := g.b.newLabel("limit_clock")
	capped := g.b.newLabel("limit_capped")
	lack := g.b.newLabel("limit_short")
	g.lookupState(idx, fail)
	g.b.emit(asm.FnKtimeGetNs.Call(), asm.Mov.Reg(asm.R8, asm.R0))
	// R9 = cost.
	if l.Bytes {
		g.loadConst(asm.R9, p.Nsecs)
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R10, slotLen, asm.DWord),
			asm.Mul.Reg(asm.R9, asm.R1),
		)
		g.loadConst(asm.R1, l.Rate)
		g.b.emit(asm.Div.Reg(asm.R9, asm.R1))
	} else {
		g.loadConst(asm.R9, p.Cost)
	}
	g.b.emit(
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.FnSpinLock.Call(),
		asm.LoadMem(asm.R1, asm.R7, stateA, asm.DWord), // last
	)
	// A bucket never used is full.
	g.loadConst(asm.R2, p.TokensMax)
	g.b.emit(
		asm.JEq.Imm(asm.R1, 0, haveTokens),
		asm.JGE.Reg(asm.R8, asm.R1, clockOK),
		asm.Mov.Reg(asm.R8, asm.R1),
	)
	g.b.label(clockOK)
	g.b.emit(
		asm.LoadMem(asm.R2, asm.R7, stateB, asm.DWord),
		asm.Add.Reg(asm.R2, asm.R8),
		asm.Sub.Reg(asm.R2, asm.R1),
	)
	g.loadConst(asm.R3, p.TokensMax)
	g.b.emit(
		asm.JLE.Reg(asm.R2, asm.R3, capped),
		asm.Mov.Reg(asm.R2, asm.R3),
	)
	g.b.label(capped)
	g.b.label(haveTokens)
	g.b.emit(
		asm.StoreMem(asm.R7, stateA, asm.R8, asm.DWord),
		asm.Mov.Reg(asm.R3, asm.R2),
		asm.Sub.Reg(asm.R3, asm.R9),
		asm.JSLT.Imm(asm.R3, 0, lack),
		asm.StoreMem(asm.R7, stateB, asm.R3, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.FnSpinUnlock.Call(),
		asm.Ja.Label(enough),
	)
	g.b.label(lack)
	g.b.emit(
		asm.StoreMem(asm.R7, stateB, asm.R2, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.FnSpinUnlock.Call(),
		asm.Ja.Label(short),
	)
	g.b.label(pass)
	return nil
}

// quota reproduces nft_quota: the packet's length is added to the bytes
// consumed (atomically), and the rule ends when the sum exceeds the quota
// (with "over": while it does not).
func (g *gen) quota(slot CounterSlot, q *ir.Quota, fail string) error {
	idx := g.stateSlot(slot)
	pass := g.b.newLabel("quota_pass")
	g.lookupState(idx, fail)
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, slotLen, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.R1),
		fetchAdd64(asm.R7, asm.R2, stateA),
		// R2 = consumed before this packet; the kernel compares the sum.
		asm.Add.Reg(asm.R2, asm.R1),
	)
	if q.Used != 0 {
		g.loadConst(asm.R1, q.Used)
		g.b.emit(asm.Add.Reg(asm.R2, asm.R1))
	}
	g.loadConst(asm.R1, q.Bytes)
	if q.Over {
		// Over the quota: the rule goes on.
		g.b.emit(asm.JGT.Reg(asm.R2, asm.R1, pass), asm.Ja.Label(fail))
	} else {
		g.b.emit(asm.JGT.Reg(asm.R2, asm.R1, fail))
	}
	g.b.label(pass)
	return nil
}

// relocateSlots rewrites the slot numbers stored after every reference to
// symbol (see lookupState and gen.counter) from program-local to map slots.
func relocateSlots(insns asm.Instructions, symbol string, slots []uint32) error {
	for i := range insns {
		if insns[i].Reference() != symbol {
			continue
		}
		if i+1 >= len(insns) || insns[i+1].OpCode.Class() != asm.StClass ||
			insns[i+1].Dst != asm.R10 || insns[i+1].Offset != slotKey {
			return fmt.Errorf("instruction %d: %s reference not followed by its slot number", i, symbol)
		}
		idx := insns[i+1].Constant
		if idx < 0 || int(idx) >= len(slots) {
			return fmt.Errorf("instruction %d: %s slot %d out of range", i+1, symbol, idx)
		}
		insns[i+1].Constant = int64(slots[idx])
	}
	return nil
}

// associateState points the program's state references at m, with
// program slot i in map slot slots[i] (nil: the identity).
func associateState(insns asm.Instructions, p *Program, m *ebpf.Map, slots []uint32) error {
	if len(p.StateSlots) == 0 {
		return nil
	}
	if m == nil {
		return fmt.Errorf("the program keeps state (limit, quota) but no state map was given")
	}
	if slots != nil {
		if len(slots) != len(p.StateSlots) {
			return fmt.Errorf("%d state slots given for %d statements", len(slots), len(p.StateSlots))
		}
		for i, s := range slots {
			if s >= m.MaxEntries() {
				return fmt.Errorf("state %d: slot %d beyond the map's %d entries", i, s, m.MaxEntries())
			}
		}
		if err := relocateSlots(insns, stateMapSymbol, slots); err != nil {
			return err
		}
	}
	if m.ValueSize() != stateValueSize || m.Type() != ebpf.Array {
		return fmt.Errorf("state map is a %s with %d-byte values, want an array of %d", m.Type(), m.ValueSize(), stateValueSize)
	}
	if err := insns.AssociateMap(stateMapSymbol, m); err != nil && !errors.Is(err, asm.ErrUnreferencedSymbol) {
		return fmt.Errorf("associate state map: %w", err)
	}
	return nil
}

// metaSet writes packet metadata: skb->mark through __sk_buff, which tc
// and cgroup_skb programs may write. XDP runs before there is an skb, and
// BPF netfilter programs get the skb read-only.
func (g *gen) metaSet(m *ir.MetaSet) error {
	if m.Key != ir.MetaMark || len(m.Value) != 4 {
		return g.unsupported("only meta mark set is supported")
	}
	switch g.tgt.Type {
	case XDP:
		return g.unsupported("meta mark set: XDP runs before the kernel has an skb, so there is no mark to set (use the tcx backend)")
	case Netfilter:
		return g.unsupported("meta mark set: BPF netfilter programs see the skb read-only and cannot set its mark")
	}
	v := uint32(m.Value[0]) | uint32(m.Value[1])<<8 | uint32(m.Value[2])<<16 | uint32(m.Value[3])<<24
	g.b.emit(asm.StoreImm(asm.R6, skbMark, int64(int32(v)), asm.Word))
	return nil
}

// fetchAdd64 emits src = atomic_fetch_add((u64 *)(dst + off), src).
// cilium/ebpf v0.22 marshals the immediate of atomic instructions before it
// derives it from the opcode, so that BPF_FETCH is lost; the immediate
// (BPF_ADD | BPF_FETCH) is therefore set here as well.
func fetchAdd64(dst, src asm.Register, off int16) asm.Instruction {
	ins := asm.FetchAdd.Mem(dst, src, asm.DWord, off)
	ins.Constant = int64(asm.FetchAdd >> 8)
	return ins
}

// reject is refused where a program cannot send the reply. BPF netfilter programs may only return NF_ACCEPT or
// NF_DROP (the verifier checks it); the reply the kernel's nf_reject code
// sends is built and routed by the kernel, which a program cannot ask for.
// cgroup_skb programs likewise only pass or drop. At XDP and tc the
// program rewrites the packet into the reply and sends it back out
// (reject.go).
func (g *gen) reject(r *ir.Reject) error {
	switch g.tgt.Type {
	case Netfilter:
		return g.unsupported("reject: BPF netfilter programs can only return NF_ACCEPT or NF_DROP, so they cannot send the TCP reset or ICMP error the kernel's reject sends")
	case CgroupSKB:
		return g.unsupported("reject: cgroup_skb programs can only pass or drop a packet, so they cannot send the TCP reset or ICMP error the kernel's reject sends")
	}
	return g.rejectNetdev(r)
}

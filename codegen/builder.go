package codegen

import (
	"fmt"

	"github.com/cilium/ebpf/asm"
)

// builder accumulates instructions and resolves labels. Several labels may
// name the same position; the first one becomes the instruction's symbol and
// the others are rewritten to it when the program is finished.
type builder struct {
	insns   asm.Instructions
	pending []string
	alias   map[string]string
	n       int

	// invertNext makes emit turn the next conditional jump around, so that
	// its target is reached by falling through (see emit).
	invertNext bool
	// coldNext, when set, is the label the inverted jump's failure goes
	// to, where the code behind the jump is to be moved out of line
	// (coldcode.go): emit then inverts "if c goto coldNext" to
	// "if !c goto L; L:" and records in coldAt where that code starts.
	coldNext string
	coldAt   int
}

func newBuilder() *builder {
	return &builder{alias: map[string]string{}, coldAt: -1}
}

// inverse holds the negation of each conditional jump that has one.
var inverse = map[asm.JumpOp]asm.JumpOp{
	asm.JEq: asm.JNE, asm.JNE: asm.JEq,
	asm.JGT: asm.JLE, asm.JLE: asm.JGT,
	asm.JGE: asm.JLT, asm.JLT: asm.JGE,
	asm.JSGT: asm.JSLE, asm.JSLE: asm.JSGT,
	asm.JSGE: asm.JSLT, asm.JSLT: asm.JSGE,
}

// emit appends instructions, attaching pending labels to the first one.
//
// With invertNext set, the next conditional jump "if c goto L" is emitted
// as "if !c goto next; goto L; next:". The code generator sets it at the
// start of every rule, whose first test jumps to the next rule when it
// fails. The verifier explores the fall-through of a branch first and
// keeps the other side on a stack of at most 8192 pending states: with a
// rule's failure as the fall-through of its first test, the verifier's
// first walk goes from rule to rule leaving one pending state per rule.
// Had it followed matches instead, every test of every rule on its way
// would have stayed pending until the end of the chain (a match ends in a
// verdict, and the walk resumes at the last pending test, in the next
// rule), which overflows that stack after a few hundred rules.
func (b *builder) emit(insns ...asm.Instruction) {
	for _, ins := range insns {
		if b.invertNext && ins.OpCode.Class().IsJump() && ins.Reference() != "" {
			if neg, ok := inverse[ins.OpCode.JumpOp()]; ok {
				b.invertNext = false
				next := b.newLabel("fall")
				target := ins.Reference()
				ins.OpCode = ins.OpCode.SetJumpOp(neg)
				if b.coldNext != "" && target == b.coldNext {
					b.coldNext = ""
					b.emit(ins.WithReference(next))
					b.coldAt = b.pos()
				} else {
					b.emit(ins.WithReference(next), asm.LongJump(target))
				}
				b.label(next)
				continue
			}
		}
		if len(b.pending) > 0 {
			ins = ins.WithSymbol(b.pending[0])
			for _, l := range b.pending[1:] {
				b.alias[l] = b.pending[0]
			}
			b.pending = b.pending[:0]
		}
		b.insns = append(b.insns, ins)
	}
}

// label marks the position of the next instruction.
func (b *builder) label(name string) {
	b.pending = append(b.pending, name)
}

// newLabel returns a fresh label name.
func (b *builder) newLabel(prefix string) string {
	b.n++
	return fmt.Sprintf("%s_%d", prefix, b.n)
}

// pos is the index the next instruction will have.
func (b *builder) pos() int { return len(b.insns) }

// finish resolves label aliases and returns the instructions.
func (b *builder) finish() (asm.Instructions, error) {
	if len(b.pending) > 0 {
		return nil, fmt.Errorf("internal error: labels %v at end of program", b.pending)
	}
	for i := range b.insns {
		ref := b.insns[i].Reference()
		if ref == "" {
			continue
		}
		if to, ok := b.alias[ref]; ok {
			for {
				next, ok := b.alias[to]
				if !ok {
					break
				}
				to = next
			}
			b.insns[i] = b.insns[i].WithReference(to)
		}
	}
	return b.insns, nil
}

// prune drops instructions that cannot be reached from the first one (the
// verifier rejects unreachable code) and returns, for every old index, the
// new index of the next kept instruction.
func prune(insns asm.Instructions) (asm.Instructions, []int, error) {
	sym := map[string]int{}
	for i, ins := range insns {
		if s := ins.Symbol(); s != "" {
			sym[s] = i
		}
	}
	reach := make([]bool, len(insns))
	work := []int{0}
	for len(work) > 0 {
		i := work[len(work)-1]
		work = work[:len(work)-1]
		if i >= len(insns) || reach[i] {
			continue
		}
		reach[i] = true
		ins := insns[i]
		op := ins.OpCode
		if op.Class().IsJump() {
			switch op.JumpOp() {
			case asm.Exit:
				continue
			case asm.Call:
				work = append(work, i+1)
				continue
			}
			ref := ins.Reference()
			t, ok := sym[ref]
			if !ok {
				return nil, nil, fmt.Errorf("internal error: unknown label %q", ref)
			}
			work = append(work, t)
			if op.JumpOp() != asm.Ja {
				work = append(work, i+1)
			}
			continue
		}
		work = append(work, i+1)
	}
	// A jump to the next instruction is dropped too: the verifier would
	// remove each one, moving the rest of the program every time.
	alias := map[string]string{}
	out := make(asm.Instructions, 0, len(insns))
	idx := make([]int, len(insns)+1)
	for i, ins := range insns {
		idx[i] = len(out)
		if !reach[i] {
			continue
		}
		if ref := ins.Reference(); ref != "" && ins.OpCode.Class().IsJump() && ins.OpCode.JumpOp() == asm.Ja &&
			i+1 < len(insns) && insns[i+1].Symbol() == ref {
			if s := ins.Symbol(); s != "" {
				alias[s] = ref
			}
			continue
		}
		out = append(out, ins)
	}
	idx[len(insns)] = len(out)
	if len(alias) > 0 {
		for i := range out {
			ref := out[i].Reference()
			if _, ok := alias[ref]; !ok || !out[i].OpCode.Class().IsJump() {
				continue
			}
			for {
				next, ok := alias[ref]
				if !ok {
					break
				}
				ref = next
			}
			out[i] = out[i].WithReference(ref)
		}
	}
	return out, idx, nil
}

package codegen

import (
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Out-of-line rule bodies.
//
// A packet that fails a rule compared from the field cache usually leaves
// it at its first test. With the rest of the rule (its other tests, the
// load bits, counters, the verdict) right behind that test, every rule a
// packet passes still costs an instruction-cache line or two: at 10,000
// rules, megabytes of code for a few instructions each. So the code
// generator moves the rest of each such rule out of line: a rule becomes
// its first test, "if the first field matches goto body", and the next
// rule follows at once; the bodies of a batch of consecutive rules sit
// behind the batch, jumped over once, each ending with a jump back to the
// rule after its own (or a verdict). The verifier still walks the rules
// as before (the failure of each first test is the fall-through) and
// prunes each body where it rejoins the rules.
//
// A batch is never cut into tail-called parts (its bodies jump back to
// its rules): cut points lie between batches only.

// Batch bounds: rules and instructions of out-of-line code (conditional
// jumps back from a body to its rule must stay within 16-bit offsets).
const (
	coldBatchRules = 64
	coldBatchInsns = 4096
)

// coldBatch holds the out-of-line bodies of the rules compiled since the
// last flush.
type coldBatch struct {
	code  asm.Instructions
	anns  []Annotation // positions relative to code
	rules int
}

// coldEligible reports whether the body of rule r may be moved out of
// line: a chain with a field cache, a rule without jump, goto or verdict
// map (their user chains are compiled behind the rule).
func (g *gen) coldEligible(r *ir.Rule) bool {
	if g.cache == nil {
		return false
	}
	for _, s := range r.Stmts {
		switch s := s.(type) {
		case *ir.Verdict:
			if s.Kind == ir.VerdictJump || s.Kind == ir.VerdictGoto {
				return false
			}
		case *ir.VerdictMap:
			return false
		}
	}
	return true
}

// takeCold moves the body of the rule just compiled, from where its first
// test left it (g.b.coldAt), out of the instructions, ending it with a
// jump to next, and adds it to batch with annotation a, if the rule's
// first test was split off (else the rule stays as it is).
func (g *gen) takeCold(batch *coldBatch, next string, a Annotation) {
	at := g.b.coldAt
	g.b.coldNext, g.b.coldAt = "", -1
	if at < 0 {
		return
	}
	g.b.emit(asm.LongJump(next))
	body := g.b.insns[at:]
	a.Start, a.End = len(batch.code), len(batch.code)+len(body)
	batch.code = append(batch.code, body...)
	batch.anns = append(batch.anns, a)
	batch.rules++
	g.b.insns = g.b.insns[:at]
}

// full reports whether the batch should be flushed.
func (b *coldBatch) full() bool {
	return b.rules >= coldBatchRules || len(b.code) >= coldBatchInsns
}

// flushCold emits the bodies of batch behind a jump over them, and marks
// the rule boundary behind them as a cut point.
func (g *gen) flushCold(batch *coldBatch, depth int) {
	if batch.rules == 0 {
		return
	}
	after := g.b.newLabel("cold_end")
	g.b.emit(asm.LongJump(after))
	base := g.b.pos()
	g.b.insns = append(g.b.insns, batch.code...)
	for _, a := range batch.anns {
		a.Start += base
		a.End += base
		g.anns = append(g.anns, a)
	}
	g.b.label(after)
	*batch = coldBatch{}
	g.cut(depth)
}

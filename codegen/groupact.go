package codegen

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Action blocks of rule groups.
//
// A group lookup finds the first rule of the run whose key the packet
// has; what that rule does beyond its counter is its action: its
// statements after the matches (log, meta mark set, reject, limit,
// quota) and its verdict. Rules with the same statements and verdict share one action
// block, the code that carries them out, emitted once per group; the map
// value names the block by its number and the code after the lookup
// finds it by a binary search over the numbers, so that a group may have
// thousands of blocks (a thousand different jump targets, log prefixes or
// marks) at a cost per packet that grows with their logarithm.
//
// What differs from rule to rule within a shared block comes from the map
// value: a log statement names its rule's handle in its events
// (slotGroupHandle), a limit or quota keeps its state in its rule's slot
// of the state map (slotGroupState; at most one per rule), and counters
// count in their rule's slot. Without state, counters are counted before
// the block runs (no statement of such a block can end the rule or
// change what a counter counts, so counting first is counting where the
// rule counts); in a group with state, each block counts where its rules
// count, before or after their limit or quota (the position is part of
// the block).
//
// A rule without a terminal verdict (none, continue, jump), and one
// whose limit or quota may end it, goes on after its block. It is
// grouped like a jump: its run has one class, and no later rule of the
// run holds its key, so that no other rule of the run can match a packet
// it matched, and execution goes on behind the run.

// slotGroupHandle holds the handle of the rule a group lookup found, for
// its action block; it reuses slotGroupBest, whose use ends with the
// lookups. slotGroupState holds its state slot; it reuses the group key,
// dead after the lookup (a group that keeps state has one class).
const (
	slotGroupHandle = slotGroupBest
	slotGroupState  = groupKeyOff
)

// stateDynSymbol references the state map from instructions that look up
// a slot taken from a group's map value (not relocated, unlike
// stateMapSymbol's constant slots).
const stateDynSymbol = "nft_state_dyn"

// continueVerdict is the verdict of a rule without one.
var continueVerdict = &ir.Verdict{Kind: ir.VerdictContinue}

// asGroupRule returns r's parts if r has the form a group takes: matches,
// then at most one counter, log and meta mark set statements in any
// order, then a verdict, a reject or nothing.
func asGroupRule(r *ir.Rule) (groupRule, bool) {
	gr := groupRule{counter: -1, state: -1, ctrPos: -1}
	acting := false // past the matches
	for i, s := range r.Stmts {
		if gr.verdict != nil || gr.reject {
			return gr, false // nothing follows a verdict
		}
		switch s := s.(type) {
		case *ir.Match:
			if acting {
				return gr, false
			}
			gr.matches = append(gr.matches, s)
			continue
		case *ir.Counter:
			if gr.counter >= 0 {
				return gr, false
			}
			gr.counter, gr.ctrPos = i, len(gr.stmts)
		case *ir.Log, *ir.MetaSet:
			gr.stmts = append(gr.stmts, s)
		case *ir.Limit, *ir.Quota:
			if gr.state >= 0 {
				return gr, false
			}
			gr.state = i
			gr.stmts = append(gr.stmts, s)
		case *ir.Reject:
			gr.stmts = append(gr.stmts, s)
			gr.reject = true
		case *ir.Verdict:
			switch s.Kind {
			case ir.VerdictAccept, ir.VerdictDrop, ir.VerdictReturn, ir.VerdictJump, ir.VerdictGoto, ir.VerdictContinue:
			default:
				return gr, false
			}
			gr.verdict = s
		default:
			return gr, false
		}
		if len(gr.matches) == 0 {
			return gr, false
		}
		acting = true
	}
	if gr.verdict == nil && !gr.reject {
		gr.verdict = continueVerdict
	}
	return gr, len(gr.matches) > 0
}

// resumes reports whether evaluation goes on with the next rule after gr
// matched (at once, or when the chain it jumped to returns).
func (gr groupRule) resumes() bool {
	if gr.state >= 0 {
		return true // its limit or quota may end it
	}
	if gr.reject {
		return false
	}
	return gr.verdict.Kind == ir.VerdictContinue || gr.verdict.Kind == ir.VerdictJump
}

// actionKey identifies gr's action among a group's action blocks.
func (gr groupRule) actionKey() string {
	var b strings.Builder
	for _, s := range gr.stmts {
		fmt.Fprintf(&b, "%T%+v;", s, s)
	}
	if gr.verdict != nil {
		fmt.Fprintf(&b, "%d:%s", gr.verdict.Kind, gr.verdict.Chain)
	}
	return b.String()
}

// groupAction is an action block: statements and a verdict shared by
// rules of a group.
type groupAction struct {
	stmts   []ir.Stmt
	verdict *ir.Verdict // nil after a reject
	reject  bool
	rule    int // the first rule of the group with this action
	// ctrPos: in a stateful group, the block counts (in the rule's
	// slot) before stmts[ctrPos]; -1: no counter.
	ctrPos int
}

// planKey is gr's action key in p: in a group that keeps state, where
// the counter sits among the statements is part of the action (a limit
// or quota before it decides whether it counts).
func (p *groupPlan) planKey(gr groupRule) string {
	if !p.stateful {
		return gr.actionKey()
	}
	return fmt.Sprintf("%s|counter@%d", gr.actionKey(), gr.ctrPos)
}

// planActions numbers the distinct actions of p's rules in order of
// their first rule.
func (p *groupPlan) planActions() {
	for _, gr := range p.rules {
		if gr.state >= 0 {
			p.stateful, p.wide = true, true
		}
		for _, s := range gr.stmts {
			if _, ok := s.(*ir.Log); ok {
				p.wide = true
			}
		}
	}
	p.actionIndex = map[string]uint32{}
	for i, gr := range p.rules {
		k := p.planKey(gr)
		if _, ok := p.actionIndex[k]; ok {
			continue
		}
		p.actionIndex[k] = uint32(len(p.actions))
		a := groupAction{stmts: gr.stmts, verdict: gr.verdict, reject: gr.reject, rule: i, ctrPos: -1}
		if p.stateful {
			a.ctrPos = gr.ctrPos
		}
		p.actions = append(p.actions, a)
	}
}

// groupStateSlot returns the state slot of rule r (parts gr) of chain c,
// or -1 if it keeps no state.
func (g *gen) groupStateSlot(c *ir.Chain, r *ir.Rule, gr groupRule) int32 {
	if gr.state < 0 {
		return -1
	}
	return int32(g.stateSlot(CounterSlot{Chain: c.Name, Handle: r.Handle, Stmt: gr.state}))
}

// action returns the action number of rule gr of p.
func (p *groupPlan) action(gr groupRule) uint32 {
	n, ok := p.actionIndex[p.planKey(gr)]
	if !ok {
		panic("codegen: rule's action not among the group's actions")
	}
	return n
}

// dispatchLinear is the number of actions from which dispatch searches
// by halves instead of comparing one by one.
const dispatchLinear = 6

// dispatch jumps to labels[a] for the action number a in R0, for the
// actions [lo, hi); a number out of range (none is stored) goes to
// miss. The blocks may lie further than a conditional jump's 16-bit
// offset reaches once the verifier has patched the program: they are
// entered with long jumps.
func (g *gen) dispatch(labels []string, lo, hi int, miss string) {
	if hi-lo <= dispatchLinear {
		for a := lo; a < hi; a++ {
			other := g.b.newLabel("group_dispatch_next")
			g.b.emit(asm.JNE.Imm(asm.R0, int32(a), other), asm.LongJump(labels[a]))
			g.b.label(other)
		}
		g.b.emit(asm.Ja.Label(miss))
		return
	}
	mid := lo + (hi-lo)/2
	upper := g.b.newLabel("group_dispatch")
	g.b.emit(asm.JGE.Imm(asm.R0, int32(mid), upper))
	g.dispatch(labels, lo, mid, miss)
	g.b.label(upper)
	g.dispatch(labels, mid, hi, miss)
}

// actionBlock emits action a of group p of chain c: its statements,
// then its verdict. end is behind the group, ret where a return goes.
func (g *gen) actionBlock(c *ir.Chain, p *groupPlan, a groupAction, end, ret string, depth int, active map[string]bool) error {
	r := c.Rules[p.start+a.rule] // errors name the first rule with the action
	g.curChain, g.curRule = c.Name, r
	// A limit or quota that ends the rule goes on behind the group
	// (the rule resumes), through a long jump.
	brk := g.b.newLabel("group_break")
	if p.rules[a.rule].state >= 0 {
		defer func() {
			g.b.label(brk)
			g.b.emit(asm.LongJump(end))
		}()
	}
	for i, s := range a.stmts {
		if i == a.ctrPos {
			g.groupCounter()
		}
		g.curStmt = s
		switch s := s.(type) {
		case *ir.Limit:
			g.groupState = true
			err := g.limit(CounterSlot{Chain: c.Name, Handle: r.Handle, Stmt: p.rules[a.rule].state}, s, brk)
			g.groupState = false
			if err != nil {
				return err
			}
		case *ir.Quota:
			g.groupState = true
			err := g.quota(CounterSlot{Chain: c.Name, Handle: r.Handle, Stmt: p.rules[a.rule].state}, s, brk)
			g.groupState = false
			if err != nil {
				return err
			}
		case *ir.Log:
			g.groupHandle = true
			err := g.log(r, s)
			g.groupHandle = false
			if err != nil {
				return err
			}
		case *ir.MetaSet:
			if err := g.metaSet(s); err != nil {
				return err
			}
		case *ir.Reject:
			// The reply is sent or the packet dropped: the
			// program ends there.
			err := g.reject(s)
			g.curStmt = nil
			return err
		default:
			return g.unsupported("statement type %T in a rule group", s)
		}
	}
	if a.ctrPos == len(a.stmts) {
		g.groupCounter()
	}
	g.curStmt = a.verdict
	defer func() { g.curStmt = nil }()
	switch a.verdict.Kind {
	case ir.VerdictContinue:
		g.b.emit(asm.LongJump(end))
	case ir.VerdictAccept:
		g.b.emit(asm.LongJump(labelAccept))
	case ir.VerdictDrop:
		g.b.emit(asm.LongJump(labelDrop))
	case ir.VerdictReturn:
		g.b.emit(asm.LongJump(ret))
	case ir.VerdictJump, ir.VerdictGoto:
		target, err := g.callee(a.verdict, depth, active)
		if err != nil {
			return err
		}
		back := end
		if a.verdict.Kind == ir.VerdictGoto {
			back = ret
		}
		if err := g.chain(target, back, depth+1, active); err != nil {
			return err
		}
		g.curChain = c.Name
	default:
		return g.unsupported("verdict %d in a rule group", a.verdict.Kind)
	}
	return nil
}

// maxGroupActionInsns bounds the estimated code of a group's action
// blocks: the chain is not cut inside them, so they must fit one part of a
// split chain with room to spare (the verifier's time grows with the
// square of a part's length: 1,000 blocks of a jump each, 28,000
// instructions in one part, took 3–5 s to load; in parts of 8,192 they
// load in well under a second).
const maxGroupActionInsns = partInsns * 3 / 4

// Estimated instructions of statements (see actionCost).
const (
	costAction  = 4 // the dispatch's compare and long jump, the verdict
	costRule    = 2
	costMatch   = 12
	costCounter = 14
	costLog     = 150
	costReject  = 1000
	costOther   = 40
)

// actionCost estimates the instructions of gr's action block: its
// statements, and for a jump or goto the inlined code of the chain it
// enters.
func (g *gen) actionCost(gr groupRule) int {
	n := costAction
	for _, s := range gr.stmts {
		n += stmtCost(s)
	}
	if gr.verdict != nil && (gr.verdict.Kind == ir.VerdictJump || gr.verdict.Kind == ir.VerdictGoto) {
		if g.chainCosts == nil {
			g.chainCosts = map[string]int{}
		}
		n += g.chainCost(gr.verdict.Chain, g.chainCosts, 0)
	}
	return n
}

func stmtCost(s ir.Stmt) int {
	switch s.(type) {
	case *ir.Match:
		return costMatch
	case *ir.Counter:
		return costCounter
	case *ir.Log:
		return costLog
	case *ir.Reject:
		return costReject
	case *ir.MetaSet, *ir.Verdict:
		return 2
	}
	return costOther
}

// chainCost estimates the inlined code of chain name (memo holds the
// chains estimated; depth bounds the walk as jumps are bounded).
func (g *gen) chainCost(name string, memo map[string]int, depth int) int {
	if n, ok := memo[name]; ok {
		return n
	}
	c := g.chains[name]
	if c == nil || depth > maxJumpDepth {
		return 0
	}
	memo[name] = 0 // a loop is refused when compiled
	n := 0
	for _, r := range c.Rules {
		n += costRule
		for _, s := range r.Stmts {
			n += stmtCost(s)
			if v, ok := s.(*ir.Verdict); ok && (v.Kind == ir.VerdictJump || v.Kind == ir.VerdictGoto) {
				n += g.chainCost(v.Chain, memo, depth+1)
			}
		}
	}
	memo[name] = n
	return n
}

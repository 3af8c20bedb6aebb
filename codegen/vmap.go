package codegen

import (
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// inlineChain is a user chain compiled behind the rule that jumps or goes
// to it. Control enters at label ("" for the fall-through of a jump
// verdict) and leaves, when the chain ends or returns, to ret.
type inlineChain struct {
	label string
	chain *ir.Chain
	ret   string
}

// verdictMap emits a verdict map lookup. The map of a map-backed verdict
// map holds, per key, the index of the element's verdict in
// ir.Set.Verdicts; the program dispatches on it. An anonymous map of few
// elements is a compare chain that jumps to each element's verdict. No
// element: the rule does not match (next). It returns the user chains to
// compile behind the rule for jump and goto verdicts.
func (g *gen) verdictMap(v *ir.VerdictMap, next, ret string, depth int, active map[string]bool) ([]inlineChain, error) {
	s := v.Set
	if s == nil || !s.IsVerdictMap() {
		return nil, g.unsupported("verdict map lookup in a set that is not a verdict map")
	}
	if s.Flags&(ir.SetEval|ir.SetObject) != 0 || (s.HasTimeouts() && !InMap(s)) {
		return nil, g.unsupported("dynamic verdict maps (dynamic flag, or timeouts in a verdict map that cannot be a map) are not supported")
	}
	targets := s.Verdicts()
	labels := make([]string, len(targets))
	var inlines []inlineChain
	for i, t := range targets {
		switch t.Kind {
		case ir.VerdictAccept:
			labels[i] = labelAccept
		case ir.VerdictDrop:
			labels[i] = labelDrop
		case ir.VerdictContinue:
			labels[i] = next
		case ir.VerdictReturn:
			labels[i] = ret
		case ir.VerdictJump, ir.VerdictGoto:
			target, ok := g.chains[t.Chain]
			if !ok {
				return nil, g.unsupported("verdict map %s: chain %q does not exist", s.Name, t.Chain)
			}
			if target.Base != nil {
				return nil, g.unsupported("verdict map %s: cannot jump to base chain %q", s.Name, t.Chain)
			}
			if active[t.Chain] {
				return nil, g.unsupported("verdict map %s: chain loop through %q", s.Name, t.Chain)
			}
			if depth+1 > maxJumpDepth {
				return nil, g.unsupported("verdict map %s: jump depth exceeds %d", s.Name, maxJumpDepth)
			}
			labels[i] = g.b.newLabel("vmap_" + t.Chain)
			in := inlineChain{label: labels[i], chain: target, ret: next}
			if t.Kind == ir.VerdictGoto {
				in.ret = ret
			}
			inlines = append(inlines, in)
		default:
			return nil, g.unsupported("verdict map %s: verdict %s is not supported", s.Name, t.String())
		}
	}
	if err := g.loadKey(v.Key, s, next); err != nil {
		return nil, err
	}
	if InMap(s) {
		dataOff := int16(0)
		if IsRangeTable(s) {
			if err := g.rangeLookup(s, next); err != nil {
				return nil, err
			}
			dataOff = int16(2 * s.KeyLen)
		} else if err := g.mapLookup(s, next); err != nil {
			return nil, err
		} else {
			dataOff = setDataOff(s)
		}
		g.b.emit(asm.LoadMem(asm.R1, asm.R0, dataOff, asm.Word))
		for i, l := range labels {
			skip := g.b.newLabel("vmap_skip")
			g.b.emit(asm.JNE.Imm(asm.R1, int32(i), skip), asm.LongJump(l))
			g.b.label(skip)
		}
		// A value the program does not know cannot be written by the
		// loader (it refuses element verdicts outside the compiled
		// targets); should one appear, fail closed.
		g.b.emit(asm.LongJump(labelDrop))
		return inlines, nil
	}
	if !s.Anonymous() {
		return nil, g.unsupported("named verdict map %s cannot be backed by a map", s.Name)
	}
	index := map[ir.Verdict]int{}
	for i, t := range targets {
		index[t] = i
	}
	for _, e := range s.Elements {
		if e.Verdict == nil {
			return nil, g.unsupported("verdict map %s: element without a verdict", s.Name)
		}
		miss := g.b.newLabel("vmap_next")
		if err := g.elementTest(s, e, miss); err != nil {
			return nil, err
		}
		g.b.emit(asm.LongJump(labels[index[*e.Verdict]]))
		g.b.label(miss)
	}
	g.b.emit(asm.LongJump(next))
	return inlines, nil
}

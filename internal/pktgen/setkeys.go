package pktgen

import (
	"fmt"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// keyMatches returns, for a set lookup or verdict map statement, one
// membership Match per key field, against the values that field takes in
// the set's elements; the probes of those matches reach every element's
// field values and their neighbours.
func keyMatches(s ir.Stmt) []*ir.Match {
	var key []ir.Field
	var set *ir.Set
	switch s := s.(type) {
	case *ir.Lookup:
		key, set = s.Key, s.Set
	case *ir.VerdictMap:
		key, set = s.Key, s.Set
	case *ir.MetaSetMap:
		key, set = s.Key, s.Map
	default:
		return nil
	}
	if set == nil {
		return nil
	}
	if len(key) == 1 {
		return []*ir.Match{{Field: key[0], Op: ir.OpInSet, Set: set}}
	}
	offs, lens := set.KeyLayout()
	if len(offs) != len(key) {
		return nil
	}
	out := make([]*ir.Match, len(key))
	for i, f := range key {
		proj := &ir.Set{Name: set.Name, KeyLen: lens[i]}
		for _, e := range set.Elements {
			a, b := offs[i], offs[i]+lens[i]
			proj.Elements = append(proj.Elements, ir.SetElement{Low: e.Low[a:b], High: e.High[a:b]})
		}
		out[i] = &ir.Match{Field: f, Op: ir.OpInSet, Set: proj}
	}
	return out
}

// concatProbes adds, for every concatenated lookup of rule, frames whose
// whole key is an element's first key, last key and the keys just outside
// them (every field moved by one), with the rule's other matches
// satisfied where possible.
func (g *generator) concatProbes(ch *ir.Chain, ri int, rule *ir.Rule, matches []*ir.Match) {
	for _, s := range rule.Stmts {
		var key []ir.Field
		var set *ir.Set
		switch s := s.(type) {
		case *ir.Lookup:
			key, set = s.Key, s.Set
		case *ir.VerdictMap:
			key, set = s.Key, s.Set
		case *ir.MetaSetMap:
			key, set = s.Key, s.Map
		}
		if set == nil || len(key) < 2 {
			continue
		}
		offs, lens := set.KeyLayout()
		if len(offs) != len(key) {
			continue
		}
		for ei, e := range set.Elements {
			for _, c := range []struct {
				label string
				key   []byte
				delta int
			}{{"first", e.Low, 0}, {"last", e.High, 0}, {"first-1", e.Low, -1}, {"last+1", e.High, 1}} {
				sp := g.template()
				for _, m := range matches {
					if v, ok := hitValue(m); ok {
						sp.set(m.Field, v)
					}
				}
				for i, f := range key {
					a, b := offs[i], offs[i]+lens[i]
					sp.set(f, addInt(c.key[a:b], c.delta))
				}
				g.add(fmt.Sprintf("chain %s rule %d key of element %d: %s", ch.Name, ri, ei, c.label), sp.build())
			}
		}
	}
}

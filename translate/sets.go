package translate

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// pendingSet collects a set's elements until every NEWSETELEM message has
// been seen.
type pendingSet struct {
	msg   *nlmsg.Set
	set   *ir.Set
	elems []nlmsg.SetElem
	// err is why the elements could not be normalised; it is reported by
	// the rules that use the set.
	err  error
	used bool
}

// NFT_SET_ELEM_* flags.
const (
	elemIntervalEnd = 0x1
	elemCatchall    = 0x2
)

func (ps *pendingSet) finish(chains map[string]*ir.Chain) {
	elems, err := normaliseElements(ps.set, ps.elems)
	if err == nil {
		err = liftElementData(ps.set, ps.elems, elems, chains)
	}
	if err != nil {
		ps.err = err
		return
	}
	ps.set.Elements = elems
}

// concatFields returns the field lengths of a set's concatenated key, or
// nil for a key of one field.
func concatFields(s *nlmsg.Set) []uint32 {
	if len(s.Concat) <= 1 {
		return nil
	}
	return append([]uint32(nil), s.Concat...)
}

// liftElementData gives the elements of a map their data: a verdict map's
// elements their verdicts (jump and goto targets must be user chains of
// the table). out holds the normalised elements of s, in and out matched
// by their first key.
func liftElementData(s *ir.Set, in []nlmsg.SetElem, out []ir.SetElement, chains map[string]*ir.Chain) error {
	if s.Flags&ir.SetMap == 0 {
		return nil
	}
	byKey := map[string]*nlmsg.SetElem{}
	for i := range in {
		e := &in[i]
		if e.Flags&elemIntervalEnd == 0 {
			byKey[string(e.Key)] = e
		}
	}
	for i := range out {
		e, ok := byKey[string(out[i].Low)]
		if s.DataType != ir.DataVerdict {
			if !ok || uint32(len(e.Data)) != s.DataLen {
				return fmt.Errorf("map element %x has no %d-byte value", out[i].Low, s.DataLen)
			}
			out[i].Data = append([]byte(nil), e.Data...)
			continue
		}
		if !ok || e.Verdict == nil {
			return fmt.Errorf("verdict map element %x has no verdict", out[i].Low)
		}
		v, err := liftVerdict(e.Verdict, chains)
		if err != nil {
			return fmt.Errorf("verdict map element %x: %w", out[i].Low, err)
		}
		out[i].Verdict = v
	}
	return nil
}

// NFT_LOOKUP_F_INV.
const lookupInvert = 1

// lookup lifts a lookup expression: a set membership test of one field
// (an ir.Match), of a concatenation (an ir.Lookup), or a verdict map
// (an ir.VerdictMap, when the lookup writes the verdict register).
func (l *ruleLifter) lookup(e *nlmsg.Lookup) (ir.Stmt, error) {
	ps, ok := l.sets[e.Set]
	if !ok {
		return nil, fmt.Errorf("set %q not found", e.Set)
	}
	ps.used = true
	s := ps.set
	dataMap := e.HasDReg && e.DReg != regVerdict
	if dataMap && (s.Flags&ir.SetMap == 0 || s.IsVerdictMap() || s.DataLen != 4) {
		return nil, unsupported("data map lookups (%s) of %d-byte values feed statements that are not supported (only meta mark set from a map of 4-byte values is)", setRef(s), s.DataLen)
	}
	if s.Flags&ir.SetMap != 0 && !e.HasDReg {
		return nil, fmt.Errorf("map %s looked up as a set", setRef(s))
	}
	if e.HasDReg && !dataMap && !s.IsVerdictMap() {
		return nil, fmt.Errorf("%s is not a verdict map but the lookup writes the verdict register", setRef(s))
	}
	if s.Flags&ir.SetObject != 0 {
		return nil, unsupported("object maps (%s) are not supported", setRef(s))
	}
	if ps.err != nil {
		return nil, fmt.Errorf("set %s: %w", setRef(s), ps.err)
	}
	if err := timeoutSupported(s); err != nil {
		return nil, err
	}
	if s.Flags&ir.SetEval != 0 {
		return nil, unsupported("dynamic sets (%s, updated from the packet path) are not supported", setRef(s))
	}
	if ps.msg.HasExprs {
		return nil, unsupported("sets with element expressions (%s) are not supported yet", setRef(s))
	}
	key, err := l.keyValue(e.SReg, s)
	if err != nil {
		return nil, err
	}
	if dataMap {
		if e.Flags != 0 {
			return nil, fmt.Errorf("lookup flags %#x on a data map", e.Flags)
		}
		// The value goes to a register that a statement reads (meta mark
		// set); a missing key ends the rule here, at the lookup.
		if err := l.load(e.DReg, ir.Field{Len: s.DataLen}); err != nil {
			return nil, err
		}
		w, _ := regWord(e.DReg)
		l.regs[w].mapped = &ir.MetaSetMap{Key: key, Map: s}
		return nil, nil
	}
	if e.HasDReg {
		if e.Flags != 0 {
			return nil, fmt.Errorf("lookup flags %#x on a verdict map", e.Flags)
		}
		return &ir.VerdictMap{Key: key, Set: s}, nil
	}
	neg := false
	if e.Flags&lookupInvert != 0 {
		neg = true
	} else if e.Flags != 0 {
		return nil, fmt.Errorf("lookup flags %#x", e.Flags)
	}
	if len(key) > 1 {
		return &ir.Lookup{Key: key, Set: s, Negate: neg}, nil
	}
	op := ir.OpInSet
	if neg {
		op = ir.OpNotInSet
	}
	return &ir.Match{Field: key[0], Op: op, Set: s}, nil
}

// maxConcatFields is nft's NFT_PIPAPO_MAX_FIELDS, the most fields a
// concatenation may have.
const maxConcatFields = 16

// keyValue returns the fields that make up the key of set s, read from
// the registers starting at sreg: one field, or for a concatenation one
// field per 32-bit-aligned part of the key. The set's field layout comes
// from NFTA_SET_DESC_CONCAT; where the kernel did not report it, it is
// taken from the loads in the registers and recorded in s.
func (l *ruleLifter) keyValue(sreg uint32, s *ir.Set) ([]ir.Field, error) {
	w, err := regWord(sreg)
	if err != nil {
		return nil, err
	}
	if v := l.regs[w]; v != nil && !v.covered && v.field.Len == s.KeyLen && len(s.Fields) <= 1 {
		f, err := l.value(sreg, s.KeyLen)
		if err != nil {
			return nil, err
		}
		return []ir.Field{f}, nil
	}
	var fields []ir.Field
	var lens []uint32
	total := uint32(0)
	for i := 0; total < s.KeyLen; i++ {
		if w >= reg32Count {
			return nil, fmt.Errorf("set %s: %d-byte key runs past the last register", setRef(s), s.KeyLen)
		}
		v := l.regs[w]
		if v == nil {
			return nil, unsupported("set %s: key part %d reads register word %d, which holds no loaded value", setRef(s), i+1, w)
		}
		if v.covered {
			return nil, unsupported("set %s: key part %d reads register word %d from the middle of a value", setRef(s), i+1, w)
		}
		n := v.field.Len
		if i == 0 && n > s.KeyLen {
			return nil, unsupported("set %s has %d-byte keys but the looked-up value has %d bytes", setRef(s), s.KeyLen, n)
		}
		if len(s.Fields) > 1 {
			if i >= len(s.Fields) {
				return nil, fmt.Errorf("set %s: key has more parts than its %d fields", setRef(s), len(s.Fields))
			}
			if s.Fields[i] != n {
				return nil, unsupported("set %s: key field %d has %d bytes but the value loaded for it has %d", setRef(s), i+1, s.Fields[i], n)
			}
		}
		v.used = true
		fields = append(fields, cloneField(v.field))
		lens = append(lens, n)
		total += round4(n)
		w += int(round4(n) / regWordBytes)
	}
	if total != s.KeyLen {
		return nil, unsupported("set %s has %d-byte keys but the looked-up values span %d bytes", setRef(s), s.KeyLen, total)
	}
	if len(fields) > maxConcatFields {
		return nil, fmt.Errorf("set %s: concatenation of %d fields (nft allows %d)", setRef(s), len(fields), maxConcatFields)
	}
	if len(fields) == 1 {
		if fields[0].Len != s.KeyLen {
			return nil, unsupported("set %s has %d-byte keys but the looked-up value has %d bytes", setRef(s), s.KeyLen, fields[0].Len)
		}
		return fields, nil
	}
	if len(s.Fields) == 0 {
		s.Fields = lens
	}
	if len(s.Fields) != len(fields) {
		return nil, fmt.Errorf("set %s: key of %d fields looked up with %d values", setRef(s), len(s.Fields), len(fields))
	}
	return fields, nil
}

func round4(n uint32) uint32 { return (n + 3) &^ 3 }

// normaliseElements turns set elements into inclusive ranges. Interval sets
// come as start elements and INTERVAL_END elements whose key is one past the
// range (nft's rbtree encoding), or, for concatenations, with KEY_END holding
// the inclusive upper bound.
func normaliseElements(s *ir.Set, in []nlmsg.SetElem) ([]ir.SetElement, error) {
	keyLen := int(s.KeyLen)
	for _, e := range in {
		if e.Flags&elemCatchall != 0 {
			return nil, unsupported("catch-all set element")
		}
		if e.Flags&elemCatchall == 0 && len(e.Key) != keyLen {
			return nil, fmt.Errorf("element key of %d bytes in a set of %d-byte keys", len(e.Key), keyLen)
		}
		if e.KeyEnd != nil && len(e.KeyEnd) != keyLen {
			return nil, fmt.Errorf("element key end of %d bytes in a set of %d-byte keys", len(e.KeyEnd), keyLen)
		}
		if e.Timeout != 0 || e.Expiration != 0 {
			if !s.HasTimeouts() {
				return nil, unsupported("set elements with timeouts in %s, which has no timeout flag", setRef(s))
			}
			if err := timeoutSupported(s); err != nil {
				return nil, err
			}
		}
	}
	if s.Flags&ir.SetInterval == 0 {
		out := make([]ir.SetElement, 0, len(in))
		for _, e := range in {
			if e.Flags&elemIntervalEnd != 0 {
				return nil, fmt.Errorf("interval end element in a set without the interval flag")
			}
			out = append(out, ir.SetElement{Low: e.Key, High: e.Key, Timeout: e.Timeout, Expires: e.Expiration})
		}
		sortElements(out)
		return out, nil
	}
	// Inclusive-end form (KEY_END present on every start element).
	withEnd := 0
	for _, e := range in {
		if e.KeyEnd != nil {
			withEnd++
		}
	}
	if withEnd > 0 {
		out := make([]ir.SetElement, 0, len(in))
		for _, e := range in {
			if e.KeyEnd == nil {
				return nil, fmt.Errorf("interval set mixes elements with and without a key end")
			}
			if !rangeOrdered(s, e.Key, e.KeyEnd) {
				return nil, fmt.Errorf("interval element %x-%x starts after it ends", e.Key, e.KeyEnd)
			}
			out = append(out, ir.SetElement{Low: e.Key, High: e.KeyEnd, Timeout: e.Timeout, Expires: e.Expiration})
		}
		sortElements(out)
		return out, nil
	}
	// Start/exclusive-end form: sort by key, ends before starts at equal
	// keys (an end at k closes [..,k) before a start at k opens [k,..)).
	sorted := append([]nlmsg.SetElem(nil), in...)
	sort.SliceStable(sorted, func(i, j int) bool {
		c := bytes.Compare(sorted[i].Key, sorted[j].Key)
		if c != 0 {
			return c < 0
		}
		return sorted[i].Flags&elemIntervalEnd > sorted[j].Flags&elemIntervalEnd
	})
	var out []ir.SetElement
	var open []byte
	var opened nlmsg.SetElem // the start element of open: its timeouts
	for _, e := range sorted {
		if e.Flags&elemIntervalEnd == 0 {
			if open != nil {
				return nil, fmt.Errorf("interval starting at %x opens inside another", e.Key)
			}
			open, opened = e.Key, e
			continue
		}
		if open == nil {
			// nft marks the gap before the first range with an end
			// element at zero; it closes nothing.
			continue
		}
		high, ok := decrement(e.Key)
		if !ok || bytes.Compare(high, open) < 0 {
			return nil, fmt.Errorf("empty interval [%x, %x)", open, e.Key)
		}
		out = append(out, ir.SetElement{Low: open, High: high, Timeout: opened.Timeout, Expires: opened.Expiration})
		open = nil
	}
	if open != nil {
		// An interval with no end runs to the largest key.
		out = append(out, ir.SetElement{Low: open, High: bytes.Repeat([]byte{0xff}, keyLen), Timeout: opened.Timeout, Expires: opened.Expiration})
	}
	return out, nil
}

// rangeOrdered reports whether lo is at most hi, field by field for a
// concatenated key (each field of a concatenation has its own range).
func rangeOrdered(s *ir.Set, lo, hi []byte) bool {
	offs, lens := s.KeyLayout()
	for i := range offs {
		a, b := offs[i], offs[i]+round4(lens[i])
		if b > uint32(len(lo)) {
			b = uint32(len(lo))
		}
		if bytes.Compare(lo[a:b], hi[a:b]) > 0 {
			return false
		}
	}
	return true
}

func sortElements(es []ir.SetElement) {
	sort.Slice(es, func(i, j int) bool { return bytes.Compare(es[i].Low, es[j].Low) < 0 })
}

// decrement returns b-1 as a big-endian number; ok is false for zero.
func decrement(b []byte) ([]byte, bool) {
	out := append([]byte(nil), b...)
	for i := len(out) - 1; i >= 0; i-- {
		if out[i] != 0 {
			out[i]--
			return out, true
		}
		out[i] = 0xff
	}
	return nil, false
}

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

func (ps *pendingSet) finish() {
	elems, err := normaliseElements(ps.set, ps.elems)
	if err != nil {
		ps.err = err
		return
	}
	ps.set.Elements = elems
}

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
			return nil, unsupported("set elements with timeouts")
		}
	}
	if s.Flags&ir.SetInterval == 0 {
		out := make([]ir.SetElement, 0, len(in))
		for _, e := range in {
			if e.Flags&elemIntervalEnd != 0 {
				return nil, fmt.Errorf("interval end element in a set without the interval flag")
			}
			out = append(out, ir.SetElement{Low: e.Key, High: e.Key})
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
			if bytes.Compare(e.Key, e.KeyEnd) > 0 {
				return nil, fmt.Errorf("interval element starts after it ends")
			}
			out = append(out, ir.SetElement{Low: e.Key, High: e.KeyEnd})
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
	for _, e := range sorted {
		if e.Flags&elemIntervalEnd == 0 {
			if open != nil {
				return nil, fmt.Errorf("interval starting at %x opens inside another", e.Key)
			}
			open = e.Key
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
		out = append(out, ir.SetElement{Low: open, High: high})
		open = nil
	}
	if open != nil {
		// An interval with no end runs to the largest key.
		out = append(out, ir.SetElement{Low: open, High: bytes.Repeat([]byte{0xff}, keyLen)})
	}
	return out, nil
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

package codegen

import (
	"bytes"
	"fmt"
	"math/big"
	"math/bits"
	"sort"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Masked rule groups: tuple space search over ternary keys.
//
// Equality groups (group.go) serve rules that compare fields for
// equality. Masked groups also serve ranges ("tcp dport 1000-1999"),
// inequalities ("tcp dport != 22", "tcp dport < 1024") and prefixes of
// any length ("ip saddr 198.51.100.0/28", a masked compare), mixed from
// rule to rule. Every rule is rewritten as a union of ternary entries: a
// value and a mask over each field it loads (a column), so that the rule
// holds for a packet iff its fields load and, for one of its entries,
// field & mask == value in every column.
//
//   - An equality is one entry (a masked compare keeps its mask).
//   - A range, an inequality or a "not in range" over n bytes is an
//     interval (or two) of n-byte big-endian integers, which memcmp
//     orders alike; an interval is its minimal cover by prefixes (at most
//     2w-2 for a w-bit field), each one entry. Compares of one column
//     within a rule are intersected first ("tcp dport >= 1000 tcp dport
//     <= 1999", nft's form of a range, is one interval).
//   - A rule is the cross product of its columns' entries; matches that
//     are none of these (set lookups, compares after shifts or byte-order
//     changes) stay code, guards tested before the lookup, and are part
//     of the class, like the columns the rule loads.
//
// Entries with the same guards, columns and masks form a class: one hash
// map from the masked column bytes to the first rule (smallest index)
// among the class's entries with that key. The packet's fields are
// loaded, masked and looked up once per class; the smallest rule index
// found over all classes is the first rule of the run that matches, as
// in the equality groups' classes. Since a rule's entries cover exactly
// the packets it matches (its prefixes are disjoint), that rule is the
// one the kernel's first-match evaluation picks.
//
// Lookups per packet are bounded by merging classes of the same guards
// and columns: entries of the class with mask A move to the class with
// mask C ⊇ A, each expanded into 2^|C∖A| entries (controlled prefix
// expansion). Merging goes on while it is cheap in entries, and must
// reach maxGroupClasses; the run is cut where it cannot. Which fields
// load is unchanged by merging, so NFT_BREAK still fails exactly the
// rules that load the field.
//
// Jumps keep the equality groups' rule: a run with a jump has one class,
// and a key whose first rule jumps is held by no other rule of the run,
// so that a rule that matched and jumped resumes behind the run. Rules
// that go on after they matched in other ways (no verdict, continue: a
// counter or log of their own) are treated alike ("jump" below).

// maskColKey identifies a field as loaded, without transforms.
type maskColKey struct {
	src  ir.Source
	base ir.PayloadBase
	off  uint32
	meta ir.MetaKey
	ct   ir.CTKey
	dir  ir.CTDir
	len  uint32
}

// maskColumn is a field that masked classes load into their key.
type maskColumn struct {
	field ir.Field // without transforms
	width int      // bytes of the register image: round4(Len)
}

// Limits of masked groups.
const (
	// maxColumnWidth is the widest field a key takes (an IPv6 address).
	maxColumnWidth = 16
	// maxRuleEntries bounds the entries of one rule (the cross product
	// of its columns' prefixes).
	maxRuleEntries = 4096
	// maxMaskRawClasses bounds the classes of a run before merging.
	maxMaskRawClasses = 32
	// maxGroupEntries bounds the entries of one masked group's maps.
	maxGroupEntries = 1 << 18
	// maxExpandBits bounds how many wildcard bits of an entry a merge
	// may expand.
	maxExpandBits = 8
	// mergeSlack: merges that are not needed to bound the lookups are
	// made while the group's entries stay within mergeSlack times those
	// before merging (or mergeFloor entries).
	mergeSlack = 4
	mergeFloor = 4096
)

// maskRule is a rule rewritten for masked groups.
type maskRule struct {
	guards   []*ir.Match
	guardSig string
	cols     []int    // columns the rule loads, ascending
	masks    [][]byte // one flat mask (over cols' widths) per entry class
	vals     [][]byte // flat entry values, parallel to masks
	jump     bool
}

// maskTable holds the columns of a chain and its rules rewritten.
type maskTable struct {
	cols  []maskColumn
	index map[maskColKey]int
	rules []*maskRule // nil: the rule cannot join a masked group
}

// newMaskTable rewrites the rules of a chain that groups accept.
func newMaskTable(parsed []parsedRule) *maskTable {
	t := &maskTable{index: map[maskColKey]int{}, rules: make([]*maskRule, len(parsed))}
	for i, p := range parsed {
		if p.ok {
			t.rules[i] = t.rewrite(p.gr)
		}
	}
	return t
}

// column returns the column of field f and the mask of its transform
// (nil: none), or false if the field cannot be a column.
func (t *maskTable) column(f *ir.Field) (int, []byte, bool) {
	if f.Len == 0 || round4(f.Len) > maxColumnWidth {
		return 0, nil, false
	}
	var fmask []byte
	switch len(f.Transforms) {
	case 0:
	case 1:
		tr := f.Transforms[0]
		if tr.Kind != ir.TransformMaskXor || tr.Len != f.Len || uint32(len(tr.Mask)) != f.Len ||
			uint32(len(tr.Xor)) != f.Len || !allZero(tr.Xor) {
			return 0, nil, false
		}
		fmask = tr.Mask
	default:
		return 0, nil, false
	}
	k := maskColKey{src: f.Source, len: f.Len}
	switch f.Source {
	case ir.SourcePayload:
		k.base, k.off = f.Base, f.Offset
	case ir.SourceMeta:
		k.meta = f.Meta
	case ir.SourceCT:
		k.ct, k.dir = f.CT, f.CTDir
	default:
		return 0, nil, false
	}
	i, ok := t.index[k]
	if !ok {
		i = len(t.cols)
		col := *f
		col.Transforms = nil
		t.cols = append(t.cols, maskColumn{field: col, width: int(round4(f.Len))})
		t.index[k] = i
	}
	return i, fmask, true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// interval is an inclusive range of n-byte big-endian integers.
type interval struct{ lo, hi *big.Int }

// colConstraint is what one compare requires of a column: a union of
// intervals over the first n bytes, or (ivals nil) a union of ternaries.
type colConstraint struct {
	n     int
	ivals []interval
	terns []tern
}

// tern is a ternary entry of one column: bytes where mask is set must
// equal val.
type tern struct{ val, mask []byte }

// constraint returns what m requires of its column, or false if m must
// stay code.
func constraint(m *ir.Match, width int, fmask []byte) (colConstraint, bool) {
	n := len(m.Value)
	if n == 0 || n > width {
		return colConstraint{}, false
	}
	if m.Op == ir.OpEq && fmask != nil {
		t := tern{val: make([]byte, width), mask: make([]byte, width)}
		for i := 0; i < n; i++ {
			mb := byte(0xff)
			if i < len(fmask) {
				mb = fmask[i]
			}
			if m.Value[i]&^mb != 0 {
				// (field & mask) never has this bit: no packet matches.
				return colConstraint{n: n, terns: []tern{}}, true
			}
			t.val[i], t.mask[i] = m.Value[i], mb
		}
		return colConstraint{n: n, terns: []tern{t}}, true
	}
	if fmask != nil {
		return colConstraint{}, false
	}
	v := new(big.Int).SetBytes(m.Value)
	top := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(8*n)), big.NewInt(1))
	zero := big.NewInt(0)
	one := big.NewInt(1)
	below := func(x *big.Int) []interval { // [0, x-1]
		if x.Sign() == 0 {
			return nil
		}
		return []interval{{zero, new(big.Int).Sub(x, one)}}
	}
	above := func(x *big.Int) []interval { // [x+1, top]
		if x.Cmp(top) == 0 {
			return nil
		}
		return []interval{{new(big.Int).Add(x, one), top}}
	}
	var iv []interval
	switch m.Op {
	case ir.OpEq:
		iv = []interval{{v, v}}
	case ir.OpNeq:
		iv = append(below(v), above(v)...)
	case ir.OpLt:
		iv = below(v)
	case ir.OpLte:
		iv = []interval{{zero, v}}
	case ir.OpGt:
		iv = above(v)
	case ir.OpGte:
		iv = []interval{{v, top}}
	case ir.OpInRange, ir.OpNotInRange:
		if len(m.High) != n {
			return colConstraint{}, false
		}
		h := new(big.Int).SetBytes(m.High)
		if m.Op == ir.OpInRange {
			if v.Cmp(h) <= 0 {
				iv = []interval{{v, h}}
			}
		} else if v.Cmp(h) <= 0 {
			iv = append(below(v), above(h)...)
		} else {
			iv = []interval{{zero, top}}
		}
	default:
		return colConstraint{}, false
	}
	if iv == nil {
		iv = []interval{}
	}
	return colConstraint{n: n, ivals: iv}, true
}

// intersectIntervals intersects two sorted unions of disjoint intervals.
func intersectIntervals(a, b []interval) []interval {
	out := []interval{}
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := a[i].lo, a[i].hi
		if b[j].lo.Cmp(lo) > 0 {
			lo = b[j].lo
		}
		if b[j].hi.Cmp(hi) < 0 {
			hi = b[j].hi
		}
		if lo.Cmp(hi) <= 0 {
			out = append(out, interval{lo, hi})
		}
		if a[i].hi.Cmp(b[j].hi) < 0 {
			i++
		} else {
			j++
		}
	}
	return out
}

// prefixes returns the minimal cover of the intervals by prefixes, as
// ternaries of a column of width bytes whose first n bytes are compared.
func prefixes(ivals []interval, n, width int) []tern {
	out := []tern{}
	nbits := uint(8 * n)
	one := big.NewInt(1)
	for _, iv := range ivals {
		a := new(big.Int).Set(iv.lo)
		for a.Cmp(iv.hi) <= 0 {
			k := nbits
			if a.Sign() != 0 {
				k = a.TrailingZeroBits()
			}
			end := new(big.Int)
			for {
				end.Lsh(one, k)
				end.Add(end, a)
				end.Sub(end, one)
				if end.Cmp(iv.hi) <= 0 {
					break
				}
				k--
			}
			t := tern{val: make([]byte, width), mask: make([]byte, width)}
			a.FillBytes(t.val[:n])
			plen := nbits - k
			for i := 0; i < n; i++ {
				switch bitsLeft := int(plen) - 8*i; {
				case bitsLeft >= 8:
					t.mask[i] = 0xff
				case bitsLeft > 0:
					t.mask[i] = byte(0xff << (8 - bitsLeft))
				}
			}
			out = append(out, t)
			a.Add(end, one)
		}
	}
	return out
}

// intersectTerns intersects two unions of ternaries.
func intersectTerns(a, b []tern) []tern {
	out := []tern{}
	for _, x := range a {
	next:
		for _, y := range b {
			t := tern{val: make([]byte, len(x.val)), mask: make([]byte, len(x.val))}
			for i := range x.val {
				if (x.val[i]^y.val[i])&x.mask[i]&y.mask[i] != 0 {
					continue next
				}
				t.mask[i] = x.mask[i] | y.mask[i]
				t.val[i] = (x.val[i] & x.mask[i]) | (y.val[i] & y.mask[i])
			}
			out = append(out, t)
		}
	}
	return out
}

// resolve turns a column's constraints into one union of ternaries.
func resolve(cs []colConstraint, width int) []tern {
	sameN := true
	for _, c := range cs {
		sameN = sameN && c.ivals != nil && c.n == cs[0].n
	}
	if sameN {
		iv := cs[0].ivals
		for _, c := range cs[1:] {
			iv = intersectIntervals(iv, c.ivals)
		}
		return prefixes(iv, cs[0].n, width)
	}
	var out []tern
	for i, c := range cs {
		ts := c.terns
		if c.ivals != nil {
			ts = prefixes(c.ivals, c.n, width)
		}
		if i == 0 {
			out = ts
		} else {
			out = intersectTerns(out, ts)
		}
		if len(out) > maxRuleEntries {
			return nil
		}
	}
	return out
}

// matchSig identifies a guard.
func matchSig(m *ir.Match) string {
	set := ""
	if m.Set != nil {
		set = fmt.Sprintf("%p", m.Set)
	}
	return fmt.Sprintf("%+v/%d/%x/%x/%s", m.Field, m.Op, m.Value, m.High, set)
}

// rewrite returns gr as entries, or nil if it cannot join a masked group.
func (t *maskTable) rewrite(gr groupRule) *maskRule {
	mr := &maskRule{jump: gr.resumes()}
	per := map[int][]colConstraint{}
	var sigs []string
	for _, m := range gr.matches {
		if m.Field.Len == 0 || m.Field.Len > bufSize {
			return nil
		}
		ci, fmask, ok := t.column(&m.Field)
		var c colConstraint
		if ok {
			c, ok = constraint(m, t.cols[ci].width, fmask)
		}
		if !ok {
			mr.guards = append(mr.guards, m)
			sigs = append(sigs, matchSig(m))
			continue
		}
		per[ci] = append(per[ci], c)
	}
	if len(per) == 0 {
		return nil
	}
	mr.guardSig = strings.Join(sigs, ";")
	for ci := range per {
		mr.cols = append(mr.cols, ci)
	}
	sort.Ints(mr.cols)
	keyLen, flat := 0, 0
	alts := make([][]tern, len(mr.cols))
	count := 1
	for i, ci := range mr.cols {
		w := t.cols[ci].width
		keyLen = alignPart(keyLen, w) + w
		flat += w
		alts[i] = resolve(per[ci], w)
		if alts[i] == nil {
			return nil
		}
		count *= len(alts[i])
		if count > maxRuleEntries {
			return nil
		}
	}
	if keyLen > maxGroupKey {
		return nil
	}
	// The cross product of the columns' ternaries.
	idx := make([]int, len(alts))
	for n := 0; n < count; n++ {
		v, m := make([]byte, 0, flat), make([]byte, 0, flat)
		for i, a := range alts {
			v = append(v, a[idx[i]].val...)
			m = append(m, a[idx[i]].mask...)
		}
		mr.vals, mr.masks = append(mr.vals, v), append(mr.masks, m)
		for i := len(idx) - 1; i >= 0; i-- {
			idx[i]++
			if idx[i] < len(alts[i]) {
				break
			}
			idx[i] = 0
		}
	}
	return mr
}

// maskClass is a class of a masked group: entries with the same guards,
// columns and mask.
type maskClass struct {
	sig    string // guards and columns: classes with the same sig may merge
	guards []*ir.Match
	cols   []int
	fields []ir.Field // the columns' fields, loaded in this order
	widths []int
	mask   []byte
	// entries: key (flat value over the columns) → smallest rule index.
	entries map[string]int
	order   []string // keys in insertion order, for a stable map
}

func (mc *maskClass) add(val string, rule int) {
	if r, ok := mc.entries[val]; ok {
		if rule < r {
			mc.entries[val] = rule
		}
		return
	}
	mc.entries[val] = rule
	mc.order = append(mc.order, val)
}

// classSig returns the merge identity of a rule's classes.
func (t *maskTable) classSig(mr *maskRule) string {
	var b strings.Builder
	b.WriteString(mr.guardSig)
	for _, c := range mr.cols {
		fmt.Fprintf(&b, "|%d", c)
	}
	return b.String()
}

// planMaskRun returns the longest run of rules from start, up to limit,
// that a masked group serves in at most maxGroupClasses lookups, or nil.
func (t *maskTable) planMaskRun(parsed []parsedRule, start, limit int) *groupPlan {
	if t.rules[start] == nil {
		return nil
	}
	classes := map[string]*maskClass{}
	var order []*maskClass
	actions := map[string]bool{}
	sigs := map[string]bool{}
	hasJump := false
	code := 0                     // estimated instructions of the action blocks
	jumpKeys := map[string]bool{} // class+key whose first rule jumps
	end, end8, entries := start, start, 0
	var runRules []groupRule
	newClass := func(sig string, mr *maskRule, m []byte) *maskClass {
		mc := &maskClass{sig: sig, guards: mr.guards, cols: mr.cols, mask: m, entries: map[string]int{}}
		for _, c := range mr.cols {
			mc.widths = append(mc.widths, t.cols[c].width)
			mc.fields = append(mc.fields, t.cols[c].field)
		}
		return mc
	}
	for j := start; j < limit; j++ {
		mr := t.rules[j]
		if mr == nil {
			break
		}
		gr := parsed[j].gr
		sig := t.classSig(mr)
		jumpy := mr.jump || hasJump
		// Each entry goes to the class of its mask, or to a class whose
		// mask covers it with few more bits (expanded), or to a new
		// class. Runs with a jump keep every entry as it is.
		dest := make([]*maskClass, len(mr.vals))
		newMasks := map[string]bool{}
		added := 0
		for i, m := range mr.masks {
			ck := sig + "#" + string(m)
			dest[i] = classes[ck]
			if dest[i] == nil && !jumpy {
				dest[i] = absorber(order, sig, m)
			}
			if dest[i] == nil {
				newMasks[ck] = true
				added++
			} else {
				added += 1 << len(expandBits(m, dest[i].mask))
			}
		}
		if !sigs[sig] && len(sigs) == maxGroupClasses {
			break
		}
		if jumpy && len(order)+len(newMasks) > 1 {
			break
		}
		ak := gr.actionKey()
		if !actions[ak] && (len(actions) == maxGroupActions || code+parsed[j].cost > maxGroupActionInsns) {
			break
		}
		if entries+added > maxGroupEntries {
			break
		}
		if jumpy {
			clash := false
			for i, v := range mr.vals {
				ck := sig + "#" + string(mr.masks[i]) + "#" + string(v)
				if jumpKeys[ck] {
					clash = true
				}
			}
			if clash {
				break
			}
		}
		// Commit rule j.
		idx := j - start
		for i, v := range mr.vals {
			mc := dest[i]
			if mc == nil {
				ck := sig + "#" + string(mr.masks[i])
				if mc = classes[ck]; mc == nil {
					mc = newClass(sig, mr, mr.masks[i])
					classes[ck] = mc
					order = append(order, mc)
				}
			}
			if mr.jump {
				if _, seen := mc.entries[string(v)]; !seen {
					jumpKeys[sig+"#"+string(mc.mask)+"#"+string(v)] = true
				}
			}
			addExpanded(mc, v, mr.masks[i], idx)
		}
		entries += added
		sigs[sig] = true
		if !actions[ak] {
			code += parsed[j].cost
		}
		actions[ak] = true
		hasJump = hasJump || mr.jump
		runRules = append(runRules, gr)
		end = j + 1
		if len(order) > maxMaskRawClasses {
			merged, ok := mergeClasses(order, entries, false)
			if !ok {
				if j == start {
					return nil
				}
				return t.planMaskRun(parsed, start, j)
			}
			order, entries = merged, 0
			classes = map[string]*maskClass{}
			for _, mc := range order {
				classes[mc.sig+"#"+string(mc.mask)] = mc
				entries += len(mc.entries)
			}
		}
		if len(order) <= maxGroupClasses {
			end8 = end
		}
	}
	if end == start {
		return nil
	}
	merged, ok := mergeClasses(order, entries, true)
	if !ok {
		if end8 == end || end8 == start {
			return nil
		}
		return t.planMaskRun(parsed, start, end8)
	}
	var live []*maskClass
	for _, mc := range merged {
		if len(mc.entries) > 0 {
			live = append(live, mc)
		}
	}
	keys := 0
	for _, mc := range live {
		keys += len(mc.entries)
	}
	if keys < 2 {
		// One key: the first rule decides every packet the run
		// matches, as cheaply as a lookup.
		return nil
	}
	p := &groupPlan{start: start, end: end, rules: runRules}
	for _, mc := range live {
		cl := &groupClass{mask: mc}
		members := map[int]bool{}
		for _, r := range mc.entries {
			members[r] = true
		}
		for r := range members {
			cl.members = append(cl.members, r)
		}
		sort.Ints(cl.members)
		p.classes = append(p.classes, cl)
	}
	p.planActions()
	return p
}

// maxAbsorbBits bounds the bits by which an entry is expanded to join
// an existing class of wider mask while a run is planned.
const maxAbsorbBits = 4

// absorber returns the class of sig whose mask covers m with the fewest
// (at most maxAbsorbBits) more bits, or nil.
func absorber(cls []*maskClass, sig string, m []byte) *maskClass {
	var best *maskClass
	bestBits := maxAbsorbBits + 1
	for _, mc := range cls {
		if mc.sig != sig {
			continue
		}
		n, covers := 0, true
		for i := range m {
			if m[i]&^mc.mask[i] != 0 {
				covers = false
				break
			}
			n += bits.OnesCount8(mc.mask[i] &^ m[i])
		}
		if covers && n < bestBits {
			best, bestBits = mc, n
		}
	}
	return best
}

// addExpanded adds the entry val with mask m for rule to mc, whose mask
// covers m: one entry per value of the bits mc compares and m does not.
func addExpanded(mc *maskClass, val, m []byte, rule int) {
	pos := expandBits(m, mc.mask)
	for v := 0; v < 1<<len(pos); v++ {
		b := []byte(string(val))
		for i, p := range pos {
			if v&(1<<i) != 0 {
				b[p/8] |= 0x80 >> (p % 8)
			}
		}
		mc.add(string(b), rule)
	}
}

// expandBits returns the bit positions set in to but not in from.
func expandBits(from, to []byte) []int {
	var out []int
	for i := range to {
		for b := 0; b < 8; b++ {
			bit := byte(0x80 >> b)
			if to[i]&bit != 0 && from[i]&bit == 0 {
				out = append(out, 8*i+b)
			}
		}
	}
	return out
}

func orBytes(a, b []byte) []byte {
	out := make([]byte, len(a))
	for i := range a {
		out[i] = a[i] | b[i]
	}
	return out
}

// mergeCost returns the entries a class has after expanding it to mask
// to, or -1 if that expands too many bits.
func mergeCost(mc *maskClass, to []byte) int {
	k := 0
	for i := range to {
		k += bits.OnesCount8(to[i] &^ mc.mask[i])
	}
	if k > maxExpandBits {
		return -1
	}
	return len(mc.entries) << k
}

// expandInto moves the entries of from into to (whose mask covers from's).
func expandInto(to, from *maskClass) {
	for _, key := range from.order {
		addExpanded(to, []byte(key), from.mask, from.entries[key])
	}
}

// mergeClasses merges classes of the same guards and columns, the
// cheapest merge first, while merging keeps the entries within
// mergeSlack times total (at least mergeFloor, at most maxGroupEntries).
// Unless final, it stops at maxGroupClasses. It reports false if more
// than maxGroupClasses classes are left.
func mergeClasses(cls []*maskClass, total int, final bool) ([]*maskClass, bool) {
	budget := min(max(mergeSlack*total, mergeFloor), maxGroupEntries)
	cur := total
	for len(cls) > 1 && (final || len(cls) > maxGroupClasses) {
		bi, bj, best := -1, -1, 0
		var bestMask []byte
		for i := range cls {
			for j := i + 1; j < len(cls); j++ {
				if cls[i].sig != cls[j].sig {
					continue
				}
				m := orBytes(cls[i].mask, cls[j].mask)
				ci, cj := mergeCost(cls[i], m), mergeCost(cls[j], m)
				if ci < 0 || cj < 0 {
					continue
				}
				cost := ci + cj - len(cls[i].entries) - len(cls[j].entries)
				if bi < 0 || cost < best {
					bi, bj, best, bestMask = i, j, cost, m
				}
			}
		}
		if bi < 0 {
			break
		}
		if cur+best > budget {
			break
		}
		a, b := cls[bi], cls[bj]
		before := len(a.entries) + len(b.entries)
		var m *maskClass
		switch {
		case bytes.Equal(bestMask, b.mask):
			m = b
			expandInto(m, a)
		case bytes.Equal(bestMask, a.mask):
			m = a
			expandInto(m, b)
		default:
			m = &maskClass{sig: a.sig, guards: a.guards, cols: a.cols, fields: a.fields, widths: a.widths, mask: bestMask, entries: map[string]int{}}
			expandInto(m, a)
			expandInto(m, b)
		}
		cur += len(m.entries) - before
		rest := []*maskClass{m}
		for i, c := range cls {
			if i != bi && i != bj {
				rest = append(rest, c)
			}
		}
		cls = rest
	}
	// Keep the classes in the order of their first rule.
	sort.SliceStable(cls, func(i, j int) bool { return minRule(cls[i]) < minRule(cls[j]) })
	return cls, len(cls) <= maxGroupClasses
}

func minRule(mc *maskClass) int {
	m := -1
	for _, r := range mc.entries {
		if m < 0 || r < m {
			m = r
		}
	}
	return m
}

// maskKeyLayout returns the offset of each column's part in a class's
// key, the length of each part (the column's bytes up to its last masked
// byte; 0 for a column that is loaded but not compared) and the key's
// length.
func (mc *maskClass) keyLayout() (offs, lens []int, keyLen int) {
	flat := 0
	for _, w := range mc.widths {
		n := 0
		for i := w - 1; i >= 0; i-- {
			if mc.mask[flat+i] != 0 {
				n = i + 1
				break
			}
		}
		off := keyLen
		if n > 0 {
			off = alignPart(keyLen, n)
			keyLen = off + n
		}
		offs, lens = append(offs, off), append(lens, n)
		flat += w
	}
	// A class that compares no bits (tcp dport 0-65535) has one entry,
	// under a key of one zero byte.
	return offs, lens, max(keyLen, 1)
}

// key returns the map key of a flat entry value, with the class's key
// layout.
func (mc *maskClass) key(val string, offs, lens []int, keyLen int) []byte {
	k := make([]byte, keyLen)
	flat := 0
	for i, w := range mc.widths {
		copy(k[offs[i]:offs[i]+lens[i]], val[flat:flat+lens[i]])
		flat += w
	}
	return k
}

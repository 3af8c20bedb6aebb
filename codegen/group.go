package codegen

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"reflect"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Rule groups.
//
// A run of consecutive rules of a chain that differ only in the constants
// they compare fields with ("ip saddr 198.51.100.1 tcp dport 22 drop",
// "ip saddr 198.51.100.7 tcp dport 443 accept", …) is compiled into one
// hash map lookup: the fields are loaded once into a key, and the map
// gives, for each key, the first rule of the run that compares equal to
// it. Its value names that rule's counter slot and its verdict, which the
// code after the lookup carries out. The cost per packet no longer grows
// with the number of rules in the run.
//
// The result is exactly that of evaluating the rules one by one:
//
//   - Matches have no side effects, and a rule matches iff all its matches
//     hold, in whatever order they are evaluated; a field that cannot be
//     loaded (NFT_BREAK) fails the match in every rule of the run alike,
//     since which fields load depends only on the packet. So rule i of the
//     run matches iff the matches every rule of the run has in common
//     (the guards) hold and the key built from the packet equals rule i's.
//   - Among the rules whose key equals the packet's, the first wins: the
//     map holds the smallest rule index for each key. A later rule with
//     the same key is never reached after an accept, drop, return or goto
//     of the earlier one; after a jump it would be (the jump returns to
//     the next rule), so a key repeated after a jump ends the run.
//   - A rule that matched and jumped resumes, after its chain returns, at
//     the next rule of the run; none of those can match (no repeated
//     key), so execution resumes behind the run.
//
// Rules qualify when they consist of matches, then at most one counter,
// log and meta mark set statements and at most one limit or quota, then
// an accept, drop, return, jump, goto or continue verdict, a reject, or
// nothing. Rules with the same statements and verdict share one action
// block (groupact.go): the code after the lookup runs the block the map
// value names. A rule that goes on after it matched (no verdict,
// continue, jump, or its limit or quota ended it) is treated as a jump
// is: its run has one class and its key is held by no later rule of the
// run. A match position is
// part of the key when it is an equality (nft_cmp eq) in every rule; every
// other match (ranges, sets, inequalities) must be the same in all rules
// of the run and becomes a guard, tested before the lookup.

// Options tune compilation.
type Options struct {
	// Linear compiles every rule as straight-line code (no rule groups).
	Linear bool
	// GroupMin is the least number of consecutive rules compiled into a
	// group lookup; 0 means DefaultGroupMin.
	GroupMin int
}

// DefaultGroupMin is the run length from which rules are grouped: below
// it, the compares of straight-line code cost less than a hash lookup.
const DefaultGroupMin = 8

// maxGroupActions bounds the distinct action blocks of a group: the code
// after the lookup finds its block by a binary search over the action
// number (groupact.go), and every block is code of its own.
const maxGroupActions = 4096

// maxGroupKey is the largest group key in bytes.
const maxGroupKey = 48

// maxGroupClasses bounds the classes (rule shapes) of one group: each
// costs a lookup per packet.
const maxGroupClasses = 8

// maxGroupMaps bounds the group maps of one program: the kernel lets a
// program use at most 64 maps (MAX_USED_MAPS), which the counter map, set
// maps and state maps share.
const maxGroupMaps = 40

// Stack slots used by group code (see the layout in gen.go).
const (
	groupKeyOff   = -336 // 48 bytes up to -288: the key of a group lookup
	slotGroupBest = -288 // the index of the first rule found so far
	slotGroupCtr  = -280 // its counter slot
	slotGroupAc   = -272 // its action
)

// groupNoCounter is the counter index of a rule without counter.
const groupNoCounter = 0xffffffff

// GroupMap is the hash map behind a rule group, with its contents.
type GroupMap struct {
	// Symbol is the reference of the map in the program's instructions;
	// it includes a digest of the contents, so that programs whose
	// groups hold different rules differ in their instructions too.
	Symbol string
	Spec   *ebpf.MapSpec
	// Keys and Values are the map's contents: Values[i].Counter is an
	// index into Program.CounterSlots, or -1.
	Keys   [][]byte
	Values []GroupValue
	// Chain and Handles name the grouped rules.
	Chain   string
	Handles []uint64
	// wide: the values carry the rules' state slots and handles.
	wide bool
}

// GroupValue is what a group lookup finds for a key: the first rule with
// that key (its index in the group, which orders the rules of a group's
// classes), its counter, its action block (an index into the group's
// distinct statement lists and verdicts) and its handle (in the map only
// where an action block logs, whose events name the rule).
type GroupValue struct {
	Rule    uint32
	Counter int32
	Action  uint32
	// State is the state slot (Program.StateSlots) of the rule's limit
	// or quota, or -1; in the map only where an action block keeps state.
	State  int32
	Handle uint64
}

// Group map value sizes: rule, counter and action; wide values (where an
// action block logs or keeps state) add the state slot and the rule's
// handle.
const (
	groupValueSize      = 12
	groupValueSizeWide  = 24
	groupValueStateOff  = 12
	groupValueHandleOff = 16
)

// mapValue encodes v in size bytes with counter index i in slot slots(i)
// (groupNoCounter for none) and state index j in slot state(j).
func (v GroupValue) mapValue(slots, state func(int) uint32, size uint32) []byte {
	c := uint32(groupNoCounter)
	if v.Counter >= 0 {
		c = slots(int(v.Counter))
	}
	out := binary.NativeEndian.AppendUint32(nil, v.Rule)
	out = binary.NativeEndian.AppendUint32(out, c)
	out = binary.NativeEndian.AppendUint32(out, v.Action)
	if size == groupValueSizeWide {
		s := uint32(groupNoCounter)
		if v.State >= 0 {
			s = state(int(v.State))
		}
		out = binary.NativeEndian.AppendUint32(out, s)
		out = binary.NativeEndian.AppendUint64(out, v.Handle)
	}
	return out
}

// newGroupMap creates and fills the map of a group; slots maps counter
// indexes to slots of the counter map, state state indexes to slots of
// the state map.
func newGroupMap(gm *GroupMap, slots, state func(int) uint32) (*ebpf.Map, error) {
	m, err := ebpf.NewMap(gm.Spec)
	if err != nil {
		return nil, fmt.Errorf("create group map of chain %s: %w", gm.Chain, err)
	}
	vals := make([][]byte, len(gm.Values))
	for i, v := range gm.Values {
		vals[i] = v.mapValue(slots, state, gm.Spec.ValueSize)
	}
	if err := fillGroupMap(m, gm.Keys, vals); err != nil {
		m.Close()
		return nil, fmt.Errorf("fill group map of chain %s: %w", gm.Chain, err)
	}
	return m, nil
}

// fillGroupMap writes keys and values, in batches where the kernel can.
func fillGroupMap(m *ebpf.Map, keys, vals [][]byte) error {
	for start := 0; start < len(keys); start += batchChunk {
		end := min(start+batchChunk, len(keys))
		ks := byteArrays(keys[start:end], int(m.KeySize()))
		vs := byteArrays(vals[start:end], int(m.ValueSize()))
		if _, err := m.BatchUpdate(ks, vs, nil); err != nil {
			// Batch operations need Linux 5.6; add one at a time.
			for i := start; i < len(keys); i++ {
				if err := m.Update(keys[i], vals[i], ebpf.UpdateAny); err != nil {
					return fmt.Errorf("key %x: %w", keys[i], err)
				}
			}
			return nil
		}
	}
	return nil
}

// byteArrays returns items as a slice of [size]byte, the form in which
// cilium/ebpf passes a batch of fixed-size keys or values.
func byteArrays(items [][]byte, size int) any {
	t := reflect.ArrayOf(size, reflect.TypeFor[byte]())
	out := reflect.MakeSlice(reflect.SliceOf(t), len(items), len(items))
	for i, it := range items {
		reflect.Copy(out.Index(i), reflect.ValueOf(it))
	}
	return out.Interface()
}

// groupRule is a rule in the form groups accept (see asGroupRule in
// groupact.go).
type groupRule struct {
	matches []*ir.Match
	counter int // statement index of the counter, or -1
	// stmts are the rule's statements after its matches other than its
	// counter, in order (log, meta mark set, reject).
	stmts []ir.Stmt
	// verdict is the rule's verdict; a rule without one (or with
	// continue) goes on with the next rule, one that ends in reject has
	// none.
	verdict *ir.Verdict
	reject  bool
	// state is the statement index of the rule's limit or quota (at
	// most one), or -1; ctrPos is the number of stmts before the
	// counter (-1: none), where a stateful group counts.
	state, ctrPos int
}

// sameField reports whether a and b load the same register image.
func sameField(a, b *ir.Field) bool {
	if a.Source != b.Source || a.Len != b.Len || len(a.Transforms) != len(b.Transforms) {
		return false
	}
	switch a.Source {
	case ir.SourcePayload:
		if a.Base != b.Base || a.Offset != b.Offset {
			return false
		}
	case ir.SourceMeta:
		if a.Meta != b.Meta {
			return false
		}
	case ir.SourceCT:
		if a.CT != b.CT || a.CTDir != b.CTDir {
			return false
		}
	default:
		return false
	}
	for i := range a.Transforms {
		x, y := &a.Transforms[i], &b.Transforms[i]
		if x.Kind != y.Kind || x.Len != y.Len || x.Shift != y.Shift || x.Size != y.Size ||
			!bytes.Equal(x.Mask, y.Mask) || !bytes.Equal(x.Xor, y.Xor) {
			return false
		}
	}
	return true
}

// fits reports whether b has the shape of a (the first rule of a run):
// the same fields and comparisons in the same order, equalities with
// values of the same length, every other comparison identical.
func fits(a, b groupRule) bool {
	if len(a.matches) != len(b.matches) {
		return false
	}
	for i, x := range a.matches {
		y := b.matches[i]
		if x.Op != y.Op || !sameField(&x.Field, &y.Field) {
			return false
		}
		if x.Op == ir.OpEq {
			if len(x.Value) != len(y.Value) {
				return false
			}
			continue
		}
		if !bytes.Equal(x.Value, y.Value) || !bytes.Equal(x.High, y.High) || x.Set != y.Set {
			return false
		}
	}
	return true
}

// groupable reports whether the equalities of gr can form a key: lengths
// the compare code accepts and a key that fits the stack area.
func groupable(gr groupRule) bool {
	n := 0
	for _, m := range gr.matches {
		if m.Field.Len == 0 || m.Field.Len > bufSize {
			return false
		}
		if m.Op == ir.OpEq {
			if len(m.Value) == 0 || uint32(len(m.Value)) > round4(m.Field.Len) {
				return false
			}
			n = alignPart(n, len(m.Value)) + len(m.Value)
		}
	}
	return n > 0 && n <= maxGroupKey
}

// alignPart returns the offset at which a key part of n bytes starts when
// the key so far has off bytes: aligned to its largest load.
func alignPart(off, n int) int {
	a := int(chunks(uint32(n))[0][1])
	return (off + a - 1) / a * a
}

// rawKey concatenates the equality values of gr at positions pos.
func rawKey(gr groupRule, pos []int) []byte {
	var k []byte
	for _, p := range pos {
		k = append(k, gr.matches[p].Value...)
	}
	return k
}

// groupPlan is a run of rules compiled as one group: one or more classes
// of rules of the same shape, each looked up in its own map. With several
// classes, every class is looked up and the rule found with the smallest
// index wins, which is the first rule of the run that matches: the
// classifier of tuple space search. Such a run has no jump, so that a
// matching rule always ends the run.
type groupPlan struct {
	start, end int // rules [start, end) of the chain
	rules      []groupRule
	classes    []*groupClass
	actions    []groupAction // distinct action blocks, indexed by action number
	// wide: an action block logs or keeps state, so map values carry
	// the rule's handle and state slot; stateful: it keeps state, so
	// counters are counted in the blocks, where the rules count.
	wide, stateful bool
	// actionIndex numbers the actions by actionKey.
	actionIndex map[string]uint32
}

// groupClass is the rules of a group that have one shape.
type groupClass struct {
	first    groupRule
	eqs      []int // equality positions
	members  []int // indexes into groupPlan.rules
	guards   []int // match positions tested before the lookup
	keys     []int // match positions that form the key
	keyParts []int // offset of each key part in the key
	keyLen   int
	seen     map[string]bool // keys held by a rule of the class
	resumes  map[string]bool // keys whose first rule goes on after it matched
	rules    []groupRule     // the members' rules (set by finish)
	// mask, when set, makes this a class of a masked group
	// (groupmask.go); only members is set besides.
	mask *maskClass
}

// planGroups finds the runs of c's rules that are compiled as groups,
// keyed by their first rule's index.
func (g *gen) planGroups(c *ir.Chain) map[int]*groupPlan {
	if g.opts.Linear {
		return nil
	}
	// A user chain is compiled once per jump to it: plan it once.
	if p, ok := g.plans[c]; ok {
		return p
	}
	if g.plans == nil {
		g.plans = map[*ir.Chain]map[int]*groupPlan{}
	}
	p := g.planChain(c)
	g.plans[c] = p
	return p
}

// planChain plans the groups of c (see planGroups).
func (g *gen) planChain(c *ir.Chain) map[int]*groupPlan {
	min := g.opts.GroupMin
	if min <= 0 {
		min = DefaultGroupMin
	}
	if min < 2 {
		min = 2
	}
	// Every rule is taken apart once; planRun looks at each many times.
	parsed := make([]parsedRule, len(c.Rules))
	for i, r := range c.Rules {
		gr, ok := asGroupRule(r)
		parsed[i] = parsedRule{gr, ok, ok && groupable(gr), 0}
		if ok {
			parsed[i].cost = g.actionCost(gr)
		}
	}
	plans := map[int]*groupPlan{}
	var masks *maskTable
	maskTried := 0
	for i := 0; i < len(c.Rules); {
		one := planRun(parsed, i, 1)
		var many *groupPlan
		if one == nil || one.end < len(parsed) {
			many = planRun(parsed, i, maxGroupClasses)
		}
		var p *groupPlan
		switch {
		case many != nil && len(many.classes) > 1 && len(many.rules) > len(one.rulesOrNil()) &&
			len(many.rules) >= max(min, 4*len(many.classes)):
			p = many
		case one != nil && len(one.rules) >= min && len(one.classes[0].keysVary()) > 0:
			p = one
		}
		if (p == nil || p.end < len(parsed) || len(p.classes) > 1) && i >= maskTried {
			// A masked group (groupmask.go) serves ranges and mixed
			// prefixes too; it is taken where it serves more rules,
			// or as many in fewer lookups.
			if masks == nil {
				masks = newMaskTable(parsed)
			}
			m := masks.planMaskRun(parsed, i, len(parsed))
			if m != nil && len(m.rules) >= max(min, 4*len(m.classes)) &&
				(len(m.rules) > len(p.rulesOrNil()) || len(m.rules) == len(p.rulesOrNil()) && len(m.classes) < len(p.classes)) {
				p = m
			} else if m != nil {
				// Planning is linear in the run: starts inside a
				// run that was not taken are not tried again.
				maskTried = m.end
			}
		}
		if p == nil {
			i++
			continue
		}
		plans[i] = p
		i = p.end
	}
	return limitMaps(plans, maxGroupMaps)
}

// limitMaps keeps the plans that save the most per map while their maps
// number at most budget; the rules of the others stay straight-line code.
func limitMaps(plans map[int]*groupPlan, budget int) map[int]*groupPlan {
	all := make([]*groupPlan, 0, len(plans))
	n := 0
	for _, p := range plans {
		all = append(all, p)
		n += len(p.classes)
	}
	if n <= budget {
		return plans
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := len(all[i].rules)*len(all[j].classes), len(all[j].rules)*len(all[i].classes)
		if a != b {
			return a > b
		}
		return all[i].start < all[j].start
	})
	kept := map[int]*groupPlan{}
	for _, p := range all {
		if len(p.classes) <= budget {
			kept[p.start] = p
			budget -= len(p.classes)
		}
	}
	return kept
}

func (p *groupPlan) rulesOrNil() []groupRule {
	if p == nil {
		return nil
	}
	return p.rules
}

// parsedRule is a rule taken apart for planning.
type parsedRule struct {
	gr groupRule
	// ok: the rule has the form groups take; groupable: it can also
	// start a class.
	ok, groupable bool
	// cost estimates the instructions of the rule's action block.
	cost int
}

// planRun returns the longest run of rules from start that can be
// grouped in at most maxClasses classes, or nil.
func planRun(rules []parsedRule, start, maxClasses int) *groupPlan {
	if !rules[start].groupable {
		return nil
	}
	p := &groupPlan{start: start}
	actions := map[string]bool{}
	hasJump := false
	code := 0 // estimated instructions of the action blocks
	for j := start; j < len(rules); j++ {
		gr, ok := rules[j].gr, rules[j].ok
		if !ok {
			break
		}
		var cl *groupClass
		for _, c := range p.classes {
			if fits(c.first, gr) {
				cl = c
				break
			}
		}
		jump := gr.resumes()
		if cl == nil {
			// A new shape: a class of its own, unless a jump (whose
			// return resumes at the next rule, in any class) forbids
			// more than one.
			if len(p.classes) == maxClasses || hasJump || !rules[j].groupable {
				break
			}
		} else if jump && len(p.classes) > 1 {
			break
		}
		if cl == nil && jump && len(p.classes) > 0 {
			break
		}
		if cl == nil {
			cl = &groupClass{first: gr, seen: map[string]bool{}, resumes: map[string]bool{}}
			for i, m := range gr.matches {
				if m.Op == ir.OpEq {
					cl.eqs = append(cl.eqs, i)
				}
			}
			p.classes = append(p.classes, cl)
		}
		k := string(rawKey(gr, cl.eqs))
		if cl.resumes[k] {
			break
		}
		ak := gr.actionKey()
		if !actions[ak] && (len(actions) == maxGroupActions || code+rules[j].cost > maxGroupActionInsns) {
			break
		}
		if !actions[ak] {
			code += rules[j].cost
		}
		actions[ak] = true
		if !cl.seen[k] {
			cl.seen[k] = true
			cl.resumes[k] = jump
		}
		hasJump = hasJump || jump
		cl.members = append(cl.members, len(p.rules))
		p.rules = append(p.rules, gr)
		p.end = j + 1
	}
	// A class created for a rule the loop then refused has no members.
	classes := p.classes[:0]
	for _, cl := range p.classes {
		if len(cl.members) > 0 {
			classes = append(classes, cl)
		}
	}
	p.classes = classes
	if len(p.rules) == 0 {
		return nil
	}
	for _, cl := range p.classes {
		cl.finish(p.rules)
	}
	p.planActions()
	return p
}

// keysVary returns the equality positions whose values differ between the
// class's rules.
func (cl *groupClass) keysVary() []int {
	var out []int
	for _, pos := range cl.eqs {
		v := cl.first.matches[pos].Value
		for _, gr := range cl.membersOf() {
			if !bytes.Equal(gr.matches[pos].Value, v) {
				out = append(out, pos)
				break
			}
		}
	}
	return out
}

// membersOf is set by finish: the class's rules.
func (cl *groupClass) membersOf() []groupRule { return cl.rules }

// finish chooses the class's key and guards: equalities with the same
// value in every rule of the class are guards, unless all are (then all
// form the key, of one entry).
func (cl *groupClass) finish(rules []groupRule) {
	for _, m := range cl.members {
		cl.rules = append(cl.rules, rules[m])
	}
	cl.keys = cl.keysVary()
	if len(cl.keys) == 0 {
		cl.keys = cl.eqs
	}
	isKey := map[int]bool{}
	for _, pos := range cl.keys {
		isKey[pos] = true
	}
	for i := range cl.first.matches {
		if !isKey[i] {
			cl.guards = append(cl.guards, i)
		}
	}
	for _, pos := range cl.keys {
		n := len(cl.first.matches[pos].Value)
		off := alignPart(cl.keyLen, n)
		cl.keyParts = append(cl.keyParts, off)
		cl.keyLen = off + n
	}
}

// key returns rule gr's map key.
func (cl *groupClass) key(gr groupRule) []byte {
	k := make([]byte, cl.keyLen)
	for i, pos := range cl.keys {
		copy(k[cl.keyParts[i]:], gr.matches[pos].Value)
	}
	return k
}

// group emits the code of a planned group of c's rules; ret is where a
// return (and the end of a goto'd chain) continues.
func (g *gen) group(c *ir.Chain, p *groupPlan, ret string, depth int, active map[string]bool) error {
	rules := c.Rules[p.start:p.end]
	g.curChain, g.curRule, g.curStmt = c.Name, rules[0], nil
	end := g.b.newLabel("group_end")
	// A packet no rule of the group matches goes on behind the action
	// blocks, further than a conditional jump may reach: through miss,
	// a long jump right behind the dispatch.
	miss := g.b.newLabel("group_miss")
	start := g.b.pos()
	multi := len(p.classes) > 1
	// The handle of the rule found goes to slotGroupHandle, where the
	// action blocks' log statements read it. With several classes it is
	// kept in slotEvent (free until a log statement runs) while the
	// lookups use slotGroupBest.
	handleSlot := int16(slotGroupHandle)
	if multi {
		g.b.emit(stImm64(asm.R10, slotGroupBest, -1))
		if p.wide {
			handleSlot = slotEvent
			g.b.emit(stImm64(asm.R10, slotEvent, 0))
		}
	}
	hasCounter := false
	var maps []*GroupMap
	for _, cl := range p.classes {
		next := miss
		if multi {
			next = g.b.newLabel("group_class_end")
		}
		gm, err := g.groupClass(c, p, cl, next)
		if err != nil {
			return err
		}
		maps = append(maps, gm)
		for _, v := range gm.Values {
			hasCounter = hasCounter || v.Counter >= 0
		}
		g.b.invertNext = false
		if multi {
			// Keep the rule found if it comes before the best so far.
			g.b.emit(
				asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
				asm.LoadMem(asm.R2, asm.R10, slotGroupBest, asm.DWord),
				asm.JGE.Reg(asm.R1, asm.R2, next),
				asm.StoreMem(asm.R10, slotGroupBest, asm.R1, asm.DWord),
			)
		}
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R0, 4, asm.Word),
			asm.StoreMem(asm.R10, slotGroupCtr, asm.R1, asm.DWord),
			asm.LoadMem(asm.R1, asm.R0, 8, asm.Word),
			asm.StoreMem(asm.R10, slotGroupAc, asm.R1, asm.DWord),
		)
		if p.wide {
			g.b.emit(
				asm.LoadMem(asm.R1, asm.R0, groupValueHandleOff, asm.DWord),
				asm.StoreMem(asm.R10, handleSlot, asm.R1, asm.DWord),
			)
		}
		if p.stateful {
			// One class (the rules go on when their state ends them).
			g.b.emit(
				asm.LoadMem(asm.R1, asm.R0, groupValueStateOff, asm.Word),
				asm.StoreMem(asm.R10, slotGroupState, asm.R1, asm.DWord),
			)
		}
		if multi {
			g.b.label(next)
		}
	}
	if multi {
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, slotGroupBest, asm.DWord),
			asm.JEq.Imm(asm.R0, -1, miss),
		)
		if p.wide {
			g.b.emit(
				asm.LoadMem(asm.R1, asm.R10, slotEvent, asm.DWord),
				asm.StoreMem(asm.R10, slotGroupHandle, asm.R1, asm.DWord),
			)
		}
	}
	if hasCounter && !p.stateful {
		g.groupCounter()
	}
	g.b.emit(asm.LoadMem(asm.R0, asm.R10, slotGroupAc, asm.DWord))
	labels := make([]string, len(p.actions))
	for i := range labels {
		labels[i] = g.b.newLabel("group_act")
	}
	g.dispatch(labels, 0, len(labels), miss)
	g.b.label(miss)
	g.b.emit(asm.LongJump(end))
	// The dispatch jumps to every block: a chain is not cut inside
	// them (each cut would need an entry program per block behind it),
	// only behind the group.
	cuts := len(g.cuts)
	defer func() { g.cuts = g.cuts[:cuts] }()
	keys := 0
	for _, gm := range maps {
		keys += len(gm.Keys)
	}
	g.anns = append(g.anns, Annotation{Start: start, End: g.b.pos(), Chain: c.Name, Handle: rules[0].Handle,
		Text: fmt.Sprintf("group of %d rules (handles %d…%d) in %d hash lookups (%d keys, %d actions), like: %s",
			len(rules), rules[0].Handle, rules[len(rules)-1].Handle, len(maps), keys, len(p.actions), ir.FormatRule(g.t.Family, rules[0]))})
	for i, a := range p.actions {
		g.b.label(labels[i])
		if err := g.actionBlock(c, p, a, end, ret, depth, active); err != nil {
			return err
		}
	}
	g.b.label(end)
	return nil
}

// groupCounter counts the packet in the counter slot of the rule a group
// lookup found (slotGroupCtr; none if -1).
func (g *gen) groupCounter() {
	skip := g.b.newLabel("group_ctr_skip")
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, slotGroupCtr, asm.DWord),
		asm.JEq.Imm32(asm.R1, -1, skip),
		asm.StoreMem(asm.R10, slotKey, asm.R1, asm.DWord),
		asm.LoadMapPtr(asm.R1, 0).WithReference(counterDynSymbol),
	)
	g.bumpCounter(skip)
	g.b.label(skip)
}

// groupClass emits the lookup of one class of a group: its guards, its
// key, and the lookup, which leaves the map value in R0; a packet that
// fails a guard, cannot load a field or misses the map goes to next.
func (g *gen) groupClass(c *ir.Chain, p *groupPlan, cl *groupClass, next string) (*GroupMap, error) {
	if cl.mask != nil {
		return g.maskLookup(c, p, cl, next)
	}
	first := cl.first
	g.curRule = c.Rules[p.start+cl.members[0]] // errors name the class's first rule
	g.b.invertNext = true
	for _, pos := range cl.guards {
		g.curStmt = first.matches[pos]
		if err := g.match(first.matches[pos], next); err != nil {
			return nil, err
		}
	}
	for off := 0; off < cl.keyLen; off += 8 {
		g.b.emit(stImm64(asm.R10, int16(groupKeyOff+off), 0))
	}
	for i, pos := range cl.keys {
		m := first.matches[pos]
		g.curStmt = m
		f := &m.Field
		span := round4(f.Len)
		if err := g.loadField(f, span, next); err != nil {
			return nil, err
		}
		for _, t := range f.Transforms {
			if err := g.transform(t, span); err != nil {
				return nil, err
			}
		}
		dst := int32(groupKeyOff + cl.keyParts[i])
		for _, ch := range chunks(uint32(len(m.Value))) {
			pos, sz := int32(ch[0]), asmSize(ch[1])
			g.b.emit(
				asm.LoadMem(asm.R0, asm.R10, int16(bufOff+pos), sz),
				asm.StoreMem(asm.R10, int16(dst+pos), asm.R0, sz),
			)
		}
	}
	g.curStmt = nil

	// The map: one entry per distinct key, the first rule's.
	rules := c.Rules[p.start:p.end]
	gm := &GroupMap{Chain: c.Name, wide: p.wide}
	index := map[string]bool{}
	for _, idx := range cl.members {
		gr, r := p.rules[idx], rules[idx]
		gm.Handles = append(gm.Handles, r.Handle)
		ctr := int32(-1)
		if gr.counter >= 0 {
			ctr = int32(g.slotFor(CounterSlot{Chain: c.Name, Handle: r.Handle, Stmt: gr.counter}))
		}
		k := cl.key(gr)
		if index[string(k)] {
			continue
		}
		index[string(k)] = true
		gm.Keys = append(gm.Keys, k)
		gm.Values = append(gm.Values, GroupValue{Rule: uint32(idx), Counter: ctr, Action: p.action(gr), State: g.groupStateSlot(c, r, gr), Handle: r.Handle})
	}
	g.groupLookup(gm, cl.keyLen, next)
	return gm, nil
}

// groupLookup names and describes the map of gm, whose keys have keyLen
// bytes, and emits its lookup with the key built at groupKeyOff: the
// value is left in R0, a miss goes to next.
func (g *gen) groupLookup(gm *GroupMap, keyLen int, next string) {
	size := uint32(groupValueSize)
	if gm.wide {
		size = groupValueSizeWide
	}
	h := sha256.New()
	id := func(n int) uint32 { return uint32(n) }
	for i, k := range gm.Keys {
		h.Write(k)
		h.Write(gm.Values[i].mapValue(id, id, size))
	}
	gm.Symbol = fmt.Sprintf("nft_group:%d:%x", len(g.groups), h.Sum(nil)[:8])
	gm.Spec = &ebpf.MapSpec{
		Name:       "nft_g_" + sanitize(gm.Chain),
		Type:       ebpf.Hash,
		KeySize:    uint32(keyLen),
		ValueSize:  size,
		MaxEntries: uint32(max(len(gm.Keys), 1)),
	}
	g.groups = append(g.groups, gm)
	g.b.emit(
		asm.LoadMapPtr(asm.R1, 0).WithReference(gm.Symbol),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, groupKeyOff),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, next),
	)
}

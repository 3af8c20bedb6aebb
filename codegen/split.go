package codegen

import (
	"fmt"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Splitting a chain into tail-called programs.
//
// The verifier's time grows with the square of a program's length (about
// 35 ms for 8,700 instructions of straight-line rules, 1.1 s for 68,000,
// 3.5 s for 136,000 on Linux 6.18), and it gives up at 1M processed
// instructions. A chain whose code is longer than partInsns is therefore
// cut at rule boundaries into parts, each its own program of the same type,
// joined by bpf_tail_call through a program array.
//
// Nothing is carried from one part to the next, so nothing can be lost or
// clobbered in between: every part starts with the same prologue, which
// computes the packet's pktinfo again from the unchanged packet (the rules
// never change what the prologue reads), and no stack or register state
// is live at a rule boundary (a match loads its field afresh, a group's
// scratch slots and a lookup's result are used within the rule). What a
// rule changes outside the stack stays where it is: counters, limit and
// quota state and set maps are shared maps, the mark is in the skb, log
// events are in the ring buffer. User chains are inlined, so where a part
// ends in the middle of a user chain, the code that follows in the next
// part is exactly the code that would have run next. A jump whose target
// lies beyond the next part's start (a rule failing a match behind its
// long jump target, a return to the calling rule's successor) tail-calls a
// program of the target part that starts at that label: the same part,
// entered there. Every jump goes forward, so a packet crosses at most
// parts-1 program boundaries and never meets the same part twice; parts
// are bounded so that this stays below the kernel's limit of 33 tail
// calls with one to spare for the netfilter dispatcher (package loader).
//
// A failed tail call (an empty slot, which a correctly loaded array never
// has) drops the packet.

// Part sizes. A part aims at partInsns instructions; a chain that would
// need more than maxParts parts gets larger parts, up to maxPartInsns
// (about 0.4 s of verification each). A part that holds a single rule
// longer than that may reach maxInsns.
const (
	partInsns     = 8192
	maxPartInsns  = 40000
	maxParts      = 32
	maxChainInsns = maxParts * maxPartInsns
	// maxTailPrograms bounds the programs of a split chain: one per
	// part, and one more per label a jump enters a later part at.
	maxTailPrograms = 256
)

// tailCallSymbol is the reference name of the program array in the
// instructions of a split chain.
const tailCallSymbol = "nft_tailcalls"

// TailPart is a program a split chain continues in.
type TailPart struct {
	Spec        *ebpf.ProgramSpec
	Annotations []Annotation
	// Part is the index of the chain's part this program runs (the
	// first part, Program.Spec, is 0); Entry is the label it starts
	// at: the part's first rule, or a label a jump from an earlier part
	// goes to.
	Part  int
	Entry string
}

// Parts returns the number of programs a chain was split into by
// cutting it (1 if it was not), not counting extra entry programs.
func (p *Program) Parts() int {
	n := 1
	for _, t := range p.Tail {
		if t.Part+1 > n {
			n = t.Part + 1
		}
	}
	return n
}

// TailCallsSpec returns the spec of a program array with n slots.
func tailCallsSpec(n int) *ebpf.MapSpec {
	return &ebpf.MapSpec{Name: "nft_tailcalls", Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: uint32(n)}
}

func (p *Program) setTail(tail []TailPart) {
	if len(tail) == 0 {
		return
	}
	for i := range tail {
		tail[i].Spec.Name = p.Spec.Name
		tail[i].Spec.Type = p.Spec.Type
		tail[i].Spec.AttachType = p.Spec.AttachType
		tail[i].Spec.License = p.Spec.License
	}
	p.Tail = tail
	p.TailCalls = tailCallsSpec(len(tail))
}

// cutPoint is a rule boundary at nesting depth depth (0: the base chain).
type cutPoint struct {
	pos, depth int
}

// cut records the position of the next instruction as a rule boundary.
func (g *gen) cut(depth int) {
	g.cuts = append(g.cuts, cutPoint{pos: g.b.pos(), depth: depth})
}

// partCode is the code of one program before it becomes a spec.
type partCode struct {
	insns asm.Instructions
	anns  []Annotation
	part  int
	entry string
}

// split turns the finished instructions of the chain into its first
// program and, if the chain is too long for one, the programs it
// tail-calls (slot order).
func (g *gen) split(insns asm.Instructions) (partCode, []TailPart, error) {
	if len(insns) <= partInsns || g.policyPos <= g.rulesPos {
		out, idx, err := prune(insns)
		if err != nil {
			return partCode{}, nil, err
		}
		anns := append([]Annotation(nil), g.anns...)
		for i := range anns {
			anns[i].Start, anns[i].End = idx[anns[i].Start], idx[anns[i].End]
		}
		if len(out) > maxInsns {
			return partCode{}, nil, &UnsupportedError{Chain: g.base.Name, Reason: fmt.Sprintf("program has %d instructions (limit %d)", len(out), maxInsns)}
		}
		return partCode{insns: g.withCallbacks(out), anns: anns}, nil, nil
	}
	starts, err := g.planParts(len(insns))
	if err != nil {
		return partCode{}, nil, err
	}
	s := &splitter{g: g, insns: insns, starts: starts, sym: map[string]int{}, entries: map[string]*tailEntry{}}
	return s.build()
}

// planParts chooses where the parts start. The first part starts at the
// first rule.
func (g *gen) planParts(n int) ([]int, error) {
	overhead := g.rulesPos + (n - g.policyPos)
	rules := g.policyPos - g.rulesPos
	budget := partInsns - overhead
	if min := (rules + maxParts - 1) / maxParts; budget < min {
		budget = min
	}
	for {
		starts := g.cutAt(budget)
		if len(starts) <= maxParts {
			for i, s := range starts {
				end := g.policyPos
				if i+1 < len(starts) {
					end = starts[i+1]
				}
				if end-s+overhead > maxInsns {
					return nil, &UnsupportedError{Chain: g.base.Name, Reason: fmt.Sprintf(
						"one rule needs %d instructions, over the limit of %d for one program; use sets or maps", end-s, maxInsns)}
				}
			}
			return starts, nil
		}
		if budget+overhead >= maxPartInsns {
			return nil, &UnsupportedError{Chain: g.base.Name, Reason: fmt.Sprintf(
				"%d rules need %d instructions, which split at rule boundaries into programs of at most %d instructions take %d tail-called programs, over the limit of %d "+
					"(the kernel follows at most 33 tail calls); only runs of rules that differ in compared constants share a lookup: use sets or maps for the rest",
				g.rulesDone, n, maxPartInsns, len(starts), maxParts)}
		}
		budget = budget * 5 / 4
		if budget+overhead > maxPartInsns {
			budget = maxPartInsns - overhead
		}
	}
}

// cutAt cuts the rules into parts of at most budget instructions where
// rule boundaries allow it, preferring, in the second half of a part's
// room, the boundary of least nesting depth (fewer jumps then cross into
// a later part), and the later one among equals.
func (g *gen) cutAt(budget int) []int {
	starts := []int{g.rulesPos}
	s := g.rulesPos
	i := 0
	for g.policyPos-s > budget {
		for i < len(g.cuts) && g.cuts[i].pos <= s {
			i++
		}
		if i == len(g.cuts) || g.cuts[i].pos >= g.policyPos {
			break
		}
		best := i // a single rule larger than the budget: cut behind it
		for j := i; j < len(g.cuts) && g.cuts[j].pos <= s+budget && g.cuts[j].pos < g.policyPos; j++ {
			c, b := g.cuts[j], g.cuts[best]
			switch {
			case b.pos < s+budget/2:
				best = j
			case c.pos >= s+budget/2 && c.depth <= b.depth:
				best = j
			}
		}
		s = g.cuts[best].pos
		starts = append(starts, s)
	}
	return starts
}

// tailEntry is a program of a split chain: part entered at label.
type tailEntry struct {
	part  int
	label string
	slot  int
}

type splitter struct {
	g       *gen
	insns   asm.Instructions
	starts  []int
	sym     map[string]int
	entries map[string]*tailEntry
	slots   []*tailEntry
}

func (s *splitter) end(k int) int {
	if k+1 < len(s.starts) {
		return s.starts[k+1]
	}
	return s.g.policyPos
}

func (s *splitter) partOf(pos int) int {
	return sort.Search(len(s.starts), func(k int) bool { return s.starts[k] > pos }) - 1
}

// entry returns the program that runs part k from label on.
func (s *splitter) entry(k int, label string) *tailEntry {
	if e, ok := s.entries[label]; ok {
		return e
	}
	e := &tailEntry{part: k, label: label, slot: len(s.slots)}
	s.entries[label] = e
	s.slots = append(s.slots, e)
	return e
}

func stubLabel(slot int) string { return fmt.Sprintf("nft_tail_%d", slot) }

func (s *splitter) build() (partCode, []TailPart, error) {
	g := s.g
	for i, ins := range s.insns {
		if sy := ins.Symbol(); sy != "" {
			s.sym[sy] = i
		}
	}
	label := func(pos int) (string, error) {
		l := s.insns[pos].Symbol()
		if l == "" {
			return "", fmt.Errorf("internal error: no label at rule boundary %d", pos)
		}
		return l, nil
	}
	// The parts' first rules are slots 0…, in order.
	for k := 1; k < len(s.starts); k++ {
		l, err := label(s.starts[k])
		if err != nil {
			return partCode{}, nil, err
		}
		s.entry(k, l)
	}
	first, err := label(s.starts[0])
	if err != nil {
		return partCode{}, nil, err
	}
	var main partCode
	tail := make([]TailPart, 0, len(s.starts)-1)
	for k := range s.starts {
		body, stubs, err := s.body(k)
		if err != nil {
			return partCode{}, nil, err
		}
		if k == 0 {
			if main, err = s.program(k, first, body, stubs); err != nil {
				return partCode{}, nil, err
			}
			continue
		}
		// Every entry of part k comes from an earlier part: all known.
		for _, e := range s.slots {
			if e.part != k {
				continue
			}
			pc, err := s.program(k, e.label, body, stubs)
			if err != nil {
				return partCode{}, nil, err
			}
			for len(tail) <= e.slot {
				tail = append(tail, TailPart{})
			}
			tail[e.slot] = TailPart{Spec: &ebpf.ProgramSpec{Instructions: pc.insns}, Annotations: pc.anns, Part: k, Entry: e.label}
		}
	}
	if len(s.slots) > maxTailPrograms {
		return partCode{}, nil, &UnsupportedError{Chain: g.base.Name, Reason: fmt.Sprintf(
			"split into %d parts, the chain needs %d tail-called programs (jumps enter parts at %d labels), over the limit of %d",
			len(s.starts), len(s.slots), len(s.slots)-len(s.starts)+1, maxTailPrograms)}
	}
	return main, tail, nil
}

// body returns the rules of part k with every jump that leaves the part
// forward pointed at a stub that tail-calls the program continuing at the
// jump's target, and the stubs' code.
func (s *splitter) body(k int) (asm.Instructions, asm.Instructions, error) {
	g := s.g
	start, end := s.starts[k], s.end(k)
	body := make(asm.Instructions, end-start, end-start+1)
	copy(body, s.insns[start:end])
	used := map[int]bool{}
	cross := func(l string) (string, error) {
		t, ok := s.sym[l]
		if !ok {
			return "", fmt.Errorf("internal error: unknown label %q", l)
		}
		if t < start && t >= g.rulesPos {
			return "", fmt.Errorf("internal error: jump back to %q across parts", l)
		}
		if t < end || t >= g.policyPos {
			return "", nil
		}
		e := s.entry(s.partOf(t), l)
		used[e.slot] = true
		return stubLabel(e.slot), nil
	}
	for i, ins := range body {
		if !ins.OpCode.Class().IsJump() || ins.Reference() == "" {
			continue
		}
		if op := ins.OpCode.JumpOp(); op == asm.Call || op == asm.Exit {
			return nil, nil, fmt.Errorf("internal error: call to %q in a split chain", ins.Reference())
		}
		to, err := cross(ins.Reference())
		if err != nil {
			return nil, nil, err
		}
		if to != "" {
			body[i] = ins.WithReference(to)
		}
	}
	if end < g.policyPos {
		// The last rule of the part may fall through into the next.
		to, err := cross(s.insns[end].Symbol())
		if err != nil {
			return nil, nil, err
		}
		body = append(body, asm.LongJump(to))
	}
	var stubs asm.Instructions
	slots := make([]int, 0, len(used))
	for slot := range used {
		slots = append(slots, slot)
	}
	sort.Ints(slots)
	for _, slot := range slots {
		stubs = append(stubs,
			asm.Mov.Reg(asm.R1, asm.R6).WithSymbol(stubLabel(slot)),
			asm.LoadMapPtr(asm.R2, 0).WithReference(tailCallSymbol),
			asm.Mov.Imm(asm.R3, int32(slot)),
			asm.FnTailCall.Call(),
			asm.LongJump(labelDrop),
		)
	}
	return body, stubs, nil
}

// program assembles the program running part k from label entry on: the
// prologue (jumping to entry), the part's rules, the policy and the
// stubs, without the code entry cannot reach.
func (s *splitter) program(k int, entry string, body, stubs asm.Instructions) (partCode, error) {
	g := s.g
	start, end := s.starts[k], s.end(k)
	n := len(s.insns)
	code := make(asm.Instructions, 0, g.rulesPos+len(body)+n-g.policyPos+len(stubs))
	code = append(code, s.insns[:g.rulesPos]...)
	code[g.entryJump] = asm.LongJump(entry).WithSymbol(s.insns[g.entryJump].Symbol())
	code = append(code, body...)
	policyAt := len(code)
	code = append(code, s.insns[g.policyPos:]...)
	stubsAt := len(code)
	code = append(code, stubs...)
	// Annotations, in the positions of code.
	var anns []Annotation
	for _, a := range g.anns {
		switch {
		case a.End <= g.rulesPos:
			anns = append(anns, a)
		case a.Start >= start && a.End <= end:
			a.Start, a.End = a.Start-start+g.rulesPos, a.End-start+g.rulesPos
			anns = append(anns, a)
		case a.Start >= g.policyPos:
			a.Start, a.End = a.Start-g.policyPos+policyAt, a.End-g.policyPos+policyAt
			anns = append(anns, a)
		}
	}
	if len(stubs) > 0 {
		anns = append(anns, Annotation{Start: stubsAt, End: len(code), Chain: g.base.Name, Text: "tail calls into later parts of the chain"})
	}
	out, idx, err := prune(code)
	if err != nil {
		return partCode{}, fmt.Errorf("part %d: %w", k, err)
	}
	kept := anns[:0]
	for _, a := range anns {
		a.Start, a.End = idx[a.Start], idx[a.End]
		if a.End > a.Start {
			kept = append(kept, a)
		}
	}
	return partCode{insns: g.withCallbacks(out), anns: kept, part: k, entry: entry}, nil
}

// joinTail returns a copy of the instructions of all p's programs, the
// first part first and then Tail in order, in one slice, so that maps are
// associated and counter slots rewritten in all of them at once, and the
// bounds of each program in it.
func (p *Program) joinTail() (asm.Instructions, []int) {
	n := len(p.Spec.Instructions)
	for _, t := range p.Tail {
		n += len(t.Spec.Instructions)
	}
	all := make(asm.Instructions, 0, n)
	all = append(all, p.Spec.Instructions...)
	bounds := []int{0, len(all)}
	for _, t := range p.Tail {
		all = append(all, t.Spec.Instructions...)
		bounds = append(bounds, len(all))
	}
	return all, bounds
}

// loadTail points the instructions in all (see joinTail) at the program
// array, loads p's Tail programs from them and puts each into its slot of
// the array. The caller closes the programs returned; the array keeps
// them loaded as long as it has a user reference (an fd or a pin): a
// program array whose last user reference goes is cleared by the kernel.
func (p *Program) loadTail(all asm.Instructions, bounds []int, array *ebpf.Map) ([]*ebpf.Program, error) {
	if len(p.Tail) == 0 {
		return nil, nil
	}
	if array == nil {
		return nil, fmt.Errorf("chain split into %d programs needs a program array", len(p.Tail)+1)
	}
	if array.Type() != ebpf.ProgramArray || array.MaxEntries() < uint32(len(p.Tail)) {
		return nil, fmt.Errorf("tail-call map is a %s of %d entries, want a %s of %d", array.Type(), array.MaxEntries(), ebpf.ProgramArray, len(p.Tail))
	}
	if err := all.AssociateMap(tailCallSymbol, array); err != nil {
		return nil, fmt.Errorf("associate program array: %w", err)
	}
	progs := make([]*ebpf.Program, 0, len(p.Tail))
	fail := func(err error) ([]*ebpf.Program, error) {
		for _, prog := range progs {
			prog.Close()
		}
		return nil, err
	}
	for i, t := range p.Tail {
		spec := *t.Spec
		spec.Instructions = all[bounds[i+1]:bounds[i+2]]
		prog, err := ebpf.NewProgramWithOptions(&spec, ebpf.ProgramOptions{LogSizeStart: 1 << 20})
		if err != nil {
			return fail(fmt.Errorf("load %s program, part %d of %d (tail-call slot %d): %w", spec.Type, t.Part+1, p.Parts(), i, err))
		}
		progs = append(progs, prog)
		if err := array.Put(uint32(i), prog); err != nil {
			return fail(fmt.Errorf("tail-call slot %d: %w", i, err))
		}
	}
	return progs, nil
}

package loader

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// A chain too long for one program is split into programs that tail-call
// one another through a program array (codegen.Program.Tail). The array
// is created with the chain's program, filled when the parts are loaded,
// and pinned next to the program under a generation-numbered name
// (Point.Tail): the kernel clears a program array once no file descriptor
// or pin refers to it any more, even while a program that tail-calls
// through it is attached, so the pin must live exactly as long as the
// program does. A reload pins a new array with the new programs; the old
// one is unpinned with the old programs, after the switch.

// newTailCalls creates the program array of p's chain, or returns nil if
// the chain is one program.
func newTailCalls(p *point) (*ebpf.Map, error) {
	spec := p.cp.Program.TailCalls
	if spec == nil {
		return nil, nil
	}
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create program array for %d parts: %w", p.cp.Program.Parts(), err)
	}
	return m, nil
}

// pinTailCalls pins p's program array, if it has one, as generation gen's
// and records its name in p.Tail.
func pinTailCalls(st *state.Dir, gen uint64, p *point) error {
	if p.tail == nil {
		return nil
	}
	p.Tail = fmt.Sprintf("tail-%d-%s", gen, pinID(p.Key))
	return st.Pin(p.Tail, p.tail)
}

// keepTailCalls adds the program arrays of points to keep.
func keepTailCalls(keep map[string]bool, points []state.Point) {
	for _, p := range points {
		if p.Tail != "" {
			keep[p.Tail] = true
		}
	}
}

// programInstructions returns the instructions of all of p's programs:
// the first part, then its tail-called parts in slot order.
func programInstructions(p *codegen.Program) asm.Instructions {
	if len(p.Tail) == 0 {
		return p.Spec.Instructions
	}
	out := append(asm.Instructions(nil), p.Spec.Instructions...)
	for _, t := range p.Tail {
		out = append(out, t.Spec.Instructions...)
	}
	return out
}

// adoptTailCalls checks that the running program array of op, if p's chain
// is split, is still pinned, and keeps its name for p: a reused program
// goes on tail-calling through it.
func adoptTailCalls(st *state.Dir, p *point, op state.Point) error {
	split := p.cp.Program.TailCalls != nil
	if split != (op.Tail != "") {
		return fmt.Errorf("running program array %q does not fit a chain of %d parts", op.Tail, p.cp.Program.Parts())
	}
	if !split {
		return nil
	}
	m, err := ebpf.LoadPinnedMap(st.PinPath(op.Tail), nil)
	if err != nil {
		return err
	}
	defer m.Close()
	if m.Type() != ebpf.ProgramArray || m.MaxEntries() != p.cp.Program.TailCalls.MaxEntries {
		return fmt.Errorf("pinned %s is a %s of %d entries", op.Tail, m.Type(), m.MaxEntries())
	}
	p.Tail = op.Tail
	return nil
}

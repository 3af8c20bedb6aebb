package loader

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// Reusing running programs.
//
// A reload recompiles every chain, but a chain whose program comes out the
// same — same instructions (group maps are named after their contents),
// same counter and state slots, the same pinned set, counter, state and
// event maps, the same attach point — keeps the program that runs and its
// link: nothing is verified or switched for it, and its program ID stays.
// Only the points whose fingerprint changed load and switch new programs.

// fingerprint identifies the program p would load against the maps man
// names.
func fingerprint(p *point, man *state.Manifest, opts Options) string {
	h := sha256.New()
	pt := p.Point
	pt.Program, pt.Fingerprint, pt.Tail = "", "", ""
	buf := fmt.Appendf(nil, "cgroup %q\npoint %+v\nslots %v\nstate %v\ncounters %s\nstatemap %s\nevents %s\n",
		opts.CgroupPath, pt, p.slots, p.stateSlots, man.Counters.Map, man.State.Map, man.Events)
	setMaps := map[string]string{}
	for _, s := range man.Sets {
		setMaps[s.Family+"\x00"+s.Table+"\x00"+s.Name] = s.Map
	}
	var sets []string
	for s := range p.cp.Program.Sets {
		// Set maps are shared by the tables' programs; a set whose map
		// was replaced (its elements or shape changed) needs a new
		// program.
		sets = append(sets, fmt.Sprintf("set %q map %q key %d size %d flags %#x verdicts %q",
			s.Name, setMaps[setKey(p.cp.Table.Family, p.cp.Table.Name, s.Name)], s.KeyLen, s.Size, s.Flags, verdictNames(s)))
	}
	sort.Strings(sets)
	for _, s := range sets {
		buf = append(buf, s...)
		buf = append(buf, '\n')
	}
	buf = hashInstructions(h, buf, programInstructions(p.cp.Program))
	h.Write(buf)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// reuseRunning gives every point whose fingerprint equals that of the same
// attach point in the running manifest old the running program and link,
// after checking that the link (or the netfilter dispatcher's slot) really
// runs that program. It returns how many points it kept and the closers of
// what it opened. After an interrupted load nothing is reused: links may
// run that load's programs. newEvents says the log ring buffer is new.
func reuseRunning(st *state.Dir, old, interrupted *state.Manifest, points []*point, newEvents bool) (kept int, closers []func() error) {
	if interrupted.Generation != 0 {
		return 0, nil
	}
	byKey := map[string]state.Point{}
	for _, op := range old.Points {
		byKey[op.Key] = op
	}
	for _, p := range points {
		op, ok := byKey[p.Key]
		// A ring buffer created afresh keeps its pinned name: programs
		// that log must be loaded against it.
		if newEvents && p.cp.Program.Events != nil {
			continue
		}
		if !ok || op.Fingerprint == "" || op.Fingerprint != p.Fingerprint || op.Link != p.Link || op.Array != p.Array {
			continue
		}
		c, err := adoptRunning(st, p, op)
		if err != nil {
			continue // load a new program instead
		}
		closers = append(closers, c...)
		kept++
	}
	return kept, closers
}

// adoptRunning opens op's pinned program, link and (netfilter) array for
// p if the attach point runs that program.
func adoptRunning(st *state.Dir, p *point, op state.Point) (closers []func() error, err error) {
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
			closers = nil
		}
	}()
	prog, err := ebpf.LoadPinnedProgram(st.PinPath(op.Program), nil)
	if err != nil {
		return nil, err
	}
	closers = append(closers, prog.Close)
	info, err := prog.Info()
	if err != nil {
		return closers, err
	}
	id, ok := info.ID()
	if !ok {
		return closers, errors.New("program ID unknown")
	}
	l, err := link.LoadPinnedLink(st.PinPath(op.Link), nil)
	if err != nil {
		return closers, err
	}
	closers = append(closers, l.Close)
	var running ebpf.ProgramID
	if op.Array != "" {
		arr, err := ebpf.LoadPinnedMap(st.PinPath(op.Array), nil)
		if err != nil {
			return closers, err
		}
		closers = append(closers, arr.Close)
		var slot uint32
		if err := arr.Lookup(uint32(0), &slot); err != nil {
			return closers, err
		}
		running = ebpf.ProgramID(slot)
		p.array = arr
	} else {
		li, err := l.Info()
		if err != nil {
			return closers, err
		}
		running = li.Program
	}
	if running != id {
		return closers, fmt.Errorf("attach point runs program %d, not %d", running, id)
	}
	if err := adoptTailCalls(st, p, op); err != nil {
		return closers, err
	}
	p.prog, p.link, p.reused = prog, l, true
	p.Program = op.Program
	return closers, nil
}

package loader

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// SetDigest identifies the contents of the BPF map that backs named set s:
// its key length, declared size and elements. A reload keeps a set's map
// when its digest is unchanged and the map is large enough.
func SetDigest(s *ir.Set) (string, error) {
	if !codegen.InMap(s) {
		return "", fmt.Errorf("set %s is not backed by a map", s.Name)
	}
	h := sha256.New()
	var hdr [12]byte
	binary.LittleEndian.PutUint32(hdr[0:], s.KeyLen)
	binary.LittleEndian.PutUint32(hdr[4:], s.Size)
	binary.LittleEndian.PutUint32(hdr[8:], uint32(s.Flags))
	h.Write(hdr[:])
	for _, e := range s.Elements {
		h.Write(e.Low)
		h.Write(e.High)
		if e.Verdict != nil {
			h.Write([]byte(e.Verdict.String()))
		}
		h.Write(e.Data)
		if s.HasTimeouts() {
			h.Write(timeoutDigest(s, e))
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// compiledVerdicts returns the verdicts the running programs dispatch on
// for verdict map s, given their names recorded in the manifest, and
// checks that every element of s has one of them; an element with another
// verdict needs programs compiled for it (an error wrapping
// ErrSetNotMapped).
func compiledVerdicts(s *ir.Set, names []string) ([]ir.Verdict, error) {
	if !s.IsVerdictMap() {
		return nil, nil
	}
	byName := map[string]ir.Verdict{}
	for _, v := range s.Verdicts() {
		byName[v.String()] = v
	}
	out := make([]ir.Verdict, len(names))
	known := map[string]bool{}
	for i, n := range names {
		known[n] = true
		v, ok := byName[n]
		if !ok {
			// Not used by the new elements: its index stays reserved.
			v = ir.Verdict{Kind: ir.VerdictKind(255), Chain: n}
		}
		out[i] = v
	}
	for n := range byName {
		if !known[n] {
			return nil, fmt.Errorf("map %s: element verdict %s is not one the programs were compiled for (%v): %w", s.Name, n, names, ErrSetNotMapped)
		}
	}
	return out, nil
}

// verdictNames returns the verdicts the values of verdict map s index
// (ir.Set.Verdicts), as text; nil for a set.
func verdictNames(s *ir.Set) []string {
	if !s.IsVerdictMap() {
		return nil
	}
	var out []string
	for _, v := range s.Verdicts() {
		out = append(out, v.String())
	}
	return out
}

// setKey identifies a named set across loads.
func setKey(fam ir.Family, table, name string) string {
	return fmt.Sprintf("%s\x00%s\x00%s", fam, table, name)
}

// setMaps holds the slots (codegen.NewSetSlot) of the new ruleset's
// named sets; a set's manifest entry names its pinned slot.
type setMaps struct {
	maps map[*ir.Set]*ebpf.Map
	// created are the maps made by this load, pinned under their
	// manifest entry names in the pin step.
	created map[string]*ebpf.Map
}

// prepareSets finds or creates the map of every named set a program of res
// looks up and records them in man. A map the running ruleset pinned for
// the same set with the same digest is kept (its elements may be
// changing under live updates, which update the digest with them); any
// other set gets a new map, filled before any program uses it.
func prepareSets(st *state.Dir, old *state.Manifest, res *pipeline.Result, gen uint64, man *state.Manifest) (sm *setMaps, err error) {
	sm = &setMaps{maps: map[*ir.Set]*ebpf.Map{}, created: map[string]*ebpf.Map{}}
	defer func() {
		if err != nil {
			sm.close()
		}
	}()
	oldByKey := map[string]state.SetMap{}
	for _, s := range old.Sets {
		oldByKey[s.Family+"\x00"+s.Table+"\x00"+s.Name] = s
	}
	for _, cp := range res.Programs {
		for s := range cp.Program.Sets {
			if _, ok := sm.maps[s]; ok {
				continue
			}
			key := setKey(cp.Table.Family, cp.Table.Name, s.Name)
			digest, err := SetDigest(s)
			if err != nil {
				return sm, fmt.Errorf("table %s %s, set %s: %w", cp.Table.Family, cp.Table.Name, s.Name, err)
			}
			rec := state.SetMap{Family: cp.Table.Family.String(), Table: cp.Table.Name, Name: s.Name, Digest: digest, Verdicts: verdictNames(s), Timeouts: s.HasTimeouts()}
			if codegen.IsRangeTable(s) {
				rec.RangeKeyLen = s.KeyLen
			}
			if o, ok := oldByKey[key]; ok && o.Digest == digest && slices.Equal(o.Verdicts, rec.Verdicts) && st.Exists(o.Map) {
				slot, inner, err := openSetSlot(st, o, s)
				if err == nil {
					err = collectExpired(inner, s)
					inner.Close()
					if err != nil {
						slot.Close()
						return sm, fmt.Errorf("table %s %s: %w", cp.Table.Family, cp.Table.Name, err)
					}
					sm.maps[s] = slot
					rec.Map = o.Map
					man.Sets = append(man.Sets, rec)
					continue
				}
			}
			inner, err := codegen.NewSetMap(s)
			if err != nil {
				return sm, fmt.Errorf("table %s %s: %w", cp.Table.Family, cp.Table.Name, err)
			}
			slot, err := codegen.NewSetSlot(s, inner)
			inner.Close()
			if err != nil {
				return sm, fmt.Errorf("table %s %s: %w", cp.Table.Family, cp.Table.Name, err)
			}
			sm.maps[s] = slot
			rec.Map = fmt.Sprintf("set-%d-%s", gen, pinID(key))
			sm.created[rec.Map] = slot
			man.Sets = append(man.Sets, rec)
		}
	}
	return sm, nil
}

func (sm *setMaps) close() {
	for _, m := range sm.maps {
		m.Close()
	}
}

// ErrSetNotMapped is returned by UpdateSet for a set the running ruleset
// keeps no map for (no rule looks it up, or it is compiled into the
// programs): only a reload can change it.
var ErrSetNotMapped = errors.New("set has no map in the running ruleset")

// UpdateSet brings the map of named set s of table (fam, table) in the
// running ruleset to s's elements, changing neither programs nor links,
// and records text as the running ruleset's text. A packet sees the old
// or the new elements, never a mix (see apply). The caller holds
// st.Lock() and has computed s
// (and text) from the stored ruleset. If the set has no map, or its map
// is too small for the new elements, UpdateSet changes nothing and returns
// an error wrapping ErrSetNotMapped.
func UpdateSet(st *state.Dir, fam ir.Family, table string, s *ir.Set, text string) error {
	man, err := readManifest(st, state.StateName)
	if err != nil {
		return err
	}
	if st.Exists(state.NextName) {
		return fmt.Errorf("set %s: an interrupted load must be repaired first: %w", s.Name, ErrSetNotMapped)
	}
	idx := -1
	for i, r := range man.Sets {
		if r.Family == fam.String() && r.Table == table && r.Name == s.Name {
			idx = i
		}
	}
	if idx < 0 || !codegen.InMap(s) {
		return fmt.Errorf("set %s: %w", s.Name, ErrSetNotMapped)
	}
	targets, err := compiledVerdicts(s, man.Sets[idx].Verdicts)
	if err != nil {
		return err
	}
	digest, err := SetDigest(s)
	if err != nil {
		return err
	}
	c, err := setDiff(st, man.Sets[idx], s, targets)
	if err != nil {
		return err
	}
	defer c.close()
	// Record the intent first: were the update interrupted, the next
	// reload finds a digest that matches neither content and rebuilds
	// the map from the stored text.
	man.Sets[idx].Digest = "updating"
	if err := st.WriteManifest(state.StateName, man); err != nil {
		return err
	}
	if err := c.apply(); err != nil {
		return fmt.Errorf("set %s: %w", s.Name, err)
	}
	man.Sets[idx].Digest = digest
	man.Ruleset = text
	if err := st.WriteManifest(state.StateName, man); err != nil {
		return err
	}
	return nil
}

// fits checks that map m can back set s.
func fits(m *ebpf.Map, s *ir.Set) error {
	spec, err := codegen.SetMapSpec(s)
	if err != nil {
		return err
	}
	keys, err := codegen.SetMapKeys(s)
	if err != nil {
		return err
	}
	if m.Type() != spec.Type || m.KeySize() != spec.KeySize || m.ValueSize() != spec.ValueSize || m.MaxEntries() < uint32(len(keys)) {
		return fmt.Errorf("set %s: %s of %d %d-byte keys cannot hold %d keys: %w", s.Name, m.Type(), m.MaxEntries(), m.KeySize(), len(keys), ErrSetNotMapped)
	}
	return nil
}

// setChange is what turns the contents of a set's element map into the
// set's: keys to add (or whose value changes) with their values, and keys
// to delete.
type setChange struct {
	slot, inner      *ebpf.Map
	set              *ir.Set
	targets          []ir.Verdict
	add, values, del [][]byte
	// swap, when set, makes the change with a new element map.
	swap bool
}

// apply makes the change so that a packet sees either the old or the new
// elements: a change of one key in place (one map operation), any other
// change (and any change of a range table, whose element changes take two
// operations) by filling a new element map and storing it in the set's
// slot. Only during the swap are there two copies of the set; the old
// map is freed when the last program run using it ends.
func (c *setChange) apply() error {
	if !c.swap {
		return codegen.UpdateSetMapEntries(c.inner, c.add, c.values, c.del)
	}
	m, err := codegen.NewSetMapLike(c.set, c.inner, c.targets)
	if err != nil {
		return err
	}
	defer m.Close()
	return codegen.SwapSetMap(c.slot, m)
}

func (c *setChange) close() {
	c.slot.Close()
	c.inner.Close()
}

// inPlaceMax is the number of key changes UpdateSet makes in the live
// element map rather than in a new one: one, since a single map
// operation is atomic for packets. (A variable so that a test can show
// what a batch changed in place looks like to packets.)
var inPlaceMax = 1

// openSetSlot opens the pinned slot of rec and the element map it holds
// for set s. It returns an error wrapping ErrSetNotMapped when the
// element map cannot hold s.
func openSetSlot(st *state.Dir, rec state.SetMap, s *ir.Set) (slot, inner *ebpf.Map, err error) {
	slot, err = ebpf.LoadPinnedMap(st.PinPath(rec.Map), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("set %s: %w", s.Name, err)
	}
	inner, err = codegen.SetSlotMap(slot)
	if err != nil {
		slot.Close()
		return nil, nil, fmt.Errorf("set %s: %v: %w", s.Name, err, ErrSetNotMapped)
	}
	if err := fits(inner, s); err != nil {
		slot.Close()
		inner.Close()
		return nil, nil, err
	}
	return slot, inner, nil
}

// setDiff opens the pinned slot of rec and returns how its element map
// differs from the entries of s. It returns an error wrapping
// ErrSetNotMapped when the map cannot hold s.
func setDiff(st *state.Dir, rec state.SetMap, s *ir.Set, targets []ir.Verdict) (*setChange, error) {
	slot, inner, err := openSetSlot(st, rec, s)
	if err != nil {
		return nil, err
	}
	c := &setChange{slot: slot, inner: inner, set: s, targets: targets}
	if codegen.IsRangeTable(s) {
		c.swap = true
		return c, nil
	}
	want, values, err := codegen.SetMapEntriesWith(s, targets)
	if err != nil {
		c.close()
		return nil, err
	}
	cur, curValues, err := codegen.SetMapContentEntries(inner)
	if err != nil {
		c.close()
		return nil, fmt.Errorf("set %s: %w", s.Name, err)
	}
	wanted := make(map[string]bool, len(want))
	have := make(map[string]string, len(cur))
	for i, k := range cur {
		have[string(k)] = string(curValues[i])
	}
	for i, k := range want {
		wanted[string(k)] = true
		if v, ok := have[string(k)]; !ok || v != string(values[i]) {
			c.add = append(c.add, k)
			c.values = append(c.values, values[i])
		}
	}
	for _, k := range cur {
		if !wanted[string(k)] {
			c.del = append(c.del, k)
		}
	}
	c.swap = len(c.add)+len(c.del) > inPlaceMax
	return c, nil
}

// shape fingerprints what a load attaches, except set elements: the
// attach points, the programs' instructions (set maps are referenced by
// name, anonymous sets are inline), their counter slots and the shapes
// of the set maps.
func shape(points []*point, opts Options) string {
	h := sha256.New()
	var buf []byte
	buf = fmt.Appendf(buf, "cgroup %q\n", opts.CgroupPath)
	for _, p := range points {
		pt := p.Point
		pt.Program, pt.Tail = "", ""
		pt.Fingerprint = ""
		buf = fmt.Appendf(buf, "point %+v slots %v state %v\n", pt, p.slots, p.stateSlots)
		buf = hashInstructions(h, buf, programInstructions(p.cp.Program))
		var names []string
		for s := range p.cp.Program.Sets {
			names = append(names, fmt.Sprintf("set %q key %d size %d flags %#x verdicts %q", s.Name, s.KeyLen, s.Size, s.Flags, verdictNames(s)))
		}
		sort.Strings(names)
		for _, n := range names {
			buf = append(buf, n...)
			buf = append(buf, '\n')
		}
	}
	h.Write(buf)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// hashInstructions appends insns to buf, writing buf to h whenever it
// grows large, and returns what is left of buf. Map references appear by
// symbol: set maps by set name, group maps by a name that carries their
// contents.
func hashInstructions(h hash.Hash, buf []byte, insns asm.Instructions) []byte {
	for _, ins := range insns {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(ins.OpCode))
		buf = append(buf, byte(ins.Dst), byte(ins.Src))
		buf = binary.LittleEndian.AppendUint16(buf, uint16(ins.Offset))
		buf = binary.LittleEndian.AppendUint64(buf, uint64(ins.Constant))
		buf = append(buf, ins.Reference()...)
		buf = append(buf, 0)
		buf = append(buf, ins.Symbol()...)
		buf = append(buf, 0)
		if len(buf) > 1<<16 {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	return buf
}

// updateSetsOnly serves a load that differs from the running ruleset only
// in the elements of map-backed sets: it updates those maps in place (the
// programs and links stay) and records the new manifest. It reports false,
// having changed nothing, when the load needs new programs.
func updateSetsOnly(st *state.Dir, old, interrupted *state.Manifest, res *pipeline.Result, points []*point, man *state.Manifest, fresh []uint32, created bool) (bool, error) {
	if old.Shape == "" || old.Shape != man.Shape || interrupted.Generation != 0 || created || len(fresh) > 0 || len(old.Points) != len(points) {
		return false, nil
	}
	for i, p := range points {
		op := old.Points[i]
		if op.Key != p.Key || !st.Exists(op.Program) || !st.Exists(op.Link) || (op.Array != "" && !st.Exists(op.Array)) || (op.Tail != "" && !st.Exists(op.Tail)) {
			return false, nil
		}
	}
	oldByKey := map[string]state.SetMap{}
	for _, s := range old.Sets {
		oldByKey[s.Family+"\x00"+s.Table+"\x00"+s.Name] = s
	}
	var changes []*setChange
	defer func() {
		for _, c := range changes {
			c.close()
		}
	}()
	seen := map[*ir.Set]bool{}
	var sets []state.SetMap
	for _, cp := range res.Programs {
		for s := range cp.Program.Sets {
			if seen[s] {
				continue
			}
			seen[s] = true
			rec, ok := oldByKey[setKey(cp.Table.Family, cp.Table.Name, s.Name)]
			if !ok || !st.Exists(rec.Map) {
				return false, nil
			}
			digest, err := SetDigest(s)
			if err != nil {
				return false, err
			}
			if digest != rec.Digest {
				c, err := setDiff(st, rec, s, s.Verdicts())
				if errors.Is(err, ErrSetNotMapped) {
					return false, nil
				}
				if err != nil {
					return false, err
				}
				changes = append(changes, c)
				rec.Digest = digest
			}
			sets = append(sets, rec)
		}
	}
	if len(sets) != len(old.Sets) {
		return false, nil
	}
	// Mark the maps as changing, change them, then record the result.
	marked := *old
	marked.Sets = append([]state.SetMap(nil), old.Sets...)
	for i := range marked.Sets {
		marked.Sets[i].Digest = "updating"
	}
	if len(changes) > 0 {
		if err := st.WriteManifest(state.StateName, &marked); err != nil {
			return false, err
		}
	}
	for _, c := range changes {
		if err := c.apply(); err != nil {
			return true, fmt.Errorf("ruleset partly applied (set elements): %w", err)
		}
	}
	man.Generation = old.Generation
	man.Points = old.Points
	man.Counters = old.Counters
	man.State, man.Events = old.State, old.Events
	man.Sets = sets
	if err := st.WriteManifest(state.StateName, man); err != nil {
		return true, err
	}
	return true, nil
}

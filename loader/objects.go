package loader

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// Named stateful objects (counter, quota and limit objects) have one slot
// each in the state map, whoever refers to them: every rule of every
// chain and program that names the object uses it. The slot is keyed by
// the object's identity (family, table, type, name and declared
// parameters), so that a reload keeps the state of an object it does not
// change.

// objectStatePrefix starts the state map identities of named objects in
// state.Manifest.State.Slots.
const objectStatePrefix = "object:"

// ObjectStateID is the identity of the named object o of table fam/table
// in the state map (the key of Snapshot.Objects).
func ObjectStateID(fam ir.Family, table string, o *ir.Object) string {
	return fmt.Sprintf("%s%s %q %s", objectStatePrefix, fam, table, o.Identity())
}

// objectKey names an object's state slot in one table.
type objectKey struct {
	fam      ir.Family
	table    string
	identity string
}

// objectSlotOf returns the map slot of the program state slot ss, which
// names an object of table fam/table.
func objectSlotOf(byObj map[objectKey]uint32, fam ir.Family, table string, ss codegen.CounterSlot) (uint32, bool) {
	s, ok := byObj[objectKey{fam, table, ss.Object}]
	return s, ok
}

// readObjectStates reads the state slot of every named object of m (see
// Snapshot.Objects).
func readObjectStates(st *state.Dir, m *state.Manifest) (map[string]codegen.StateValue, error) {
	if m.State.Map == "" {
		return nil, nil
	}
	var ids []string
	for id := range m.State.Slots {
		if len(id) > len(objectStatePrefix) && id[:len(objectStatePrefix)] == objectStatePrefix {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	sm, err := ebpf.LoadPinnedMap(st.PinPath(m.State.Map), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("state map: %w", err)
	}
	defer sm.Close()
	out := make(map[string]codegen.StateValue, len(ids))
	for _, id := range ids {
		var v codegen.StateValue
		if err := sm.Lookup(m.State.Slots[id], &v); err != nil {
			return nil, fmt.Errorf("state slot %d (%s): %w", m.State.Slots[id], id, err)
		}
		out[id] = v
	}
	return out, nil
}

package loader

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// The map of a set with timeouts is the source of truth for the deadlines
// of the elements it holds: a reload that keeps the map keeps them, an
// element whose ir.SetElement.Deadline is set (taken from the map by the
// caller) is written with it, and expired elements are deleted from the
// map whenever the loader touches the set.

// timeoutDigest is what an element's timeout adds to its set's digest:
// its timeout, its deadline when it has one, else its expiry.
func timeoutDigest(s *ir.Set, e ir.SetElement) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint64(b, s.ElementTimeout(e))
	b = binary.LittleEndian.AppendUint64(b, e.Deadline)
	if e.Deadline == 0 {
		b = binary.LittleEndian.AppendUint64(b, e.Expires)
	}
	return b
}

// collectExpired deletes the expired elements from the map of set s (a
// no-op for a set without timeouts, and for a range table, whose slots
// cannot be deleted one by one: its expired elements, which no lookup
// matches, go when its next change rebuilds it without them).
func collectExpired(m *ebpf.Map, s *ir.Set) error {
	if !s.HasTimeouts() || codegen.IsRangeTable(s) {
		return nil
	}
	_, err := liveEntries(m, true)
	if err != nil {
		return fmt.Errorf("set %s: %w", s.Name, err)
	}
	return nil
}

// liveEntries returns the elements of the map of a set with timeouts that
// have not expired, by key (an element's first key: for an LPM trie, the
// address of a prefix, the first prefix of a range starting at the
// range's low end); with collect it deletes the expired ones.
func liveEntries(m *ebpf.Map, collect bool) (map[string]codegen.TimeoutValue, error) {
	keys, values, err := codegen.SetMapContentEntries(m)
	if err != nil {
		return nil, err
	}
	now := codegen.MonotonicNow()
	out := make(map[string]codegen.TimeoutValue, len(keys))
	for i, k := range keys {
		v, err := codegen.ParseTimeoutValue(codegen.TimeoutPart(values[i]))
		if err != nil {
			return nil, fmt.Errorf("key %x: %w", k, err)
		}
		if !v.Expired(now) {
			if m.Type() == ebpf.LPMTrie && len(k) > 4 {
				out[string(k[4:])] = v
			} else {
				out[string(k)] = v
			}
			continue
		}
		if collect {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil, fmt.Errorf("delete expired key %x: %w", k, err)
			}
		}
	}
	return out, nil
}

// liveRangeEntries returns the elements of range table m (of
// keyLen-byte keys) whose elements expire that have not expired, by
// their low key.
func liveRangeEntries(m *ebpf.Map, keyLen uint32) (map[string]codegen.TimeoutValue, error) {
	keys, values, err := codegen.SetMapContentEntries(m)
	if err != nil {
		return nil, err
	}
	now := codegen.MonotonicNow()
	out := map[string]codegen.TimeoutValue{}
	for i, k := range keys {
		low, v, ok := codegen.RangeTimeout(k, values[i], keyLen)
		if ok && !v.Expired(now) {
			out[string(low)] = v
		}
	}
	return out, nil
}

// SetID names a named set of the running ruleset.
type SetID struct{ Family, Table, Name string }

// LiveTimeouts returns, for every set with timeouts that the running
// ruleset keeps in a map, the values of its elements that have not
// expired, by key. Sets without a map (no rule looks them up) are absent.
func LiveTimeouts(st *state.Dir) (map[SetID]map[string]codegen.TimeoutValue, error) {
	man, err := readManifest(st, state.StateName)
	if err != nil {
		return nil, err
	}
	out := map[SetID]map[string]codegen.TimeoutValue{}
	for _, rec := range man.Sets {
		if !rec.Timeouts || !st.Exists(rec.Map) {
			continue
		}
		slot, err := ebpf.LoadPinnedMap(st.PinPath(rec.Map), nil)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", rec.Name, err)
		}
		m, err := codegen.SetSlotMap(slot)
		slot.Close()
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", rec.Name, err)
		}
		var live map[string]codegen.TimeoutValue
		if rec.RangeKeyLen != 0 {
			live, err = liveRangeEntries(m, rec.RangeKeyLen)
		} else {
			live, err = liveEntries(m, false)
		}
		m.Close()
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", rec.Name, err)
		}
		out[SetID{rec.Family, rec.Table, rec.Name}] = live
	}
	return out, nil
}

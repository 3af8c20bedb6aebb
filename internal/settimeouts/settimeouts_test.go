package settimeouts

import (
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
)

func port(p uint16) []byte { return []byte{byte(p >> 8), byte(p)} }

func elem(p uint16, timeout, expires uint64) ir.SetElement {
	return ir.SetElement{Low: port(p), High: port(p), Timeout: timeout, Expires: expires}
}

// TestApply: elements the map does not hold live are dropped, the others
// take the map's timeout (omitted when it is the set's default) and the
// time left until the deadline, rounded up to a millisecond.
func TestApply(t *testing.T) {
	const now = 1_000_000_000_000
	s := &ir.Set{Name: "s", Flags: ir.SetTimeout, KeyLen: 2, Timeout: 10000, Elements: []ir.SetElement{
		elem(1, 0, 9000), elem(2, 3000, 3000), elem(3, 0, 5000), elem(4, 0, 5000), elem(5, 7000, 7000),
	}}
	rs := &ir.Ruleset{Tables: []*ir.Table{{Family: ir.FamilyIPv4, Name: "t", Sets: []*ir.Set{s}}}}
	live := map[loader.SetID]map[string]codegen.TimeoutValue{{Family: "ip", Table: "t", Name: "s"}: {
		string(port(1)): {Deadline: now + 4_500_000_001, Timeout: 10000},
		string(port(2)): {Deadline: now + 1_000_000, Timeout: 3000},
		string(port(3)): {Deadline: now, Timeout: 10000}, // expired
		string(port(5)): {Deadline: 0, Timeout: 0},       // never (re-added without timeout)
		// 4: collected
	}}
	var seen int
	Apply(rs, live, now, func(loader.SetID, *ir.Set, ir.SetElement, codegen.TimeoutValue) { seen++ })
	want := []ir.SetElement{elem(1, 0, 4501), elem(2, 3000, 1), elem(5, 0, 0)}
	if len(s.Elements) != len(want) || seen != len(want) {
		t.Fatalf("elements %+v (%d seen), want %+v", s.Elements, seen, want)
	}
	for i, e := range s.Elements {
		if string(e.Low) != string(want[i].Low) || e.Timeout != want[i].Timeout || e.Expires != want[i].Expires || e.Deadline != 0 {
			t.Errorf("element %d: %+v, want %+v", i, e, want[i])
		}
	}
}

// TestKeep: after a command, an element keeps its map's deadline when
// nft reports the same timeout and the time left as written less the
// time since; otherwise (re-added with another timeout or expiry, or new)
// it takes nft's time.
func TestKeep(t *testing.T) {
	id := loader.SetID{Family: "ip", Table: "t", Name: "s"}
	const deadline = 77
	at := codegen.MonotonicNow()
	sync := &Sync{at: at, elems: map[loader.SetID]map[string]stored{id: {
		string(port(1)): {timeout: 8000, left: 5000, deadline: deadline},
		string(port(2)): {timeout: 8000, left: 5000, deadline: deadline},
		string(port(3)): {timeout: 8000, left: 5000, deadline: deadline},
		string(port(4)): {timeout: 8000, left: 5000, deadline: deadline},
		string(port(6)): {timeout: 8000, left: 5000, deadline: deadline},
	}}}
	for _, tc := range []struct {
		name string
		e    ir.SetElement
		keep bool
	}{
		{"unchanged", elem(1, 8000, 4990), true},
		{"unchanged, jiffy rounding up", elem(2, 8000, 5004), true},
		{"re-added with another timeout", elem(3, 2000, 2000), false},
		{"re-added with the same timeout and an expiry", elem(4, 8000, 1000), false},
		{"new", elem(5, 8000, 8000), false},
		{"refreshed to its full timeout", elem(6, 8000, 8000), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &ir.Set{Name: "s", Flags: ir.SetTimeout, KeyLen: 2, Elements: []ir.SetElement{tc.e}}
			sync.Keep(&ir.Ruleset{Tables: []*ir.Table{{Family: ir.FamilyIPv4, Name: "t", Sets: []*ir.Set{s}}}})
			if got := s.Elements[0].Deadline == deadline; got != tc.keep {
				t.Errorf("kept the map's deadline: %v, want %v", got, tc.keep)
			}
		})
	}
	var none *Sync
	none.Keep(&ir.Ruleset{}) // a nil Sync keeps nothing
}

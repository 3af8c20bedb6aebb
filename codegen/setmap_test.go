package codegen

import (
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// namedSet returns a named set of exact 2-byte keys, backed by a map.
func namedSet(name string, keys ...[]byte) *ir.Set {
	s := &ir.Set{Name: name, KeyType: 13, KeyLen: 2}
	for _, k := range keys {
		s.Elements = append(s.Elements, ir.SetElement{Low: k, High: k})
	}
	return s
}

func TestSetMapLookup(t *testing.T) {
	privileged(t)
	for _, fl := range allFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			ports := namedSet("ports", u16(0), u16(22), u16(65535))
			empty := namedSet("empty")
			tab, c := table(ir.FamilyIPv4, 0, ir.VerdictAccept, []*ir.Rule{
				rule(&ir.Match{Field: th(2, 2), Op: ir.OpInSet, Set: empty}, drop),
				rule(&ir.Match{Field: th(2, 2), Op: ir.OpInSet, Set: ports}, drop),
				rule(&ir.Match{Field: th(2, 2), Op: ir.OpNotInSet, Set: ports}, &ir.Match{Field: th(2, 2), Op: ir.OpEq, Value: u16(80)}, drop),
			})
			tab.Sets = []*ir.Set{ports, empty}
			l := loadFlavour(t, fl, tab, c)
			if len(l.Sets) != 2 {
				t.Fatalf("%d set maps, want 2", len(l.Sets))
			}
			for _, tc := range []struct {
				port uint16
				want ir.VerdictKind
			}{
				{0, ir.VerdictDrop}, {22, ir.VerdictDrop}, {65535, ir.VerdictDrop},
				{80, ir.VerdictDrop}, {21, ir.VerdictAccept}, {23, ir.VerdictAccept}, {5632, ir.VerdictAccept},
			} {
				if v := run(t, fl, l, tcp4(tc.port)); v != tc.want {
					t.Errorf("tcp %d: got %s, want %s", tc.port, vname(v), vname(tc.want))
				}
			}
			// Live changes to the map change verdicts.
			m := l.Sets[ports]
			if err := UpdateSetMap(m, []ir.SetElement{{Low: u16(23), High: u16(23)}}, []ir.SetElement{{Low: u16(22), High: u16(22)}}); err != nil {
				t.Fatal(err)
			}
			if v := run(t, fl, l, tcp4(23)); v != ir.VerdictDrop {
				t.Errorf("tcp 23 after add: got %s", vname(v))
			}
			if v := run(t, fl, l, tcp4(22)); v != ir.VerdictAccept {
				t.Errorf("tcp 22 after delete: got %s", vname(v))
			}
			got, err := SetMapElements(m)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 || string(got[0].Low) != string(u16(0)) || string(got[1].Low) != string(u16(23)) || string(got[2].Low) != string(u16(65535)) {
				t.Errorf("map elements %x", got)
			}
		})
	}
}

func TestSetMapSpec(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     *ir.Set
		inMap   bool
		cap     uint32
		wantErr bool
	}{
		{"named", namedSet("a", u16(1)), true, DefaultSetCapacity, false},
		{"sized", &ir.Set{Name: "b", KeyLen: 4, Size: 10}, true, 10, false},
		{"too many for size", &ir.Set{Name: "c", KeyLen: 2, Size: 1, Elements: []ir.SetElement{{Low: u16(1), High: u16(1)}, {Low: u16(2), High: u16(2)}}}, true, 0, true},
		{"anonymous", &ir.Set{Name: "__set0", Flags: ir.SetAnonymous, KeyLen: 2}, false, 0, true},
		{"interval", &ir.Set{Name: "i", Flags: ir.SetInterval, KeyLen: 2}, false, 0, true},
		{"concat", &ir.Set{Name: "k", Flags: ir.SetConcat, KeyLen: 8}, false, 0, true},
		{"map", &ir.Set{Name: "m", Flags: ir.SetMap, KeyLen: 2}, false, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := InMap(tc.set); got != tc.inMap {
				t.Errorf("InMap = %v, want %v", got, tc.inMap)
			}
			spec, err := SetMapSpec(tc.set)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (spec.MaxEntries != tc.cap || spec.KeySize != tc.set.KeyLen) {
				t.Errorf("spec %+v, want capacity %d key size %d", spec, tc.cap, tc.set.KeyLen)
			}
		})
	}
}

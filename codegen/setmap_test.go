package codegen

import (
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"

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

// ipv4Set returns a named ipv4_addr set of n addresses 10.0.0.0 + i*7.
func ipv4Set(name string, n int) *ir.Set {
	s := &ir.Set{Name: name, KeyType: 7, KeyLen: 4, Elements: make([]ir.SetElement, n)}
	for i := range s.Elements {
		v := uint32(0x0a000000 + 7*i)
		k := []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
		s.Elements[i] = ir.SetElement{Low: k, High: k}
	}
	return s
}

// TestBatchAdd: elements are added in batches of batchChunk (no fallback
// to one update per element), all of them.
func TestBatchAdd(t *testing.T) {
	privileged(t)
	s := ipv4Set("big", batchChunk+5)
	spec, err := SetMapSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMap(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := batchAdd(m, s.Elements); err != nil {
		t.Fatal(err)
	}
	got, err := SetMapElements(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(s.Elements) {
		t.Fatalf("%d elements in the map, want %d", len(got), len(s.Elements))
	}
	for i := range got {
		if string(got[i].Low) != string(s.Elements[i].Low) {
			t.Fatalf("element %d: %x, want %x", i, got[i].Low, s.Elements[i].Low)
		}
	}
}

// BenchmarkSetMapLoad measures creating and filling the map of a named
// IPv4 set of 100,000 and 1,000,000 elements (ms/load), and the memory the
// kernel reports for it (memlock-bytes).
func BenchmarkSetMapLoad(b *testing.B) {
	privileged(b)
	for _, n := range []int{100_000, 1_000_000} {
		s := ipv4Set("big", n)
		b.Run(fmt.Sprintf("elements=%d", n), func(b *testing.B) {
			var total time.Duration
			var memlock uint64
			for i := 0; i < b.N; i++ {
				start := time.Now()
				m, err := NewSetMap(s)
				if err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				if info, err := m.Info(); err == nil {
					memlock, _ = info.Memlock()
				}
				m.Close()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/load")
			b.ReportMetric(float64(memlock), "memlock-bytes")
		})
	}
}

// BenchmarkSetMapLookup measures the time per packet of a program whose one
// rule looks the source address up in a named set of 0, 1,000 or
// 1,000,000 elements (it misses), against an empty program (x-empty).
func BenchmarkSetMapLookup(b *testing.B) {
	privileged(b)
	bt := benchTargets[0] // XDP
	frame := eth(ethPIP, v4{proto: protoTCP}.build(tcp(40000, 80, 0x02)))
	empty := loadBench(b, bt, 0)
	for _, n := range []int{0, 1000, 1_000_000} {
		s := ipv4Set("src", n)
		tab, c := table(bt.fam, bt.tgt.Hook, ir.VerdictAccept, []*ir.Rule{
			rule(eq(meta(ir.MetaProtocol), u16(ethPIP)), &ir.Match{Field: nh(12, 4), Op: ir.OpInSet, Set: s}, drop),
		})
		tab.Sets = []*ir.Set{s}
		p, err := Compile(tab, c, bt.tgt)
		if err != nil {
			b.Fatal(err)
		}
		l, err := p.Load()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		b.Run(fmt.Sprintf("elements=%d", n), func(b *testing.B) {
			var prog, base time.Duration
			for i := 0; i < b.N; i++ {
				prog += runBench(b, bt, l, frame, benchRepeat(1))
				base += runBench(b, bt, empty, frame, benchRepeat(1))
			}
			b.ReportMetric(float64(prog.Nanoseconds())/float64(b.N), "ns/packet")
			b.ReportMetric(float64(prog)/float64(base), "x-empty")
		})
	}
}

// BenchmarkSetMapAddElement measures adding one element to a set map of
// 1,000,000 elements (and removing it again).
func BenchmarkSetMapAddElement(b *testing.B) {
	privileged(b)
	m, err := NewSetMap(ipv4Set("big", 1_000_000))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	e := []ir.SetElement{{Low: []byte{192, 0, 2, 1}, High: []byte{192, 0, 2, 1}}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := UpdateSetMap(m, e, nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := UpdateSetMap(m, nil, e); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

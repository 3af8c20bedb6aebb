package codegen

import (
	"encoding/binary"
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
			if err := UpdateSetMap(m, [][]byte{u16(23)}, [][]byte{u16(22)}); err != nil {
				t.Fatal(err)
			}
			if v := run(t, fl, l, tcp4(23)); v != ir.VerdictDrop {
				t.Errorf("tcp 23 after add: got %s", vname(v))
			}
			if v := run(t, fl, l, tcp4(22)); v != ir.VerdictAccept {
				t.Errorf("tcp 22 after delete: got %s", vname(v))
			}
			got, err := SetMapContents(m)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 || string(got[0]) != string(u16(0)) || string(got[1]) != string(u16(23)) || string(got[2]) != string(u16(65535)) {
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
		{"large anonymous", anonymous(ipv4Set("__set1", AnonymousMapThreshold)), true, DefaultSetCapacity, false},
		{"small anonymous", anonymous(ipv4Set("__set2", AnonymousMapThreshold-1)), false, 0, true},
		{"interval", &ir.Set{Name: "i", Flags: ir.SetInterval, KeyLen: 2}, true, lpmCapacity, false},
		{"concat", &ir.Set{Name: "k", KeyLen: 8, Fields: []uint32{4, 4}}, true, DefaultSetCapacity, false},
		{"concat ranges", &ir.Set{Name: "k", Flags: ir.SetConcat | ir.SetInterval, KeyLen: 8, Fields: []uint32{4, 4}}, true, rangeTableMin + 1, false},
		{"anonymous concat ranges", &ir.Set{Name: "__set9", Flags: ir.SetAnonymous | ir.SetConcat | ir.SetInterval, KeyLen: 8, Fields: []uint32{4, 4}}, false, 0, true},
		{"verdict map", &ir.Set{Name: "v", Flags: ir.SetMap, KeyLen: 2, DataType: ir.DataVerdict}, true, DefaultSetCapacity, false},
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
			keySize := tc.set.KeyLen
			switch {
			case IsRangeTable(tc.set):
				keySize = 4 // slot number
			case tc.set.Flags&ir.SetInterval != 0:
				keySize += 4 // LPM trie prefix length
			}
			if err == nil && (spec.MaxEntries != tc.cap || spec.KeySize != keySize) {
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
	keys, values, err := SetMapEntries(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := batchAdd(m, keys, values); err != nil {
		t.Fatal(err)
	}
	got, err := SetMapContents(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(s.Elements) {
		t.Fatalf("%d elements in the map, want %d", len(got), len(s.Elements))
	}
	for i := range got {
		if string(got[i]) != string(s.Elements[i].Low) {
			t.Fatalf("element %d: %x, want %x", i, got[i], s.Elements[i].Low)
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
	e := [][]byte{{192, 0, 2, 1}}
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

// TestRangePrefixes: a range becomes the fewest prefixes covering exactly
// it.
func TestRangePrefixes(t *testing.T) {
	for _, tc := range []struct {
		lo, hi []byte
		want   []string // prefix/len over the key bytes in hex
	}{
		{u16(0), u16(65535), []string{"0000/0"}},
		{u16(10), u16(10), []string{"000a/16"}},
		{u16(8), u16(15), []string{"0008/13"}},
		{u16(10), u16(20), []string{"000a/15", "000c/14", "0010/14", "0014/16"}},
		{u16(65534), u16(65535), []string{"fffe/15"}},
		{u16(0), u16(2), []string{"0000/15", "0002/16"}},
		{ip4(192, 0, 2, 0), ip4(192, 0, 2, 255), []string{"c0000200/24"}},
	} {
		var got []string
		for _, k := range rangePrefixes(tc.lo, tc.hi) {
			got = append(got, fmt.Sprintf("%x/%d", k[4:], binary.NativeEndian.Uint32(k)))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%x-%x: %v, want %v", tc.lo, tc.hi, got, tc.want)
		}
	}
}

// TestSetMapInterval: a named interval set is an LPM trie; ranges that are
// not prefixes, /0, single keys and the bounds of every range decide as
// nft does, also after the map changes.
func TestSetMapInterval(t *testing.T) {
	privileged(t)
	for _, fl := range allFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			ports := &ir.Set{Name: "ports", Flags: ir.SetInterval, KeyType: 13, KeyLen: 2, Elements: []ir.SetElement{
				{Low: u16(0), High: u16(0)}, {Low: u16(10), High: u16(20)}, {Low: u16(1000), High: u16(1023)}, {Low: u16(65535), High: u16(65535)},
			}}
			all := &ir.Set{Name: "all", Flags: ir.SetInterval, KeyType: 13, KeyLen: 2, Elements: []ir.SetElement{{Low: u16(0), High: u16(65535)}}}
			tab, c := table(ir.FamilyIPv4, 0, ir.VerdictDrop, []*ir.Rule{
				rule(&ir.Match{Field: th(2, 2), Op: ir.OpInSet, Set: ports}, drop),
				rule(&ir.Match{Field: th(2, 2), Op: ir.OpNotInSet, Set: all}, drop),
				rule(&ir.Match{Field: th(2, 2), Op: ir.OpInSet, Set: all}, accept),
			})
			tab.Sets = []*ir.Set{ports, all}
			l := loadFlavour(t, fl, tab, c)
			for _, tc := range []struct {
				port uint16
				want ir.VerdictKind
			}{
				{0, ir.VerdictDrop}, {1, ir.VerdictAccept}, {9, ir.VerdictAccept}, {10, ir.VerdictDrop}, {11, ir.VerdictDrop},
				{16, ir.VerdictDrop}, {20, ir.VerdictDrop}, {21, ir.VerdictAccept}, {999, ir.VerdictAccept}, {1000, ir.VerdictDrop},
				{1023, ir.VerdictDrop}, {1024, ir.VerdictAccept}, {65534, ir.VerdictAccept}, {65535, ir.VerdictDrop},
			} {
				if v := run(t, fl, l, tcp4(tc.port)); v != tc.want {
					t.Errorf("tcp %d: got %s, want %s", tc.port, vname(v), vname(tc.want))
				}
			}
			// Replace 10-20 by 12-13.
			m := l.Sets[ports]
			if err := UpdateSetMap(m, rangePrefixes(u16(12), u16(13)), rangePrefixes(u16(10), u16(20))); err != nil {
				t.Fatal(err)
			}
			for port, want := range map[uint16]ir.VerdictKind{10: ir.VerdictAccept, 11: ir.VerdictAccept, 12: ir.VerdictDrop, 13: ir.VerdictDrop, 14: ir.VerdictAccept, 0: ir.VerdictDrop} {
				if v := run(t, fl, l, tcp4(port)); v != want {
					t.Errorf("after update: tcp %d: got %s, want %s", port, vname(v), vname(want))
				}
			}
		})
	}
}

// prefixSet returns a named interval set of n IPv4 /24 prefixes from
// 10.0.0.0/24 on, every other one (so that none merge).
func prefixSet(name string, n int) *ir.Set {
	s := &ir.Set{Name: name, Flags: ir.SetInterval, KeyType: 7, KeyLen: 4, Elements: make([]ir.SetElement, n)}
	for i := range s.Elements {
		v := uint32(0x0a000000 + 512*i)
		s.Elements[i] = ir.SetElement{
			Low:  []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), 0},
			High: []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), 255},
		}
	}
	return s
}

// BenchmarkIntervalSetMap measures creating and filling the LPM trie of a
// named interval set of 100,000 prefixes (ms/load, memlock-bytes) and the
// time per packet of a rule looking an address up in it (it misses),
// against an empty program (x-empty).
func BenchmarkIntervalSetMap(b *testing.B) {
	privileged(b)
	s := prefixSet("nets", 100_000)
	b.Run("load", func(b *testing.B) {
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
	bt := benchTargets[0] // XDP
	frame := eth(ethPIP, v4{proto: protoTCP}.build(tcp(40000, 80, 0x02)))
	empty := loadBench(b, bt, 0)
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
	defer l.Close()
	b.Run("lookup", func(b *testing.B) {
		var prog, base time.Duration
		for i := 0; i < b.N; i++ {
			prog += runBench(b, bt, l, frame, benchRepeat(1))
			base += runBench(b, bt, empty, frame, benchRepeat(1))
		}
		b.ReportMetric(float64(prog.Nanoseconds())/float64(b.N), "ns/packet")
		b.ReportMetric(float64(prog)/float64(base), "x-empty")
	})
}

func anonymous(s *ir.Set) *ir.Set {
	s.Flags |= ir.SetAnonymous | ir.SetConstant
	return s
}

// TestAnonymousSetMap: anonymous sets of AnonymousMapThreshold elements or
// more are looked up in maps (exact keys, and ranges with a negated
// lookup), smaller ones inline.
func TestAnonymousSetMap(t *testing.T) {
	privileged(t)
	var exact, ranges [][2][]byte
	for i := 0; i < AnonymousMapThreshold; i++ {
		exact = append(exact, el(u16(uint16(100+3*i))))
		ranges = append(ranges, elr(u16(uint16(1000+10*i)), u16(uint16(1004+10*i))))
	}
	for _, fl := range allFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			big := inSet(th(2, 2), false, 2, exact...)
			bigRanges := inSet(th(2, 2), true, 2, ranges...)
			small := inSet(th(2, 2), false, 2, exact[:3]...)
			bigRanges.Set.Name, small.Set.Name = "__set1", "__set2"
			tab, c := table(ir.FamilyIPv4, 0, ir.VerdictAccept, []*ir.Rule{
				rule(small, counter, drop),
				rule(big, drop),
				rule(bigRanges, &ir.Match{Field: th(2, 2), Op: ir.OpGte, Value: u16(1000)}, &ir.Match{Field: th(2, 2), Op: ir.OpLt, Value: u16(2000)}, drop),
			})
			l := loadFlavour(t, fl, tab, c)
			if len(l.Sets) != 2 {
				t.Fatalf("%d set maps, want 2 (the two large sets)", len(l.Sets))
			}
			for port, want := range map[uint16]ir.VerdictKind{
				100: ir.VerdictDrop, 103: ir.VerdictDrop, 145: ir.VerdictDrop, 101: ir.VerdictAccept, 146: ir.VerdictAccept,
				999: ir.VerdictAccept, 1000: ir.VerdictAccept, 1004: ir.VerdictAccept, 1005: ir.VerdictDrop, 1009: ir.VerdictDrop,
				1154: ir.VerdictAccept, 1155: ir.VerdictDrop, 2000: ir.VerdictAccept,
			} {
				if v := run(t, fl, l, tcp4(port)); v != want {
					t.Errorf("tcp %d: got %s, want %s", port, vname(v), vname(want))
				}
			}
		})
	}
}

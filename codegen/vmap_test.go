package codegen

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// velem is a test map element: an inclusive key range and a verdict.
type velem struct {
	lo, hi []byte
	v      *ir.Verdict
}

// vmapOf returns a verdict map of keyLen-byte keys.
func vmapOf(name string, flags ir.SetFlags, keyLen uint32, es ...velem) *ir.Set {
	s := &ir.Set{Name: name, Flags: flags | ir.SetMap, KeyType: 13, KeyLen: keyLen, DataType: ir.DataVerdict}
	for _, e := range es {
		hi := e.hi
		if hi == nil {
			hi = e.lo
		}
		s.Elements = append(s.Elements, ir.SetElement{Low: e.lo, High: hi, Verdict: e.v})
	}
	return s
}

// portVMap returns a verdict map of ports (accept 22, drop 23, jump u 24,
// goto u 25, return 26, continue 27), anonymous or named, padded with
// extra drop elements (ports 1000…) to n elements.
func portVMap(name string, flags ir.SetFlags, n int) *ir.Set {
	es := []velem{
		{lo: u16(22), v: accept}, {lo: u16(23), v: drop}, {lo: u16(24), v: jump("u")},
		{lo: u16(25), v: gotoV("u")}, {lo: u16(26), v: ret}, {lo: u16(27), v: contin},
	}
	for i := len(es); i < n; i++ {
		es = append(es, velem{lo: u16(uint16(1000 + i)), v: drop})
	}
	return vmapOf(name, flags, 2, es...)
}

func vm(s *ir.Set, key ...ir.Field) *ir.VerdictMap { return &ir.VerdictMap{Key: key, Set: s} }

// TestVerdictMapVerdicts: every verdict kind from a verdict map, as a
// compare chain (small anonymous map), a hash map (large anonymous, named)
// and an LPM trie (interval); a key not in the map continues with the
// next rule.
func TestVerdictMapVerdicts(t *testing.T) {
	// u: tcp dport 24 (jumped to) returns to the rule after the vmap,
	// which accepts 24; 25 (goto) returns to the base chain's caller,
	// i.e. the policy (drop).
	user := &ir.Chain{Name: "u", Rules: []*ir.Rule{rule(eq(th(2, 2), u16(99)), drop)}}
	interval := vmapOf("iv", ir.SetInterval, 2,
		velem{lo: u16(0), hi: u16(21), v: drop},
		velem{lo: u16(22), v: accept},
		velem{lo: u16(24), v: jump("u")},
		velem{lo: u16(25), v: gotoV("u")},
		velem{lo: u16(26), hi: u16(26), v: ret},
		velem{lo: u16(27), hi: u16(1000), v: contin},
		velem{lo: u16(60000), hi: u16(65535), v: drop},
	)
	for _, tc := range []struct {
		name string
		set  *ir.Set
	}{
		{"anonymous compare chain", portVMap("__map0", ir.SetAnonymous|ir.SetConstant, 6)},
		{"anonymous map", portVMap("__map1", ir.SetAnonymous|ir.SetConstant, AnonymousMapThreshold)},
		{"named map", portVMap("vm", 0, 6)},
		{"interval map", interval},
	} {
		if got := InMap(tc.set); got != (tc.name != "anonymous compare chain") {
			t.Fatalf("%s: InMap = %v", tc.name, got)
		}
		pkts := []pkt{
			{name: "accept", frame: tcp4(22), want: A},
			{name: "jump returns to the next rule", frame: tcp4(24), want: A},
			{name: "goto returns to the policy", frame: tcp4(25), want: D},
			{name: "return from the base chain is the policy", frame: tcp4(26), want: D},
			{name: "continue goes on with the next rule", frame: tcp4(27), want: A},
			{name: "no element: next rule", frame: tcp4(28), want: A},
			{name: "no transport header: next rule", frame: eth(0x0800, v4{proto: protoTCP}.build(nil)), want: D},
		}
		if tc.set.Name == "iv" {
			pkts = append(pkts,
				pkt{name: "first of a range", frame: tcp4(0), want: D},
				pkt{name: "last of a range", frame: tcp4(21), want: D},
				pkt{name: "inside continue range", frame: tcp4(1000), want: A},
				pkt{name: "gap", frame: tcp4(1001), want: A},
				pkt{name: "65535", frame: tcp4(65535), want: D},
			)
		} else {
			pkts = append(pkts, pkt{name: "drop", frame: tcp4(23), want: D})
		}
		runVerdictCases(t, []verdictCase{{
			name: tc.name, pol: D, user: []*ir.Chain{user},
			rules: []*ir.Rule{
				rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), vm(tc.set, th(2, 2))),
				rule(eq(th(2, 2), u16(24)), accept),
				rule(eq(th(2, 2), u16(27)), accept),
				rule(eq(th(2, 2), u16(28)), accept),
				rule(eq(th(2, 2), u16(1000)), accept),
				rule(eq(th(2, 2), u16(1001)), accept),
			},
			pkts: pkts,
		}})
	}
}

// concatSet returns a set of ip saddr . tcp dport keys (4 + 4 bytes).
func concatSet(name string, flags ir.SetFlags, elems ...[2][]byte) *ir.Set {
	s := &ir.Set{Name: name, Flags: flags, KeyType: 7<<6 | 13, KeyLen: 8, Fields: []uint32{4, 2}}
	for _, e := range elems {
		s.Elements = append(s.Elements, ir.SetElement{Low: e[0], High: e[1]})
	}
	return s
}

// ck builds a concatenated key: an IPv4 address and a port, padded.
func ck(a []byte, port uint16) []byte {
	return append(append([]byte(nil), a...), byte(port>>8), byte(port), 0, 0)
}

func tcp4From(src []byte, dport uint16) []byte {
	return eth(0x0800, v4{proto: protoTCP, src: src}.build(tcp(40000, dport, 0x02)))
}

// TestConcatLookup: ip saddr . tcp dport in sets of exact keys (compare
// chain, hash map) and in an anonymous set of per-field ranges.
func TestConcatLookup(t *testing.T) {
	a1, a2 := ip4(192, 0, 2, 1), ip4(192, 0, 2, 200)
	exact := [][2][]byte{el(ck(a1, 22)), el(ck(a2, 0)), el(ck(a2, 65535))}
	ranges := [][2][]byte{
		elr(ck(ip4(192, 0, 2, 0), 10), ck(ip4(192, 0, 2, 127), 20)),
		elr(ck(ip4(198, 51, 100, 7), 0), ck(ip4(198, 51, 100, 7), 65535)),
	}
	key := []ir.Field{nh(12, 4), th(2, 2)}
	for _, tc := range []struct {
		name string
		set  *ir.Set
		neg  bool
		pkts []pkt
	}{
		{"anonymous exact", concatSet("__set0", ir.SetAnonymous|ir.SetConstant, exact...), false, nil},
		{"named exact", concatSet("cs", 0, exact...), false, nil},
		{"named exact negated", concatSet("cs", 0, exact...), true, nil},
		{"anonymous ranges", concatSet("__set1", ir.SetAnonymous|ir.SetConstant|ir.SetInterval|ir.SetConcat, ranges...), false, []pkt{
			{name: "first of both ranges", frame: tcp4From(ip4(192, 0, 2, 0), 10), want: D},
			{name: "last of both ranges", frame: tcp4From(ip4(192, 0, 2, 127), 20), want: D},
			{name: "address in range, port above", frame: tcp4From(ip4(192, 0, 2, 5), 21), want: A},
			{name: "address above, port in range", frame: tcp4From(ip4(192, 0, 2, 128), 15), want: A},
			{name: "port below", frame: tcp4From(ip4(192, 0, 2, 5), 9), want: A},
			{name: "any port 0", frame: tcp4From(ip4(198, 51, 100, 7), 0), want: D},
			{name: "any port 65535", frame: tcp4From(ip4(198, 51, 100, 7), 65535), want: D},
			{name: "next address", frame: tcp4From(ip4(198, 51, 100, 8), 0), want: A},
		}},
	} {
		pkts := tc.pkts
		if pkts == nil {
			in, out := D, A
			if tc.neg {
				in, out = A, D
			}
			pkts = []pkt{
				{name: "element", frame: tcp4From(a1, 22), want: in},
				{name: "port 0", frame: tcp4From(a2, 0), want: in},
				{name: "port 65535", frame: tcp4From(a2, 65535), want: in},
				{name: "address of another element", frame: tcp4From(a1, 0), want: out},
				{name: "port of another address", frame: tcp4From(a2, 22), want: out},
				{name: "port+1", frame: tcp4From(a1, 23), want: out},
				{name: "no transport header", frame: eth(0x0800, v4{proto: protoTCP, src: a1}.build(nil)), want: A},
			}
		}
		runVerdictCases(t, []verdictCase{{
			name: tc.name, only: []string{"xdp", "nf"},
			rules: []*ir.Rule{rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), &ir.Lookup{Key: key, Set: tc.set, Negate: tc.neg}, drop)},
			pkts:  pkts,
		}})
	}
}

// TestConcatVerdictMap: a named verdict map of ip saddr . tcp dport; live
// changes of an element's verdict in the map change the packet's verdict.
func TestConcatVerdictMap(t *testing.T) {
	privileged(t)
	a := ip4(203, 0, 113, 9)
	s := vmapOf("cvm", 0, 8, velem{lo: ck(a, 22), v: accept}, velem{lo: ck(a, 23), v: drop})
	s.Fields = []uint32{4, 2}
	for _, fl := range ipFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			tab, c := table(ir.FamilyIPv4, 0, ir.VerdictDrop, []*ir.Rule{
				rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), vm(s, nh(12, 4), th(2, 2))),
				rule(eq(th(2, 2), u16(24)), accept),
			})
			tab.Sets = []*ir.Set{s}
			l := loadFlavour(t, fl, tab, c)
			check := func(port uint16, want ir.VerdictKind) {
				t.Helper()
				if got := run(t, fl, l, tcp4From(a, port)); got != want {
					t.Errorf("port %d: got %s, want %s", port, vname(got), vname(want))
				}
			}
			check(22, A)
			check(23, D)
			check(24, A) // no element: next rule
			// Verdict indexes: accept 0, drop 1. Switch 22 to drop.
			m := l.Sets[s]
			if err := UpdateSetMapEntries(m, [][]byte{ck(a, 22)}, [][]byte{binary.NativeEndian.AppendUint32(nil, 1)}, nil); err != nil {
				t.Fatal(err)
			}
			check(22, D)
			keys, values, err := SetMapContentEntries(m)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%x %x", keys, values); got != fmt.Sprintf("%x %x", [][]byte{ck(a, 22), ck(a, 23)}, [][]byte{{1, 0, 0, 0}, {1, 0, 0, 0}}) {
				t.Errorf("map contents %s", got)
			}
		})
	}
}

// TestVerdictMapRefusals: what a verdict map cannot do is refused by
// name.
func TestVerdictMapRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  *ir.Set
		want string
	}{
		{"missing chain", vmapOf("m1", 0, 2, velem{lo: u16(1), v: jump("nope")}), `chain "nope" does not exist`},
		{"base chain", vmapOf("m2", 0, 2, velem{lo: u16(1), v: jump("base")}), `cannot jump to base chain "base"`},
		{"named concat ranges beyond the range table limit", func() *ir.Set {
			s := vmapOf("m3", ir.SetInterval|ir.SetConcat, 8, velem{lo: ck(ip4(192, 0, 2, 1), 1), hi: ck(ip4(192, 0, 2, 1), 9), v: accept})
			s.Fields = []uint32{4, 2}
			s.Size = rangeTableMax + 1
			return s
		}(), fmt.Sprintf("holds at most %d elements", rangeTableMax)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := []ir.Field{th(2, 2)}
			if tc.set.KeyLen == 8 {
				key = []ir.Field{nh(12, 4), th(2, 2)}
			}
			tab, c := table(ir.FamilyIPv4, 0, ir.VerdictAccept, []*ir.Rule{rule(vm(tc.set, key...))})
			_, err := Compile(tab, c, Target{Type: Netfilter, Family: ir.FamilyIPv4, ProtoFamily: ir.FamilyIPv4})
			if err == nil || !contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// concatVMap returns a named verdict map of n ip saddr . tcp dport keys
// (addresses 10.0.0.0 + i, port 80 + i%1000), every third accept, the
// others drop, and one element 192.0.2.1 . 80 : accept.
func concatVMap(n int) *ir.Set {
	s := vmapOf("cvm", 0, 8)
	s.Fields = []uint32{4, 2}
	for i := 0; i < n; i++ {
		v := drop
		if i%3 == 0 {
			v = accept
		}
		k := ck(u32be(uint32(0x0a000000+i)), uint16(80+i%1000))
		s.Elements = append(s.Elements, ir.SetElement{Low: k, High: k, Verdict: v})
	}
	k := ck(srcV4, 80)
	s.Elements = append(s.Elements, ir.SetElement{Low: k, High: k, Verdict: accept})
	return s
}

// BenchmarkVerdictMap measures, at XDP, the time per packet of a rule
// "ip saddr . tcp dport vmap @cvm" whose key hits an accept element, for
// maps of 1, 1,000 and 100,000 elements (and the time to create and fill
// the map), and of an anonymous concatenation of 15 per-field ranges (a
// compare chain, missed), against an empty program (x-empty).
func BenchmarkVerdictMap(b *testing.B) {
	privileged(b)
	bt := benchTargets[0] // XDP
	frame := eth(ethPIP, v4{proto: protoTCP}.build(tcp(40000, 80, 0x02)))
	empty := loadBench(b, bt, 0)
	measure := func(b *testing.B, l *Loaded) {
		var prog, base time.Duration
		for i := 0; i < b.N; i++ {
			prog += runBench(b, bt, l, frame, benchRepeat(1))
			base += runBench(b, bt, empty, frame, benchRepeat(1))
		}
		b.ReportMetric(float64(prog.Nanoseconds())/float64(b.N), "ns/packet")
		b.ReportMetric(float64(prog)/float64(base), "x-empty")
	}
	key := []ir.Field{nh(12, 4), th(2, 2)}
	isTCP := eq(meta(ir.MetaProtocol), u16(ethPIP))
	for _, n := range []int{0, 1000, 100_000} {
		s := concatVMap(n)
		b.Run(fmt.Sprintf("fill/elements=%d", n+1), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				m, err := NewSetMap(s)
				if err != nil {
					b.Fatal(err)
				}
				m.Close()
			}
		})
		tab, c := table(bt.fam, bt.tgt.Hook, ir.VerdictDrop, []*ir.Rule{
			rule(isTCP, eq(nh(9, 1), []byte{protoTCP}), vm(s, key...)),
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
		b.Run(fmt.Sprintf("lookup/elements=%d", n+1), func(b *testing.B) { measure(b, l) })
	}
	var ranges [][2][]byte
	for i := 0; i < 15; i++ {
		ranges = append(ranges, elr(ck(ip4(198, 51, byte(i), 0), 1000), ck(ip4(198, 51, byte(i), 255), 2000)))
	}
	s := concatSet("__set0", ir.SetAnonymous|ir.SetConstant|ir.SetInterval|ir.SetConcat, ranges...)
	tab, c := table(bt.fam, bt.tgt.Hook, ir.VerdictAccept, []*ir.Rule{
		rule(isTCP, eq(nh(9, 1), []byte{protoTCP}), &ir.Lookup{Key: key, Set: s}, drop),
	})
	p, err := Compile(tab, c, bt.tgt)
	if err != nil {
		b.Fatal(err)
	}
	l, err := p.Load()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	b.Run("concat-ranges=15", func(b *testing.B) { measure(b, l) })
	// Named: range tables, scanned in full (the key misses).
	for _, n := range []int{15, 256} {
		var rs [][2][]byte
		for i := 0; i < n; i++ {
			rs = append(rs, elr(ck(ip4(198, 51, byte(i), 0), 1000), ck(ip4(198, 51, byte(i), 255), 2000)))
		}
		s := concatSet("rt", ir.SetInterval|ir.SetConcat, rs...)
		tab, c := table(bt.fam, bt.tgt.Hook, ir.VerdictAccept, []*ir.Rule{
			rule(isTCP, eq(nh(9, 1), []byte{protoTCP}), &ir.Lookup{Key: key, Set: s}, drop),
		})
		tab.Sets = []*ir.Set{s}
		start := time.Now()
		p, err := Compile(tab, c, bt.tgt)
		if err != nil {
			b.Fatal(err)
		}
		l, err := p.Load()
		if err != nil {
			b.Fatal(err)
		}
		load := time.Since(start)
		b.Cleanup(func() { l.Close() })
		b.Run(fmt.Sprintf("range-table=%d", n), func(b *testing.B) {
			measure(b, l)
			b.ReportMetric(float64(load.Milliseconds()), "ms/load")
		})
	}
}

// TestRangeTable: named sets and verdict maps of concatenated ranges are
// range tables; lookups find every field in its own range (boundaries
// included), and SyncRangeTable changes elements under the loaded
// program.
func TestRangeTable(t *testing.T) {
	privileged(t)
	set := concatSet("cr", ir.SetInterval|ir.SetConcat,
		elr(ck(ip4(192, 0, 2, 0), 10), ck(ip4(192, 0, 2, 127), 20)),
		elr(ck(ip4(198, 51, 100, 7), 0), ck(ip4(198, 51, 100, 7), 65535)),
		elr(ck(ip4(203, 0, 113, 0), 65535), ck(ip4(203, 0, 113, 255), 65535)),
	)
	vmap := vmapOf("crv", ir.SetInterval|ir.SetConcat, 8,
		velem{lo: ck(ip4(192, 0, 2, 0), 30), hi: ck(ip4(192, 0, 2, 127), 40), v: drop},
		velem{lo: ck(ip4(192, 0, 2, 128), 10), hi: ck(ip4(192, 0, 2, 255), 20), v: accept},
		velem{lo: ck(ip4(198, 51, 100, 7), 0), hi: ck(ip4(198, 51, 100, 7), 65535), v: jump("u")},
	)
	vmap.Fields = []uint32{4, 2}
	if !IsRangeTable(set) || !IsRangeTable(vmap) || !InMap(set) {
		t.Fatal("named concatenated ranges are not range tables")
	}
	user := &ir.Chain{Name: "u", Rules: []*ir.Rule{rule(eq(th(2, 2), u16(0)), drop)}}
	key := []ir.Field{nh(12, 4), th(2, 2)}
	isTCP := eq(meta(ir.MetaL4Proto), b(protoTCP))
	for _, fl := range ipFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			tab, c := table(ir.FamilyIPv4, 0, ir.VerdictAccept, []*ir.Rule{
				rule(isTCP, &ir.Lookup{Key: key, Set: set}, eq(meta(ir.MetaMark), u32le(0)), drop),
				rule(isTCP, vm(vmap, key...)),
				rule(isTCP, eq(th(2, 2), u16(15)), drop),
			}, user)
			tab.Sets = []*ir.Set{set, vmap}
			l := loadFlavour(t, fl, tab, c)
			check := func(step string, src []byte, port uint16, want ir.VerdictKind) {
				t.Helper()
				if got := run(t, fl, l, tcp4From(src, port)); got != want {
					t.Errorf("%s: %v port %d: got %s, want %s", step, src, port, vname(got), vname(want))
				}
			}
			check("first of both ranges", ip4(192, 0, 2, 0), 10, D)
			check("last of both ranges", ip4(192, 0, 2, 127), 20, D)
			check("port above", ip4(192, 0, 2, 5), 21, A)
			check("address above", ip4(192, 0, 2, 128), 11, A) // vmap: accept
			check("vmap miss, next rule", ip4(192, 0, 3, 0), 15, D)
			check("any port 0", ip4(198, 51, 100, 7), 0, D)
			check("jump, falls back", ip4(198, 51, 100, 8), 9, A)
			check("/24 . 65535", ip4(203, 0, 113, 200), 65535, D)
			check("/24 . 65534", ip4(203, 0, 113, 200), 65534, A)
			// Remove the first element, add one, change nothing else.
			next := concatSet("cr", ir.SetInterval|ir.SetConcat,
				elr(ck(ip4(198, 51, 100, 7), 0), ck(ip4(198, 51, 100, 7), 65535)),
				elr(ck(ip4(203, 0, 113, 0), 65535), ck(ip4(203, 0, 113, 255), 65535)),
				elr(ck(ip4(192, 0, 2, 200), 1), ck(ip4(192, 0, 2, 200), 1)),
			)
			if err := SyncRangeTable(l.Sets[set], next, nil); err != nil {
				t.Fatal(err)
			}
			check("removed", ip4(192, 0, 2, 0), 10, A)
			check("added", ip4(192, 0, 2, 200), 1, D)
			check("kept", ip4(203, 0, 113, 1), 65535, D)
			keys, _, err := SetMapContentEntries(l.Sets[set])
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 4 {
				t.Errorf("%d entries after the change, want 3 elements and the count", len(keys))
			}
			// A verdict changes in place.
			nv := *vmap
			nv.Elements = append([]ir.SetElement(nil), vmap.Elements...)
			nv.Elements[1].Verdict = drop
			if err := SyncRangeTable(l.Sets[vmap], &nv, vmap.Verdicts()); err != nil {
				t.Fatal(err)
			}
			check("verdict changed", ip4(192, 0, 2, 128), 11, D)
		})
	}
}

// TestMetaSetMap: meta mark set from a data map (hash map, compare chain)
// sets the element's value; a key without an element ends the rule and
// keeps the mark; XDP and netfilter programs refuse it.
func TestMetaSetMap(t *testing.T) {
	dm := func(name string, flags ir.SetFlags, es ...[2][]byte) *ir.Set {
		s := &ir.Set{Name: name, Flags: flags | ir.SetMap, KeyType: 13, KeyLen: 2, DataType: 19, DataLen: 4}
		for _, e := range es {
			s.Elements = append(s.Elements, ir.SetElement{Low: e[0], High: e[0], Data: e[1]})
		}
		return s
	}
	named := dm("marks", 0, [2][]byte{u16(22), u32le(7)}, [2][]byte{u16(23), u32le(8)})
	anon := dm("__map0", ir.SetAnonymous|ir.SetConstant, [2][]byte{u16(22), u32le(7)}, [2][]byte{u16(23), u32le(8)})
	for _, s := range []*ir.Set{named, anon} {
		rules := []*ir.Rule{
			rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), &ir.MetaSetMap{Meta: ir.MetaMark, Key: []ir.Field{th(2, 2)}, Map: s}, eq(meta(ir.MetaMark), u32le(8)), accept),
			rule(eq(meta(ir.MetaMark), u32le(7)), drop),
		}
		runVerdictCases(t, []verdictCase{{
			name: s.Name, only: []string{"tc", "cgroup"}, pol: A, rules: rules,
			pkts: []pkt{
				{name: "mark 7, dropped by the next rule", frame: tcp4(22), want: D},
				{name: "mark 8, accepted in the rule", frame: tcp4(23), want: A},
				{name: "no element, mark stays 0", frame: tcp4(24), want: A},
			},
		}})
		for _, tgt := range []Target{
			{Type: XDP, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev},
			{Type: Netfilter, Family: ir.FamilyIPv4, ProtoFamily: ir.FamilyIPv4},
		} {
			tab, c := table(tgt.Family, tgt.Hook, ir.VerdictAccept, rules)
			if _, err := Compile(tab, c, tgt); err == nil || !contains(err.Error(), "meta mark set") {
				t.Errorf("%s: %s: err = %v, want a refusal of meta mark set", s.Name, tgt.Type, err)
			}
		}
	}
}

package codegen

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// TestTimeoutSetLookup runs lookups in sets with timeouts on every
// program type: an element matches until its deadline (bpf_ktime_get_ns
// >= deadline: expired, as nft_set_elem_expired), a deadline of 0 never
// passes, for one-field and concatenated keys, plain and negated.
func TestTimeoutSetLookup(t *testing.T) {
	privileged(t)
	for _, fl := range allFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			ports := &ir.Set{Name: "ports", Flags: ir.SetTimeout, KeyType: 13, KeyLen: 2, Timeout: 60000}
			for _, p := range []uint16{22, 23, 24, 25} {
				ports.Elements = append(ports.Elements, ir.SetElement{Low: u16(p), High: u16(p), Expires: 60000})
			}
			ck := func(port uint16) []byte { return []byte{protoTCP, 0, 0, 0, byte(port >> 8), byte(port), 0, 0} }
			pairs := &ir.Set{Name: "pairs", Flags: ir.SetTimeout | ir.SetConcat, KeyLen: 8, Fields: []uint32{1, 2}}
			for _, p := range []uint16{22, 23, 24, 25} {
				pairs.Elements = append(pairs.Elements, ir.SetElement{Low: ck(p + 1000), High: ck(p + 1000), Timeout: 5000})
			}
			key := []ir.Field{nh(9, 1), th(2, 2)}
			tab, c := table(ir.FamilyIPv4, 0, ir.VerdictAccept, []*ir.Rule{
				rule(&ir.Match{Field: th(2, 2), Op: ir.OpInSet, Set: ports}, drop),
				rule(&ir.Match{Field: th(2, 2), Op: ir.OpNotInSet, Set: ports}, &ir.Match{Field: th(2, 2), Op: ir.OpEq, Value: u16(80)}, accept),
				rule(&ir.Lookup{Key: key, Set: pairs}, drop),
				rule(&ir.Lookup{Key: key, Set: pairs, Negate: true}, &ir.Match{Field: th(2, 2), Op: ir.OpEq, Value: u16(81)}, drop),
			})
			tab.Sets = []*ir.Set{ports, pairs}
			l := loadFlavour(t, fl, tab, c)
			now := MonotonicNow()
			set := func(m *ebpf.Map, k []byte, v TimeoutValue) {
				t.Helper()
				if err := m.Put(k, v.bytes()); err != nil {
					t.Fatal(err)
				}
			}
			hour := uint64(time.Hour)
			// 22: live; 23: expired a second ago; 24: never expires;
			// 25: expires exactly now (already expired when a packet
			// runs).
			for m, k := range map[*ebpf.Map]func(uint16) []byte{l.Sets[ports]: u16, l.Sets[pairs]: func(p uint16) []byte { return ck(p + 1000) }} {
				set(m, k(22), TimeoutValue{Deadline: now + hour, Timeout: 60000})
				set(m, k(23), TimeoutValue{Deadline: now - uint64(time.Second), Timeout: 60000})
				set(m, k(24), TimeoutValue{})
				set(m, k(25), TimeoutValue{Deadline: now, Timeout: 60000})
			}
			for _, tc := range []struct {
				port uint16
				want ir.VerdictKind
			}{
				{22, ir.VerdictDrop}, {23, ir.VerdictAccept}, {24, ir.VerdictDrop}, {25, ir.VerdictAccept},
				{1022, ir.VerdictDrop}, {1023, ir.VerdictAccept}, {1024, ir.VerdictDrop}, {1025, ir.VerdictAccept},
				{80, ir.VerdictAccept}, {81, ir.VerdictDrop}, {26, ir.VerdictAccept},
			} {
				if v := run(t, fl, l, tcp4(tc.port)); v != tc.want {
					t.Errorf("tcp %d: got %s, want %s", tc.port, vname(v), vname(tc.want))
				}
			}
		})
	}
}

// TestTimeoutValues checks the map values written for elements with and
// without timeouts and the set map's layout.
func TestTimeoutValues(t *testing.T) {
	s := &ir.Set{Name: "t", Flags: ir.SetTimeout, KeyLen: 2, Timeout: 10000}
	const now = 1000 * uint64(time.Second)
	for _, tc := range []struct {
		name string
		e    ir.SetElement
		want TimeoutValue
	}{
		{"set default", ir.SetElement{Expires: 9000}, TimeoutValue{now + 9*uint64(time.Second), 10000}},
		{"own timeout", ir.SetElement{Timeout: 3000, Expires: 2500}, TimeoutValue{now + 2500*uint64(time.Millisecond), 3000}},
		{"timeout without expiry", ir.SetElement{Timeout: 3000}, TimeoutValue{now + 3*uint64(time.Second), 3000}},
		{"live deadline kept", ir.SetElement{Timeout: 3000, Expires: 2500, Deadline: 7}, TimeoutValue{7, 3000}},
		{"never", ir.SetElement{}, TimeoutValue{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := TimeoutOf(s, tc.e, now)
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			back, err := ParseTimeoutValue(got.bytes())
			if err != nil || back != got {
				t.Errorf("round trip: %+v, %v", back, err)
			}
		})
	}
	spec, err := SetMapSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Type != ebpf.Hash || spec.ValueSize != timeoutValueSize {
		t.Errorf("spec %+v, want a hash map of %d-byte values", spec, timeoutValueSize)
	}
	for _, tc := range []struct {
		set   *ir.Set
		inMap bool
	}{
		{&ir.Set{Name: "interval", Flags: ir.SetTimeout | ir.SetInterval, KeyLen: 4}, true},
		{&ir.Set{Name: "vmap", Flags: ir.SetTimeout | ir.SetMap, KeyLen: 4, DataType: ir.DataVerdict}, true},
		{&ir.Set{Name: "data map", Flags: ir.SetTimeout | ir.SetMap, KeyLen: 4, DataType: 19, DataLen: 4}, true},
		{&ir.Set{Name: "concatenated ranges", Flags: ir.SetTimeout | ir.SetInterval | ir.SetConcat, KeyLen: 8, Fields: []uint32{4, 2}}, true},
		{&ir.Set{Name: "anonymous concatenated ranges", Flags: ir.SetTimeout | ir.SetInterval | ir.SetConcat | ir.SetAnonymous, KeyLen: 8, Fields: []uint32{4, 2}}, false},
		{&ir.Set{Name: "map of other data", Flags: ir.SetTimeout | ir.SetMap, KeyLen: 4, DataType: 7, DataLen: 16}, false},
		{&ir.Set{Name: "dynamic", Flags: ir.SetTimeout | ir.SetEval, KeyLen: 4}, false},
	} {
		if got := InMap(tc.set); got != tc.inMap {
			t.Errorf("%s: backed by a map: %v, want %v", tc.set.Name, got, tc.inMap)
		}
	}
	vs, err := SetMapSpec(&ir.Set{Name: "vmap", Flags: ir.SetTimeout | ir.SetMap | ir.SetInterval, KeyLen: 4, DataType: ir.DataVerdict})
	if err != nil {
		t.Fatal(err)
	}
	if vs.Type != ebpf.LPMTrie || vs.ValueSize != timeoutValueSize+4 {
		t.Errorf("interval verdict map spec %+v, want an LPM trie of %d-byte values", vs, timeoutValueSize+4)
	}
}

// TestTimeoutMapLookup runs lookups in interval sets (LPM tries), sets and
// verdict maps of concatenated ranges (range tables), verdict maps (exact
// and interval keys) and data maps with timeouts on every
// program type (data maps where meta mark set works: tc and cgroup): an
// element whose deadline has passed is not there (the rule goes on with
// the next one), a live one and one that never expires are.
func TestTimeoutMapLookup(t *testing.T) {
	privileged(t)
	now := MonotonicNow()
	hour := uint64(time.Hour)
	live, gone := now+hour, now-uint64(time.Second)
	// Element states: d is the deadline (0: never expires).
	type elem struct {
		lo, hi uint16
		d      uint64
		v      *ir.Verdict
		mark   uint32
	}
	build := func(s *ir.Set, es ...elem) *ir.Set {
		for _, e := range es {
			se := ir.SetElement{Low: u16(e.lo), High: u16(e.hi), Deadline: e.d, Verdict: e.v}
			if e.d != 0 {
				se.Timeout = 60000
			}
			if s.DataLen == 4 {
				se.Data = u32le(e.mark)
			}
			s.Elements = append(s.Elements, se)
		}
		return s
	}
	iv := build(&ir.Set{Name: "iv", Flags: ir.SetTimeout | ir.SetInterval, KeyType: 13, KeyLen: 2},
		elem{lo: 30, hi: 39, d: live}, elem{lo: 40, hi: 49, d: gone}, elem{lo: 50, hi: 59})
	vmExact := build(&ir.Set{Name: "vm", Flags: ir.SetTimeout | ir.SetMap, KeyType: 13, KeyLen: 2, DataType: ir.DataVerdict, Timeout: 60000},
		elem{lo: 60, hi: 60, d: live, v: drop}, elem{lo: 61, hi: 61, d: gone, v: drop}, elem{lo: 62, hi: 62, v: drop})
	vmRange := build(&ir.Set{Name: "vmi", Flags: ir.SetTimeout | ir.SetMap | ir.SetInterval, KeyType: 13, KeyLen: 2, DataType: ir.DataVerdict},
		elem{lo: 70, hi: 74, d: live, v: drop}, elem{lo: 75, hi: 79, d: gone, v: drop})
	dm := build(&ir.Set{Name: "dm", Flags: ir.SetTimeout | ir.SetMap, KeyType: 13, KeyLen: 2, DataType: 19, DataLen: 4},
		elem{lo: 90, hi: 90, d: live, mark: 5}, elem{lo: 91, hi: 91, d: gone, mark: 5}, elem{lo: 92, hi: 92, mark: 5})
	// Range tables: ip saddr . tcp dport, both fields ranges.
	buildRT := func(s *ir.Set, es ...elem) *ir.Set {
		for _, e := range es {
			se := ir.SetElement{Low: ck(ip4(192, 0, 2, 0), e.lo), High: ck(ip4(192, 0, 2, 255), e.hi), Deadline: e.d, Verdict: e.v}
			if e.d != 0 {
				se.Timeout = 60000
			}
			s.Elements = append(s.Elements, se)
		}
		return s
	}
	rt := buildRT(concatSet("rt", ir.SetTimeout|ir.SetInterval|ir.SetConcat),
		elem{lo: 110, hi: 119, d: live}, elem{lo: 120, hi: 129, d: gone}, elem{lo: 130, hi: 139})
	rtv := concatSet("rtv", ir.SetTimeout|ir.SetInterval|ir.SetConcat|ir.SetMap)
	rtv.DataType = ir.DataVerdict
	rtv = buildRT(rtv, elem{lo: 140, hi: 149, d: live, v: drop}, elem{lo: 150, hi: 159, d: gone, v: drop})
	concat := []ir.Field{nh(12, 4), th(2, 2)}
	for _, fl := range allFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			marks := fl.tgt.Type == TC || fl.tgt.Type == CgroupSKB
			rules := []*ir.Rule{
				rule(&ir.Match{Field: th(2, 2), Op: ir.OpInSet, Set: iv}, drop),
				rule(vm(vmExact, th(2, 2))),
				rule(vm(vmRange, th(2, 2))),
				rule(&ir.Lookup{Key: concat, Set: rt}, drop),
				rule(vm(rtv, concat...)),
			}
			sets := []*ir.Set{iv, vmExact, vmRange, rt, rtv}
			if marks {
				rules = append(rules,
					rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), &ir.MetaSetMap{Meta: ir.MetaMark, Key: []ir.Field{th(2, 2)}, Map: dm}),
					rule(eq(meta(ir.MetaMark), u32le(5)), drop))
				sets = append(sets, dm)
			}
			tab, c := table(ir.FamilyIPv4, 0, ir.VerdictAccept, rules)
			tab.Sets = sets
			l := loadFlavour(t, fl, tab, c)
			cases := []struct {
				port uint16
				want ir.VerdictKind
			}{
				{30, ir.VerdictDrop}, {39, ir.VerdictDrop}, {40, ir.VerdictAccept}, {49, ir.VerdictAccept}, {55, ir.VerdictDrop}, {60 - 1, ir.VerdictDrop},
				{60, ir.VerdictDrop}, {61, ir.VerdictAccept}, {62, ir.VerdictDrop}, {63, ir.VerdictAccept},
				{70, ir.VerdictDrop}, {74, ir.VerdictDrop}, {75, ir.VerdictAccept}, {79, ir.VerdictAccept},
				{110, ir.VerdictDrop}, {119, ir.VerdictDrop}, {120, ir.VerdictAccept}, {129, ir.VerdictAccept},
				{135, ir.VerdictDrop}, {140, ir.VerdictDrop}, {150, ir.VerdictAccept}, {160, ir.VerdictAccept},
			}
			if marks {
				cases = append(cases, []struct {
					port uint16
					want ir.VerdictKind
				}{{90, ir.VerdictDrop}, {91, ir.VerdictAccept}, {92, ir.VerdictDrop}, {93, ir.VerdictAccept}}...)
			}
			for _, tc := range cases {
				if v := run(t, fl, l, tcp4(tc.port)); v != tc.want {
					t.Errorf("tcp %d: got %s, want %s", tc.port, vname(v), vname(tc.want))
				}
			}
		})
	}
}

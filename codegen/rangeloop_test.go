package codegen

import (
	"fmt"
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// largeRangeSet returns a named set of n concatenated ranges
// ip saddr . tcp dport: element i holds 198.51.100.0-198.51.100.127 and
// ports 10i+1 … 10i+5. With deadlines, element expired has passed its
// deadline, the last element expires in an hour and the others never.
func largeRangeSet(name string, n int, flags ir.SetFlags, expired int) *ir.Set {
	s := concatSet(name, flags|ir.SetInterval|ir.SetConcat)
	now := MonotonicNow()
	for i := 0; i < n; i++ {
		e := ir.SetElement{
			Low:  ck(ip4(198, 51, 100, 0), uint16(10*i+1)),
			High: ck(ip4(198, 51, 100, 127), uint16(10*i+5)),
		}
		if flags&ir.SetTimeout != 0 {
			switch i {
			case expired:
				e.Deadline, e.Timeout = now-uint64(time.Second), 60000
			case n - 1:
				e.Deadline, e.Timeout = now+uint64(time.Hour), 60000
			}
		}
		s.Elements = append(s.Elements, e)
	}
	return s
}

// TestRangeTableLarge: a range table of 5000 elements (ten times the
// former cap of 512, which the verifier's walk of an inline loop
// imposed) finds its first and last elements at both bounds of both
// fields, misses one past every bound and between elements, skips an
// expired element, and finds an element SyncRangeTable appends, on every
// program type. Its capacity compiles up to rangeTableMax and is refused
// above.
func TestRangeTableLarge(t *testing.T) {
	privileged(t)
	const n, expired = 5000, 2500
	last := uint16(10*(n-1) + 1) // low port of the last element
	for _, timeouts := range []bool{false, true} {
		var flags ir.SetFlags
		if timeouts {
			flags = ir.SetTimeout
		}
		set := largeRangeSet("big", n, flags, expired)
		if c, err := rangeCapacity(set); err != nil || c != 2*n {
			t.Fatalf("capacity %d (%v), want %d", c, err, 2*n)
		}
		for _, fl := range allFlavours(ir.FamilyIPv4) {
			t.Run(fmt.Sprintf("timeouts=%v/%s", timeouts, fl.name), func(t *testing.T) {
				tab, c := table(ir.FamilyIPv4, 0, ir.VerdictAccept, []*ir.Rule{
					rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), &ir.Lookup{Key: []ir.Field{nh(12, 4), th(2, 2)}, Set: set}, drop),
				})
				tab.Sets = []*ir.Set{set}
				l := loadFlavour(t, fl, tab, c)
				in, out := ip4(198, 51, 100, 127), ip4(198, 51, 100, 128)
				cases := []struct {
					name string
					src  []byte
					port uint16
					want ir.VerdictKind
				}{
					{"first, low port, low address", ip4(198, 51, 100, 0), 1, D},
					{"first, high port, high address", in, 5, D},
					{"below the first port", in, 0, A},
					{"above the first's high port", in, 6, A},
					{"between elements", in, 10, A},
					{"first port, address above", out, 1, A},
					{"middle", ip4(198, 51, 100, 64), 10*1234 + 3, D},
					{"last, low port", in, last, D},
					{"last, high port", ip4(198, 51, 100, 0), last + 4, D},
					{"below the last", in, last - 1, A},
					{"above the last", in, last + 5, A},
					{"last, address above", out, last, A},
					{"far above", in, 65535, A},
				}
				expiredWant := D
				if timeouts {
					expiredWant = A
				}
				cases = append(cases, struct {
					name string
					src  []byte
					port uint16
					want ir.VerdictKind
				}{"the element that expires", in, 10*expired + 3, expiredWant})
				for _, tc := range cases {
					if got := run(t, fl, l, tcp4From(tc.src, tc.port)); got != tc.want {
						t.Errorf("%s: %v port %d: got %s, want %s", tc.name, tc.src, tc.port, vname(got), vname(tc.want))
					}
				}
				// One more element goes to the slot after the last.
				next := largeRangeSet("big", n, flags, expired)
				next.Elements = append(next.Elements, ir.SetElement{Low: ck(ip4(203, 0, 113, 9), 7), High: ck(ip4(203, 0, 113, 9), 7)})
				if err := SyncRangeTable(l.Sets[set], next, nil); err != nil {
					t.Fatal(err)
				}
				if got := run(t, fl, l, tcp4From(ip4(203, 0, 113, 9), 7)); got != D {
					t.Errorf("appended element: got %s, want drop", vname(got))
				}
				if got := run(t, fl, l, tcp4From(ip4(203, 0, 113, 9), 8)); got != A {
					t.Errorf("next to the appended element: got %s, want accept", vname(got))
				}
			})
		}
	}
	t.Run("capacity", func(t *testing.T) {
		for _, tc := range []struct {
			size uint32
			ok   bool
		}{{rangeTableMax, true}, {rangeTableMax + 1, false}} {
			set := largeRangeSet("sized", 3, 0, -1)
			set.Size = tc.size
			tab, c := table(ir.FamilyIPv4, 0, ir.VerdictAccept, []*ir.Rule{
				rule(&ir.Lookup{Key: []ir.Field{nh(12, 4), th(2, 2)}, Set: set}, drop),
			})
			tab.Sets = []*ir.Set{set}
			p, err := Compile(tab, c, Target{Type: Netfilter, Family: ir.FamilyIPv4, ProtoFamily: ir.FamilyIPv4})
			if (err == nil) != tc.ok {
				t.Fatalf("size %d: err = %v, want ok=%v", tc.size, err, tc.ok)
			}
			if err != nil {
				continue
			}
			l, err := p.Load()
			if err != nil {
				t.Fatalf("size %d: load: %v", tc.size, err)
			}
			if got := l.Sets[set].MaxEntries(); got != tc.size+1 {
				t.Errorf("size %d: %d map entries, want %d", tc.size, got, tc.size+1)
			}
			l.Close()
		}
	})
}

// BenchmarkRangeTable measures the time per packet of a lookup in range
// tables of 0 to 10,000 elements that misses (every element compared),
// beside the program without the rule (x-empty), and the time per element.
func BenchmarkRangeTable(b *testing.B) {
	privileged(b)
	frame := tcp4From(ip4(192, 0, 2, 1), 80)
	for _, bt := range benchTargets {
		if bt.fam != ir.FamilyNetdev && bt.tgt.Type != Netfilter {
			continue
		}
		b.Run(bt.name, func(b *testing.B) {
			load := func(n int) *Loaded {
				set := largeRangeSet(fmt.Sprintf("b%d", n), n, 0, -1)
				var rules []*ir.Rule
				if n > 0 {
					rules = append(rules, rule(&ir.Lookup{Key: []ir.Field{nh(12, 4), th(2, 2)}, Set: set}, drop))
				}
				tab, c := table(bt.fam, bt.tgt.Hook, ir.VerdictAccept, rules)
				if n > 0 {
					tab.Sets = []*ir.Set{set}
				}
				p, err := Compile(tab, c, bt.tgt)
				if err != nil {
					b.Fatal(err)
				}
				l, err := p.Load()
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { l.Close() })
				return l
			}
			empty := load(0)
			data := frame
			if !bt.l2 {
				data = frame[14:]
			}
			for _, n := range []int{1, 10, 100, 1000, 10000} {
				l := load(n)
				b.Run(fmt.Sprintf("elements=%d", n), func(b *testing.B) {
					repeat := max(20, 2_000_000/(10+5*n))
					var prog, base time.Duration
					for i := 0; i < b.N; i++ {
						prog += runBench(b, bt, l, data, repeat)
						base += runBench(b, bt, empty, data, repeat)
					}
					b.ReportMetric(float64(prog.Nanoseconds())/float64(b.N), "ns/packet")
					b.ReportMetric(float64((prog-base).Nanoseconds())/float64(b.N)/float64(n), "ns/element")
					b.ReportMetric(float64(prog)/float64(base), "x-empty")
				})
			}
		})
	}
}

// TestRangeTableFullStack: a range table scanned in a program whose own
// stack is full (a fib … type lookup uses it down to -512) loads: the
// callback uses no stack of its own, and BPF-to-BPF frames share 512
// bytes. Only packets the range table matches are run (the fib rule
// after it would consult this namespace's routes).
func TestRangeTableFullStack(t *testing.T) {
	privileged(t)
	set := largeRangeSet("st", 100, ir.SetTimeout, -1)
	for _, fl := range ipFlavours(ir.FamilyIPv4) {
		if fl.fam != ir.FamilyIPv4 {
			continue // fib … type in ip tables
		}
		tab, c := table(fl.fam, fl.hook, ir.VerdictAccept, []*ir.Rule{
			rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), &ir.Lookup{Key: []ir.Field{nh(12, 4), th(2, 2)}, Set: set}, drop),
			rule(eq(fibf(ir.FIBDaddr), addrType(ir.AddrLocal)), eq(th(2, 2), u16(1)), drop),
		})
		tab.Sets = []*ir.Set{set}
		l := loadFlavour(t, fl, tab, c)
		for _, port := range []uint16{1, 5, 991, 995} {
			if got := run(t, fl, l, tcp4From(ip4(198, 51, 100, 3), port)); got != D {
				t.Errorf("%s port %d: got %s, want drop", fl.name, port, vname(got))
			}
		}
	}
}

// TestRangeTableSplit: range tables looked up in the first and the last
// part of a chain split into tail-called programs answer in both (every
// part carries the callbacks, each with its BTF function information).
func TestRangeTableSplit(t *testing.T) {
	privileged(t)
	first := largeRangeSet("first", 100, 0, -1)
	last := largeRangeSet("last", 1000, ir.SetTimeout, 500)
	key := []ir.Field{nh(12, 4), th(2, 2)}
	isTCP := eq(meta(ir.MetaL4Proto), b(protoTCP))
	for _, fl := range []flavour{netdevFlavours()[0], ipFlavours(ir.FamilyIPv4)[1]} {
		t.Run(fl.name, func(t *testing.T) {
			rules := []*ir.Rule{rule(isTCP, eq(th(2, 2), u16(1)), &ir.Lookup{Key: key, Set: first}, drop)}
			rules = append(rules, benchRules(fl.fam, 1500)...)
			rules = append(rules, rule(isTCP, &ir.Lookup{Key: key, Set: last}, drop))
			tab, c := table(fl.fam, fl.hook, ir.VerdictAccept, rules)
			tab.Sets = []*ir.Set{first, last}
			p, err := CompileWith(tab, c, fl.tgt, Options{Linear: true})
			if err != nil {
				t.Fatal(err)
			}
			if p.Parts() < 2 {
				t.Fatalf("%d parts, want a split chain", p.Parts())
			}
			l := loadFlavourWith(t, fl, tab, c, Options{Linear: true})
			for _, tc := range []struct {
				port uint16
				want ir.VerdictKind
			}{
				{1, D},    // first table, in the first part
				{3, D},    // last table (first element), in the last part
				{9995, D}, // last table, last element
				{9996, A},
				{5003, A}, // expired
				{5013, D},
			} {
				if got := run(t, fl, l, tcp4From(ip4(198, 51, 100, 3), tc.port)); got != tc.want {
					t.Errorf("port %d: got %s, want %s (%d parts)", tc.port, vname(got), vname(tc.want), p.Parts())
				}
			}
		})
	}
}

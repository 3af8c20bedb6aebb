package codegen

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// portBatch returns a named set of ports first…first+n-1 (exact keys, or
// one-port ranges in an interval set).
func portBatch(name string, flags ir.SetFlags, first, n int) *ir.Set {
	s := &ir.Set{Name: name, KeyType: 13, KeyLen: 2, Flags: flags}
	for p := first; p < first+n; p++ {
		s.Elements = append(s.Elements, ir.SetElement{Low: u16(uint16(p)), High: u16(uint16(p))})
	}
	return s
}

// mixProbe runs the XDP program l on packets to port a, then port b,
// over and over in two goroutines until stop is closed, and counts the
// pairs in which a saw its new state (want: in the set) and b, looked up
// after it, its old one: a packet sequence that saw a mix of the old and
// the new element set.
type mixProbe struct {
	pairs, mixes atomic.Int64
	// before and after count pairs that saw the old set and the new one
	// whole.
	before, after atomic.Int64
	errs          chan error
}

func probeMixes(l *Loaded, a, b uint16, added bool, stop <-chan struct{}) (*mixProbe, *sync.WaitGroup) {
	mp := &mixProbe{errs: make(chan error, 2)}
	fa, fb := tcp4(a), tcp4(b)
	inSet := func(frame []byte) (bool, error) {
		ret, err := l.Program.Run(&ebpf.RunOptions{Data: frame, Repeat: 1})
		if err != nil {
			return false, err
		}
		v, err := VerdictOf(XDP, ret)
		return v == ir.VerdictDrop, err
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ina, err := inSet(fa)
				if err != nil {
					mp.errs <- err
					return
				}
				inb, err := inSet(fb)
				if err != nil {
					mp.errs <- err
					return
				}
				mp.pairs.Add(1)
				switch {
				case ina == added && inb != added:
					mp.mixes.Add(1)
				case ina == added && inb == added:
					mp.after.Add(1)
				case ina != added && inb != added:
					mp.before.Add(1)
				}
			}
		}()
	}
	return mp, &wg
}

// TestSetSwapAtomic: a batch of 20,000 elements added to or deleted from
// a set (hash map or LPM trie) while packets to its first and its last
// element are looked up over and over from two threads. Changed key by
// key in the live map (the control), some packet sequence sees the first
// element changed and the last not yet; changed by a new element map
// swapped into the set's slot, none does, and the probes see the old set,
// then the new one.
func TestSetSwapAtomic(t *testing.T) {
	privileged(t)
	const first, n = 1000, 20000
	a, b := uint16(first), uint16(first+n-1)
	for _, kind := range []struct {
		name  string
		flags ir.SetFlags
	}{{"hash", 0}, {"lpm", ir.SetInterval}} {
		for _, tc := range []struct {
			name  string
			add   bool
			swap  bool
			mixes bool
		}{
			{"add/in-place", true, false, true},
			{"add/swap", true, true, false},
			{"delete/in-place", false, false, true},
			{"delete/swap", false, true, false},
		} {
			t.Run(kind.name+"/"+tc.name, func(t *testing.T) {
				batch := portBatch("batch", kind.flags, first, n)
				empty := portBatch("batch", kind.flags, first, 0)
				start, end := empty, batch
				if !tc.add {
					start, end = batch, empty
				}
				fl := netdevFlavours()[0]
				// A control can miss a mix when the probes are not
				// scheduled during the batch: it gets three tries.
				tries := 1
				if tc.mixes {
					tries = 3
				}
				for try := 1; try <= tries; try++ {
					tab, c := table(fl.fam, fl.hook, ir.VerdictAccept, []*ir.Rule{
						rule(&ir.Match{Field: th(2, 2), Op: ir.OpInSet, Set: start}, drop),
					})
					tab.Sets = []*ir.Set{start}
					l := loadFlavour(t, fl, tab, c)
					keys, values, err := SetMapEntries(batch)
					if err != nil {
						t.Fatal(err)
					}
					stop := make(chan struct{})
					mp, wg := probeMixes(l, a, b, tc.add, stop)
					time.Sleep(20 * time.Millisecond)
					began := time.Now()
					switch {
					case tc.swap:
						var m *ebpf.Map
						m, err = NewSetMapLike(end, l.Sets[start], nil)
						if err == nil {
							err = SwapSetMap(l.SetSlots[start], m)
							m.Close()
						}
					case tc.add:
						err = UpdateSetMapEntries(l.Sets[start], keys, values, nil)
					default:
						err = UpdateSetMapEntries(l.Sets[start], nil, nil, keys)
					}
					took := time.Since(began)
					time.Sleep(20 * time.Millisecond)
					close(stop)
					wg.Wait()
					if err != nil {
						t.Fatal(err)
					}
					select {
					case err := <-mp.errs:
						t.Fatal(err)
					default:
					}
					t.Logf("try %d: change took %v; %d pairs: %d saw the old set, %d the new, %d a mix",
						try, took, mp.pairs.Load(), mp.before.Load(), mp.after.Load(), mp.mixes.Load())
					if mp.before.Load() == 0 || mp.after.Load() == 0 {
						t.Fatalf("the probes did not see both the old and the new set")
					}
					if !tc.mixes {
						if mp.mixes.Load() != 0 {
							t.Errorf("%d packet pairs saw a mix of the old and the new set", mp.mixes.Load())
						}
						break
					}
					if mp.mixes.Load() > 0 {
						break
					}
					if try == tries {
						t.Errorf("control: no pair saw the in-place change half done in %d tries; the test cannot detect mixes", tries)
					}
				}
			})
		}
	}
}

// TestSetSwapVerdicts: after a swap every kind of map-backed set (hash,
// LPM trie, range table, verdict map) decides with the new elements, on
// every program type, and the slot holds the new map.
func TestSetSwapVerdicts(t *testing.T) {
	privileged(t)
	accept := &ir.Verdict{Kind: ir.VerdictAccept}
	for _, fl := range allFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			ports := portBatch("ports", 0, 20, 3)
			ranges := &ir.Set{Name: "ranges", KeyType: 13, KeyLen: 2, Flags: ir.SetInterval,
				Elements: []ir.SetElement{{Low: u16(30), High: u16(39)}}}
			// A range table: ip saddr . tcp dport, both fields ranges.
			rt := concatSet("rt", ir.SetInterval|ir.SetConcat, elr(ck(ip4(192, 0, 2, 0), 40), ck(ip4(192, 0, 2, 255), 49)))
			vm := concatVMap(0)
			vm.Name = "vm"
			tab, c := table(fl.fam, fl.hook, ir.VerdictAccept, []*ir.Rule{
				rule(&ir.Match{Field: th(2, 2), Op: ir.OpInSet, Set: ports}, drop),
				rule(&ir.Match{Field: th(2, 2), Op: ir.OpInSet, Set: ranges}, drop),
				rule(&ir.Lookup{Key: []ir.Field{nh(12, 4), th(2, 2)}, Set: rt}, drop),
				rule(eq(th(2, 2), u16(60)), &ir.VerdictMap{Key: []ir.Field{nh(12, 4), th(2, 2)}, Set: vm}),
				rule(eq(th(2, 2), u16(60)), drop),
			})
			tab.Sets = []*ir.Set{ports, ranges, rt, vm}
			l := loadFlavour(t, fl, tab, c)
			verdicts := func(step string, want map[uint16]ir.VerdictKind) {
				t.Helper()
				for port, w := range want {
					if v := run(t, fl, l, tcp4(port)); v != w {
						t.Errorf("%s: tcp %d: got %s, want %s", step, port, vname(v), vname(w))
					}
				}
			}
			verdicts("before", map[uint16]ir.VerdictKind{
				21: ir.VerdictDrop, 25: ir.VerdictAccept, 35: ir.VerdictDrop, 50: ir.VerdictAccept,
				45: ir.VerdictDrop, 55: ir.VerdictAccept, 60: ir.VerdictDrop,
			})
			swap := func(old, next *ir.Set, targets []ir.Verdict) {
				t.Helper()
				m, err := NewSetMapLike(next, l.Sets[old], targets)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				if err := SwapSetMap(l.SetSlots[old], m); err != nil {
					t.Fatal(err)
				}
				cur, err := SetSlotMap(l.SetSlots[old])
				if err != nil {
					t.Fatal(err)
				}
				defer cur.Close()
				ci, _ := cur.Info()
				mi, _ := m.Info()
				cid, _ := ci.ID()
				mid, _ := mi.ID()
				if cid != mid {
					t.Errorf("set %s: slot holds map %d, want the new map %d", old.Name, cid, mid)
				}
			}
			swap(ports, portBatch("ports", 0, 24, 3), nil)
			swap(ranges, &ir.Set{Name: "ranges", KeyType: 13, KeyLen: 2, Flags: ir.SetInterval,
				Elements: []ir.SetElement{{Low: u16(50), High: u16(50)}}}, nil)
			swap(rt, concatSet("rt", ir.SetInterval|ir.SetConcat, elr(ck(ip4(192, 0, 2, 0), 55), ck(ip4(192, 0, 2, 255), 59))), nil)
			nvm := concatVMap(0)
			nvm.Name = "vm"
			nvm.Elements[0].Low = ck(srcV4, 60)
			nvm.Elements[0].High = nvm.Elements[0].Low
			nvm.Elements[0].Verdict = accept
			swap(vm, nvm, vm.Verdicts())
			verdicts("after", map[uint16]ir.VerdictKind{
				21: ir.VerdictAccept, 25: ir.VerdictDrop, 35: ir.VerdictAccept, 50: ir.VerdictDrop,
				45: ir.VerdictAccept, 55: ir.VerdictDrop, 60: ir.VerdictAccept,
			})
		})
	}
}

// BenchmarkSetSwap measures, for a set of 1,000,000 IPv4 addresses,
// replacing its element map by a new one with one more element (build and
// fill the map, swap it into the slot), reading the map (what UpdateSet
// diffs against), and adding one element in place.
func BenchmarkSetSwap(b *testing.B) {
	privileged(b)
	s := ipv4Set("big", 1_000_000)
	inner, err := NewSetMap(s)
	if err != nil {
		b.Fatal(err)
	}
	defer inner.Close()
	slot, err := NewSetSlot(s, inner)
	if err != nil {
		b.Fatal(err)
	}
	defer slot.Close()
	next := *s
	next.Elements = append(append([]ir.SetElement(nil), s.Elements...), ir.SetElement{Low: ip4(192, 0, 2, 1), High: ip4(192, 0, 2, 1)})
	b.Run("swap/elements=1000000", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			m, err := NewSetMapLike(&next, inner, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := SwapSetMap(slot, m); err != nil {
				b.Fatal(err)
			}
			m.Close()
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/add")
	})
	// UpdateSet reads the live map to find what changed.
	b.Run("read/elements=1000000", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			keys, _, err := SetMapContentEntries(inner)
			if err != nil || len(keys) != 1_000_000 {
				b.Fatalf("%d keys, %v", len(keys), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/read")
	})
	b.Run("in-place/elements=1000000", func(b *testing.B) {
		e := [][]byte{{192, 0, 2, 1}}
		var total time.Duration
		for i := 0; i < b.N; i++ {
			start := time.Now()
			if err := UpdateSetMap(inner, e, nil); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
			if err := UpdateSetMap(inner, nil, e); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(total.Microseconds())/float64(b.N), "us/add")
	})
}

// TestSetMapRead: the entries of hash maps (read in batches) and LPM
// tries (iterated) come back complete, sorted, with their values, across
// batch boundaries.
func TestSetMapRead(t *testing.T) {
	privileged(t)
	for _, s := range []*ir.Set{
		ipv4Set("hash", batchChunk+3),
		portBatch("lpm", ir.SetInterval, 0, 100),
		{Name: "values", Flags: ir.SetTimeout, KeyType: 13, KeyLen: 2, Elements: []ir.SetElement{
			{Low: u16(1), High: u16(1), Timeout: 5000, Deadline: 77}, {Low: u16(2), High: u16(2)}}},
	} {
		t.Run(s.Name, func(t *testing.T) {
			m, err := NewSetMap(s)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			wantK, wantV, err := SetMapEntries(s)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{}
			for i, k := range wantK {
				want[string(k)] = string(wantV[i])
			}
			keys, values, err := SetMapContentEntries(m)
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != len(want) {
				t.Fatalf("%d entries, want %d", len(keys), len(want))
			}
			for i, k := range keys {
				if i > 0 && string(keys[i-1]) >= string(k) {
					t.Fatalf("entries not sorted at %d: %x, %x", i, keys[i-1], k)
				}
				if v, ok := want[string(k)]; !ok || v != string(values[i]) {
					t.Fatalf("entry %x = %x, want %x (present %v)", k, values[i], v, ok)
				}
			}
		})
	}
}

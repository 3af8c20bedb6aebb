package loader

import (
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// runningIDs returns, per attach point key, the ID of the program the
// point runs: the program its link runs, or for a netfilter point the
// program in its dispatcher's slot. It checks that this is the program
// the manifest names.
func runningIDs(t *testing.T, st *state.Dir) map[string]ebpf.ProgramID {
	t.Helper()
	snap, err := Load(st)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]ebpf.ProgramID{}
	for _, p := range snap.Manifest.Points {
		prog, err := ebpf.LoadPinnedProgram(st.PinPath(p.Program), nil)
		if err != nil {
			t.Fatalf("%s: %v", p.Key, err)
		}
		info, err := prog.Info()
		prog.Close()
		if err != nil {
			t.Fatal(err)
		}
		pinned, _ := info.ID()
		var running ebpf.ProgramID
		if p.Array != "" {
			arr, err := ebpf.LoadPinnedMap(st.PinPath(p.Array), nil)
			if err != nil {
				t.Fatal(err)
			}
			var id uint32
			err = arr.Lookup(uint32(0), &id)
			arr.Close()
			if err != nil {
				t.Fatal(err)
			}
			running = ebpf.ProgramID(id)
		} else {
			l, err := link.LoadPinnedLink(st.PinPath(p.Link), nil)
			if err != nil {
				t.Fatal(err)
			}
			li, err := l.Info()
			l.Close()
			if err != nil {
				t.Fatal(err)
			}
			running = li.Program
		}
		if running != pinned {
			t.Fatalf("%s runs program %d, the manifest names %d", p.Key, running, pinned)
		}
		ids[p.Kind+" "+p.Table] = running
	}
	return ids
}

// TestReuseUnchangedPrograms reloads a ruleset of two tables in a router —
// one on a netfilter forward link, one on tcx ingress of its veth — 40
// times while datagrams flow, changing only the tcx table's rules each
// time (then only the netfilter table's): the unchanged chain keeps its
// program ID and link, only the changed one loads and switches a new
// program (Stats), and every packet sees the old or the new ruleset: the
// rules both versions share drop and count every datagram they must.
func TestReuseUnchangedPrograms(t *testing.T) {
	tp := newTopo(t)
	ns := netns(t, tp.r)
	st := stateDir(t, ns)
	rc := listen(t, tp.b, 7, 9, 10, 11, 12)
	snd := dial(t, tp.a)
	ruleset := func(fwdDrop, inDrop int) string {
		return fmt.Sprintf(`table ip stay {
	chain forward {
		type filter hook forward priority 0; policy accept;
		udp dport 9 counter drop
		udp dport %d drop
		udp dport 7 counter accept
	}
}
table netdev vary {
	chain in {
		type filter hook ingress device "r0" priority 0; policy accept;
		udp dport %d drop
		udp dport 7 counter accept
	}
}
`, fwdDrop, inDrop)
	}
	v1 := translate(t, ns, ruleset(12, 10), nil)
	v2 := translate(t, ns, ruleset(12, 11), nil)
	var stats Stats
	if err := Apply(ns, st, v1, Options{Stats: &stats}); err != nil {
		t.Fatal(err)
	}
	if stats.Kept != 0 || stats.Loaded != 2 {
		t.Fatalf("first load: %+v, want 2 programs loaded", stats)
	}
	first := runningIDs(t, st)
	if len(first) != 2 || first["tcx-ingress vary"] == 0 || first["netfilter stay"] == 0 {
		t.Fatalf("running programs %v, want a tcx and a netfilter one", first)
	}

	stop := make(chan struct{})
	sentc := make(chan map[int]int)
	go func() {
		sent := map[int]int{}
		to := &unix.SockaddrInet4{Addr: [4]byte{198, 51, 100, 1}}
		payload := make([]byte, 32)
		for i := 0; ; i++ {
			select {
			case <-stop:
				sentc <- sent
				return
			default:
			}
			for _, port := range []int{7, 9, 10, 11} {
				to.Port = port
				if unix.Sendto(snd.fd, payload, 0, to) == nil {
					sent[port]++
				}
			}
			if i%4 == 3 {
				time.Sleep(20 * time.Microsecond)
			}
		}
	}()
	const swaps = 40
	prev := first
	for i := 0; i < swaps; i++ {
		res := v2
		if i%2 == 1 {
			res = v1
		}
		stats = Stats{}
		if err := Apply(ns, st, res, Options{Stats: &stats}); err != nil {
			close(stop)
			<-sentc
			t.Fatalf("swap %d: %v", i, err)
		}
		ids := runningIDs(t, st)
		if stats.Kept != 1 || stats.Loaded != 1 {
			t.Errorf("swap %d: %+v, want 1 program kept and 1 loaded", i, stats)
		}
		if ids["netfilter stay"] != first["netfilter stay"] {
			t.Errorf("swap %d: the unchanged netfilter chain runs program %d, was %d", i, ids["netfilter stay"], first["netfilter stay"])
		}
		if ids["tcx-ingress vary"] == prev["tcx-ingress vary"] {
			t.Errorf("swap %d: the changed tcx chain still runs program %d", i, ids["tcx-ingress vary"])
		}
		prev = ids
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	sent := <-sentc
	got := rc.settle()
	t.Logf("%d swaps: sent %v, received %v", swaps, sent, got)
	if sent[7] < 2*swaps {
		t.Errorf("only %d datagrams to port 7 were sent during the swaps", sent[7])
	}
	if got[9] != 0 {
		t.Errorf("%d datagrams to port 9 got through the kept chain", got[9])
	}
	if got[7] != sent[7] {
		t.Errorf("received %d of %d datagrams to port 7 (accepted by both versions)", got[7], sent[7])
	}
	if c9 := counterOf(t, st, "dport 9"); c9 != uint64(sent[9]) {
		t.Errorf("kept chain's counter of port 9: %d, sent %d", c9, sent[9])
	}
	if got[10]+got[11] == 0 || got[10] == sent[10] && got[11] == sent[11] {
		t.Errorf("ports 10/11 show no sign of the swaps: received %d/%d of %d/%d", got[10], got[11], sent[10], sent[11])
	}

	// Now only the netfilter table changes (the last swap loaded v1): the tcx chain keeps its
	// program.
	before := runningIDs(t, st)
	stats = Stats{}
	if err := Apply(ns, st, translate(t, ns, ruleset(13, 10), nil), Options{Stats: &stats}); err != nil {
		t.Fatal(err)
	}
	after := runningIDs(t, st)
	if stats.Kept != 1 || stats.Loaded != 1 || after["tcx-ingress vary"] != before["tcx-ingress vary"] || after["netfilter stay"] == before["netfilter stay"] {
		t.Errorf("netfilter table changed: %+v, programs %v → %v; want only the netfilter program new", stats, before, after)
	}
	// The same ruleset again keeps both.
	stats = Stats{}
	if err := Apply(ns, st, translate(t, ns, ruleset(13, 10), nil), Options{Stats: &stats}); err != nil {
		t.Fatal(err)
	}
	if again := runningIDs(t, st); fmt.Sprint(again) != fmt.Sprint(after) {
		t.Errorf("unchanged ruleset: programs %v → %v", after, again)
	}
}

// TestReuseWithSets: a chain that looks up a named set keeps its program
// only while the set's map stays; when a reload changes the set's
// elements together with another chain, the packets see the new elements
// (whether the program was kept or loaded anew), and a reload that
// changes only the other chain keeps the set chain's program and
// elements.
func TestReuseWithSets(t *testing.T) {
	tp := newTopo(t)
	ns := netns(t, tp.r)
	st := stateDir(t, ns)
	rc := listen(t, tp.b, 7, 10, 11, 12, 13)
	snd := dial(t, tp.a)
	ruleset := func(ports string, fwdDrop int) string {
		return fmt.Sprintf(`table netdev vary {
	set ports { type inet_service; elements = { %s } }
	chain in {
		type filter hook ingress device "r0" priority 0; policy accept;
		udp dport @ports drop
	}
}
table ip stay {
	chain forward {
		type filter hook forward priority 0; policy accept;
		udp dport %d drop
	}
}
`, ports, fwdDrop)
	}
	check := func(step string, dropped ...int) {
		t.Helper()
		rc.reset()
		for _, port := range []int{7, 10, 11, 12, 13} {
			snd.send(port, 5)
		}
		got := rc.settle()
		for _, port := range []int{7, 10, 11, 12, 13} {
			want := 5
			for _, d := range dropped {
				if d == port {
					want = 0
				}
			}
			if got[port] != want {
				t.Errorf("%s: port %d received %d of 5, want %d", step, port, got[port], want)
			}
		}
	}
	steps := []struct {
		name         string
		ports        string
		fwd          int
		dropped      []int
		kept, loaded int
		setKept      bool // the set chain's program ID stays
	}{
		{"first load", "10", 12, []int{10, 12}, 0, 2, false},
		{"set and other chain changed", "11", 13, []int{11, 13}, -1, -1, false},
		{"only the other chain changed", "11", 12, []int{11, 12}, 1, 1, true},
		{"nothing changed", "11", 12, []int{11, 12}, 2, 0, true},
	}
	var prev map[string]ebpf.ProgramID
	for _, s := range steps {
		var stats Stats
		if err := Apply(ns, st, translate(t, ns, ruleset(s.ports, s.fwd), nil), Options{Stats: &stats}); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.kept >= 0 && (stats.Kept != s.kept || stats.Loaded != s.loaded) {
			t.Errorf("%s: %+v, want %d kept and %d loaded", s.name, stats, s.kept, s.loaded)
		}
		ids := runningIDs(t, st)
		if s.setKept && ids["tcx-ingress vary"] != prev["tcx-ingress vary"] {
			t.Errorf("%s: the set chain's program changed (%d → %d)", s.name, prev["tcx-ingress vary"], ids["tcx-ingress vary"])
		}
		check(s.name, s.dropped...)
		prev = ids
	}
}

package loader

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// setRuleset drops UDP to the ports in the named set "blocked" (elements
// as given) and, with extra, also to port 12.
func setRuleset(elements string, extra bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet t {\n\tset blocked {\n\t\ttype inet_service\n")
	if elements != "" {
		fmt.Fprintf(&b, "\t\telements = { %s }\n", elements)
	}
	fmt.Fprintf(&b, "\t}\n\tchain c {\n\t\ttype filter hook input priority 0; policy accept;\n")
	fmt.Fprintf(&b, "\t\tudp dport @blocked counter drop\n\t\tudp dport != @blocked udp dport 13 drop\n")
	if extra {
		fmt.Fprintf(&b, "\t\tudp dport 12 drop\n")
	}
	fmt.Fprintf(&b, "\t}\n}\n")
	return b.String()
}

func mapID(t *testing.T, st *state.Dir, name string) ebpf.MapID {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(st.PinPath(name), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

// TestSetMaps: one map per named set, shared by the IPv4 and IPv6
// programs of an inet chain and by both rules using it; kept across a
// reload that leaves the set alone, replaced when its elements change;
// UpdateSet changes the elements live without touching the programs.
// Traffic checks each step.
func TestSetMaps(t *testing.T) {
	tp := newTopo(t)
	ns := netns(t, tp.b)
	st := stateDir(t, ns)
	rc := listen(t, tp.b, 9, 10, 11, 12, 13)
	snd := dial(t, tp.a)
	check := func(step string, want map[int]bool) {
		t.Helper()
		rc.reset()
		for port := range want {
			snd.send(port, 3)
		}
		wantN := map[int]int{}
		for port, pass := range want {
			if pass {
				wantN[port] = 3
			}
		}
		got := rc.settleFor(wantN)
		for port, pass := range want {
			if (got[port] == 3) != pass || (got[port] != 0 && got[port] != 3) {
				t.Errorf("%s: port %d: received %d of 3, want pass=%v", step, port, got[port], pass)
			}
		}
	}
	load := func(text string) *state.Manifest {
		t.Helper()
		if err := Apply(ns, st, translate(t, ns, text, nil), Options{}); err != nil {
			t.Fatal(err)
		}
		snap, err := Load(st)
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Manifest.Sets) != 1 || snap.Manifest.Sets[0].Name != "blocked" || snap.Manifest.Sets[0].Family != "inet" {
			t.Fatalf("manifest sets %+v, want the one map of inet t blocked", snap.Manifest.Sets)
		}
		return snap.Manifest
	}

	m1 := load(setRuleset("9, 10", false))
	if len(m1.Points) != 2 {
		t.Fatalf("%d points, want 2 (ip and ip6)", len(m1.Points))
	}
	check("loaded", map[int]bool{9: false, 10: false, 11: true, 12: true, 13: false})
	id1 := mapID(t, st, m1.Sets[0].Map)

	m2 := load(setRuleset("9, 10", true))
	if m2.Sets[0].Map != m1.Sets[0].Map || mapID(t, st, m2.Sets[0].Map) != id1 {
		t.Errorf("unchanged set: map %s (id %d) replaced by %s", m1.Sets[0].Map, id1, m2.Sets[0].Map)
	}
	check("rule added", map[int]bool{9: false, 10: false, 11: true, 12: false})

	// Only the elements change: the map is updated in place, the programs
	// stay.
	m3 := load(setRuleset("11", true))
	if m3.Sets[0].Map != m1.Sets[0].Map || m3.Generation != m2.Generation {
		t.Errorf("elements-only load: map %s generation %d, want %s generation %d", m3.Sets[0].Map, m3.Generation, m1.Sets[0].Map, m2.Generation)
	}
	for i := range m3.Points {
		if m3.Points[i].Program != m2.Points[i].Program {
			t.Errorf("elements-only load replaced program %s by %s", m2.Points[i].Program, m3.Points[i].Program)
		}
	}
	if !strings.Contains(m3.Ruleset, "elements = { 11 }") {
		t.Errorf("stored text not updated:\n%s", m3.Ruleset)
	}
	check("elements changed", map[int]bool{9: true, 10: true, 11: false, 12: false})

	// Elements and rules change: new programs and a new map.
	m3 = load(setRuleset("11, 12", false))
	if m3.Sets[0].Map == m1.Sets[0].Map {
		t.Errorf("changed set kept map %s", m1.Sets[0].Map)
	}
	if st.Exists(m1.Sets[0].Map) {
		t.Errorf("old set map %s still pinned", m1.Sets[0].Map)
	}
	check("set and rules changed", map[int]bool{9: true, 10: true, 11: false, 12: false, 13: false})

	// Live: the set's elements change, nothing else does.
	set := &ir.Set{Name: "blocked", KeyType: 13, KeyLen: 2, Elements: []ir.SetElement{
		{Low: []byte{0, 9}, High: []byte{0, 9}}, {Low: []byte{0, 13}, High: []byte{0, 13}},
	}}
	text := setRuleset("9, 13", false)
	unlock, err := st.Lock()
	if err != nil {
		t.Fatal(err)
	}
	err = UpdateSet(st, ir.FamilyInet, "t", set, text)
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := Load(st)
	if err != nil {
		t.Fatal(err)
	}
	m4 := snap.Manifest
	if m4.Ruleset != text || m4.Sets[0].Map != m3.Sets[0].Map || m4.Generation != m3.Generation {
		t.Errorf("after UpdateSet: text %q, map %s, generation %d; want the new text, map %s, generation %d",
			m4.Ruleset, m4.Sets[0].Map, m4.Generation, m3.Sets[0].Map, m3.Generation)
	}
	for i := range m4.Points {
		if m4.Points[i].Program != m3.Points[i].Program {
			t.Errorf("UpdateSet changed program %s to %s", m3.Points[i].Program, m4.Points[i].Program)
		}
	}
	check("updated", map[int]bool{9: false, 11: true, 13: false, 10: true})

	// A reload of the text UpdateSet stored keeps the updated map.
	m5 := load(text)
	if m5.Sets[0].Map != m3.Sets[0].Map {
		t.Errorf("reload after UpdateSet replaced map %s by %s", m3.Sets[0].Map, m5.Sets[0].Map)
	}

	// Sets without a map: UpdateSet refuses and changes nothing.
	other := &ir.Set{Name: "other", KeyType: 13, KeyLen: 2}
	if err := UpdateSet(st, ir.FamilyInet, "t", other, "x"); err == nil || !strings.Contains(err.Error(), ErrSetNotMapped.Error()) {
		t.Errorf("UpdateSet of a set without a map: %v", err)
	}
	if snap, _ := Load(st); snap.Manifest.Ruleset != m5.Ruleset {
		t.Error("refused UpdateSet changed the stored text")
	}

	if err := Flush(st); err != nil {
		t.Fatal(err)
	}
	check("flushed", map[int]bool{9: true, 13: true})
}

// TestSetUpdateUnderTraffic toggles element 10 of a set holding 9 with
// UpdateSet 200 times while datagrams to 7, 9 and 10 flow: every datagram
// to 9 (always in the set) must be dropped, every one to 7 (never in it)
// must arrive, and 10 must show both verdicts; the programs stay the same.
func TestSetUpdateUnderTraffic(t *testing.T) {
	tp := newTopo(t)
	ns := netns(t, tp.b)
	st := stateDir(t, ns)
	rc := listen(t, tp.b, 7, 9, 10)
	snd := dial(t, tp.a)
	if err := Apply(ns, st, translate(t, ns, setRuleset("9", false), nil), Options{}); err != nil {
		t.Fatal(err)
	}
	before, err := Load(st)
	if err != nil {
		t.Fatal(err)
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
			for _, port := range []int{7, 9, 10} {
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
	with := &ir.Set{Name: "blocked", KeyType: 13, KeyLen: 2, Elements: []ir.SetElement{
		{Low: []byte{0, 9}, High: []byte{0, 9}}, {Low: []byte{0, 10}, High: []byte{0, 10}}}}
	without := &ir.Set{Name: "blocked", KeyType: 13, KeyLen: 2, Elements: with.Elements[:1]}
	const updates = 200
	var total time.Duration
	for i := 0; i < updates; i++ {
		s, text := with, setRuleset("9, 10", false)
		if i%2 == 1 {
			s, text = without, setRuleset("9", false)
		}
		start := time.Now()
		unlock, err := st.Lock()
		if err == nil {
			err = UpdateSet(st, ir.FamilyInet, "t", s, text)
			unlock()
		}
		total += time.Since(start)
		if err != nil {
			close(stop)
			<-sentc
			t.Fatalf("update %d: %v", i, err)
		}
		time.Sleep(200 * time.Microsecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	sent := <-sentc
	got := rc.settleFor(map[int]int{7: sent[7]})
	t.Logf("%d updates, mean UpdateSet %v; sent %v, received %v", updates, total/updates, sent, got)
	if sent[7] < updates {
		t.Errorf("only %d datagrams to port 7 were sent during the updates", sent[7])
	}
	if got[9] != 0 {
		t.Errorf("%d datagrams to port 9 (in the set throughout) got through", got[9])
	}
	if got[7] != sent[7] {
		t.Errorf("received %d of %d datagrams to port 7 (never in the set)", got[7], sent[7])
	}
	if got[10] == 0 || got[10] == sent[10] {
		t.Errorf("port 10 shows no sign of the updates: received %d of %d", got[10], sent[10])
	}
	after, err := Load(st)
	if err != nil {
		t.Fatal(err)
	}
	for i := range after.Manifest.Points {
		if after.Manifest.Points[i].Program != before.Manifest.Points[i].Program {
			t.Errorf("program %s replaced by %s", before.Manifest.Points[i].Program, after.Manifest.Points[i].Program)
		}
	}
}

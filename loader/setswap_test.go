package loader

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// TestSetBatchUpdateUnderTraffic adds and removes a batch of 8,002
// elements — port 20 first, port 21 last — with UpdateSet, 12 times,
// while datagrams flow in pairs: one to port 20, then one to port 21. A
// pair with one datagram dropped and the other delivered saw the set
// between two states; a packet sequence can do so only by straddling the
// instant of a change, at most one pair per change, when every change is
// one swap of the set's element map. The control changes the batch key by
// key in the live map, which splits many pairs per change: it shows that
// the test detects a batch that packets see half applied.
func TestSetBatchUpdateUnderTraffic(t *testing.T) {
	for _, tc := range []struct {
		name    string
		inPlace int
		atomic  bool
	}{
		{"swap", inPlaceMax, true},
		{"in-place-control", 1 << 30, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(v int) { inPlaceMax = v }(inPlaceMax)
			inPlaceMax = tc.inPlace
			testBatchUnderTraffic(t, tc.atomic)
		})
	}
}

func testBatchUnderTraffic(t *testing.T, atomic bool) {
	tp := newTopo(t)
	ns := netns(t, tp.b)
	st := stateDir(t, ns)
	rc := listen(t, tp.b, 20, 21)
	snd := dial(t, tp.a)
	if err := Apply(ns, st, translate(t, ns, setRuleset("9", false), nil), Options{}); err != nil {
		t.Fatal(err)
	}
	key := func(p int) []byte { return []byte{byte(p >> 8), byte(p)} }
	base := ir.SetElement{Low: key(9), High: key(9)}
	with := &ir.Set{Name: "blocked", KeyType: 13, KeyLen: 2, Elements: []ir.SetElement{base, {Low: key(20), High: key(20)}}}
	texts := []string{"9", "20"}
	for p := 1000; p < 9000; p++ {
		with.Elements = append(with.Elements, ir.SetElement{Low: key(p), High: key(p)})
		texts = append(texts, fmt.Sprint(p))
	}
	with.Elements = append(with.Elements, ir.SetElement{Low: key(21), High: key(21)})
	texts = append(texts, "21")
	without := &ir.Set{Name: "blocked", KeyType: 13, KeyLen: 2, Elements: []ir.SetElement{base}}
	withText, withoutText := setRuleset(strings.Join(texts, ", "), false), setRuleset("9", false)

	stop := make(chan struct{})
	sentc := make(chan uint32)
	go func() {
		to := &unix.SockaddrInet4{Addr: [4]byte(net.ParseIP(addrB).To4())}
		pairs := uint32(0)
		for {
			select {
			case <-stop:
				sentc <- pairs
				return
			default:
			}
			for i, port := range []int{20, 21} {
				to.Port = port
				for {
					err := unix.Sendto(snd.fd, tag(2*pairs+uint32(i), 32), 0, to)
					if !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.EAGAIN) {
						break
					}
					time.Sleep(100 * time.Microsecond)
				}
			}
			pairs++
		}
	}()
	const changes = 12
	var total time.Duration
	for i := 0; i < changes; i++ {
		s, text := with, withText
		if i%2 == 1 {
			s, text = without, withoutText
		}
		time.Sleep(5 * time.Millisecond)
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
			t.Fatalf("change %d: %v", i, err)
		}
	}
	time.Sleep(5 * time.Millisecond)
	close(stop)
	pairs := <-sentc
	_, seqs := rc.settleAll()
	var both, neither, mixed int
	for i := uint32(0); i < pairs; i++ {
		a, b := seqs[2*i] > 0, seqs[2*i+1] > 0
		switch {
		case a && b:
			both++
		case !a && !b:
			neither++
		default:
			mixed++
		}
	}
	t.Logf("%d changes of %d elements, mean UpdateSet %v; %d pairs: %d delivered, %d dropped, %d split",
		changes, len(with.Elements)-1, total/changes, pairs, both, neither, mixed)
	if both == 0 || neither == 0 {
		t.Fatalf("the pairs did not see both states of the set")
	}
	if atomic && mixed > changes {
		t.Errorf("%d pairs split by %d changes: packets saw a batch half applied", mixed, changes)
	}
	if !atomic && mixed <= changes {
		t.Errorf("control: only %d pairs split by %d key-by-key changes; the test cannot detect half-applied batches", mixed, changes)
	}
}

// innerMapID returns the ID of the element map the pinned slot name holds.
func innerMapID(t *testing.T, st *state.Dir, name string) ebpf.MapID {
	t.Helper()
	slot, err := ebpf.LoadPinnedMap(st.PinPath(name), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slot.Close()
	m, err := codegen.SetSlotMap(slot)
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

// TestSetSwapFreesOldMap: a one-key change stays in the element map; a
// change of several keys puts a new element map into the set's slot (the
// slot, its pin and the programs stay) and the kernel frees the old one.
func TestSetSwapFreesOldMap(t *testing.T) {
	tp := newTopo(t)
	ns := netns(t, tp.b)
	st := stateDir(t, ns)
	if err := Apply(ns, st, translate(t, ns, setRuleset("9", false), nil), Options{}); err != nil {
		t.Fatal(err)
	}
	before, err := Load(st)
	if err != nil {
		t.Fatal(err)
	}
	slotName := before.Manifest.Sets[0].Map
	slotID := mapID(t, st, slotName)
	first := innerMapID(t, st, slotName)
	update := func(text string, ports ...byte) {
		t.Helper()
		s := &ir.Set{Name: "blocked", KeyType: 13, KeyLen: 2}
		for _, p := range ports {
			s.Elements = append(s.Elements, ir.SetElement{Low: []byte{0, p}, High: []byte{0, p}})
		}
		unlock, err := st.Lock()
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		if err := UpdateSet(st, ir.FamilyInet, "t", s, setRuleset(text, false)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		text  string
		ports []byte
		swap  bool
	}{
		{"one key added", "9, 10", []byte{9, 10}, false},
		{"one key deleted", "9", []byte{9}, false},
		{"two keys added", "9, 10, 11", []byte{9, 10, 11}, true},
		{"one added, one deleted", "9, 10, 12", []byte{9, 10, 12}, true},
		{"flushed", "", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := innerMapID(t, st, slotName)
			update(tc.text, tc.ports...)
			now := innerMapID(t, st, slotName)
			if got := mapID(t, st, slotName); got != slotID {
				t.Errorf("slot %d replaced by %d", slotID, got)
			}
			if !tc.swap {
				if now != old {
					t.Errorf("element map %d replaced by %d for a one-key change", old, now)
				}
				return
			}
			if now == old {
				t.Fatalf("element map %d kept for a change of several keys", old)
			}
			// The kernel frees an inner map after an RCU grace period.
			deadline := time.Now().Add(2 * time.Second)
			for {
				m, err := ebpf.NewMapFromID(old)
				if errors.Is(err, os.ErrNotExist) {
					break
				}
				if err == nil {
					m.Close()
				}
				if time.Now().After(deadline) {
					t.Fatalf("old element map %d still exists (%v)", old, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	if first == innerMapID(t, st, slotName) {
		t.Error("the element map never changed")
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

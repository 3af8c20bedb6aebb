package loader

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
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

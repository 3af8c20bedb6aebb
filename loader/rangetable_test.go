package loader

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// rangeRuleset is a ruleset with a named set of concatenated ranges (a
// range table) holding the given elements.
func rangeRuleset(elements string) string {
	return fmt.Sprintf(`table inet t {
	set blocked {
		type ipv4_addr . inet_service
		flags interval
		elements = { %s }
	}
	chain c {
		type filter hook input priority 0; policy accept;
		ip daddr . udp dport @blocked drop
	}
}
`, elements)
}

// TestRangeTableUpdateUnderTraffic toggles an element of a range table 200
// times while datagrams flow: the elements that stay in the set drop every
// datagram (port 11's element is moved into the toggled one's slot by the
// first removal), a port never in the set passes every one, the toggled
// element shows both; the programs stay.
func TestRangeTableUpdateUnderTraffic(t *testing.T) {
	tp := newTopo(t)
	ns := netns(t, tp.b)
	st := stateDir(t, ns)
	rc := listen(t, tp.b, 7, 9, 10, 11)
	snd := dial(t, tp.a)
	// Slots in key order: port 9, the toggled port 10, port 11; removing
	// port 10 moves port 11's element into its slot.
	withText := rangeRuleset("198.51.100.1 . 8-9, 198.51.100.1 . 10, 198.51.100.1-198.51.100.2 . 11")
	withoutText := rangeRuleset("198.51.100.1 . 8-9, 198.51.100.1-198.51.100.2 . 11")
	res := translate(t, ns, withText, nil)
	if err := Apply(ns, st, res, Options{}); err != nil {
		t.Fatal(err)
	}
	with := res.Ruleset.Tables[0].Sets[0]
	if n := len(with.Elements); n != 3 || with.Elements[1].Low[5] != 10 {
		t.Fatalf("the toggled element is not in the middle slot: %d elements", n)
	}
	without := translate(t, ns, withoutText, nil).Ruleset.Tables[0].Sets[0]
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
	const updates = 200
	for i := 0; i < updates; i++ {
		s, text := without, withoutText
		if i%2 == 1 {
			s, text = with, withText
		}
		unlock, err := st.Lock()
		if err == nil {
			err = UpdateSet(st, ir.FamilyInet, "t", s, text)
			unlock()
		}
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
	t.Logf("%d updates; sent %v, received %v", updates, sent, got)
	if sent[7] < updates {
		t.Errorf("only %d datagrams to port 7 were sent during the updates", sent[7])
	}
	for _, port := range []int{9, 11} {
		if got[port] != 0 {
			t.Errorf("%d datagrams to port %d (in the set throughout) got through", got[port], port)
		}
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

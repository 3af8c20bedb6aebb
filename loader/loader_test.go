package loader

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// attachCase is one attach kind: where the ruleset is loaded and with
// which chain header.
type attachCase struct {
	name   string
	where  func(*topo) *netnstest.NS
	family string
	header string // base chain header, without policy
	typ    *codegen.ProgramType
	kind   string
}

func ptr[T any](v T) *T { return &v }

var attachCases = []attachCase{
	{"xdp", func(tp *topo) *netnstest.NS { return tp.b }, "netdev", `type filter hook ingress device "b0" priority 0;`, ptr(codegen.XDP), KindXDP},
	{"tcx ingress", func(tp *topo) *netnstest.NS { return tp.b }, "netdev", `type filter hook ingress device "b0" priority 0;`, ptr(codegen.TC), KindTCXIngress},
	{"tcx egress", func(tp *topo) *netnstest.NS { return tp.a }, "netdev", `type filter hook egress device "a0" priority 0;`, nil, KindTCXEgress},
	{"netfilter prerouting", func(tp *topo) *netnstest.NS { return tp.b }, "ip", `type filter hook prerouting priority 0;`, nil, KindNetfilter},
	{"netfilter input", func(tp *topo) *netnstest.NS { return tp.b }, "ip", `type filter hook input priority 0;`, nil, KindNetfilter},
	{"netfilter forward", func(tp *topo) *netnstest.NS { return tp.r }, "ip", `type filter hook forward priority 0;`, nil, KindNetfilter},
	{"netfilter output", func(tp *topo) *netnstest.NS { return tp.a }, "ip", `type filter hook output priority 0;`, nil, KindNetfilter},
	{"netfilter postrouting", func(tp *topo) *netnstest.NS { return tp.a }, "ip", `type filter hook postrouting priority 0;`, nil, KindNetfilter},
	{"netfilter inet input", func(tp *topo) *netnstest.NS { return tp.b }, "inet", `type filter hook input priority 0;`, nil, KindNetfilter},
}

// ruleset drops UDP to the ports in drop and counts UDP to 7 (accepted).
func (c attachCase) ruleset(drop ...int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s t {\n\tchain c {\n\t\t%s policy accept;\n", c.family, c.header)
	for _, p := range drop {
		fmt.Fprintf(&b, "\t\tip daddr %s udp dport %d counter drop\n", addrB, p)
	}
	fmt.Fprintf(&b, "\t\tip daddr %s udp dport 7 counter accept\n\t}\n}\n", addrB)
	return b.String()
}

// counterOf returns the packet count of the rule whose text contains
// substr.
func counterOf(t *testing.T, st *state.Dir, substr string) uint64 {
	t.Helper()
	snap, err := Load(st)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range snap.Manifest.Rules {
		if strings.Contains(r.Text, substr) {
			if len(snap.Counters[i]) != 1 {
				t.Fatalf("rule %q has %d counters", r.Text, len(snap.Counters[i]))
			}
			return snap.Counters[i][0].Packets
		}
	}
	t.Fatalf("no rule %q in %+v", substr, snap.Manifest.Rules)
	return 0
}

// TestAttachKinds applies a ruleset at every attach kind, sends real
// traffic through the namespaces and checks what arrives and the counters;
// then flushes and checks everything passes and nothing is left.
func TestAttachKinds(t *testing.T) {
	for _, c := range attachCases {
		t.Run(c.name, func(t *testing.T) {
			tp := newTopo(t)
			ns := netns(t, c.where(tp))
			st := stateDir(t, ns)
			rc := listen(t, tp.b, 7, 9)
			snd := dial(t, tp.a)

			res := translate(t, ns, c.ruleset(9), c.typ)
			if err := Apply(ns, st, res, Options{}); err != nil {
				t.Fatal(err)
			}
			snap, err := Load(st)
			if err != nil {
				t.Fatal(err)
			}
			if len(snap.Manifest.Points) == 0 || snap.Manifest.Points[0].Kind != c.kind || snap.Interrupted {
				t.Fatalf("points %+v (interrupted %v), want kind %s", snap.Manifest.Points, snap.Interrupted, c.kind)
			}
			const n = 25
			snd.send(7, n)
			snd.send(9, n)
			got := rc.settleFor(map[int]int{7: n})
			if got[7] != n || got[9] != 0 {
				t.Errorf("received %d on port 7 and %d on port 9, want %d and 0", got[7], got[9], n)
			}
			if c7, c9 := counterOf(t, st, "dport 7"), counterOf(t, st, "dport 9"); c7 != n || c9 != n {
				t.Errorf("counters: port 7 %d, port 9 %d; want %d each", c7, c9, n)
			}

			if err := Flush(st); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Entries(); err == nil {
				t.Error("state directory still exists after Flush")
			}
			rc.reset()
			snd.send(9, n)
			if got := rc.settleFor(map[int]int{9: n}); got[9] != n {
				t.Errorf("after Flush: received %d of %d on port 9", got[9], n)
			}
		})
	}
}

// TestReloadUnderTraffic swaps the ruleset 100 times between two versions
// while a stream of datagrams flows. Both versions drop port 9 and accept
// port 7 with a counter; they differ in whether 10 or 11 is dropped. No
// datagram to 9 may arrive, every datagram to 7 must, and the counters of
// the rules both versions share must have counted every datagram sent —
// which they can only if every packet ran one of the two programs and the
// counters survived every reload.
func TestReloadUnderTraffic(t *testing.T) {
	for _, c := range []attachCase{attachCases[0], attachCases[1], attachCases[4]} {
		t.Run(c.name, func(t *testing.T) {
			tp := newTopo(t)
			ns := netns(t, c.where(tp))
			st := stateDir(t, ns)
			rc := listen(t, tp.b, 7, 9, 10, 11)
			snd := dial(t, tp.a)
			v1 := translate(t, ns, c.ruleset(9, 10), c.typ)
			v2 := translate(t, ns, c.ruleset(9, 11), c.typ)
			if err := Apply(ns, st, v1, Options{}); err != nil {
				t.Fatal(err)
			}

			stop := make(chan struct{})
			sentc := make(chan map[int]int)
			go func() {
				sent := map[int]int{}
				to := &unix.SockaddrInet4{Port: 0, Addr: [4]byte{198, 51, 100, 1}}
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
			const swaps = 100
			var total, worst time.Duration
			for i := 0; i < swaps; i++ {
				res := v2
				if i%2 == 1 {
					res = v1
				}
				start := time.Now()
				if err := Apply(ns, st, res, Options{}); err != nil {
					close(stop)
					<-sentc
					t.Fatalf("swap %d: %v", i, err)
				}
				d := time.Since(start)
				total += d
				worst = max(worst, d)
			}
			time.Sleep(50 * time.Millisecond)
			close(stop)
			sent := <-sentc
			got := rc.settleFor(map[int]int{7: sent[7]})
			t.Logf("%d swaps: mean Apply %v, worst %v; sent %v, received %v", swaps, total/swaps, worst, sent, got)
			if sent[7] < 2*swaps {
				t.Errorf("only %d datagrams to port 7 were sent during the swaps", sent[7])
			}
			if got[9] != 0 {
				t.Errorf("%d datagrams to port 9 (dropped by both versions) got through", got[9])
			}
			if got[7] != sent[7] {
				t.Errorf("received %d of %d datagrams to port 7 (accepted by both versions)", got[7], sent[7])
			}
			if c7, c9 := counterOf(t, st, "dport 7"), counterOf(t, st, "dport 9"); c7 != uint64(sent[7]) || c9 != uint64(sent[9]) {
				t.Errorf("counters of the shared rules: port 7 %d, port 9 %d; sent %d and %d", c7, c9, sent[7], sent[9])
			}
			if got[10]+got[11] == 0 || got[10] == sent[10] && got[11] == sent[11] {
				t.Errorf("ports 10/11 show no sign of the swaps: received %d/%d of %d/%d", got[10], got[11], sent[10], sent[11])
			}
		})
	}
}

package loader

import (
	"fmt"
	"strings"
	"testing"

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
	{"xdp", func(tp *topo) *netnstest.NS { return tp.b }, "netdev", `type filter hook ingress device "b0" priority 0;`, nil, KindXDP},
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
			got := rc.settle()
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
			if got := rc.settle(); got[9] != n {
				t.Errorf("after Flush: received %d of %d on port 9", got[9], n)
			}
		})
	}
}

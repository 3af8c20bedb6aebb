package loader

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
)

// TestChainOrder: two base chains on one hook, listed against their
// priority order. The lower-priority chain counts and drops port 9, the
// other counts port 9 and accepts: its counter stays zero only if the
// chains run in priority order. XDP, which takes one program per device,
// refuses the pair.
func TestChainOrder(t *testing.T) {
	for _, c := range []struct {
		name, family, hook string
		typ                *codegen.ProgramType
	}{
		{"tcx", "netdev", `ingress device "b0"`, ptr(codegen.TC)},
		{"netfilter", "ip", "input", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp := newTopo(t)
			ns := netns(t, tp.b)
			st := stateDir(t, ns)
			rc := listen(t, tp.b, 9)
			snd := dial(t, tp.a)
			ruleset := fmt.Sprintf(`table %[1]s late {
	chain c { type filter hook %[2]s priority 10; policy accept; udp dport 9 counter accept comment "late"; }
}
table %[1]s early {
	chain c { type filter hook %[2]s priority -10; policy accept; udp dport 9 counter drop comment "early"; }
}
`, c.family, c.hook)
			if err := Apply(ns, st, translate(t, ns, ruleset, c.typ), Options{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { Flush(st) })
			// A reload must keep the order (links updated in place).
			if err := Apply(ns, st, translate(t, ns, ruleset, c.typ), Options{}); err != nil {
				t.Fatal(err)
			}
			snd.send(9, 10)
			if got := rc.settle(); got[9] != 0 {
				t.Errorf("received %d on port 9, want 0", got[9])
			}
			if early, late := counterOf(t, st, `"early"`), counterOf(t, st, `"late"`); early != 10 || late != 0 {
				t.Errorf("counters: early chain %d, late chain %d; want 10 and 0", early, late)
			}
		})
	}
	t.Run("xdp refuses two chains on one device", func(t *testing.T) {
		xdp := codegen.XDP // b0 is a veth: the automatic choice would be tcx
		tp := newTopo(t)
		ns := netns(t, tp.b)
		st := stateDir(t, ns)
		res, err := pipeline.TranslateReader("x.nft", strings.NewReader(`table netdev a {
	chain c { type filter hook ingress device "b0" priority 0; policy accept; }
}
table netdev b {
	chain c { type filter hook ingress device "b0" priority 5; policy accept; }
}
`), pipeline.Options{NetNS: ns, NetdevBackend: &xdp})
		if err != nil {
			t.Fatal(err)
		}
		err = Apply(ns, st, res, Options{})
		if err == nil || !strings.Contains(err.Error(), "one program per device") {
			t.Fatalf("Apply: %v, want a refusal naming XDP's one program per device", err)
		}
		if s, err := Load(st); err != nil || len(s.Manifest.Points) != 0 {
			t.Errorf("something was recorded: %+v, %v", s, err)
		}
	})
}

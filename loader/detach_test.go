package loader

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/internal/bpffstest"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// TestDetachedOnReturn: once Flush, or an Apply that drops a chain, has
// returned, the chain no longer filters — not even the very next packet.
// (Removing a link's last pin only schedules its release; without an
// explicit detach, most of these datagrams were still dropped.)
func TestDetachedOnReturn(t *testing.T) {
	for _, c := range []attachCase{attachCases[0], attachCases[1], attachCases[8]} {
		t.Run(c.name, func(t *testing.T) {
			tp := newTopo(t)
			ns := netns(t, c.where(tp))
			root := filepath.Join(bpffstest.Mount(t), "bpfilter-nft")
			rc := listen(t, tp.b, 9)
			snd := dial(t, tp.a)
			drop9 := translate(t, ns, c.ruleset(9), c.typ)
			empty := translate(t, ns, fmt.Sprintf("table %s t {\n}\n", c.family), c.typ)
			const rounds = 50
			for _, step := range []struct {
				name string
				undo func(*state.Dir) error
			}{
				{"Flush", Flush},
				{"Apply without the chain", func(st *state.Dir) error { return Apply(ns, st, empty, Options{}) }},
			} {
				// Each datagram must have arrived before the next round
				// attaches the dropping chain again: sent right after
				// undo returned, it may still be on its way through A
				// and R (softirqs run late under load), and the next
				// Apply would drop it at B.
				for i := 0; i < rounds; i++ {
					st, err := state.Open(ns, state.Options{Root: root})
					if err != nil {
						t.Fatal(err)
					}
					if err := Apply(ns, st, drop9, Options{}); err != nil {
						t.Fatal(err)
					}
					if err := step.undo(st); err != nil {
						t.Fatalf("%s: %v", step.name, err)
					}
					snd.send(9, 1)
					if got := rc.await(9, i+1, 5*time.Second); got != i+1 {
						t.Fatalf("%s: round %d: %d of %d datagrams sent right after it returned arrived", step.name, i, got, i+1)
					}
				}
				if got := rc.settle(); got[9] != rounds {
					t.Errorf("%s: %d datagrams arrived, %d were sent", step.name, got[9], rounds)
				}
				rc.reset()
			}
		})
	}
}

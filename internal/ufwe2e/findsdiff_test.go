package ufwe2e

import (
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// TestUFWFindsDifferences: with ufw's "-m rt --rt-type 0 -j DROP" rules
// left out on the BPF side only, the probes behind a type 0 routing header
// come out differently, and only those.
func TestUFWFindsDifferences(t *testing.T) {
	privtest.Require(t)
	needUFW(t)
	_, v6 := assemble(t)
	var kept []string
	for _, l := range strings.Split(v6, "\n") {
		if !strings.Contains(l, "-m rt --rt-type 0") {
			kept = append(kept, l)
		}
	}
	kernel := newTwin(t, "kernel")
	kernel.loadKernel(t, "ip6tables-restore", v6)
	bpf := newTwin(t, "bpf")
	bpf.loadBPF(t, nlmsg.FamilyIPv6, strings.Join(kept, "\n"))
	var differ []string
	for _, p := range probes6() {
		k, b, err := p.outcomes(kernel, bpf)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		if k != b {
			differ = append(differ, p.name)
		}
	}
	if len(differ) != 2 {
		t.Fatalf("probes with different outcomes: %q, want the two behind a type 0 routing header", differ)
	}
	for _, d := range differ {
		if !strings.Contains(d, "type 0 routing header") {
			t.Errorf("probe %q differs", d)
		}
	}
}

package difftest

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pktgen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// TestRangeTableTwin compares the kernel's pipapo set and the BPF range
// table (scanned with bpf_loop) on a named set of 3,000 concatenated
// ranges ip saddr . udp dport, far above the former cap of 512 elements:
// element i holds ports 10i+1 … 10i+5 and the lower half of 198.51.100.0/24
// for even i, the upper half for odd i. Frames probe the first, a middle
// and the last element at both bounds of both fields and one past each.
func TestRangeTableTwin(t *testing.T) {
	privtest.Require(t)
	o, err := oracle.New(oracle.Config{Hook: ir.HookPrerouting})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	const n = 3000
	half := func(i int) (lo, hi byte) {
		if i%2 == 0 {
			return 0, 127
		}
		return 128, 255
	}
	var elems []string
	for i := 0; i < n; i++ {
		lo, hi := half(i)
		elems = append(elems, fmt.Sprintf("198.51.100.%d-198.51.100.%d . %d-%d", lo, hi, 10*i+1, 10*i+5))
	}
	ruleset := fmt.Sprintf(`table ip rtab {
	set big {
		type ipv4_addr . inet_service
		flags interval
		elements = { %s }
	}
	chain c {
		type filter hook prerouting priority 0; policy accept;
		ip saddr . udp dport @big drop
	}
}
`, strings.Join(elems, ",\n\t\t\t"))
	var frames []pktgen.Case
	probe := func(src string, port int) {
		frames = append(frames, pktgen.Case{Name: fmt.Sprintf("%s . %d", src, port), Frame: packet.MustBuild(
			&packet.Ethernet{Dst: o.ReceiverMAC(), Src: o.SenderMAC()},
			&packet.IPv4{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("203.0.113.1")},
			&packet.UDP{SrcPort: 1000, DstPort: uint16(port)}, packet.Payload("x"))})
	}
	for _, i := range []int{0, 1, 1234, 1777, n - 2, n - 1} {
		lo, hi := half(i)
		for _, port := range []int{10*i + 0, 10*i + 1, 10*i + 3, 10*i + 5, 10*i + 6} {
			for _, a := range []int{int(lo) - 1, int(lo), int(hi), int(hi) + 1} {
				if a < 0 || a > 255 {
					continue
				}
				probe(fmt.Sprintf("198.51.100.%d", a), port)
			}
		}
	}
	probe("192.0.2.1", 3)
	probe("198.51.100.5", 65535)
	rep, err := Check(o, ir.HookPrerouting, ruleset, Options{Seed: 3, Count: 20, Frames: frames})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range rep.Mismatches {
		if i == 20 {
			t.Errorf("… %d mismatches in all", len(rep.Mismatches))
			break
		}
		t.Errorf("mismatch: %s", m)
	}
	if rep.Kernel[oracle.Dropped] < 30 || rep.Kernel[oracle.Accepted] < 30 {
		t.Errorf("the frames do not exercise both verdicts: kernel %v", rep.Kernel)
	}
	t.Logf("%d frames, %d verdicts compared, kernel %v, %d mismatches", rep.Frames, rep.Compared, rep.Kernel, len(rep.Mismatches))
}

package difftest

import (
	"net/netip"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pktgen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// exthdrRulesets use nft's IPv6 extension header expressions (nft_exthdr);
// each rule's outcome shows in the verdict.
var exthdrRulesets = []struct{ name, text string }{
	{"rt-type", `table ip6 t { chain c { type filter hook input priority 0; policy accept;
		rt type 0 drop
	}
}`},
	{"rt-fields", `table ip6 t { chain c { type filter hook input priority 0; policy accept;
		rt seg-left 2-5 drop
		rt hdrlength 4 drop
		rt type != 2 rt seg-left 1 accept
		rt nexthdr udp rt type 2 drop
	}
}`},
	{"rt-exists", `table ip6 t { chain c { type filter hook input priority 0; policy drop;
		exthdr rt exists accept
	}
}`},
	{"rt-missing", `table ip6 t { chain c { type filter hook input priority 0; policy accept;
		exthdr rt missing meta l4proto udp drop
	}
}`},
	{"hbh-dst-frag", `table ip6 t { chain c { type filter hook input priority 0; policy accept;
		hbh nexthdr 43 drop
		dst hdrlength 0 rt type 0 drop
		exthdr frag exists rt type 0 drop
		frag id 7 accept
	}
}`},
	{"frag", `table ip6 t { chain c { type filter hook input priority 0; policy accept;
		frag id 7 meta l4proto udp drop
		exthdr frag exists rt seg-left 1 drop
	}
}`},
	{"l4proto", `table ip6 t { chain c { type filter hook input priority 0; policy accept;
		meta l4proto esp drop
		meta l4proto udp accept
		meta l4proto ipv6-nonxt drop
	}
}`},
	{"inet", `table inet t { chain c { type filter hook input priority 0; policy accept;
		rt type 2 drop
		exthdr dst exists drop
	}
}`},
}

// TestExthdrRulesets compares the kernel's nft_exthdr with the BPF
// programs on crafted frames with IPv6 extension header chains (and the
// generated frames, IPv4 among them for the inet table).
func TestExthdrRulesets(t *testing.T) {
	privtest.Require(t)
	o, err := oracle.New(oracle.Config{Hook: ir.HookInput})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	frames := pktgen.IPv6ExtHdrCases(o.SenderMAC(), o.ReceiverMAC(),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"))
	for _, rs := range exthdrRulesets {
		t.Run(rs.name, func(t *testing.T) {
			rep, err := Check(o, ir.HookInput, rs.text, Options{Count: 30, Seed: 1, Frames: frames})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range rep.Mismatches {
				t.Errorf("mismatch: %s", m)
			}
			if rep.Kernel[oracle.Accepted] == 0 || rep.Kernel[oracle.Dropped] == 0 {
				t.Errorf("kernel verdicts %v: want both accepted and dropped frames", rep.Kernel)
			}
			t.Logf("%d frames, %d comparisons, kernel %v", rep.Frames, rep.Compared, rep.Kernel)
		})
	}
}

package bench

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// matches evaluates r on a parsed frame the way its nft rule does.
func matches(r Rule, in *packet.Info) bool {
	if in.NetworkOffset < 0 {
		return false
	}
	if r.SrcBits != 0 {
		if !in.Src.Is4() || !netip.PrefixFrom(r.Src, r.SrcBits).Masked().Contains(in.Src) {
			return false
		}
	} else if r.Src.IsValid() && r.Src != in.Src {
		return false
	}
	if r.Dst.IsValid() && r.Dst != in.Dst {
		return false
	}
	if (r.Src.IsValid() || r.Dst.IsValid()) && r.v6() != in.Src.Is6() {
		return false
	}
	if r.Sport == 0 && r.Dport == 0 {
		return true
	}
	return in.Proto == r.Proto && in.TransportOffset >= 0
}

// ports reads the transport ports of a parsed frame.
func ports(frame []byte, in *packet.Info) (uint16, uint16) {
	th := frame[in.TransportOffset:]
	return uint16(th[0])<<8 | uint16(th[1]), uint16(th[2])<<8 | uint16(th[3])
}

// firstMatch returns the index of the first rule that matches frame, or -1.
func firstMatch(t *testing.T, rules []Rule, frame []byte) int {
	in, err := packet.Parse(frame)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rules {
		if !matches(r, in) {
			continue
		}
		if r.Sport != 0 || r.Dport != 0 {
			sp, dp := ports(frame, in)
			hi := r.Dport
			if r.DportHi != 0 {
				hi = r.DportHi
			}
			if r.Sport != 0 && sp != r.Sport || r.Dport != 0 && (dp < r.Dport || dp > hi) {
				continue
			}
		}
		return i
	}
	return -1
}

// TestGenerate checks the promises of Generate: every rule's frame is
// matched first by that rule, no rule matches MissFrame, and the kinds
// have the shapes they claim.
func TestGenerate(t *testing.T) {
	tests := []struct {
		kind Kind
		n    int
		v6   bool
		// wantShapes is the number of distinct rule shapes expected.
		wantShapes int
	}{
		{Uniform, 600, true, 1},
		{Mixed, 1100, true, 4},
		{Mixed, 600, false, 4},
		{Heterogeneous, 1300, true, 5},
		{Heterogeneous, 700, false, 5},
		{Ranges, 700, true, 1},
		{Prefixes, 2000, false, 1},
		{Accounting, 600, true, 1},
		{LogDrop, 600, false, 1},
		{Reject, 600, true, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d/v6=%v", tt.kind, tt.n, tt.v6), func(t *testing.T) {
			rules := Generate(tt.kind, tt.n, tt.v6)
			if len(rules) != tt.n {
				t.Fatalf("%d rules, want %d", len(rules), tt.n)
			}
			shapes := map[string]bool{}
			for i, r := range rules {
				if !tt.v6 && r.v6() {
					t.Fatalf("rule %d is IPv6 in an IPv4-only ruleset: %s", i, r.NFT())
				}
				shapes[fmt.Sprint(r.Src.IsValid(), r.Dst.IsValid(), r.v6(), r.Proto, r.Sport != 0, r.Dport != 0, r.DportHi != 0)] = true
			}
			if len(shapes) != tt.wantShapes {
				t.Errorf("%d shapes, want %d", len(shapes), tt.wantShapes)
			}
			if i := firstMatch(t, rules, MissFrame()); i >= 0 {
				t.Errorf("MissFrame matches rule %d (%s)", i, rules[i].NFT())
			}
			// Every rule, sampled: its frame is matched first by it.
			for i := 0; i < len(rules); i += 1 + i/50 {
				if got := firstMatch(t, rules, rules[i].Frame()); got != i {
					t.Fatalf("frame of rule %d (%s) is first matched by rule %d", i, rules[i].NFT(), got)
				}
			}
			if i := len(rules) - 1; firstMatch(t, rules, rules[i].Frame()) != i {
				t.Errorf("frame of the last rule is matched first by another rule")
			}
		})
	}
}

// TestIRMatchesNft compiles the generated rules' nft text with the real
// nft and the translator and requires the IR that Rule.IR builds, so that
// benchmarks measure what a user's ruleset would compile to.
func TestIRMatchesNft(t *testing.T) {
	privtest.Require(t)
	for _, fam := range []ir.Family{ir.FamilyNetdev, ir.FamilyIPv4, ir.FamilyInet} {
		t.Run(fam.String(), func(t *testing.T) {
			hook := ir.HookInput
			if fam == ir.FamilyNetdev {
				hook = ir.HookIngress
			}
			rules := append(Generate(Heterogeneous, 10, fam != ir.FamilyIPv4), Generate(Ranges, 2, false)...)
			rules = append(rules, Generate(Prefixes, 10, false)...)
			for i := range rules {
				rules[i].Counter = i%3 == 0
				rules[i].Accept = i%2 == 0
			}
			for _, k := range []Kind{Accounting, LogDrop, Reject} {
				rules = append(rules, Generate(k, 3, false)...)
			}
			q := Generate(Uniform, 2, false)
			q[0].QuotaOver, q[1].QuotaOver, q[1].Counter = 100, 1<<20, true
			rules = append(rules, q...)
			res, err := pipeline.TranslateReader("bench", strings.NewReader(Ruleset(fam, hook, "lo", rules)), pipeline.Options{})
			if err != nil {
				t.Fatal(err)
			}
			// Rejects translate, but no program of these tables can
			// send the reply (netfilter; lo is no Ethernet device).
			for _, rr := range res.Rules {
				if rr.Status == pipeline.StatusUnsupported && !strings.Contains(rr.Reason, "reject with tcp reset") {
					t.Errorf("rule %d: %s", rr.Handle, rr.Reason)
				}
			}
			var got []*ir.Rule
			for _, tab := range res.Ruleset.Tables {
				for _, c := range tab.Chains {
					got = append(got, c.Rules...)
				}
			}
			if len(got) != len(rules) {
				t.Fatalf("nft gave %d rules, want %d", len(got), len(rules))
			}
			for i, r := range rules {
				want := r.IR(fam)
				if !reflect.DeepEqual(got[i].Stmts, want.Stmts) {
					t.Errorf("rule %d %q:\n nft  %s\n ours %s", i, r.NFT(), ir.FormatRule(fam, got[i]), ir.FormatRule(fam, want))
					for j := range got[i].Stmts {
						t.Logf("  nft stmt %d: %#v", j, got[i].Stmts[j])
					}
				}
			}
		})
	}
}

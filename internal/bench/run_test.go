package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
)

// TestRun runs a small bench: every combination gives a result with the
// verdicts checked inside Run, the floor, program sizes and verifier
// counts; rejects are refused with the reason except on tc.
func TestRun(t *testing.T) {
	privtest.Require(t)
	cfg := Config{
		Types: DefaultTypes,
		Kinds: Kinds,
		Modes: Modes,
		Sizes: []int{0, 20},
		Time:  time.Millisecond,
	}
	res, err := Run(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(cfg.Types) * len(cfg.Kinds) * len(cfg.Modes) * len(cfg.Sizes); len(res) != want {
		t.Fatalf("%d results, want %d", len(res), want)
	}
	refused := 0
	for _, r := range res {
		name := fmt.Sprintf("%s/%s/%s/%d", r.Type, r.Kind, r.Mode, r.Rules)
		wantRefused := r.Kind == Reject && r.Type != codegen.TC && r.Rules > 0
		if wantRefused != (r.Refused != "") || wantRefused && !strings.Contains(r.Refused, "reject") {
			t.Errorf("%s: refused: %q", name, r.Refused)
		}
		if r.Refused != "" {
			refused++
			continue
		}
		if r.Empty <= 0 || r.Miss <= 0 || r.Verified == 0 || r.Insns == 0 {
			t.Errorf("%s: empty %v miss %v verified %d insns %d", name, r.Empty, r.Miss, r.Verified, r.Insns)
		}
		if r.Rules > 0 && (r.First <= 0 || r.Last <= 0) {
			t.Errorf("%s: first %v last %v", name, r.First, r.Last)
		}
		wantGroups := r.Mode == Grouped && r.Rules > 0
		if (r.Groups > 0) != wantGroups {
			t.Errorf("%s: %d rule groups", name, r.Groups)
		}
	}
	var b strings.Builder
	if err := WriteTable(&b, res); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(b.String(), "\n"); lines != len(res)+1+refused { // a footnote per refusal
		t.Errorf("table has %d lines, want %d:\n%s", lines, len(res)+1+refused, b.String())
	}
	t.Logf("\n%s", b.String())
}

// TestRunRefusesTooLong: 100,000 rules of straight-line code exceed the
// instruction limit and are reported as refused, with the reason.
func TestRunRefusesTooLong(t *testing.T) {
	privtest.Require(t)
	res, err := Run(Config{Types: []codegen.ProgramType{codegen.XDP}, Kinds: []Kind{Ranges}, Modes: []Mode{Linear}, Sizes: []int{100000}, Time: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || !strings.Contains(res[0].Refused, "instructions") {
		t.Fatalf("results %+v, want one refused for its length", res)
	}
	t.Logf("refused: %s", res[0].Refused)
}

// BenchmarkRulesets measures the cost per packet that no rule matches for
// each program type, ruleset kind and mode at 10 to 10,000 rules, and its
// ratio to an empty program of the same type (x-empty). `bpfilter-nft
// bench` prints the full table.
func BenchmarkRulesets(b *testing.B) {
	privtest.Require(b)
	for _, typ := range DefaultTypes {
		tgt, err := target(typ)
		if err != nil {
			b.Fatal(err)
		}
		empty, err := emptyCost(tgt, 10*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		for _, kind := range Kinds {
			for _, mode := range Modes {
				for _, n := range []int{10, 1000, 10000} {
					b.Run(fmt.Sprintf("%s/%s/%s/rules=%d", typ, kind, mode, n), func(b *testing.B) {
						var sum time.Duration
						for i := 0; i < b.N; i++ {
							r, err := measure(tgt, kind, mode, n, 5*time.Millisecond)
							if err != nil {
								b.Fatal(err)
							}
							if r.Refused != "" {
								b.Skipf("refused: %s", r.Refused)
							}
							sum += r.Miss
						}
						b.ReportMetric(float64(sum.Nanoseconds())/float64(b.N), "ns/packet")
						b.ReportMetric(float64(sum)/float64(b.N)/float64(empty), "x-empty")
					})
				}
			}
		}
	}
}

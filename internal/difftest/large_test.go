package difftest

import (
	"fmt"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/bench"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// TestLargeRulesets compares the kernel and the BPF programs on generated
// rulesets of 1,000 rules: uniform, mixed and heterogeneous ones, whose
// rules become rule groups (map lookups per rule shape), and one of port
// ranges and one of nested source prefixes, which become masked rule groups
// (ranges as prefixes, prefixes of every length); and 10,000 port ranges as
// straight-line code, split into tail-called programs. Every frame pktgen
// derives from the rules, plus
// frames matching sampled rules, must get the kernel's verdict.
func TestLargeRulesets(t *testing.T) {
	privtest.Require(t)
	o, err := oracle.New(oracle.Config{Hook: ir.HookIngress})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	tests := []struct {
		kind       bench.Kind
		n          int
		wantGroups bool
		stride     int
	}{
		{bench.Uniform, 1000, true, 1},
		{bench.Mixed, 1000, true, 1},
		{bench.Heterogeneous, 1000, true, 1},
		{bench.Ranges, 1000, true, 1},
		{bench.Prefixes, 1000, true, 1},
		// Straight-line code (Options.Linear) of about 170,000
		// instructions (field cache, out-of-line rule bodies), split
		// into tail-called programs; one in 37 of
		// its 114,000 frames (from rules all along the chain), on XDP
		// only (tc runs the same rules), keeps the test near a minute.
		{bench.Ranges, 10000, false, 37},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s-%d", tt.kind, tt.n), func(t *testing.T) {
			rules := bench.Generate(tt.kind, tt.n, true)
			for i := range rules {
				rules[i].Accept = i%3 == 1
				rules[i].Counter = i%2 == 0
			}
			var types []codegen.ProgramType
			if tt.stride > 1 {
				types = []codegen.ProgramType{codegen.XDP}
			}
			text := bench.Ruleset(ir.FamilyNetdev, ir.HookIngress, o.ReceiverIfname(), rules)
			rep, err := Check(o, ir.HookIngress, text, Options{Seed: 7, Count: 50, Stride: tt.stride, Linear: !tt.wantGroups, Types: types})
			if err != nil {
				t.Fatal(err)
			}
			groups, parts := 0, 0
			for _, p := range rep.Result.Programs {
				groups += len(p.Program.Groups)
				parts = max(parts, p.Program.Parts())
			}
			if tt.n >= 10000 && parts < 2 {
				t.Errorf("compiled into %d parts, want a chain split into tail-called programs", parts)
			}
			if (groups > 0) != tt.wantGroups {
				t.Errorf("%d rule groups compiled, want groups: %v", groups, tt.wantGroups)
			}
			if rep.Kernel[oracle.Dropped] == 0 || rep.Kernel[oracle.Accepted] == 0 {
				t.Errorf("the frames do not exercise both verdicts: kernel %v", rep.Kernel)
			}
			for i, m := range rep.Mismatches {
				if i == 20 {
					t.Errorf("… %d mismatches in all", len(rep.Mismatches))
					break
				}
				t.Errorf("mismatch: %s", m)
			}
			t.Logf("%d frames, %d verdicts compared, %d groups, %d parts, kernel %v, %d mismatches", rep.Frames, rep.Compared, groups, parts, rep.Kernel, len(rep.Mismatches))
		})
	}
}

package difftest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// hookOf finds the hook of the rulesets's base chain from its text.
func hookOf(t *testing.T, text string) ir.Hook {
	for _, h := range []ir.Hook{ir.HookIngress, ir.HookPrerouting, ir.HookInput} {
		if strings.Contains(text, "hook "+h.String()+" ") {
			return h
		}
	}
	t.Fatalf("no ingress, prerouting or input base chain in ruleset")
	return 0
}

// TestRulesets runs every testdata/diff ruleset through the kernel and the
// BPF programs and requires identical verdicts on every generated frame.
func TestRulesets(t *testing.T) {
	privtest.Require(t)
	files, err := filepath.Glob("../../testdata/diff/*.nft")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rulesets in testdata/diff: %v", err)
	}
	oracles := map[ir.Hook]*oracle.Oracle{}
	t.Cleanup(func() {
		for _, o := range oracles {
			o.Close()
		}
	})
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			hook := hookOf(t, string(b))
			o := oracles[hook]
			if o == nil {
				if o, err = oracle.New(oracle.Config{Hook: hook}); err != nil {
					t.Fatal(err)
				}
				oracles[hook] = o
			}
			text := strings.ReplaceAll(string(b), "{{dev}}", o.ReceiverIfname())
			opts := Options{Seed: 1, Count: 200}
			if strings.HasPrefix(filepath.Base(path), "tc-") {
				// Statements only tc programs can run (meta mark set).
				opts.Types = []codegen.ProgramType{codegen.TC}
			}
			rep, err := Check(o, hook, text, opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Compared == 0 || rep.Frames < 50 {
				t.Fatalf("compared only %d verdicts over %d frames", rep.Compared, rep.Frames)
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
			t.Logf("%d frames, %d verdicts compared, kernel %v, %d mismatches", rep.Frames, rep.Compared, rep.Kernel, len(rep.Mismatches))
		})
	}
}

// TestHarnessFindsDifferences gives the BPF side a ruleset that differs from
// the kernel's in one constant: every program type must show mismatches.
func TestHarnessFindsDifferences(t *testing.T) {
	privtest.Require(t)
	tests := []struct {
		hook          ir.Hook
		kernel, other string
	}{
		{ir.HookIngress,
			"table netdev t {\n chain c {\n type filter hook ingress device \"{{dev}}\" priority 0;\n tcp dport 22 drop\n }\n}\n",
			"table netdev t {\n chain c {\n type filter hook ingress device \"{{dev}}\" priority 0;\n tcp dport 23 drop\n }\n}\n"},
		{ir.HookPrerouting,
			"table ip t {\n chain c {\n type filter hook prerouting priority 0;\n ip ttl 64 drop\n }\n}\n",
			"table ip t {\n chain c {\n type filter hook prerouting priority 0;\n ip ttl 65 drop\n }\n}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.hook.String(), func(t *testing.T) {
			o, err := oracle.New(oracle.Config{Hook: tt.hook})
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			sub := func(s string) string { return strings.ReplaceAll(s, "{{dev}}", o.ReceiverIfname()) }
			rep, err := Check(o, tt.hook, sub(tt.kernel), Options{Seed: 1, Count: 20, BPFRuleset: sub(tt.other)})
			if err != nil {
				t.Fatal(err)
			}
			byType := map[string]int{}
			for _, m := range rep.Mismatches {
				byType[m.Type.String()]++
			}
			for _, typ := range DefaultTypes(tt.hook) {
				if byType[typ.String()] == 0 {
					t.Errorf("%s: no mismatch found between different rulesets (%d frames)", typ, rep.Frames)
				}
			}
		})
	}
}

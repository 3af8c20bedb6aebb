package main

import (
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
)

func TestBenchUsage(t *testing.T) {
	tests := []struct {
		args  []string
		errIn string
	}{
		{[]string{"bench", "--kinds", "odd"}, `unknown ruleset kind "odd"`},
		{[]string{"bench", "--modes", "fast"}, `unknown mode "fast"`},
		{[]string{"bench", "--sizes", "10,x"}, `bad size "x"`},
		{[]string{"bench", "--types", "gpu"}, `unknown program type "gpu"`},
	}
	for _, tt := range tests {
		_, errOut, code := runCLI(tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.errIn) {
			t.Errorf("%q: code %d, stderr %q; want 2 and %q", tt.args, code, errOut, tt.errIn)
		}
	}
}

// TestBench runs a small bench and checks the table: a header, a row per
// measurement with ratios, and the scaling summary.
func TestBench(t *testing.T) {
	privtest.Require(t)
	out, errOut, code := runCLI("bench", "--types", "xdp,tc", "--kinds", "uniform", "--sizes", "0,10,10000", "--modes", "grouped", "--time", "1ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1+6+2 {
		t.Fatalf("%d lines, want 9:\n%s", len(lines), out)
	}
	for _, h := range []string{"first ns", "×empty", "miss ns", "load ms", "verified"} {
		if !strings.Contains(lines[0], h) {
			t.Errorf("header %q lacks %q", lines[0], h)
		}
	}
	for _, l := range lines[1:7] {
		if f := strings.Fields(l); len(f) < 10 || f[2] != "grouped" {
			t.Errorf("row %q", l)
		}
	}
	for _, l := range lines[7:] {
		if !strings.Contains(l, "at 10000 rules what it costs at 10") {
			t.Errorf("summary line %q", l)
		}
	}
	t.Logf("\n%s", out)
}

// TestBenchReload runs bench --reload on a small ruleset: a full and a
// one-rule-changed row per case, and the summary figure.
func TestBenchReload(t *testing.T) {
	privtest.Require(t)
	out, errOut, code := runCLI("bench", "--reload", "--reload-rules", "100")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"verify/load ms", "one rule changed", "grouped: one-rule change of 100 rules:", "ungroupable: one-rule change of 100 rules:", "vs full load"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("\n%s", out)
}

package conformance

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/corpus"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

const corpusDir = "../../../shared/corpus/nftables-py"

// TestCorpus runs nftables' own rule tests for the ip, netdev and any
// families: no compiled rule may give a verdict other than the kernel's,
// and the harness must not fail.
func TestCorpus(t *testing.T) {
	privtest.Require(t)
	var files []string
	for _, d := range []string{"ip", "netdev", "any"} {
		m, _ := filepath.Glob(filepath.Join(corpusDir, d, "*.t"))
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Skip("corpus: " + corpusDir + " is not beside the repository")
	}
	r := NewRunner(Options{Diff: true, Count: 20})
	defer r.Close()
	var all []Result
	for _, f := range files {
		res, err := r.RunFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, res...)
	}
	_, total := Summarise(all)
	for _, res := range all {
		if res.Outcome == Mismatched || res.Outcome == Failed {
			t.Errorf("%s:%d [%s %s] %s: %s: %s", res.File, res.Line, res.Family, res.Chain, res.Rule, res.Outcome, res.Reason)
		}
	}
	t.Logf("compiled %d (verdicts checked %d), refused %d, mismatched %d, errors %d, rejected by nft %d",
		total.Compiled, total.Checked, total.Refused, total.Mismatched, total.Failed, total.NftRejected)
	if total.Checked < 500 {
		t.Errorf("only %d rules had their verdicts checked; expected the corpus to give far more", total.Checked)
	}
}

func TestRehook(t *testing.T) {
	tests := []struct {
		def  string
		hook ir.Hook
		want string
	}{
		{"type filter hook input priority 0", ir.HookPrerouting, "type filter hook prerouting priority 0"},
		{"type filter hook ingress device lo priority 0", ir.HookIngress, `type filter hook ingress device "orx" priority 0`},
		{"type filter hook egress device lo priority 0", ir.HookIngress, `type filter hook ingress device "orx" priority 0`},
	}
	for _, tt := range tests {
		if got := rehook(tt.def, tt.hook, "orx"); got != tt.want {
			t.Errorf("rehook(%q) = %q, want %q", tt.def, got, tt.want)
		}
	}
}

func TestBuildRuleset(t *testing.T) {
	c := corpus.Case{
		Rule: "ip saddr @set1 drop",
		Decls: []corpus.Decl{
			{Kind: '!', Name: "set1", Body: "type ipv4_addr flags interval", OK: true},
			{Kind: '?', Name: "set1", Body: "192.0.2.0/24", OK: true},
			{Kind: '?', Name: "set1", Body: "::1", OK: false},
		},
	}
	got := buildRuleset(c, corpus.Table{Family: "ip", Name: "t"}, "input", "type filter hook input priority 0")
	for _, want := range []string{
		"table ip t {\n\tchain input {\n\t\ttype filter hook input priority 0;\n\t}\n}\n",
		"add set ip t set1 { type ipv4_addr; flags interval; }\n",
		"add element ip t set1 { 192.0.2.0/24 }\n",
		"add rule ip t input ip saddr @set1 drop\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "::1") {
		t.Errorf("a failing declaration was included:\n%s", got)
	}
}

package iptconf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
)

// corpusDir is iptables' extension tests, read in place.
var corpusDir = filepath.Join("..", "..", "..", "shared", "corpus", "iptables-ext")

func haveCorpus(t *testing.T) {
	if _, err := os.Stat(corpusDir); err != nil {
		t.Skipf("corpus not available: %v", err)
	}
}

// TestCorpusT: OK lines are translated or refused as unsupported, FAIL
// lines rejected; none the other way round.
func TestCorpusT(t *testing.T) {
	haveCorpus(t)
	res, err := RunT(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Outcome == WronglyFails || r.Outcome == WronglyOK {
			t.Errorf("%s:%d %s: %s %s", r.File, r.Line, r.Rule, r.Outcome, r.Reason)
		}
	}
	sum := Summary(res)
	if sum[Accepted] < 100 || sum[Rejected] == 0 {
		t.Errorf("summary %v: too few lines accepted or rejected", sum)
	}
	t.Logf("%v", sum)
}

// TestCorpusTxlate: every translated .txlate entry equals the expected
// nft rule, textually, once both are lifted, or in the expressions the
// kernel's nftables holds for both; the documented deviations excepted.
func TestCorpusTxlate(t *testing.T) {
	haveCorpus(t)
	privtest.Require(t)
	res, err := RunTxlate(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, r := range res {
		counts[r.Status]++
		if r.Status == "differs" {
			t.Errorf("%s: %s\n  expected %s\n  got      %s\n  %s", r.File, r.Command, r.Expected, r.Got, r.Reason)
			continue
		}
		if r.Status == "deviates" || r.Status == "rejected" {
			// Reported, not failed: most differences are spelling
			// (ip protocol for meta l4proto, match order, cmp
			// pairs for ranges); the verdicts are checked by the
			// differential test.
			t.Logf("%s: %s\n  expected %s\n  got      %s\n  %s", r.File, r.Command, r.Expected, r.Got, r.Reason)
		}
	}
	t.Logf("%v", counts)
	if counts["deviates"] != len(txlateDeviations) {
		t.Errorf("%d deviations, want the %d documented ones", counts["deviates"], len(txlateDeviations))
	}
	if counts["equal"]+counts["same"] < 20 {
		t.Errorf("only %d translations equal to the expected ones", counts["equal"]+counts["same"])
	}
}

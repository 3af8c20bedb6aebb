package ir_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
)

// printThroughNft loads text with nft, lifts the dump and prints it.
func printThroughNft(t *testing.T, name, text string) string {
	t.Helper()
	rs, err := nftfile.Parse(name, strings.NewReader(text), nftfile.Options{})
	if err != nil {
		t.Fatalf("nft refuses the ruleset: %v\n%s", err, text)
	}
	res, err := translate.Lift(rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatalf("ruleset does not lift: %v\n%s", err, text)
	}
	var sb strings.Builder
	if err := res.Ruleset.Print(&sb); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// TestSetRulesetsReload: the printed form of the set, map, verdict map
// and concatenation rulesets of testdata/diff (what bpfilter-nft stores
// as the running ruleset and hands to nft again for element commands)
// loads into nft and prints back identically.
func TestSetRulesetsReload(t *testing.T) {
	privtest.Require(t)
	var files []string
	for _, pat := range []string{"sets-*.nft", "vmaps-*.nft", "concat-*.nft", "tc-datamaps-*.nft"} {
		m, err := filepath.Glob("../testdata/diff/" + pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 3 {
		t.Fatalf("found only %d rulesets", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.ReplaceAll(string(b), "{{dev}}", "lo")
			first := printThroughNft(t, path, text)
			second := printThroughNft(t, path+" (printed)", first)
			if first != second {
				t.Errorf("printed ruleset changes when nft reads it back:\n--- first\n%s\n--- second\n%s", first, second)
			}
		})
	}
}

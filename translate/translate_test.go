package translate_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGolden parses every testdata/*.nft ruleset with the real nft, lifts
// it, and compares the IR printed back in nft syntax, plus the refusals,
// with testdata/*.golden.
func TestGolden(t *testing.T) {
	privtest.Require(t)
	files, err := filepath.Glob("testdata/*.nft")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.nft files: %v", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			rs, err := nftfile.ParseFile(path, nftfile.Options{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := translate.Lift(rs)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := res.Ruleset.Print(&b); err != nil {
				t.Fatal(err)
			}
			for _, f := range res.Failed {
				b.WriteString("# refused: " + f.Error() + "\n")
			}
			golden := strings.TrimSuffix(path, ".nft") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if b.String() != string(want) {
				t.Errorf("output differs from %s (run with -update to accept):\n%s", golden, b.String())
			}
		})
	}
}

// TestPrintedRulesetReloads feeds the printed IR back to nft and checks that
// lifting the result prints the same text again.
func TestPrintedRulesetReloads(t *testing.T) {
	privtest.Require(t)
	rs, err := nftfile.ParseFile("testdata/mixed.nft", nftfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Lift(rs)
	if err != nil {
		t.Fatal(err)
	}
	var first strings.Builder
	res.Ruleset.Print(&first)
	rs2, err := nftfile.Parse("printed", strings.NewReader(first.String()), nftfile.Options{})
	if err != nil {
		t.Fatalf("nft refuses the printed ruleset: %v\n%s", err, first.String())
	}
	res2, err := translate.Lift(rs2)
	if err != nil {
		t.Fatal(err)
	}
	var second strings.Builder
	res2.Ruleset.Print(&second)
	if first.String() != second.String() {
		t.Errorf("printing is not stable across a reload:\nfirst:\n%s\nsecond:\n%s", first.String(), second.String())
	}
}

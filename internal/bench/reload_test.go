package bench

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
)

// TestReload runs the reload measurement on small rulesets: the full load
// loads every program; the one-rule change of the grouped chain, by full
// parse and as a rule edit through the decoded-ruleset cache, loads that
// chain's program again and keeps the ranges chain's, and the table says
// so.
func TestReload(t *testing.T) {
	privtest.Require(t)
	for _, c := range []struct {
		cas          ReloadCase
		n            int
		kept, loaded int
	}{
		{ReloadGrouped, 200, 0, 1},
		{ReloadUngroupable, 200, 1, 1},
	} {
		t.Run(string(c.cas), func(t *testing.T) {
			r, err := Reload(c.cas, c.n)
			if err != nil {
				t.Fatal(err)
			}
			if r.Full.Kept != 0 || r.Full.Loaded != c.kept+c.loaded {
				t.Errorf("full load kept %d, loaded %d programs; want 0 and %d", r.Full.Kept, r.Full.Loaded, c.kept+c.loaded)
			}
			if r.Change.Kept != c.kept || r.Change.Loaded != c.loaded {
				t.Errorf("one-rule change kept %d, loaded %d programs; want %d and %d", r.Change.Kept, r.Change.Loaded, c.kept, c.loaded)
			}
			if r.Edit.Kept != c.kept || r.Edit.Loaded != c.loaded {
				t.Errorf("one-rule edit kept %d, loaded %d programs; want %d and %d", r.Edit.Kept, r.Edit.Loaded, c.kept, c.loaded)
			}
			if r.DaemonEdit.Kept != c.kept || r.DaemonEdit.Loaded != c.loaded {
				t.Errorf("daemon edit kept %d, loaded %d programs; want %d and %d", r.DaemonEdit.Kept, r.DaemonEdit.Loaded, c.kept, c.loaded)
			}
			if r.Edit.Cache <= 0 {
				t.Errorf("edit without the decoded-ruleset cache: %+v", r.Edit)
			}
			for _, p := range []Phases{r.Full, r.Change, r.Edit, r.DaemonEdit} {
				if p.Parse <= 0 || p.Compile <= 0 || p.Total < p.Parse+p.Compile || p.Insns == 0 || p.CPU <= 0 {
					t.Errorf("implausible phases %+v", p)
				}
			}
			var b strings.Builder
			if err := WriteReloadTable(&b, []*ReloadResult{r}); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{
				fmt.Sprintf("%s: one-rule change of %d rules:", c.cas, c.n),
				fmt.Sprintf("%s: replace rule (edit) of %d rules:", c.cas, c.n),
				fmt.Sprintf("%s: replace rule (daemon) of %d rules:", c.cas, c.n),
			} {
				if !strings.Contains(b.String(), want) {
					t.Errorf("table lacks %q:\n%s", want, b.String())
				}
			}
			t.Log("\n" + b.String())
		})
	}
}

// BenchmarkReload measures a one-rule change of a 10,000-rule ruleset
// (each iteration: a full load, then the change), reporting both.
func BenchmarkReload(b *testing.B) {
	privtest.Require(b)
	for _, c := range ReloadCases {
		b.Run(string(c), func(b *testing.B) {
			var full, change float64
			for i := 0; i < b.N; i++ {
				r, err := Reload(c, 10000)
				if err != nil {
					b.Fatal(err)
				}
				full += float64(r.Full.Total) / 1e6
				change += float64(r.Change.Total) / 1e6
			}
			b.ReportMetric(full/float64(b.N), "full-ms")
			b.ReportMetric(change/float64(b.N), "change-ms")
		})
	}
}

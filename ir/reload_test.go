package ir_test

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
)

// The tests in this file hold the printer to the real nft: printed text is
// loaded with nft in a throw-away network namespace, dumped, lifted, and
// compared with what was printed.

// caseText is a table holding the rule case in a chain "c", with the named
// sets it uses and a chain "other" for jumps, as the printer prints it.
func caseText(c *ruleCase) string {
	tbl := &ir.Table{Family: c.fam, Name: "t", Chains: []*ir.Chain{
		{Name: "other"},
		{Name: "c", Rules: []*ir.Rule{c.rule()}},
	}}
	for _, s := range c.stmts {
		if m, ok := s.(*ir.Match); ok && m.Set != nil && !m.Set.Anonymous() {
			tbl.Sets = append(tbl.Sets, m.Set)
		}
	}
	var sb strings.Builder
	tbl.Print(&sb)
	return sb.String()
}

func TestFormatReloads(t *testing.T) {
	privtest.Require(t)
	for i := range ruleCases {
		c := &ruleCases[i]
		if c.reload == noSyntax {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			text := caseText(c)
			rs, err := nftfile.Parse(c.name, strings.NewReader(text), nftfile.Options{})
			if err != nil {
				t.Fatalf("nft refuses the printed rule: %v\n%s", err, text)
			}
			res, err := translate.Lift(rs)
			if err != nil {
				t.Fatal(err)
			}
			if err := res.Err(); err != nil {
				t.Fatalf("reloaded rule does not lift: %v\n%s", err, text)
			}
			chain := res.Ruleset.Tables[0].Chain("c")
			if chain == nil || len(chain.Rules) != 1 {
				t.Fatalf("reloaded table has no chain c with one rule:\n%s", text)
			}
			got := chain.Rules[0]
			switch c.reload {
			case sameIR:
				if d := diffRule(c.rule(), got); d != "" {
					t.Errorf("%s\nreloads as a different rule: %s\nprinted back: %s", c.want, d, ir.FormatRule(c.fam, got))
				}
			case sameText:
				if again := ir.FormatRule(c.fam, got); again != c.want {
					t.Errorf("%s\nreloads as\n%s", c.want, again)
				}
			}
		})
	}
}

// diffRule describes how got differs from want, or returns "".
func diffRule(want, got *ir.Rule) string {
	if want.Comment != got.Comment {
		return fmt.Sprintf("comment %q, want %q", got.Comment, want.Comment)
	}
	if len(want.Stmts) != len(got.Stmts) {
		return fmt.Sprintf("%d statements, want %d", len(got.Stmts), len(want.Stmts))
	}
	for i, w := range want.Stmts {
		g := got.Stmts[i]
		wm, ok := w.(*ir.Match)
		if !ok {
			if !reflect.DeepEqual(w, g) {
				return fmt.Sprintf("statement %d is %#v, want %#v", i+1, g, w)
			}
			continue
		}
		gm, ok := g.(*ir.Match)
		if !ok {
			return fmt.Sprintf("statement %d is %#v, want a match", i+1, g)
		}
		if !reflect.DeepEqual(wm.Field, gm.Field) || wm.Op != gm.Op || !bytes.Equal(wm.Value, gm.Value) || !bytes.Equal(wm.High, gm.High) {
			return fmt.Sprintf("statement %d is %+v, want %+v", i+1, *gm, *wm)
		}
		if d := diffSet(wm.Set, gm.Set); d != "" {
			return fmt.Sprintf("statement %d: %s", i+1, d)
		}
	}
	return ""
}

func diffSet(want, got *ir.Set) string {
	switch {
	case want == nil && got == nil:
		return ""
	case want == nil || got == nil:
		return fmt.Sprintf("set %v, want %v", got, want)
	case want.Anonymous() != got.Anonymous() || (!want.Anonymous() && want.Name != got.Name):
		return fmt.Sprintf("set %q (flags %#x), want %q (flags %#x)", got.Name, got.Flags, want.Name, want.Flags)
	case want.Flags&ir.SetInterval != got.Flags&ir.SetInterval || want.KeyLen != got.KeyLen:
		return fmt.Sprintf("set flags %#x key length %d, want %#x and %d", got.Flags, got.KeyLen, want.Flags, want.KeyLen)
	case !reflect.DeepEqual(want.Elements, got.Elements):
		return fmt.Sprintf("set elements %x, want %x", got.Elements, want.Elements)
	}
	return ""
}

// TestPrintReloads loads testdata/print.golden with nft and checks that
// the lifted ruleset prints as the same text. Its multi-device chain needs
// the devices va0 and va1, made in a scratch namespace.
func TestPrintReloads(t *testing.T) {
	privtest.Require(t)
	golden, err := os.ReadFile(printGolden)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netnstest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	if _, err := ns.Run("", "ip", "link", "add", "va0", "type", "veth", "peer", "name", "va1"); err != nil {
		t.Fatal(err)
	}
	rs, err := nftfile.Parse(printGolden, bytes.NewReader(golden), nftfile.Options{TargetNetNS: ns.File()})
	if err != nil {
		t.Fatalf("nft refuses the printed ruleset: %v", err)
	}
	res, err := translate.Lift(rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if again := printed(t, res.Ruleset); again != string(golden) {
		t.Errorf("%s reloads as\n%s", printGolden, again)
	}
}

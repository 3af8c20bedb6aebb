package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/bpfilter-nft/bpfilter-nft/internal/conformance"
	"github.com/bpfilter-nft/bpfilter-nft/internal/iptconf"
)

func init() {
	register(&command{
		name:    "conformance",
		args:    "[--corpus DIR] [--dirs ip,netdev,any] [--no-diff] [--count N] [-v] [--iptables DIR]",
		summary: "run nftables' own rule tests: compiled / refused / mismatched counts",
		run:     runConformance,
	})
}

const conformanceHelp = `
Runs every accepted rule of nftables' tests/py files (X.t) that sits in a
filter chain of an ip, ip6, inet or netdev table: the real nft parses it, the
pipeline compiles it or refuses it with a reason, and, for compiled rules, the
kernel's nftables and the BPF programs (XDP and tcx for netdev rules at
ingress, netfilter for IP rules at prerouting) get the same generated frames
in scratch namespaces and must give the same verdicts.

Prints the counts per file and in total, then the most common refusal reasons.
Exit status 1 when any verdict differs.`

func runConformance(stdout, stderr io.Writer, args []string) error {
	c := lookup("conformance")
	fs := newFlagSet(c, stderr, conformanceHelp)
	dir := fs.String("corpus", "../shared/corpus/nftables-py", "directory of the nftables tests/py corpus")
	dirs := fs.String("dirs", "ip,netdev,any", "comma-separated subdirectories to run")
	noDiff := fs.Bool("no-diff", false, "only compile; do not compare verdicts with the kernel")
	count := fs.Int("count", 40, "random frames per rule besides the probes")
	verbose := fs.Bool("v", false, "print every rule's outcome")
	iptDir := fs.String("iptables", "", "run iptables' extension tests (.t and .txlate) in `DIR` through the restore front end instead")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *iptDir != "" {
		return runIptablesConformance(stdout, *iptDir, *verbose)
	}
	var files []string
	for _, d := range strings.Split(*dirs, ",") {
		m, err := filepath.Glob(filepath.Join(*dir, d, "*.t"))
		if err != nil {
			return err
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		return fmt.Errorf("no .t files under %s/{%s}", *dir, *dirs)
	}
	r := conformance.NewRunner(conformance.Options{
		Diff: !*noDiff, Count: *count,
		Progress: func(res conformance.Result) {
			if *verbose || res.Outcome == conformance.Mismatched || res.Outcome == conformance.Failed {
				fmt.Fprintf(stdout, "%s:%d [%s %s] %s: %s %s\n", res.File, res.Line, res.Family, res.Chain, res.Rule, res.Outcome, res.Reason)
			}
		},
	})
	defer r.Close()
	var all []conformance.Result
	for _, f := range files {
		res, err := r.RunFile(f)
		if err != nil {
			return err
		}
		all = append(all, res...)
	}
	perFile, total := conformance.Summarise(all)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "file\tcompiled\tverdicts checked\trefused\tmismatched\terrors\tnft-rejected\t")
	for _, s := range append(perFile, total) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", s.File, s.Compiled, s.Checked, s.Refused, s.Mismatched, s.Failed, s.NftRejected)
	}
	tw.Flush()
	if reasons := conformance.TopReasons(all, 15); len(reasons) > 0 {
		fmt.Fprintln(stdout, "\nmost common refusals:")
		for _, r := range reasons {
			fmt.Fprintln(stdout, r)
		}
	}
	if total.Mismatched > 0 || total.Failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d rules got verdicts that differ from the kernel's, %d could not be checked", total.Mismatched, total.Failed)}
	}
	return nil
}

// runIptablesConformance prints the figures of iptables' extension tests
// run through translate/iptables. Exit status 1 when an OK line is rejected
// or a FAIL line accepted.
func runIptablesConformance(stdout io.Writer, dir string, verbose bool) error {
	lines, err := iptconf.RunT(dir)
	if err != nil {
		return err
	}
	bad := 0
	for _, l := range lines {
		wrong := l.Outcome == iptconf.WronglyFails || l.Outcome == iptconf.WronglyOK
		if wrong {
			bad++
		}
		if verbose || wrong {
			fmt.Fprintf(stdout, "%s:%d %s: %s %s\n", l.File, l.Line, l.Rule, l.Outcome, l.Reason)
		}
	}
	sum := iptconf.Summary(lines)
	fmt.Fprintf(stdout, "iptables .t lines of the filter table: %d\n", len(lines))
	for _, o := range []iptconf.Outcome{iptconf.Accepted, iptconf.Unsupported, iptconf.Rejected, iptconf.WronglyFails, iptconf.WronglyOK} {
		fmt.Fprintf(stdout, "  %-15s %d\n", o, sum[o])
	}
	tx, err := iptconf.RunTxlate(dir)
	if err != nil {
		return err
	}
	counts := map[string]int{}
	for _, r := range tx {
		counts[r.Status]++
		if verbose && (r.Status == "differs" || r.Status == "deviates" || r.Status == "rejected" || r.Status == "unloadable") {
			fmt.Fprintf(stdout, "%s: %s\n  expected %s\n  got      %s\n  %s\n", r.File, r.Command, r.Expected, r.Got, r.Reason)
		}
	}
	fmt.Fprintf(stdout, "iptables .txlate entries: %d\n", len(tx))
	for _, st := range []string{"equal", "same", "semantic", "deviates", "differs", "unloadable", "rejected", "unsupported", "skipped"} {
		fmt.Fprintf(stdout, "  %-15s %d\n", st, counts[st])
	}
	if bad > 0 {
		return fmt.Errorf("%d .t lines with the wrong outcome", bad)
	}
	if counts["differs"] > 0 {
		return fmt.Errorf("%d .txlate entries translate differently from the expected rule", counts["differs"])
	}
	return nil
}

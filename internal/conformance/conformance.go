// Package conformance runs nftables' own rule tests (tests/py .t files)
// through bpfilter-nft: every accepted rule in a filter chain of an ip, ip6,
// inet or netdev table must either compile and give the kernel's verdicts
// on generated frames, or be refused with a precise reason.
package conformance

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/internal/corpus"
	"github.com/bpfilter-nft/bpfilter-nft/internal/difftest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Outcome is what happened to one rule in one table and chain.
type Outcome string

// Outcomes.
const (
	// Compiled rules compiled and gave the kernel's verdict on every
	// generated frame (or, for hooks the oracle cannot drive, compiled).
	Compiled Outcome = "compiled"
	// Refused rules were refused with a reason.
	Refused Outcome = "refused"
	// Mismatched rules compiled but a frame got a different verdict.
	Mismatched Outcome = "mismatched"
	// NftRejected rules were refused by the system's nft itself (syntax
	// newer than the installed nft, or a declaration it needs failed).
	NftRejected Outcome = "nft-rejected"
	// Failed rules could not be checked: the harness itself failed.
	Failed Outcome = "error"
)

// Result is one rule's outcome.
type Result struct {
	File    string
	Line    int
	Family  string
	Chain   string
	Rule    string
	Outcome Outcome
	// Reason is the refusal, the nft error or the first mismatch.
	Reason string
	// Checked is true when verdicts were compared with the kernel.
	Checked bool
	Frames  int
}

// Options tune a run.
type Options struct {
	// Diff compares verdicts with the kernel for every compiled rule.
	Diff bool
	// Count is the number of random frames per rule, besides the probes.
	Count int
	// Progress, when set, is called after each rule.
	Progress func(Result)
}

// families the project serves.
var families = map[string]bool{"ip": true, "ip6": true, "inet": true, "netdev": true}

// Runner holds the scratch namespaces a run reuses.
type Runner struct {
	opts    Options
	oracles map[ir.Hook]*oracle.Oracle
}

// NewRunner returns a Runner; Close releases its namespaces.
func NewRunner(opts Options) *Runner {
	return &Runner{opts: opts, oracles: map[ir.Hook]*oracle.Oracle{}}
}

// Close deletes the runner's namespaces.
func (r *Runner) Close() error {
	var errs []error
	for _, o := range r.oracles {
		errs = append(errs, o.Close())
	}
	return errors.Join(errs...)
}

// RunFile runs every accepted, enabled rule of a .t file.
func (r *Runner) RunFile(path string) ([]Result, error) {
	f, err := corpus.ReadNftFile(path)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, c := range f.Cases {
		if !c.OK || c.Disabled {
			continue
		}
		for _, t := range c.Tables {
			if !families[t.Family] {
				continue
			}
			for _, chain := range t.Chains {
				def, ok := f.Chains[chain]
				if !ok || !strings.HasPrefix(def, "type filter ") {
					continue
				}
				res := r.runCase(filepath.Base(filepath.Dir(path))+"/"+filepath.Base(path), c, t, chain, def)
				if r.opts.Progress != nil {
					r.opts.Progress(res)
				}
				out = append(out, res)
			}
		}
	}
	return out, nil
}

func (r *Runner) runCase(file string, c corpus.Case, t corpus.Table, chain, def string) Result {
	res := Result{File: file, Line: c.Line, Family: t.Family, Chain: chain, Rule: c.Rule}
	// The rule's status at its own hook.
	text := buildRuleset(c, t, chain, def)
	pres, err := pipeline.TranslateReader(fmt.Sprintf("%s:%d", file, c.Line), strings.NewReader(text), pipeline.Options{})
	if err != nil {
		res.Outcome, res.Reason = NftRejected, firstLine(err.Error())
		return res
	}
	if err := pres.Err(); err != nil {
		res.Outcome, res.Reason = Refused, reasonOf(pres)
		return res
	}
	res.Outcome = Compiled
	if !r.opts.Diff {
		return res
	}
	// Verdicts, at a hook the oracle can drive: netdev rules at ingress on
	// the oracle's device, IP rules at prerouting.
	hook := ir.HookPrerouting
	if t.Family == "netdev" {
		hook = ir.HookIngress
	}
	o, err := r.oracle(hook)
	if err != nil {
		res.Outcome, res.Reason = Failed, err.Error()
		return res
	}
	diffText := buildRuleset(c, t, chain, rehook(def, hook, o.ReceiverIfname()))
	rep, err := difftest.Check(o, hook, diffText, difftest.Options{Seed: uint64(c.Line), Count: r.opts.Count})
	var ue *difftest.UnsupportedError
	switch {
	case errors.As(err, &ue):
		// Exact at its own hook, but not at the one the oracle drives
		// (e.g. oif at prerouting): the compile status stands.
		res.Reason = "verdicts not compared: " + firstLine(ue.Error())
		return res
	case err != nil:
		res.Outcome, res.Reason = Failed, firstLine(err.Error())
		return res
	}
	res.Checked, res.Frames = true, rep.Frames
	if len(rep.Mismatches) > 0 {
		res.Outcome = Mismatched
		res.Reason = fmt.Sprintf("%d of %d verdicts differ; first: %s", len(rep.Mismatches), rep.Compared, rep.Mismatches[0])
	}
	return res
}

func (r *Runner) oracle(hook ir.Hook) (*oracle.Oracle, error) {
	if o := r.oracles[hook]; o != nil {
		return o, nil
	}
	o, err := oracle.New(oracle.Config{Hook: hook})
	if err != nil {
		return nil, err
	}
	r.oracles[hook] = o
	return o, nil
}

// buildRuleset writes the nft -f input for one case: the table, the chain,
// the set declarations in effect, and the rule.
func buildRuleset(c corpus.Case, t corpus.Table, chain, def string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n\tchain %s {\n\t\t%s;\n\t}\n}\n", t.Family, t.Name, chain, def)
	for _, d := range c.Decls {
		if !d.OK {
			continue
		}
		switch d.Kind {
		case '!':
			typ, flags, _ := strings.Cut(d.Body, " flags ")
			body := typ + ";"
			if flags != "" {
				body += " flags " + flags + ";"
			}
			kind := "set"
			if strings.Contains(typ, " : ") {
				kind = "map"
			}
			fmt.Fprintf(&b, "add %s %s %s %s { %s }\n", kind, t.Family, t.Name, d.Name, body)
		case '?':
			fmt.Fprintf(&b, "add element %s %s %s { %s }\n", t.Family, t.Name, d.Name, d.Body)
		case '%':
			kind, args, _ := strings.Cut(strings.TrimPrefix(d.Body, "type "), " ")
			switch kind {
			case "counter":
				fmt.Fprintf(&b, "add counter %s %s %s\n", t.Family, t.Name, d.Name)
			case "quota", "limit":
				fmt.Fprintf(&b, "add %s %s %s %s { %s }\n", kind, t.Family, t.Name, d.Name, args)
			}
		}
	}
	fmt.Fprintf(&b, "add rule %s %s %s %s\n", t.Family, t.Name, chain, c.Rule)
	return b.String()
}

// rehook moves a chain definition to hook (and to device dev for netdev).
func rehook(def string, hook ir.Hook, dev string) string {
	words := strings.Fields(def)
	for i := 0; i+1 < len(words); i++ {
		switch words[i] {
		case "hook":
			words[i+1] = hook.String()
		case "device":
			words[i+1] = `"` + dev + `"`
		}
	}
	return strings.Join(words, " ")
}

func reasonOf(res *pipeline.Result) string {
	for _, rr := range res.Rules {
		if rr.Status == pipeline.StatusUnsupported {
			return rr.Reason
		}
	}
	return "unsupported"
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Summary counts outcomes per file.
type Summary struct {
	File                                               string
	Compiled, Refused, Mismatched, NftRejected, Failed int
	Checked                                            int
}

// Summarise counts results per file, files in name order, plus a total.
func Summarise(results []Result) (files []Summary, total Summary) {
	byFile := map[string]*Summary{}
	total.File = "total"
	for _, r := range results {
		s := byFile[r.File]
		if s == nil {
			s = &Summary{File: r.File}
			byFile[r.File] = s
		}
		for _, x := range []*Summary{s, &total} {
			switch r.Outcome {
			case Compiled:
				x.Compiled++
			case Refused:
				x.Refused++
			case Mismatched:
				x.Mismatched++
			case NftRejected:
				x.NftRejected++
			case Failed:
				x.Failed++
			}
			if r.Checked {
				x.Checked++
			}
		}
	}
	for _, s := range byFile {
		files = append(files, *s)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].File < files[j].File })
	return files, total
}

// TopReasons returns the most frequent refusal reasons, with counts.
func TopReasons(results []Result, n int) []string {
	counts := map[string]int{}
	for _, r := range results {
		if r.Outcome == Refused {
			counts[generalise(r.Reason)]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if counts[keys[i]] != counts[keys[j]] {
			return counts[keys[i]] > counts[keys[j]]
		}
		return keys[i] < keys[j]
	})
	if len(keys) > n {
		keys = keys[:n]
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%5d  %s", counts[k], k)
	}
	return out
}

// generalise drops the expression position and quoted statement from a
// reason, so that reasons group.
func generalise(reason string) string {
	if i := strings.Index(reason, "): "); i >= 0 && strings.HasPrefix(reason, "expression ") {
		reason = reason[i+3:]
	}
	if strings.HasPrefix(reason, `"`) {
		if i := strings.Index(reason[1:], `": `); i >= 0 {
			reason = reason[i+4:]
		}
	}
	return reason
}

// Package pipeline runs the whole translation: an nft ruleset through the
// real nft (front end), the lifter (translate), and the code generator
// (codegen), reporting for every rule whether it compiled or why not.
package pipeline

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// Options configure a translation.
type Options struct {
	// Type overrides the default program type of every base chain.
	Type *codegen.ProgramType
	// NetdevBackend, when set, is the program type (XDP or TC) of netdev
	// ingress chains. Nil chooses per device (ChooseNetdevBackend): tcx
	// on veth and on devices without native XDP, XDP on drivers with
	// native XDP. Netdev egress chains are always tcx.
	NetdevBackend *codegen.ProgramType
	// Cgroup puts the input and output chains of ip, ip6 and inet tables
	// on cgroup_skb programs instead of netfilter links.
	Cgroup bool
	// NetNS is the network namespace the ruleset is meant for: interface
	// names resolve there. Nil means the caller's own.
	NetNS *nsctx.NetNS
	// Linear compiles every rule as straight-line code, without rule
	// groups (codegen.Options.Linear), for tests and measurements.
	Linear bool
	// Cache, when not nil, serves the programs of base chains whose
	// inputs are unchanged since they were compiled (see CompileCache).
	Cache *CompileCache
}

// Status is the outcome for one rule.
type Status string

// Rule outcomes.
const (
	StatusCompiled    Status = "compiled"
	StatusUnsupported Status = "unsupported"
	// StatusUnreached marks rules of user chains no base chain jumps to:
	// the kernel never evaluates them, and neither does the BPF program.
	StatusUnreached Status = "unreached"
)

// RuleReport is one rule's outcome.
type RuleReport struct {
	Family ir.Family
	Table  string
	Chain  string
	Handle uint64
	// Rule is the rule in nft syntax when it was lifted, otherwise its
	// expression list.
	Rule   string
	Status Status
	Reason string
}

// ChainProgram is the program compiled for one base chain.
type ChainProgram struct {
	Table  *ir.Table
	Chain  *ir.Chain
	Target codegen.Target
	// Backend says why a netdev ingress program has its type (the
	// automatic choice's reason, or the explicit option); empty for
	// other chains.
	Backend string
	Program *codegen.Program
}

// Result is a whole translation.
type Result struct {
	Ruleset  *ir.Ruleset
	Programs []*ChainProgram
	Rules    []RuleReport
	// Lifted and Compiled are how long lifting the netlink objects to
	// IR and compiling the base chains took.
	Lifted, Compiled time.Duration

	// texts holds every rule's text (ir.FormatRule), formatted once.
	texts map[*ir.Rule]string
}

// RuleText returns ir.FormatRule(fam, r), formatted once per translation
// for the rules of Ruleset.
func (r *Result) RuleText(fam ir.Family, rule *ir.Rule) string {
	if s, ok := r.texts[rule]; ok {
		return s
	}
	return ir.FormatRule(fam, rule)
}

// Err returns an error naming every rule that was not compiled, or nil.
func (r *Result) Err() error {
	var errs []error
	for _, rr := range r.Rules {
		if rr.Status == StatusUnsupported {
			errs = append(errs, fmt.Errorf("table %s %s, chain %s, rule handle %d: %s", rr.Family, rr.Table, rr.Chain, rr.Handle, rr.Reason))
		}
	}
	return errors.Join(errs...)
}

// TranslateFile runs the pipeline on an nft ruleset file.
func TranslateFile(path string, opts Options) (*Result, error) {
	var nsf = nftfile.Options{}
	if opts.NetNS != nil {
		nsf.TargetNetNS = opts.NetNS.File()
	}
	rs, err := nftfile.ParseFile(path, nsf)
	if err != nil {
		return nil, err
	}
	return Translate(rs, opts)
}

// TranslateReader runs the pipeline on an nft ruleset read from r; name
// stands for it in nft's error messages.
func TranslateReader(name string, r io.Reader, opts Options) (*Result, error) {
	var nsf = nftfile.Options{}
	if opts.NetNS != nil {
		nsf.TargetNetNS = opts.NetNS.File()
	}
	rs, err := nftfile.Parse(name, r, nsf)
	if err != nil {
		return nil, err
	}
	return Translate(rs, opts)
}

// Translate lifts and compiles decoded nf_tables objects. Rules the
// lifter or the code generator cannot handle exactly are reported, and the
// programs are compiled without them so that every other rule's status is
// known too; such programs must never be loaded (Result.Err is non-nil).
func Translate(rs *nlmsg.Ruleset, opts Options) (*Result, error) {
	start := time.Now()
	lifted, err := translate.Lift(rs)
	if err != nil {
		return nil, err
	}
	res := &Result{Ruleset: lifted.Ruleset, Lifted: time.Since(start), texts: ruleTexts(lifted.Ruleset)}
	start = time.Now()
	defer func() { res.Compiled = time.Since(start) }()
	failed := map[ruleKey]*translate.RuleError{}
	for _, f := range lifted.Failed {
		failed[ruleKey{f.Family, f.Table, f.Chain, f.Handle}] = f
	}
	refused := map[ruleKey]string{}
	reached := map[ruleKey]bool{}
	tableTexts := map[*ir.Table]string{}
	for _, t := range lifted.Ruleset.Tables {
		for _, c := range t.Chains {
			if c.Base == nil {
				continue
			}
			progs, err := compileChain(t, c, opts, refused, tableTexts, res.texts)
			if err != nil {
				return nil, err
			}
			res.Programs = append(res.Programs, progs...)
			markReached(t, c, reached)
		}
	}
	// Report rules in ruleset order, lifted or not.
	texts := map[ruleKey]string{}
	for _, t := range lifted.Ruleset.Tables {
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				texts[ruleKey{t.Family, t.Name, c.Name, r.Handle}] = res.texts[r]
			}
		}
	}
	for _, r := range rs.Rules {
		k := ruleKey{ir.Family(r.Family), r.Table, r.Chain, r.Handle}
		rr := RuleReport{Family: k.fam, Table: r.Table, Chain: r.Chain, Handle: r.Handle}
		if f, ok := failed[k]; ok {
			rr.Rule = f.Exprs
			rr.Status = StatusUnsupported
			rr.Reason = errString(f.Expr, f.Kind, f.Err)
			res.Rules = append(res.Rules, rr)
			continue
		}
		rr.Rule = texts[k]
		switch reason, ok := refused[k]; {
		case ok:
			rr.Status, rr.Reason = StatusUnsupported, reason
		case !reached[k]:
			rr.Status = StatusUnreached
		default:
			rr.Status = StatusCompiled
		}
		res.Rules = append(res.Rules, rr)
	}
	return res, nil
}

type ruleKey struct {
	fam    ir.Family
	table  string
	chain  string
	handle uint64
}

func errString(expr int, kind string, err error) string {
	if expr < 0 {
		return err.Error()
	}
	return fmt.Sprintf("expression %d (%s): %v", expr+1, kind, err)
}

// ruleTexts returns every rule of rs in nft syntax.
func ruleTexts(rs *ir.Ruleset) map[*ir.Rule]string {
	out := map[*ir.Rule]string{}
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				out[r] = ir.FormatRule(t.Family, r)
			}
		}
	}
	return out
}

// markReached records the rules of c and of every chain c jumps to.
func markReached(t *ir.Table, c *ir.Chain, reached map[ruleKey]bool) {
	seen := map[string]bool{}
	var walk func(c *ir.Chain)
	walk = func(c *ir.Chain) {
		if seen[c.Name] {
			return
		}
		seen[c.Name] = true
		for _, r := range c.Rules {
			reached[ruleKey{t.Family, t.Name, c.Name, r.Handle}] = true
			for _, s := range r.Stmts {
				if v, ok := s.(*ir.Verdict); ok && (v.Kind == ir.VerdictJump || v.Kind == ir.VerdictGoto) {
					if target := t.Chain(v.Chain); target != nil {
						walk(target)
					}
				}
			}
		}
	}
	walk(c)
}

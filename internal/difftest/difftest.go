// Package difftest checks that bpfilter-nft's programs give the kernel's
// verdicts: the same ruleset goes into the kernel's nftables and, compiled,
// into BPF programs attached at the same hook of the same scratch veth pair
// (package oracle); the same generated frames (package pktgen) are sent to
// both, and the verdicts, observed by the same nftables counters, must be
// identical.
package difftest

import (
	"fmt"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/hooks"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pktgen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// Options tune a check.
type Options struct {
	// Types are the program types to check; empty means every type the
	// oracle's hook can take (XDP and TC for netdev ingress, netfilter
	// for IP hooks).
	Types []codegen.ProgramType
	// Seed and Count are passed to pktgen.
	Seed  uint64
	Count int
	// Stride, when above 1, keeps every Stride-th of the frames pktgen
	// derives (from the first on), for rulesets so large that sending
	// every frame would take minutes.
	Stride int
	// Linear compiles the BPF side as straight-line code, without rule
	// groups (pipeline.Options.Linear).
	Linear bool
	// BPFRuleset, when set, is compiled for the BPF side instead of the
	// ruleset the kernel gets. It exists to show that the harness finds
	// differences.
	BPFRuleset string
	// BPFObjects, when set, is compiled for the BPF side instead of
	// ruleset: decoded nf_tables objects from another front end (such
	// as translate/iptables).
	BPFObjects *nlmsg.Ruleset
	// LoadKernel, when set, loads the kernel side instead of
	// o.Load(ruleset), for rulesets that come from another tool (such as
	// iptables-nft-restore run in the receiver namespace). It must keep
	// the oracle's observers: o.Load("") and then add to it.
	LoadKernel func(o *oracle.Oracle) error
	// Frames are crafted frames checked after the generated ones (the
	// generator knows nothing of, say, IPv6 extension header chains).
	Frames []pktgen.Case
}

// Mismatch is a frame on which a program and the kernel disagree.
type Mismatch struct {
	Type   codegen.ProgramType
	Case   string
	Frame  []byte
	Kernel oracle.Result
	BPF    oracle.Result
}

func (m Mismatch) String() string {
	return fmt.Sprintf("%s: %s: kernel %s, bpf %s (frame %x)", m.Type, m.Case, m.Kernel, m.BPF, m.Frame)
}

// Report is the outcome of one check.
type Report struct {
	// Frames is the number of generated frames; Compared counts
	// (frame, program type) pairs checked.
	Frames, Compared int
	// Kernel counts the kernel's verdicts by result.
	Kernel     map[oracle.Result]int
	Mismatches []Mismatch
	// Result is the pipeline's output (rule statuses).
	Result *pipeline.Result
}

// Check loads ruleset (nft -f syntax, one table whose base chains sit on
// the oracle's hook) into the kernel and into BPF, and compares verdicts.
// It returns an error when the ruleset cannot be compiled in full: a
// ruleset with unsupported rules has no BPF side to compare.
func Check(o *oracle.Oracle, hook ir.Hook, ruleset string, opts Options) (*Report, error) {
	ns, err := receiverNS(o)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	rep := &Report{Kernel: map[oracle.Result]int{}}
	types := opts.Types
	if len(types) == 0 {
		types = DefaultTypes(hook)
	}
	// Compile first: nothing goes to the kernel for a ruleset that
	// cannot be compared.
	compiled := map[codegen.ProgramType]*pipeline.Result{}
	bpfRuleset := ruleset
	if opts.BPFRuleset != "" {
		bpfRuleset = opts.BPFRuleset
	}
	// nft parses the ruleset once (in a namespace of its own, a process
	// of its own); each type compiles what it made.
	objects := opts.BPFObjects
	if objects == nil {
		objects, err = nftfile.Parse("ruleset", strings.NewReader(bpfRuleset), nftfile.Options{TargetNetNS: ns.File()})
		if err != nil {
			return nil, err
		}
	}
	for _, typ := range types {
		typ := typ
		res, err := pipeline.Translate(objects, pipeline.Options{Type: &typ, NetNS: ns, Linear: opts.Linear})
		if err != nil {
			return nil, err
		}
		if err := res.Err(); err != nil {
			rep.Result = res
			return rep, &UnsupportedError{Err: err}
		}
		compiled[typ] = res
		rep.Result = res
	}
	chains := hookChains(rep.Result.Programs, hook)
	if len(chains) == 0 {
		return nil, fmt.Errorf("the ruleset has no base chain on hook %s", hook)
	}
	kind := pktgen.KindIPHook
	if hook == ir.HookIngress || hook == ir.HookEgress {
		kind = pktgen.KindAnyFrame
	}
	var cases []pktgen.Case
	for _, p := range chains {
		cases = append(cases, pktgen.Generate(p.Table, p.Chain, pktgen.Options{
			Seed: opts.Seed, Count: opts.Count, Kind: kind,
			SrcMAC: o.SenderMAC(), DstMAC: o.ReceiverMAC(),
		})...)
	}
	if opts.Stride > 1 {
		kept := cases[:0]
		for i := 0; i < len(cases); i += opts.Stride {
			kept = append(kept, cases[i])
		}
		cases = kept
	}
	cases = append(cases, opts.Frames...)
	rep.Frames = len(cases)

	// The kernel's verdicts.
	load := func(o *oracle.Oracle) error { return o.Load(ruleset) }
	if opts.LoadKernel != nil {
		load = opts.LoadKernel
	}
	ctFams := loader.ConntrackFamilies(rep.Result.Ruleset)
	if len(ctFams) > 0 {
		if err := flushConntrack(o); err != nil {
			return nil, err
		}
	}
	if err := load(o); err != nil {
		return nil, err
	}
	kernel := make([]oracle.Result, len(cases))
	for i, c := range cases {
		if kernel[i], err = o.Verdict(c.Frame); err != nil {
			return nil, fmt.Errorf("kernel verdict for %s: %w", c.Name, err)
		}
		rep.Kernel[kernel[i]]++
	}

	// Each program type's verdicts, with only the observers left in nft.
	for _, typ := range types {
		run := attachedVerdicts
		if typ == codegen.XDP {
			run = testRunVerdicts
		}
		if len(ctFams) > 0 {
			if err := flushConntrack(o); err != nil {
				return nil, err
			}
		}
		got, err := run(o, ns, compiled[typ], hook, cases)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", typ, err)
		}
		for i, c := range cases {
			rep.Compared++
			if got[i] != kernel[i] {
				rep.Mismatches = append(rep.Mismatches, Mismatch{Type: typ, Case: c.Name, Frame: c.Frame, Kernel: kernel[i], BPF: got[i]})
			}
		}
	}
	return rep, nil
}

// UnsupportedError says the ruleset has rules the pipeline refused.
type UnsupportedError struct{ Err error }

func (e *UnsupportedError) Error() string { return e.Err.Error() }
func (e *UnsupportedError) Unwrap() error { return e.Err }

// DefaultTypes returns the program types that serve hook.
func DefaultTypes(hook ir.Hook) []codegen.ProgramType {
	switch hook {
	case ir.HookIngress:
		return []codegen.ProgramType{codegen.XDP, codegen.TC}
	case ir.HookEgress:
		return []codegen.ProgramType{codegen.TC}
	}
	return []codegen.ProgramType{codegen.Netfilter}
}

func hookChains(progs []*pipeline.ChainProgram, hook ir.Hook) []*pipeline.ChainProgram {
	var out []*pipeline.ChainProgram
	seen := map[*ir.Chain]bool{}
	for _, p := range progs {
		if p.Chain.Base.Hook == hook && !seen[p.Chain] {
			seen[p.Chain] = true
			out = append(out, p)
		}
	}
	return out
}

// attachedVerdicts attaches every program of res in the receiver and sends
// the frames. tcx runs before the netdev ingress hook, so a frame it drops
// never reaches the oracle's first observer: there NotReached means
// dropped. The oracle's sentinel frames must reach that observer, so a tcx
// program that lets exactly them through runs first.
func attachedVerdicts(o *oracle.Oracle, ns *nsctx.NetNS, res *pipeline.Result, hook ir.Hook, cases []pktgen.Case) ([]oracle.Result, error) {
	var closers []func() error
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	if err := o.Clear(); err != nil {
		return nil, err
	}
	// Conntrack runs for the programs as the loader makes it run (the
	// oracle's load flushed the ruleset that held it for the kernel).
	if fams := loader.ConntrackFamilies(res.Ruleset); len(fams) > 0 {
		if _, err := loader.EnableConntrack(ns, fams); err != nil {
			return nil, err
		}
		closers = append(closers, func() error { return loader.ReleaseConntrack(ns) })
	}
	for _, p := range res.Programs {
		if p.Chain.Base.Hook != hook {
			continue
		}
		if p.Target.Type == codegen.TC && p.Target.Device != nil {
			c, err := attachSentinelPass(ns, p.Target)
			if err != nil {
				return nil, err
			}
			closers = append(closers, c)
		}
		l, err := p.Program.Load()
		if err != nil {
			return nil, fmt.Errorf("chain %s: load: %w", p.Chain.Name, err)
		}
		closers = append(closers, l.Close)
		tgt := p.Target
		if tgt.Device == nil && (tgt.Type == codegen.XDP || tgt.Type == codegen.TC) {
			return nil, fmt.Errorf("chain %s: no device to attach to", p.Chain.Name)
		}
		lk, err := hooks.Attach(ns, l.Program, hooks.Point{Target: tgt, Priority: p.Chain.Base.Priority})
		if err != nil {
			return nil, fmt.Errorf("chain %s: %w", p.Chain.Name, err)
		}
		closers = append([]func() error{lk.Close}, closers...)
	}
	out := make([]oracle.Result, len(cases))
	for i, c := range cases {
		r, err := o.Verdict(c.Frame)
		if err != nil {
			return nil, fmt.Errorf("bpf verdict for %s: %w", c.Name, err)
		}
		if r == oracle.NotReached && hook == ir.HookIngress {
			r = oracle.Dropped
		}
		out[i] = r
	}
	return out, nil
}

func receiverNS(o *oracle.Oracle) (*nsctx.NetNS, error) {
	return nsctx.OpenNetNS(fmt.Sprintf("/proc/self/fd/%d", o.ReceiverNetNS().Fd()))
}

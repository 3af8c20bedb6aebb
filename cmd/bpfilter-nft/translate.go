package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

func init() {
	register(&command{
		name:    "translate",
		args:    "[-o text|json] [--hook-type xdp|tc|nf|cgroup] [--netns PATH] FILE",
		summary: "show how an nft ruleset compiles: IR in nft syntax and annotated BPF",
		run:     runTranslate,
	})
}

const translateHelp = `
Reads an nft ruleset (the syntax of nft -f; "-" reads standard input), has the
real nft parse it inside a private network namespace, and prints each base
chain in nft syntax followed by the BPF program compiled for it, every
instruction block labelled with the rule it came from.

With -o json it prints one object per rule instead:
  {"table","chain","handle","rule","status","reason","insns"}
where status is "compiled", "unsupported" (reason says why) or "unreached"
(a user chain no base chain jumps to).

Interface names (iif "eth0", device "eth0") resolve in the network namespace
given by --netns (default: this process's).

Exit status: 0 when every rule compiled, 1 when some rule is unsupported or
the ruleset is invalid (nft's message names file:line), 2 on usage errors.`

func runTranslate(stdout, stderr io.Writer, args []string) error {
	c := lookup("translate")
	fs := newFlagSet(c, stderr, translateHelp)
	output := fs.String("o", "text", "output format: text or json")
	hookType := fs.String("hook-type", "", "program type for every base chain: xdp, tc, nf or cgroup (default: after the chain's family and hook)")
	netns := fs.String("netns", "", "network namespace file to resolve interface names in (e.g. /run/netns/NAME)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "bpfilter-nft translate: -o %q: want text or json\n", *output)
		return errUsage
	}
	opts, closeNS, err := pipelineOptions(*hookType, *netns)
	if err != nil {
		return err
	}
	defer closeNS()
	res, err := translateInput(fs.Arg(0), opts)
	if err != nil {
		return err
	}
	if *output == "json" {
		err = writeJSON(stdout, res)
	} else {
		err = writeText(stdout, res)
	}
	if err != nil {
		return err
	}
	if err := res.Err(); err != nil {
		return &exitError{code: 1, err: fmt.Errorf("some rules cannot be translated exactly:\n%v", err)}
	}
	return nil
}

// pipelineOptions turns the common flags into pipeline options.
func pipelineOptions(hookType, netns string) (pipeline.Options, func(), error) {
	var opts pipeline.Options
	if hookType != "" {
		t, err := codegen.ParseProgramType(hookType)
		if err != nil {
			return opts, nil, fmt.Errorf("--hook-type: %w", err)
		}
		opts.Type = &t
	}
	if netns == "" {
		return opts, func() {}, nil
	}
	ns, err := nsctx.OpenNetNS(netns)
	if err != nil {
		return opts, nil, fmt.Errorf("--netns: %w", err)
	}
	opts.NetNS = ns
	return opts, func() { ns.Close() }, nil
}

func translateInput(path string, opts pipeline.Options) (*pipeline.Result, error) {
	if path == "-" {
		return pipeline.TranslateReader("-", stdin, opts)
	}
	return pipeline.TranslateFile(path, opts)
}

func writeText(w io.Writer, res *pipeline.Result) error {
	var b strings.Builder
	for _, p := range res.Programs {
		fmt.Fprintf(&b, "table %s %s, chain %s: %s\n", p.Table.Family, p.Table.Name, p.Chain.Name, describeTarget(p.Target))
		fmt.Fprintf(&b, "\t%s\n", p.Chain.Base.Header())
		writeProgram(&b, p)
		b.WriteString("\n")
	}
	for _, rr := range res.Rules {
		switch rr.Status {
		case pipeline.StatusUnsupported:
			fmt.Fprintf(&b, "# unsupported: table %s %s, chain %s, rule handle %d: %s\n", rr.Family, rr.Table, rr.Chain, rr.Handle, rr.Reason)
		case pipeline.StatusUnreached:
			fmt.Fprintf(&b, "# unreached: table %s %s, chain %s, rule handle %d: no base chain jumps to chain %s\n", rr.Family, rr.Table, rr.Chain, rr.Handle, rr.Chain)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func describeTarget(t codegen.Target) string {
	s := t.Type.String() + " program"
	if t.Type == codegen.Netfilter || t.Type == codegen.CgroupSKB {
		if t.ProtoFamily == ir.FamilyIPv6 {
			s += " (IPv6)"
		} else if t.ProtoFamily == ir.FamilyIPv4 {
			s += " (IPv4)"
		}
	}
	if t.Type == codegen.TC || t.Type == codegen.CgroupSKB {
		if t.Egress {
			s += ", egress"
		} else {
			s += ", ingress"
		}
	}
	if t.Device != nil {
		s += fmt.Sprintf(" on %s (ifindex %d)", t.Device.Name, t.Device.Index)
	}
	return s
}

// writeProgram prints the instructions, each block under the rule it came
// from; a chain split into tail-called programs, every program.
func writeProgram(b *strings.Builder, p *pipeline.ChainProgram) {
	if n := len(p.Program.Tail); n > 0 {
		fmt.Fprintf(b, "\t; split into %d parts: %d programs joined by tail calls\n", p.Program.Parts(), n+1)
	}
	writeInsns(b, p.Program.Spec.Instructions, p.Program.Annotations)
	for i, t := range p.Program.Tail {
		fmt.Fprintf(b, "\t; tail-call slot %d: part %d from %s\n", i, t.Part+1, t.Entry)
		writeInsns(b, t.Spec.Instructions, t.Annotations)
	}
}

func writeInsns(b *strings.Builder, insns asm.Instructions, anns []codegen.Annotation) {
	labels := map[int]string{}
	for _, a := range anns {
		label := a.Text
		if a.Handle != 0 {
			label = fmt.Sprintf("chain %s, rule handle %d: %s", a.Chain, a.Handle, a.Text)
		}
		labels[a.Start] = label
	}
	fmt.Fprintf(b, "\t; %d instructions\n", len(insns))
	for i, ins := range insns {
		if l, ok := labels[i]; ok {
			fmt.Fprintf(b, "\t; %s\n", l)
		}
		if sym := ins.Symbol(); sym != "" {
			fmt.Fprintf(b, "\t%s:\n", sym)
		}
		fmt.Fprintf(b, "\t%5d: %v\n", i, ins)
	}
}

// jsonRule is one rule of `translate -o json`.
type jsonRule struct {
	Table  string `json:"table"`
	Family string `json:"family"`
	Chain  string `json:"chain"`
	Handle uint64 `json:"handle"`
	Rule   string `json:"rule"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	Insns  int    `json:"insns"`
}

func writeJSON(w io.Writer, res *pipeline.Result) error {
	insns := map[string]int{}
	for _, p := range res.Programs {
		anns := p.Program.Annotations
		for _, t := range p.Program.Tail {
			anns = append(anns[:len(anns):len(anns)], t.Annotations...)
		}
		for _, a := range anns {
			k := fmt.Sprintf("%s/%s/%s/%d", p.Table.Family, p.Table.Name, a.Chain, a.Handle)
			if _, seen := insns[k]; !seen && a.Handle != 0 {
				insns[k] = a.End - a.Start
			}
		}
	}
	enc := json.NewEncoder(w)
	for _, rr := range res.Rules {
		jr := jsonRule{
			Table: rr.Table, Family: rr.Family.String(), Chain: rr.Chain, Handle: rr.Handle,
			Rule: strings.TrimSpace(rr.Rule), Status: string(rr.Status), Reason: rr.Reason,
			Insns: insns[fmt.Sprintf("%s/%s/%s/%d", rr.Family, rr.Table, rr.Chain, rr.Handle)],
		}
		if err := enc.Encode(jr); err != nil {
			return err
		}
	}
	return nil
}

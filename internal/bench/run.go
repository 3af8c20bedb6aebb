package bench

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Mode is a code generation strategy.
type Mode string

// Modes.
const (
	Linear  Mode = "linear"  // every rule as straight-line code
	Grouped Mode = "grouped" // runs of same-shape rules as one map lookup (the default)
)

// Modes lists every mode.
var Modes = []Mode{Linear, Grouped}

// DefaultSizes are the ruleset sizes measured by default.
var DefaultSizes = []int{0, 10, 100, 1000, 10000, 100000}

// DefaultTypes are the program types measured by default.
var DefaultTypes = []codegen.ProgramType{codegen.XDP, codegen.TC, codegen.Netfilter}

// Config says what to measure.
type Config struct {
	Types []codegen.ProgramType
	Kinds []Kind
	Modes []Mode
	Sizes []int
	// Time is the time one measurement should take in the kernel
	// (BPF_PROG_TEST_RUN's repeat count is chosen for it).
	Time time.Duration
}

// Result is the measurement of one ruleset on one program type.
type Result struct {
	Type  codegen.ProgramType
	Kind  Kind
	Mode  Mode
	Rules int
	// Refused is why the ruleset could not be compiled or loaded.
	Refused string
	// Empty is the cost per packet of an empty program of the same type,
	// measured in the same run; First, Last and Miss the cost of a packet
	// the first rule matches, the last rule matches, and none does.
	Empty, First, Last, Miss time.Duration
	// Compile is the time to compile the IR, Load the time to create the
	// maps and load (verify) the program.
	Compile, Load time.Duration
	// Insns is the program's length, Verified the number of instructions
	// the verifier processed, Groups the number of rule groups; both
	// summed over all programs of a chain split into Parts parts
	// (codegen.Program.Tail).
	Insns, Groups, Parts int
	Verified             uint32
}

// Ratio returns d divided by the empty program's cost.
func (r Result) Ratio(d time.Duration) float64 {
	if r.Empty <= 0 {
		return 0
	}
	return float64(d) / float64(r.Empty)
}

// target returns the program target and table family measured for typ:
// netdev ingress for XDP and tc, IPv4 LOCAL_OUT for netfilter (the hook
// BPF_PROG_TEST_RUN runs netfilter programs at without a context).
func target(typ codegen.ProgramType) (codegen.Target, error) {
	switch typ {
	case codegen.XDP, codegen.TC:
		return codegen.Target{Type: typ, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}, nil
	case codegen.Netfilter:
		return codegen.Target{Type: typ, Family: ir.FamilyIPv4, Hook: ir.HookOutput, ProtoFamily: ir.FamilyIPv4}, nil
	}
	return codegen.Target{}, fmt.Errorf("bench: program type %s is not measured", typ)
}

// input returns what BPF_PROG_TEST_RUN gets for an Ethernet frame: the
// frame for XDP and tc, the IP packet for netfilter.
func input(typ codegen.ProgramType, frame []byte) []byte {
	if typ == codegen.Netfilter {
		return frame[14:]
	}
	return frame
}

// Run measures every combination in cfg, writing a line per measurement
// to progress (if not nil).
func Run(cfg Config, progress io.Writer) ([]Result, error) {
	if cfg.Time <= 0 {
		cfg.Time = 20 * time.Millisecond
	}
	var out []Result
	for _, typ := range cfg.Types {
		tgt, err := target(typ)
		if err != nil {
			return nil, err
		}
		empty, err := emptyCost(tgt, cfg.Time)
		if err != nil {
			return nil, err
		}
		for _, kind := range cfg.Kinds {
			for _, mode := range cfg.Modes {
				for _, n := range cfg.Sizes {
					r, err := measure(tgt, kind, mode, n, cfg.Time)
					if err != nil {
						return nil, err
					}
					// The floor again, right after: the ratio uses the
					// cheaper of the two, so that a noisy moment does
					// not flatter the program.
					again, err := emptyCost(tgt, cfg.Time)
					if err != nil {
						return nil, err
					}
					r.Empty = min(empty, again)
					out = append(out, r)
					if progress != nil {
						fmt.Fprintln(progress, r.line())
					}
				}
			}
		}
	}
	return out, nil
}

func (r Result) line() string {
	if r.Refused != "" {
		return fmt.Sprintf("%s %s %s %d rules: refused: %s", r.Type, r.Kind, r.Mode, r.Rules, r.Refused)
	}
	return fmt.Sprintf("%s %s %s %d rules: first %v last %v miss %v (empty %v), compile %v load %v, %d insns, verifier %d",
		r.Type, r.Kind, r.Mode, r.Rules, r.First, r.Last, r.Miss, r.Empty, r.Compile.Round(time.Millisecond), r.Load.Round(time.Millisecond), r.Insns, r.Verified)
}

// emptyCost measures a program of no rules (prologue and policy).
func emptyCost(tgt codegen.Target, d time.Duration) (time.Duration, error) {
	tab, c := Table(tgt.Family, tgt.Hook, nil)
	p, err := codegen.Compile(tab, c, tgt)
	if err != nil {
		return 0, err
	}
	l, err := p.Load()
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return cost(l.Program, input(tgt.Type, MissFrame()), tgt.Type, ir.VerdictAccept, d)
}

// measure compiles, loads and runs one ruleset.
func measure(tgt codegen.Target, kind Kind, mode Mode, n int, d time.Duration) (Result, error) {
	r := Result{Type: tgt.Type, Kind: kind, Mode: mode, Rules: n}
	rules := Generate(kind, n, tgt.Family != ir.FamilyIPv4)
	start := time.Now()
	tab, c := Table(tgt.Family, tgt.Hook, rules)
	p, err := codegen.CompileWith(tab, c, tgt, codegen.Options{Linear: mode == Linear})
	r.Compile = time.Since(start)
	if err != nil {
		var ue *codegen.UnsupportedError
		if errors.As(err, &ue) {
			r.Refused = ue.Reason
			return r, nil
		}
		return r, err
	}
	r.Insns, r.Groups, r.Parts = len(p.Spec.Instructions), len(p.Groups), p.Parts()
	for _, t := range p.Tail {
		r.Insns += len(t.Spec.Instructions)
	}
	start = time.Now()
	l, err := p.Load()
	r.Load = time.Since(start)
	if err != nil {
		r.Refused = refusal(err)
		return r, nil
	}
	defer l.Close()
	for _, prog := range append([]*ebpf.Program{l.Program}, l.Tail...) {
		if info, err := prog.Info(); err == nil {
			v, _ := info.VerifiedInstructions()
			r.Verified += v
		}
	}
	if r.Miss, err = cost(l.Program, input(tgt.Type, MissFrame()), tgt.Type, ir.VerdictAccept, d); err != nil {
		return r, fmt.Errorf("%d %s rules, no match: %w", n, kind, err)
	}
	if n > 0 {
		if r.First, err = cost(l.Program, input(tgt.Type, rules[0].Frame()), tgt.Type, rules[0].HitVerdict(), d); err != nil {
			return r, fmt.Errorf("%d %s rules, first rule: %w", n, kind, err)
		}
		if r.Last, err = cost(l.Program, input(tgt.Type, rules[n-1].Frame()), tgt.Type, rules[n-1].HitVerdict(), d); err != nil {
			return r, fmt.Errorf("%d %s rules, last rule: %w", n, kind, err)
		}
	}
	return r, nil
}

// refusal is the first line of a load error (a verifier error's summary,
// not its log).
func refusal(err error) string {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return "verifier: " + strings.SplitN(ve.Error(), "\n", 2)[0]
	}
	return strings.SplitN(err.Error(), "\n", 2)[0]
}

// cost runs prog on data for about d and returns the time per run. The
// program must return the verdict want.
func cost(prog *ebpf.Program, data []byte, typ codegen.ProgramType, want ir.VerdictKind, d time.Duration) (time.Duration, error) {
	// A first short run calibrates the repeat count.
	repeat := 100
	for {
		ret, per, err := prog.Benchmark(data, repeat, nil)
		if err != nil {
			return 0, err
		}
		v, err := codegen.VerdictOf(typ, ret)
		if err != nil {
			return 0, err
		}
		if v != want {
			return 0, fmt.Errorf("verdict %s, want %s", (&ir.Verdict{Kind: v}).String(), (&ir.Verdict{Kind: want}).String())
		}
		total := per * time.Duration(repeat)
		if total >= d/4 || repeat >= 1<<24 {
			if total < d && per > 0 {
				// The real run, at the calibrated count.
				repeat = int(min(int64(d/per), 1<<24))
				if _, per, err = prog.Benchmark(data, repeat, nil); err != nil {
					return 0, err
				}
			}
			return per, nil
		}
		if per <= 0 {
			repeat *= 16
			continue
		}
		repeat = int(min(int64(d/per)+1, 1<<24))
	}
}

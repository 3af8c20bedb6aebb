package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/bench"
)

func init() {
	register(&command{
		name:    "bench",
		args:    "[--types xdp,tc,nf] [--kinds uniform,mixed,heterogeneous,ranges,prefixes,accounting,logdrop,reject] [--modes linear,grouped] [--sizes 0,10,…] [--time D] [-v] [--veth [--veth-time D] [--sender xdp|packet] [--plot FILE]] [--reload [--reload-rules N]]",
		summary: "per-packet cost, compile and load time of generated rulesets, as ratios to an empty program",
		run:     runBench,
	})
}

const benchHelp = `
Generates rulesets of each size and kind (uniform: "ip saddr A tcp dport P
drop" differing in constants; mixed: blocks of IPv4/IPv6 address and port
rules; heterogeneous: a different shape at every rule; ranges: port ranges of
twelve widths; prefixes: nested source prefixes /24 to /32; accounting: address
and port rules with a counter and no verdict; logdrop: … log prefix, drop;
reject: … reject with tcp reset, tc only), compiles them as
straight-line code (linear) and with rule groups (grouped, the default code),
loads them, and measures with BPF_PROG_TEST_RUN the time per packet of a
packet the first rule drops, one the last rule drops and one no rule matches,
each also as a ratio to an empty program of the same type measured in the
same run. Also prints compile and load (verify) times, program length and
the instructions the verifier processed; rulesets that cannot be loaded are
reported as refused with the reason. Needs root (BPF).`

func runBench(stdout, stderr io.Writer, args []string) error {
	c := lookup("bench")
	fs := newFlagSet(c, stderr, benchHelp)
	types := fs.String("types", "xdp,tc,nf", "program types")
	kinds := fs.String("kinds", "uniform,mixed,heterogeneous,ranges", "ruleset kinds")
	modes := fs.String("modes", "linear,grouped", "code generation modes")
	sizes := fs.String("sizes", "0,10,100,1000,10000,100000", "ruleset sizes")
	d := fs.Duration("time", 0, "kernel time per measurement (default 20ms)")
	verbose := fs.Bool("v", false, "print each measurement as it is made")
	veth := fs.Bool("veth", false, "measure end to end instead: packets per second through a veth pair with bpfilter-nft (xdp, tcx) and the kernel's nftables")
	vethTime := fs.Duration("veth-time", time.Second, "length of each end-to-end measurement")
	plot := fs.String("plot", "", "with --veth: also draw ns/packet against rules as a PNG to `FILE`")
	sender := fs.String("sender", "xdp", "with --veth: xdp (live-frame XDP_TX) or packet (AF_PACKET sendmmsg, skbs)")
	reload := fs.Bool("reload", false, "measure reloads instead: a full load of a generated ruleset, then one rule changed, by phase")
	reloadRules := fs.Int("reload-rules", 10000, "with --reload: rules in the ruleset")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *reload {
		var res []*bench.ReloadResult
		for _, c := range bench.ReloadCases {
			r, err := bench.Reload(c, *reloadRules)
			if err != nil {
				return fmt.Errorf("reload %s: %w", c, err)
			}
			res = append(res, r)
		}
		return bench.WriteReloadTable(stdout, res)
	}
	cfg := bench.Config{Time: *d}
	for _, s := range split(*types) {
		t, err := codegen.ParseProgramType(s)
		if err != nil {
			return usageErr(stderr, err)
		}
		cfg.Types = append(cfg.Types, t)
	}
	for _, s := range split(*kinds) {
		k := bench.Kind(s)
		if !slices.Contains(bench.Kinds, k) {
			return usageErr(stderr, fmt.Errorf("unknown ruleset kind %q", s))
		}
		cfg.Kinds = append(cfg.Kinds, k)
	}
	for _, s := range split(*modes) {
		m := bench.Mode(s)
		if m != bench.Linear && m != bench.Grouped {
			return usageErr(stderr, fmt.Errorf("unknown mode %q (want linear or grouped)", s))
		}
		cfg.Modes = append(cfg.Modes, m)
	}
	for _, s := range split(*sizes) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return usageErr(stderr, fmt.Errorf("bad size %q", s))
		}
		cfg.Sizes = append(cfg.Sizes, n)
	}
	if *veth {
		if *sender != string(bench.SenderXDP) && *sender != string(bench.SenderPacket) {
			return usageErr(stderr, fmt.Errorf("unknown sender %q (want xdp or packet)", *sender))
		}
		if *sizes == fs.Lookup("sizes").DefValue {
			cfg.Sizes = []int{0, 10, 100, 1000, 10000}
		}
		var progress func(bench.VethResult)
		if *verbose {
			progress = func(r bench.VethResult) {
				if r.Refused != "" {
					fmt.Fprintf(stderr, "%s %d rules: refused: %s\n", r.Attach, r.Rules, r.Refused)
					return
				}
				fmt.Fprintf(stderr, "%s %d rules: %.0f pps\n", r.Attach, r.Rules, r.PPS)
			}
		}
		res, err := bench.Veth(bench.VethConfig{Sizes: cfg.Sizes, Time: *vethTime,
			Attachs: bench.AllAttachs, Sender: bench.Sender(*sender)}, progress)
		if err != nil {
			return err
		}
		if err := bench.WriteVethTable(stdout, res); err != nil {
			return err
		}
		if *plot != "" {
			var buf bytes.Buffer
			if err := bench.Plot(&buf, fmt.Sprintf("veth, %s sender: ns per packet (1/rate), policy drop, no rule matches", *sender),
				"rules in the chain", "ns per packet", bench.VethSeries(res)); err != nil {
				return err
			}
			return os.WriteFile(*plot, buf.Bytes(), 0o644)
		}
		return nil
	}
	var progress io.Writer
	if *verbose {
		progress = stderr
	}
	res, err := bench.Run(cfg, progress)
	if err != nil {
		return err
	}
	if err := bench.WriteTable(stdout, res); err != nil {
		return err
	}
	for _, s := range bench.Scalings(res, 10, 10000) {
		fmt.Fprintf(stdout, "%s %s %s: a packet no rule matches costs %.2f× at %d rules what it costs at %d\n",
			s.Result.Type, s.Result.Kind, s.Result.Mode, s.Factor, s.Large, s.Small)
	}
	return nil
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// usageErr prints err and returns errUsage (exit status 2).
func usageErr(stderr io.Writer, err error) error {
	fmt.Fprintf(stderr, "bpfilter-nft bench: %v\n", err)
	return errUsage
}

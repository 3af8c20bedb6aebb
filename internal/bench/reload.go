package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/internal/fastedit"
	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/state"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// ReloadCase is a ruleset whose reload after a one-rule change is
// measured.
type ReloadCase string

// Reload cases.
const (
	// ReloadGrouped is one IPv4 input chain of uniform rules (one rule
	// group).
	ReloadGrouped ReloadCase = "grouped"
	// ReloadUngroupable is a grouped input chain holding 80% of the
	// rules and a forward chain of port ranges (straight-line code) with
	// the rest; the change is in the grouped chain.
	ReloadUngroupable ReloadCase = "ungroupable"
)

// ReloadCases lists every case.
var ReloadCases = []ReloadCase{ReloadGrouped, ReloadUngroupable}

// Phases are the times of one load, by step.
type Phases struct {
	Parse   time.Duration // nft parses the ruleset, bpfilter-nft reads it back
	Lift    time.Duration // netlink objects to IR
	Compile time.Duration // IR to instructions, every base chain
	Prepare time.Duration // counter, state and set maps; which programs stay
	Load    time.Duration // new programs loaded (verified)
	Attach  time.Duration // attach points switched, state committed
	// Cache is the time spent reading and writing the decoded-ruleset
	// cache (package fastedit).
	Cache  time.Duration
	Kept   int // programs kept running
	Loaded int // programs loaded
	Insns  int // instructions of all programs
	Total  time.Duration
	// CPU is the processor time the load took (user and system, this
	// process and the nft processes it ran): on a busy machine, closer
	// to what the load takes on an idle one than Total.
	CPU time.Duration
}

// ReloadResult is a full load of a ruleset, the reload that changes one of
// its rules, and the same change made as a rule edit.
type ReloadResult struct {
	Case   ReloadCase
	Rules  int
	Full   Phases
	Change Phases
	// Edit is `replace rule … handle H` of the changed rule, as the CLI
	// runs it: the cached decoded ruleset with the new rule, which nft
	// parses against the ruleset's skeleton (package fastedit).
	Edit Phases
	// DaemonEdit is the next such edit as the daemon applies it: the
	// decoded ruleset is in its memory, and the base chains the edit did
	// not touch come from its compile cache.
	DaemonEdit Phases
}

// Reload loads a generated ruleset of n rules into a scratch network
// namespace (pinned on a bpffs of its own, both removed afterwards), then
// loads it again with one rule of its grouped chain changed (another port),
// and reports the phases of both loads.
func Reload(c ReloadCase, n int) (*ReloadResult, error) {
	tns, err := netnstest.New()
	if err != nil {
		return nil, err
	}
	defer tns.Close()
	ns, err := nsctx.OpenNetNS(fmt.Sprintf("/proc/self/fd/%d", tns.File().Fd()))
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	dir, err := os.MkdirTemp("", fmt.Sprintf("bpfnft-reload-%d-", os.Getpid()))
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return nil, fmt.Errorf("mount bpffs on %s: %w", dir, err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	st, err := state.Open(ns, state.Options{Root: filepath.Join(dir, "state")})
	if err != nil {
		return nil, err
	}
	defer loader.Flush(st)

	grouped, ranges := n, 0
	if c == ReloadUngroupable {
		ranges = n / 5
		grouped = n - ranges
	}
	rules := Generate(Uniform, grouped, false)
	text := func() string {
		s := Ruleset(ir.FamilyIPv4, ir.HookInput, "", rules)
		if ranges > 0 {
			r := Ruleset(ir.FamilyIPv4, ir.HookForward, "", Generate(Ranges, ranges, false))
			s += strings.Replace(strings.Replace(r, "table ip bench", "table ip bench_ranges", 1), "chain input", "chain forward", 1)
		}
		return s
	}
	res := &ReloadResult{Case: c, Rules: n}
	if res.Full, err = loadTimed(ns, st, tns, text()); err != nil {
		return nil, fmt.Errorf("full load: %w", err)
	}
	// A port no generated rule uses: the rule still belongs to the group.
	rules[grouped/2].Dport = 65000
	if res.Change, err = loadTimed(ns, st, tns, text()); err != nil {
		return nil, fmt.Errorf("one-rule change: %w", err)
	}
	// The same rule changed back, as an edit: its handle is its
	// position (the chain is handle 1).
	rules[grouped/2].Dport = 65001
	edit := func() string {
		return fmt.Sprintf("replace rule ip bench input handle %d %s", grouped/2+2, rules[grouped/2].NFT())
	}
	compiled := pipeline.NewCompileCache(64)
	var mem memCache
	if res.Edit, err = editTimed(ns, st, tns, edit(), &mem, compiled); err != nil {
		return nil, fmt.Errorf("one-rule edit: %w", err)
	}
	rules[grouped/2].Dport = 65002
	if res.DaemonEdit, err = editTimed(ns, st, tns, edit(), &mem, compiled); err != nil {
		return nil, fmt.Errorf("one-rule edit (daemon): %w", err)
	}
	return res, nil
}

// memCache is the decoded running ruleset as the daemon keeps it in
// memory, with its cache state.
type memCache struct {
	rs    *nlmsg.Ruleset
	state *fastedit.State
}

// editTimed applies one rule edit (nft command syntax) through the
// decoded-ruleset cache, timing each phase, and leaves the new decoded
// ruleset in mem. With mem empty it reads the state's copy, as the CLI
// does, otherwise it uses mem, as the daemon does; compiled is the compile
// cache: the CLI's is empty (a new process), the daemon's holds what it
// compiled before.
func editTimed(ns *nsctx.NetNS, st *state.Dir, tns *netnstest.NS, command string, mem *memCache, compiled *pipeline.CompileCache) (Phases, error) {
	var ph Phases
	start := time.Now()
	cpu := cpuTime()
	f := strings.Fields(command)
	cmd, ok := fastedit.ParseCommand(f[0], f[1:])
	if !ok {
		return ph, fmt.Errorf("%q: not a rule edit", command)
	}
	if mem.rs == nil {
		man, err := st.ReadManifest(state.StateName)
		if err != nil {
			return ph, err
		}
		if mem.rs, mem.state, err = fastedit.Load(st, man.Ruleset); err != nil {
			return ph, err
		}
	}
	ph.Cache = time.Since(start)
	parsed := time.Now()
	rs, e, err := fastedit.Apply(mem.rs, cmd, fastedit.NftParser(nftfile.Options{TargetNetNS: tns.File()}))
	if err != nil {
		return ph, err
	}
	ph.Parse = time.Since(parsed)
	record := func(text string) (err error) {
		mem.state, err = fastedit.Record(st, mem.state, text, rs, e)
		return err
	}
	if err := translateApply(ns, st, rs, &ph, compiled, record); err != nil {
		return ph, err
	}
	mem.rs = rs
	ph.Total, ph.CPU = time.Since(start), cpuTime()-cpu
	return ph, nil
}

// translateApply translates rs, applies it and caches its decoded form,
// filling in the phases from lift on.
// record caches the decoded ruleset once it is applied (text is its
// stored text); nil stores it as a new base.
func translateApply(ns *nsctx.NetNS, st *state.Dir, rs *nlmsg.Ruleset, ph *Phases, compiled *pipeline.CompileCache, record func(text string) error) error {
	res, err := pipeline.Translate(rs, pipeline.Options{NetNS: ns, Cache: compiled})
	if err != nil {
		return err
	}
	if err := res.Err(); err != nil {
		return err
	}
	ph.Lift, ph.Compile = res.Lifted, res.Compiled
	for _, p := range res.Programs {
		ph.Insns += len(p.Program.Spec.Instructions)
	}
	var stats loader.Stats
	var text string
	if err := loader.Apply(ns, st, res, loader.Options{Stats: &stats, Stored: &text, Keep: fastedit.Entries}); err != nil {
		return err
	}
	ph.Prepare, ph.Load, ph.Attach = stats.Prepared, stats.Built-stats.Prepared, stats.Switched-stats.Built
	ph.Kept, ph.Loaded = stats.Kept, stats.Loaded
	saved := time.Now()
	if record == nil {
		record = func(text string) error {
			_, err := fastedit.Save(st, text, rs)
			return err
		}
	}
	if err := record(text); err != nil {
		return err
	}
	ph.Cache += time.Since(saved)
	return nil
}

// loadTimed parses, translates and applies text, timing each phase.
func loadTimed(ns *nsctx.NetNS, st *state.Dir, tns *netnstest.NS, text string) (Phases, error) {
	var ph Phases
	start := time.Now()
	cpu := cpuTime()
	rs, err := nftfile.Parse("bench.nft", strings.NewReader(text), nftfile.Options{TargetNetNS: tns.File()})
	if err != nil {
		return ph, err
	}
	ph.Parse = time.Since(start)
	if err := translateApply(ns, st, rs, &ph, nil, nil); err != nil {
		return ph, err
	}
	ph.Total, ph.CPU = time.Since(start), cpuTime()-cpu
	return ph, nil
}

// cpuTime is the processor time this process and its waited-for children
// have used.
func cpuTime() time.Duration {
	var total time.Duration
	for _, who := range []int{unix.RUSAGE_SELF, unix.RUSAGE_CHILDREN} {
		var ru unix.Rusage
		if unix.Getrusage(who, &ru) == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return total
}

// WriteReloadTable prints one row per load: the phases in milliseconds and
// how many programs were kept and loaded, then for each case the figure
// "one-rule change of N rules: X ms vs full load Y ms".
func WriteReloadTable(w io.Writer, res []*ReloadResult) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\trules\tload\tparse ms\tcache ms\tlift ms\tcompile ms\tprepare ms\tverify/load ms\tattach ms\ttotal ms\tcpu ms\tprograms kept\tloaded\t")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e6) }
	for _, r := range res {
		for _, row := range []struct {
			name string
			ph   Phases
		}{{"full", r.Full}, {"one rule changed", r.Change}, {"replace rule (edit)", r.Edit}, {"replace rule (daemon)", r.DaemonEdit}} {
			p := row.ph
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t\n", r.Case, r.Rules, row.name,
				ms(p.Parse), ms(p.Cache), ms(p.Lift), ms(p.Compile), ms(p.Prepare), ms(p.Load), ms(p.Attach), ms(p.Total), ms(p.CPU), p.Kept, p.Loaded)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range res {
		fmt.Fprintf(w, "%s: one-rule change of %d rules: %.0f ms (verify/load + attach %.0f ms) vs full load %.0f ms (%.0f ms)\n", r.Case, r.Rules,
			float64(r.Change.Total)/1e6, float64(r.Change.Load+r.Change.Attach)/1e6, float64(r.Full.Total)/1e6, float64(r.Full.Load+r.Full.Attach)/1e6)
		for _, e := range []struct {
			name string
			ph   Phases
		}{{"replace rule (edit)", r.Edit}, {"replace rule (daemon)", r.DaemonEdit}} {
			fmt.Fprintf(w, "%s: %s of %d rules: %.0f ms = %.3f× the one-rule change by full parse, %.3f× the full load; cpu %.0f ms = %.3f×, %.3f×\n", r.Case, e.name, r.Rules,
				float64(e.ph.Total)/1e6, float64(e.ph.Total)/float64(r.Change.Total), float64(e.ph.Total)/float64(r.Full.Total),
				float64(e.ph.CPU)/1e6, float64(e.ph.CPU)/float64(r.Change.CPU), float64(e.ph.CPU)/float64(r.Full.CPU))
		}
	}
	return nil
}

package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/fastedit"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/internal/settimeouts"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/state"
	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// rulesetFlags are the nft-like options of the commands that change or show
// the running ruleset. They may stand before the command, as with nft
// (`bpfilter-nft -a list ruleset`, `bpfilter-nft -c -f rules.nft`).
type rulesetFlags struct {
	file          string
	check         bool
	handles       bool
	json          bool
	stateRoot     string
	netns         string
	pid           int
	netdevBackend string
	cgroup        string
	socket        string
	noDaemon      bool
}

func (g *rulesetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.file, "f", "", "load the ruleset in `FILE` (nft -f syntax; \"-\" for standard input)")
	fs.StringVar(&g.file, "file", "", "same as -f")
	fs.BoolVar(&g.check, "c", false, "check only: parse, translate and compile, apply nothing")
	fs.BoolVar(&g.check, "check", false, "same as -c")
	fs.BoolVar(&g.handles, "a", false, "list: show rule handles")
	fs.BoolVar(&g.json, "j", false, "list: print nft's JSON format")
	fs.StringVar(&g.stateRoot, "state", "", "bpffs `DIR` holding the pinned ruleset (default "+state.DefaultRoot+")")
	fs.StringVar(&g.netns, "netns", "", "act in the network namespace at `PATH` (e.g. /run/netns/NAME)")
	fs.IntVar(&g.pid, "pid", 0, "act in the network namespace of process `PID`")
	fs.StringVar(&g.netdevBackend, "netdev-backend", "auto", "program type of netdev ingress chains: auto (per device: tcx on veth and devices without native XDP, XDP on native-XDP drivers), xdp or tc")
	fs.StringVar(&g.cgroup, "cgroup", "", "put input/output chains on cgroup_skb programs attached to the cgroup at `PATH`")
	fs.StringVar(&g.socket, "socket", "", "the daemon's Unix socket `PATH` (default $BPFILTER_NFT_SOCKET, else /run/bpfilter-nft.sock)")
	fs.BoolVar(&g.noDaemon, "no-daemon", false, "change the pinned state directly even when a daemon is running")
}

// globals holds the options given before the command.
var globals rulesetFlags

const rulesetUsage = `Ruleset commands (nft syntax). When a daemon listens at --socket (else
$BPFILTER_NFT_SOCKET, else /run/bpfilter-nft.sock) they go through it and act
in this process's network namespace (or --netns/--pid); otherwise, or with
--no-daemon, they change the state pinned under --state directly:
  bpfilter-nft [OPTIONS] -f FILE         load FILE on top of the running ruleset, as nft -f does
  bpfilter-nft [OPTIONS] -c -f FILE      check FILE: translate and compile, apply nothing
  bpfilter-nft [OPTIONS] list ruleset    the running ruleset with live counters (-a handles, -j JSON)
  bpfilter-nft [OPTIONS] list table FAMILY NAME
  bpfilter-nft [OPTIONS] list hooks      where each chain's program is attached (xdp/tcx per device, and why)
  bpfilter-nft [OPTIONS] flush ruleset   detach and remove everything
  bpfilter-nft [OPTIONS] add|insert|delete|replace|create|flush ...
                                         one nft command, e.g. add rule inet filter input tcp dport 22 accept
                                         or delete rule inet filter input handle 4
`

func init() {
	register(&command{name: "list", args: "ruleset | table FAMILY NAME [-a] [-j] | hooks | set|map [FAMILY] TABLE NAME | sets|maps [FAMILY] | counters|quotas|limits [table FAMILY NAME] | counter|quota|limit FAMILY TABLE NAME | objects | namespaces", summary: "show the running ruleset with live counters", run: runList})
	for _, verb := range []string{"add", "insert", "delete", "replace", "create", "flush"} {
		register(&command{name: verb, args: "nft command arguments", summary: "edit the running ruleset (nft syntax): " + verb + " …", run: runEdit(verb)})
	}
}

// runGlobal handles invocations that start with options, as nft's do.
func runGlobal(stdout, stderr io.Writer, args []string) int {
	fs := flag.NewFlagSet("bpfilter-nft", flag.ContinueOnError)
	fs.SetOutput(stderr)
	globals = rulesetFlags{}
	globals.register(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, rulesetUsage+"\nOptions:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := fs.Args()
	if len(rest) > 0 {
		c := lookup(rest[0])
		if c == nil {
			fmt.Fprintf(stderr, "bpfilter-nft: unknown command %q (see bpfilter-nft help)\n", rest[0])
			return 2
		}
		return runCommand(c, stdout, stderr, rest[1:])
	}
	if globals.file == "" {
		fs.Usage()
		return 2
	}
	if err := loadFile(stdout, globals); err != nil {
		fmt.Fprintf(stderr, "bpfilter-nft: %v\n", err)
		return 1
	}
	return 0
}

// target is where a ruleset command acts: a network namespace and its
// state directory.
type target struct {
	ns *nsctx.NetNS
	st *state.Dir
	// timeouts, when not nil, says which elements of sets with
	// timeouts keep their maps' deadlines (see settimeouts.Stored).
	timeouts *settimeouts.Sync
}

func openTarget(g rulesetFlags) (*target, error) {
	ns, err := openNetNS(g)
	if err != nil {
		return nil, err
	}
	st, err := state.Open(ns, state.Options{Root: g.stateRoot})
	if err != nil {
		ns.Close()
		return nil, err
	}
	return &target{ns: ns, st: st}, nil
}

func (t *target) close() { t.ns.Close() }

// withTarget opens the target g names, runs fn on it and closes it.
func withTarget(g rulesetFlags, fn func(t *target) error) error {
	t, err := openTarget(g)
	if err != nil {
		return err
	}
	defer t.close()
	return fn(t)
}

// translateRuleset translates and compiles rs for network namespace ns.
func translateRuleset(g rulesetFlags, ns *nsctx.NetNS, rs *nlmsg.Ruleset) (*pipeline.Result, error) {
	opts, err := rulesetPipelineOptions(g, ns)
	if err != nil {
		return nil, err
	}
	res, err := pipeline.Translate(rs, opts)
	if err != nil {
		return nil, err
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("nothing applied; these rules cannot be translated exactly:\n%w", err)
	}
	return res, nil
}

// checkRuleset translates and compiles rs and reports, applying nothing.
func checkRuleset(stdout io.Writer, g rulesetFlags, ns *nsctx.NetNS, name string, rs *nlmsg.Ruleset) error {
	res, err := translateRuleset(g, ns, rs)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d rules in %d programs compiled; nothing applied (check mode)\n", name, len(res.Rules), len(res.Programs))
	return nil
}

func rulesetPipelineOptions(g rulesetFlags, ns *nsctx.NetNS) (pipeline.Options, error) {
	opts := pipeline.Options{NetNS: ns, Cgroup: g.cgroup != ""}
	typ, err := parseNetdevBackend(g.netdevBackend)
	if err != nil {
		return opts, err
	}
	opts.NetdevBackend = typ
	return opts, nil
}

// parseNetdevBackend parses --netdev-backend: nil for auto (or empty),
// else XDP or TC.
func parseNetdevBackend(s string) (*codegen.ProgramType, error) {
	if s == "" || s == "auto" {
		return nil, nil
	}
	typ, err := codegen.ParseProgramType(s)
	if err != nil || (typ != codegen.XDP && typ != codegen.TC) {
		return nil, fmt.Errorf("--netdev-backend %q: want auto, xdp or tc", s)
	}
	return &typ, nil
}

// storedText returns the running ruleset in nft syntax ("" when none).
func (t *target) storedText() (string, error) {
	snap, err := loader.Load(t.st)
	if err != nil {
		return "", err
	}
	return snap.Manifest.Ruleset, nil
}

// apply has nft parse input (the running ruleset followed by the change),
// translates and compiles the result, and applies it — or, with check,
// only reports.
func (t *target) apply(stdout io.Writer, g rulesetFlags, name, input string) error {
	rs, err := nftfile.Parse(name, strings.NewReader(input), nftfile.Options{TargetNetNS: t.ns.File()})
	if err != nil {
		return err
	}
	return t.applyRuleset(stdout, g, name, rs)
}

// applyRuleset translates and compiles decoded nf_tables objects and
// applies them (the loader stores their nft text), or with check only
// reports. The caller holds t.st.Lock() from reading the running ruleset
// on.
func (t *target) applyRuleset(stdout io.Writer, g rulesetFlags, name string, rs *nlmsg.Ruleset) error {
	return t.applyDecoded(stdout, g, name, rs, func(stored string) error { return saveDecoded(t.st, stored, rs) })
}

// applyDecoded is applyRuleset that records the decoded ruleset with
// record once it is applied (stored is its text).
func (t *target) applyDecoded(stdout io.Writer, g rulesetFlags, name string, rs *nlmsg.Ruleset, record func(stored string) error) error {
	if g.check {
		return checkRuleset(stdout, g, t.ns, name, rs)
	}
	res, err := translateRuleset(g, t.ns, rs)
	if err != nil {
		return err
	}
	t.timeouts.Keep(res.Ruleset)
	cgroup := g.cgroup
	if cgroup != "" && !filepath.IsAbs(cgroup) {
		return fmt.Errorf("--cgroup %q: want an absolute path", cgroup)
	}
	var stored string
	if err := loader.Apply(t.ns, t.st, res, loader.Options{CgroupPath: cgroup, Locked: true, Stored: &stored, Keep: fastedit.Entries}); err != nil {
		return err
	}
	return record(stored)
}

// saveDecoded caches rs, the decoded form of the ruleset just applied
// (stored as text), for the next rule edit (see package fastedit).
// Rulesets with set element timeouts are not cached: their elements change
// in the maps.
func saveDecoded(st *state.Dir, text string, rs *nlmsg.Ruleset) error {
	if settimeouts.Mentioned(text) {
		return fastedit.Drop(st)
	}
	_, err := fastedit.Save(st, text, rs)
	return err
}

// editRule applies one rule edit (add, insert, replace or delete rule) to
// the running ruleset. The cached decoded ruleset serves it when it can
// (fastedit): nft then parses only the new rule, against a skeleton of the
// running ruleset. Otherwise, or when the fast path cannot place the rule
// (an unknown chain or handle: nft's own error is the one to report), nft
// parses the running ruleset and then the command, as its own transaction,
// as on a live system.
func (t *target) editRule(stdout io.Writer, g rulesetFlags, name, change string, cmd fastedit.Command) error {
	unlock, err := t.st.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	// Only the text: the counters' values (loader.Load) are not needed.
	var current string
	switch man, err := t.st.ReadManifest(state.StateName); {
	case err == nil:
		current = man.Ruleset
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if !settimeouts.Mentioned(current) && !t.st.Exists(state.NextName) {
		if cur, cache, err := fastedit.Load(t.st, current); err == nil {
			if next, e, err := fastedit.Apply(cur, cmd, fastedit.NftParser(nftfile.Options{TargetNetNS: t.ns.File()})); err == nil {
				return t.applyDecoded(stdout, g, name, next, func(stored string) error {
					_, err := fastedit.Record(t.st, cache, stored, next, e)
					return err
				})
			}
		}
	}
	current, t.timeouts, err = settimeouts.Stored(t.st, current, t.ns.File())
	if err != nil {
		return err
	}
	steps := []string{change}
	if strings.TrimSpace(current) != "" {
		steps = []string{current, change}
	}
	rs, err := nftfile.ParseSteps(name, nftfile.Options{TargetNetNS: t.ns.File()}, steps...)
	if err != nil {
		return err
	}
	return t.applyRuleset(stdout, g, name, rs)
}

func loadFile(stdout io.Writer, g rulesetFlags) error {
	var name, change string
	var replace bool
	if g.file == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return err
		}
		name, change = "-", string(b)
		replace = replacesRuleset(change)
	} else {
		abs, err := filepath.Abs(g.file)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(abs)
		if err != nil {
			return err
		}
		replace = replacesRuleset(string(b))
		// nft reads the file itself, so its messages name file:line.
		name, change = g.file, "include \""+abs+"\"\n"
	}
	if replace {
		// The running ruleset need not be parsed again only to be
		// flushed: nft then parses half as much.
		return withRuleset(g,
			func(t *target) error { return t.replace(stdout, g, name, change) },
			func(d *daemonTarget) error { return d.replace(stdout, g, name, change) })
	}
	return withRuleset(g,
		func(t *target) error { return t.change(stdout, g, name, change) },
		func(d *daemonTarget) error { return d.change(stdout, g, name, change) })
}

// replacesRuleset reports whether nft input text starts (after comments
// and blank lines) with "flush ruleset" of every family, so that what runs
// before it does not matter.
func replacesRuleset(text string) bool {
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		stmt, _, _ := strings.Cut(line, ";")
		f := strings.Fields(stmt)
		if len(f) == 0 {
			if strings.TrimSpace(line) == "" {
				continue
			}
			return false
		}
		return len(f) == 2 && f[0] == "flush" && f[1] == "ruleset"
	}
	return false
}

// replace applies input that starts with "flush ruleset": the running
// ruleset is not parsed again (its set elements' deadlines are still kept
// where the sets stay, see settimeouts).
func (t *target) replace(stdout io.Writer, g rulesetFlags, name, input string) error {
	unlock, err := t.st.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	current, err := t.storedText()
	if err != nil {
		return err
	}
	if _, t.timeouts, err = settimeouts.Stored(t.st, current, t.ns.File()); err != nil {
		return err
	}
	return t.apply(stdout, g, name, input)
}

// change applies change (nft -f input) on top of the running ruleset.
func (t *target) change(stdout io.Writer, g rulesetFlags, name, change string) error {
	unlock, err := t.st.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	current, err := t.storedText()
	if err != nil {
		return err
	}
	current, t.timeouts, err = settimeouts.Stored(t.st, current, t.ns.File())
	if err != nil {
		return err
	}
	return t.apply(stdout, g, name, current+"\n"+change)
}

func runEdit(verb string) func(stdout, stderr io.Writer, args []string) error {
	return func(stdout, stderr io.Writer, args []string) error {
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
			fmt.Fprint(stderr, rulesetUsage)
			if len(args) == 0 {
				return errUsage
			}
			return flag.ErrHelp
		}
		if verb == "flush" && len(args) == 1 && args[0] == "ruleset" {
			return withRuleset(globals,
				func(t *target) error {
					if err := loader.Flush(t.st); err != nil {
						return err
					}
					return loader.ReleaseConntrack(t.ns)
				},
				func(d *daemonTarget) error { return d.flush() })
		}
		cmd := verb + " " + strings.Join(args, " ") + "\n"
		if edit, ok := fastedit.ParseCommand(verb, args); ok {
			return withRuleset(globals,
				func(t *target) error { return t.editRule(stdout, globals, "<cmdline>", cmd, edit) },
				func(d *daemonTarget) error { return d.editRule(stdout, globals, verb, args, cmd) })
		}
		if ref, ok := elementCommand(verb, args); ok {
			return withRuleset(globals,
				func(t *target) error { return t.changeSet(stdout, globals, "<cmdline>", cmd, ref) },
				func(d *daemonTarget) error { return d.change(stdout, globals, "<cmdline>", cmd) })
		}
		return withRuleset(globals,
			func(t *target) error { return t.change(stdout, globals, "<cmdline>", cmd) },
			func(d *daemonTarget) error { return d.change(stdout, globals, "<cmdline>", cmd) })
	}
}

func runList(stdout, stderr io.Writer, args []string) error {
	c := lookup("list")
	fs := newFlagSet(c, stderr, "Prints the running ruleset in nft syntax with live counter values read from the BPF counter map.")
	g := globals
	fs.BoolVar(&g.handles, "a", g.handles, "show rule handles")
	fs.BoolVar(&g.json, "j", g.json, "print nft's JSON format")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var family, table string
	sl, isSetListing := parseSetListing(fs.Args())
	ol, isObjectListing := parseObjectListing(fs.Args())
	switch {
	case isSetListing, isObjectListing:
	case fs.NArg() == 1 && (fs.Arg(0) == "namespaces" || fs.Arg(0) == "objects"):
		return runListDaemon(stdout, fs.Arg(0))
	case fs.NArg() == 1 && fs.Arg(0) == "hooks":
		return runListHooks(stdout, g)
	case fs.NArg() == 1 && fs.Arg(0) == "ruleset":
	case fs.NArg() == 3 && fs.Arg(0) == "table":
		family, table = fs.Arg(1), fs.Arg(2)
	default:
		fs.Usage()
		return errUsage
	}
	show := func(live *liveRuleset, ns *os.File) error {
		if isSetListing {
			return sl.print(stdout, live.rs)
		}
		if isObjectListing {
			return ol.print(stdout, live)
		}
		if family != "" && live.table(family, table) == nil {
			return fmt.Errorf("table %s %s: no such table", family, table)
		}
		if g.json {
			return live.writeJSON(stdout, ns, family, table)
		}
		opts := ir.PrintOptions{Handles: g.handles, Counters: live.counter, Quotas: live.quota, Objects: live.objectState}
		if family != "" {
			return live.table(family, table).PrintWith(stdout, opts)
		}
		return live.rs.PrintWith(stdout, opts)
	}
	return withRuleset(g,
		func(t *target) error {
			live, err := t.live()
			if err != nil {
				return err
			}
			return show(live, t.ns.File())
		},
		func(d *daemonTarget) error {
			live, err := d.live()
			if err != nil {
				return err
			}
			return show(live, d.ns.File())
		})
}

// liveRuleset is the running ruleset, parsed back from its stored text,
// with the counter values of its rules.
type liveRuleset struct {
	text     string
	rs       *ir.Ruleset
	counters map[ruleID][]codegen.CounterValue
	// states holds the state of each rule's limit and quota statements.
	states map[ruleID][]codegen.StateValue
	// objects holds the state of each named object (loader.ObjectStateID).
	objects map[string]codegen.StateValue
}

type ruleID struct {
	family, table, chain string
	handle               uint64
}

func (t *target) live() (*liveRuleset, error) {
	snap, err := loader.Load(t.st)
	if err != nil {
		return nil, err
	}
	l, err := newLiveRuleset(snap.Manifest.Ruleset, snap.Manifest.Rules, snap.Counters, snap.States, t.ns.File())
	if err != nil {
		return nil, err
	}
	l.objects = snap.Objects
	if !settimeouts.Mentioned(snap.Manifest.Ruleset) {
		return l, nil
	}
	live, err := loader.LiveTimeouts(t.st)
	if err != nil {
		return nil, err
	}
	settimeouts.Apply(l.rs, live, codegen.MonotonicNow(), nil)
	return l, nil
}

// newLiveRuleset parses the stored ruleset text back (nft in a private
// namespace mirroring ns's interfaces) and matches the counter values of
// the stored rules (the loader's manifest and snapshot) to its rules.
func newLiveRuleset(text string, rules []state.Rule, counters [][]codegen.CounterValue, states [][]codegen.StateValue, ns *os.File) (*liveRuleset, error) {
	l := &liveRuleset{text: text, rs: &ir.Ruleset{}, counters: map[ruleID][]codegen.CounterValue{}, states: map[ruleID][]codegen.StateValue{}}
	if strings.TrimSpace(l.text) == "" {
		return l, nil
	}
	msgs, err := nftfile.Parse("stored ruleset", strings.NewReader(l.text), nftfile.Options{TargetNetNS: ns})
	if err != nil {
		return nil, err
	}
	lifted, err := translate.Lift(msgs)
	if err != nil {
		return nil, err
	}
	l.rs = lifted.Ruleset
	// The stored manifest names rules by their text and position among
	// equal rules of the chain; handles are those of this parse.
	type textID struct {
		family, table, chain, text string
		nth                        int
	}
	values := map[textID][]codegen.CounterValue{}
	stateValues := map[textID][]codegen.StateValue{}
	seen := map[textID]int{}
	for i, r := range rules {
		first := textID{r.Family, r.Table, r.Chain, r.Text, 0}
		k := first
		k.nth = seen[first]
		seen[first]++
		if i < len(counters) {
			values[k] = counters[i]
		}
		if i < len(states) {
			stateValues[k] = states[i]
		}
	}
	for _, tab := range l.rs.Tables {
		for _, c := range tab.Chains {
			nth := map[string]int{}
			for _, r := range c.Rules {
				text := ir.FormatRule(tab.Family, r)
				k := textID{tab.Family.String(), tab.Name, c.Name, text, nth[text]}
				nth[text]++
				if v, ok := values[k]; ok {
					l.counters[ruleID{tab.Family.String(), tab.Name, c.Name, r.Handle}] = v
				}
				if v, ok := stateValues[k]; ok {
					l.states[ruleID{tab.Family.String(), tab.Name, c.Name, r.Handle}] = v
				}
			}
		}
	}
	return l, nil
}

func (l *liveRuleset) table(family, name string) *ir.Table {
	for _, t := range l.rs.Tables {
		if t.Family.String() == family && t.Name == name {
			return t
		}
	}
	return nil
}

// counter serves ir.PrintOptions.Counters; stmt is an index into the
// rule's statements, the stored values are per counter statement.
func (l *liveRuleset) counter(chain string, handle uint64, stmt int) (uint64, uint64, bool) {
	for _, t := range l.rs.Tables {
		c := t.Chain(chain)
		if c == nil {
			continue
		}
		for _, r := range c.Rules {
			if r.Handle != handle {
				continue
			}
			vals, ok := l.counters[ruleID{t.Family.String(), t.Name, chain, handle}]
			if !ok {
				continue
			}
			nth := 0
			for _, s := range r.Stmts[:stmt] {
				if _, ok := s.(*ir.Counter); ok {
					nth++
				}
			}
			if nth < len(vals) {
				return vals[nth].Packets, vals[nth].Bytes, true
			}
		}
	}
	return 0, 0, false
}

// writeJSON prints nft's own JSON listing of the stored ruleset with the
// live counter values filled in.
func (l *liveRuleset) writeJSON(w io.Writer, ns *os.File, family, table string) error {
	args := []string{"-j", "list", "ruleset"}
	if family != "" {
		args = []string{"-j", "list", "table", family, table}
	}
	out, err := nftfile.Listing("stored ruleset", strings.NewReader(l.text), nftfile.Options{TargetNetNS: ns}, args...)
	if err != nil {
		return err
	}
	var doc map[string][]map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return fmt.Errorf("nft's JSON listing: %w", err)
	}
	for _, obj := range doc["nftables"] {
		if err := l.liveJSONObject(obj); err != nil {
			return err
		}
		raw, ok := obj["rule"]
		if !ok {
			continue
		}
		var rule map[string]any
		if err := json.Unmarshal(raw, &rule); err != nil {
			return err
		}
		fam, _ := rule["family"].(string)
		tab, _ := rule["table"].(string)
		chain, _ := rule["chain"].(string)
		handle, _ := rule["handle"].(float64)
		vals := l.counters[ruleID{fam, tab, chain, uint64(handle)}]
		nth := 0
		exprs, _ := rule["expr"].([]any)
		for _, e := range exprs {
			m, ok := e.(map[string]any)
			if !ok {
				continue
			}
			if _, ok := m["counter"]; ok && nth < len(vals) {
				m["counter"] = map[string]uint64{"packets": vals[nth].Packets, "bytes": vals[nth].Bytes}
				nth++
			}
		}
		if obj["rule"], err = json.Marshal(rule); err != nil {
			return err
		}
	}
	enc := json.NewEncoder(w)
	return enc.Encode(doc)
}

// quota serves ir.PrintOptions.Quotas: the bytes the quota statement stmt
// has consumed, its "used" value at load time included.
func (l *liveRuleset) quota(chain string, handle uint64, stmt int) (uint64, bool) {
	for _, t := range l.rs.Tables {
		c := t.Chain(chain)
		if c == nil {
			continue
		}
		for _, r := range c.Rules {
			if r.Handle != handle || stmt >= len(r.Stmts) {
				continue
			}
			q, ok := r.Stmts[stmt].(*ir.Quota)
			if !ok {
				continue
			}
			vals, ok := l.states[ruleID{t.Family.String(), t.Name, chain, handle}]
			if !ok {
				continue
			}
			nth := 0
			for _, s := range r.Stmts[:stmt] {
				switch s.(type) {
				case *ir.Limit, *ir.Quota:
					nth++
				}
			}
			if nth < len(vals) {
				return q.Used + vals[nth].A, true
			}
		}
	}
	return 0, false
}

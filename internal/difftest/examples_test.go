package difftest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
)

// examplesDir holds the example rulesets Debian's nftables package ships.
const examplesDir = "/usr/share/doc/nftables/examples"

// exampleCase is one shipped example that uses sets or maps.
type exampleCase struct {
	file string
	// before is loaded ahead of the file, in its own transaction (the
	// file deletes a table it expects to exist).
	before string
	// ifaces are interfaces the file names, created (as veth pairs)
	// where nft parses it and where the kernel side runs.
	ifaces []string
	// nftError is a substring of nft's own error when nft itself cannot
	// load the file in a scratch namespace; the file then has nothing
	// to translate.
	nftError string
	// setRules are substrings of rules that use sets or maps: each must
	// compile.
	setRules []string
	// hook is the hook of the file's filter chain for the differential
	// test when every rule compiles.
	hook ir.Hook
}

var exampleCases = []exampleCase{
	{file: "sets_and_maps.nft", before: "table ip filter {}", ifaces: []string{"eth0", "eth1", "eth2", "eth3"},
		setRules: []string{"meta iif { 2, 3, 4, 5 } meta l4proto tcp tcp dport { 22, 53, 123-125, 443 } counter", "meta iif { 2, 3 } counter", "meta iif @local_ifs counter", "meta iif vmap @jump_map"},
		hook:     ir.HookInput},
	{file: "workstation.nft",
		setRules: []string{"icmpv6 type { 1, 2, 3, 4, 128, 129, 133, 134, 135, 136, 148, 149 } accept", "ip6 saddr fe80::/10 meta l4proto icmpv6 icmpv6 type { 130, 131, 132, 143, 151, 152, 153 } accept"},
		hook:     ir.HookInput},
	{file: "overview.nft", ifaces: []string{"bond0", "bond1"}, hook: ir.HookPrerouting},
	{file: "secmark.nft", nftError: "secmark ssh_server {"},
	{file: "load_balancing.nft", ifaces: []string{"eth0", "eth1"}, nftError: "Could not process rule: Operation not supported"},
}

// withIfaces creates veth pairs named after ifaces (two at a time) in the
// network namespace open as nsf.
func withIfaces(t *testing.T, nsf *os.File, ifaces []string) {
	t.Helper()
	for i := 0; i < len(ifaces); i += 2 {
		peer := fmt.Sprintf("exv%d-%d", os.Getpid(), i)
		if i+1 < len(ifaces) {
			peer = ifaces[i+1]
		}
		cmd := exec.Command("nsenter", "--net=/proc/self/fd/3", "ip", "link", "add", ifaces[i], "type", "veth", "peer", "name", peer)
		cmd.ExtraFiles = []*os.File{nsf}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("create %s: %v: %s", ifaces[i], err, out)
		}
	}
}

// exprReason matches the refusal of a rule: the expression and why.
var exprReason = regexp.MustCompile(`expression \d+ \(\w+\): .+`)

// TestDebianExamples reads the example rulesets of Debian's nftables
// package that use sets and maps in place: each either loads (every rule
// compiles, the programs pass the verifier and, with a filter chain, give
// the kernel's verdicts in the differential test) or nft itself refuses
// it, or every rule that does not compile is refused with the expression
// and the reason; the rules that use sets and maps always compile.
func TestDebianExamples(t *testing.T) {
	privtest.Require(t)
	if _, err := os.Stat(examplesDir); err != nil {
		t.Skipf("nftables examples not installed: %v", err)
	}
	for _, ex := range exampleCases {
		t.Run(ex.file, func(t *testing.T) {
			text, err := os.ReadFile(filepath.Join(examplesDir, ex.file))
			if err != nil {
				t.Fatal(err)
			}
			ns, err := netnstest.New()
			if err != nil {
				t.Fatal(err)
			}
			defer ns.Close()
			withIfaces(t, ns.File(), ex.ifaces)
			steps := []string{string(text)}
			if ex.before != "" {
				steps = []string{ex.before, string(text)}
			}
			rs, err := nftfile.ParseSteps(ex.file, nftfile.Options{TargetNetNS: ns.File()}, steps...)
			if ex.nftError != "" {
				if err == nil || !strings.Contains(err.Error(), ex.nftError) {
					t.Fatalf("nft: %v, want an error saying %q", err, ex.nftError)
				}
				t.Logf("nft itself refuses the file: %s", firstLine(err.Error()))
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n, err := nsctx.FromFile(ns.File())
			if err != nil {
				t.Fatal(err)
			}
			res, err := pipeline.Translate(rs, pipeline.Options{NetNS: n})
			if err != nil {
				t.Fatal(err)
			}
			compiled := map[string]bool{}
			for _, r := range res.Rules {
				switch r.Status {
				case pipeline.StatusCompiled:
					compiled[r.Rule] = true
				case pipeline.StatusUnsupported:
					if !exprReason.MatchString(r.Reason) {
						t.Errorf("rule %d refused without naming the expression: %s", r.Handle, r.Reason)
					}
					t.Logf("refused: chain %s, rule handle %d: %s", r.Chain, r.Handle, r.Reason)
				}
			}
			for _, want := range ex.setRules {
				found := false
				for r := range compiled {
					if strings.Contains(r, want) {
						found = true
					}
				}
				if !found {
					t.Errorf("no compiled rule contains %q; compiled: %v", want, compiled)
				}
			}
			if res.Err() != nil {
				return // nothing to load or compare
			}
			if len(res.Programs) == 0 {
				t.Log("every rule translates; the file has no base chain, so nothing runs")
				return
			}
			for _, p := range res.Programs {
				l, err := p.Program.Load()
				if err != nil {
					t.Fatalf("chain %s: %v", p.Chain.Name, err)
				}
				l.Close()
			}
			o, err := oracle.New(oracle.Config{Hook: ex.hook})
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			withIfaces(t, o.ReceiverNetNS(), ex.ifaces)
			// The oracle replaces the receiver's ruleset itself; a file's
			// own "flush ruleset" would remove its observers.
			kernelText := strings.ReplaceAll(string(text), "flush ruleset\n", "")
			if ex.before != "" {
				kernelText = ex.before + "\n" + kernelText
			}
			rep, err := Check(o, ex.hook, kernelText, Options{Seed: 1, Count: 100})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Compared == 0 {
				t.Fatal("no verdicts compared")
			}
			for _, m := range rep.Mismatches {
				t.Errorf("mismatch: %s", m)
			}
			t.Logf("loads; %d frames, %d verdicts compared, kernel %v", rep.Frames, rep.Compared, rep.Kernel)
		})
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/fastedit"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// TestFastRuleEdits runs the same rule edits (insert, replace, add at a
// position, delete; rules with anonymous sets) in three namespaces, each
// the receiver of an oracle pair: one edited by the CLI through the
// decoded-ruleset cache (nft parses only the new rule), one through a
// daemon (which keeps the decoded ruleset itself), and one by the CLI with
// the cache removed before every edit, so that nft parses the whole
// running ruleset as before. After every edit all three give the same
// listing — rules, handles and counters (the same frames went through
// each: unchanged rules keep counting, replaced ones start again) — and
// the expected verdicts.
func TestFastRuleEdits(t *testing.T) {
	privtest.Require(t)
	type side struct {
		o     *oracle.Oracle
		cli   func(args ...string) (string, string, int)
		state string // the state directory's path
		name  string
		fast  bool
	}
	var sides []*side
	for i, name := range []string{"CLI through the cache", "daemon", "CLI by full parse"} {
		o, err := oracle.New(oracle.Config{Hook: ir.HookIngress})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { o.Close() })
		if err := o.Load(""); err != nil {
			t.Fatal(err)
		}
		cli, root := receiverCLIRoot(t, o)
		if name == "daemon" {
			var sock string
			sock, root = startDaemon(t, codegen.TC)
			nsPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), o.ReceiverNetNS().Fd())
			cli = func(args ...string) (string, string, int) {
				return runCLI(append([]string{"--socket", sock, "--netns", nsPath}, args...)...)
			}
		}
		ns, err := nsctx.OpenNetNS(fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), o.ReceiverNetNS().Fd()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		st, err := state.Open(ns, state.Options{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		sides = append(sides, &side{o: o, cli: cli, state: st.Path(), name: name, fast: i < 2})
	}
	run := func(s *side, args ...string) string {
		t.Helper()
		args = append([]string(nil), args...)
		for i, a := range args {
			args[i] = strings.ReplaceAll(a, "DEV", s.o.ReceiverIfname())
		}
		out, errOut, code := s.cli(args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s %s", args, code, out, errOut)
		}
		return strings.ReplaceAll(out, s.o.ReceiverIfname(), "DEV")
	}
	file := t.TempDir() + "/rules.nft"
	writeFile(t, file, `flush ruleset
table netdev f {
	set blocked { type inet_service; elements = { 20, 21 } }
	chain ing {
		type filter hook ingress device "DEV" priority 0; policy accept;
		udp dport 9 counter drop
		udp dport { 10, 11 } counter accept
		udp dport @blocked counter drop
		udp dport 12 counter jump more
	}
	chain more {
		udp sport 4000 counter drop
	}
}
`)
	for _, s := range sides {
		text, _ := os.ReadFile(file)
		writeFile(t, file+".dev", strings.ReplaceAll(string(text), "DEV", s.o.ReceiverIfname()))
		run(s, "-f", file+".dev")
	}
	send := func(port uint16, want oracle.Result) {
		t.Helper()
		for _, s := range sides {
			r, err := s.o.Verdict(udpFrame(s.o, false, port))
			if err != nil {
				t.Fatal(err)
			}
			if r == oracle.NotReached {
				r = oracle.Dropped // tcx drops before the netdev hook the oracle watches
			}
			if r != want {
				t.Errorf("%s: udp dport %d: %s, want %s", s.name, port, r, want)
			}
		}
	}
	handleRE := regexp.MustCompile(`(?m)^\s*(.*?) # handle (\d+)$`)
	handleOf := func(listing, rule string) string {
		for _, m := range handleRE.FindAllStringSubmatch(listing, -1) {
			if strings.Contains(m[1], rule) {
				return m[2]
			}
		}
		t.Fatalf("no rule %q in\n%s", rule, listing)
		return ""
	}
	for p, want := range map[uint16]oracle.Result{9: oracle.Dropped, 10: oracle.Accepted, 20: oracle.Dropped, 12: oracle.Dropped} {
		send(p, want)
	}
	for step, e := range []struct {
		edit  func(listing string) []string
		sends map[uint16]oracle.Result
	}{
		{func(string) []string {
			return []string{"insert", "rule", "netdev", "f", "ing", "udp", "dport", "13", "counter", "drop"}
		}, map[uint16]oracle.Result{13: oracle.Dropped, 9: oracle.Dropped}},
		{func(l string) []string {
			return []string{"replace", "rule", "netdev", "f", "ing", "handle", handleOf(l, "udp dport 9 "), "udp", "dport", "9", "counter", "accept"}
		}, map[uint16]oracle.Result{9: oracle.Accepted, 10: oracle.Accepted}},
		{func(l string) []string {
			return []string{"add", "rule", "netdev", "f", "ing", "position", handleOf(l, "udp dport { 10, 11 }"), "udp", "dport", "{", "14,", "15", "}", "counter", "drop"}
		}, map[uint16]oracle.Result{14: oracle.Dropped, 15: oracle.Dropped, 11: oracle.Accepted}},
		{func(l string) []string {
			return []string{"delete", "rule", "netdev", "f", "ing", "handle", handleOf(l, "udp dport { 10, 11 }")}
		}, map[uint16]oracle.Result{10: oracle.Accepted, 14: oracle.Dropped, 21: oracle.Dropped}},
		{func(l string) []string {
			return []string{"add", "rule", "netdev", "f", "more", "udp", "sport", "4001", "drop"}
		}, map[uint16]oracle.Result{12: oracle.Dropped}},
	} {
		listing := run(sides[0], "-a", "list", "ruleset")
		args := e.edit(listing)
		for _, s := range sides {
			path := s.state + "/" + fastedit.CacheName
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("step %d: %s: no decoded-ruleset cache before the edit: %v", step, s.name, err)
			}
			if !s.fast {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			}
			run(s, args...)
		}
		for p, want := range e.sends {
			send(p, want)
		}
		fast := run(sides[0], "-a", "list", "ruleset")
		for _, s := range sides[1:] {
			if other := run(s, "-a", "list", "ruleset"); other != fast {
				t.Errorf("step %d (%s): listings differ:\n--- %s\n%s--- %s\n%s", step, strings.Join(args, " "), sides[0].name, fast, s.name, other)
			}
		}
		if step == 1 && !strings.Contains(fast, "udp dport 13 counter packets 1 bytes 28 drop") {
			t.Errorf("the inserted rule's counter was not kept:\n%s", fast)
		}
	}
	// Refused edits (a table of another family, a handle no rule has)
	// report nft's error and change nothing.
	for _, s := range sides[:2] {
		before := run(s, "-a", "list", "ruleset")
		for _, args := range [][]string{
			{"add", "rule", "f", "more", "udp", "sport", "4002", "drop"},
			{"delete", "rule", "netdev", "f", "ing", "handle", "999"},
			{"replace", "rule", "netdev", "f", "ing", "handle", "999", "drop"},
			{"add", "rule", "netdev", "f", "ing", "udp", "dport", "@nosuchset", "drop"},
		} {
			_, errOut, code := s.cli(args...)
			if code != 1 || !strings.Contains(errOut, "Error:") {
				t.Errorf("%s: %v: exit %d, stderr %q; want nft's refusal", s.name, args, code, errOut)
			}
		}
		if after := run(s, "-a", "list", "ruleset"); after != before {
			t.Errorf("%s: a refused edit changed the ruleset:\n%s\n---\n%s", s.name, before, after)
		}
	}
	final := run(sides[0], "list", "ruleset")
	for _, want := range []string{
		"udp dport 13 counter packets 1 bytes 28 drop",
		"udp dport 9 counter packets 1 bytes 28 accept",
		"udp dport { 14, 15 } counter packets 3 bytes 84 drop",
		"udp dport @blocked counter packets 2 bytes 56 drop",
	} {
		if !strings.Contains(final, want) {
			t.Errorf("final listing lacks %q:\n%s", want, final)
		}
	}
	if strings.Contains(final, "{ 10, 11 }") {
		t.Errorf("deleted rule still listed:\n%s", final)
	}
}

// TestDaemonLargeRuleset: a ruleset of 3,000 rules (a batch of about 1.2
// MiB, beyond a Unix socket's default send buffer) loads through the
// daemon, and a rule edit of it is applied by the daemon itself.
func TestDaemonLargeRuleset(t *testing.T) {
	privtest.Require(t)
	sock, root := startDaemon(t, codegen.TC)
	ns, nsPath := scratchNetNS(t)
	var b strings.Builder
	b.WriteString("flush ruleset\ntable ip big {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n")
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&b, "\t\tip saddr 198.51.100.%d tcp dport %d counter drop\n", 1+i%250, 1024+i/250)
	}
	b.WriteString("\t}\n}\n")
	file := t.TempDir() + "/big.nft"
	writeFile(t, file, b.String())
	cli := func(args ...string) {
		t.Helper()
		if out, errOut, code := runCLI(append([]string{"--socket", sock, "--netns", nsPath}, args...)...); code != 0 {
			t.Fatalf("%v: exit %d: %s %s", args, code, out, errOut)
		}
	}
	cli("-f", file)
	cli("replace", "rule", "ip", "big", "input", "handle", "1500", "ip", "saddr", "203.0.113.9", "counter", "accept")
	st, err := state.Open(ns, state.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	man, err := st.ReadManifest(state.StateName)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(man.Ruleset, "counter"); n != 3000 || !strings.Contains(man.Ruleset, "ip saddr 203.0.113.9 counter accept") {
		t.Errorf("stored ruleset has %d rules with counters, the edit %v", n, strings.Contains(man.Ruleset, "203.0.113.9"))
	}
	if !st.Exists(fastedit.LogName) {
		t.Error("the daemon did not log the edit in its decoded-ruleset cache")
	}
}

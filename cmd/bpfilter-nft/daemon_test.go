package main

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/daemon"
	"github.com/bpfilter-nft/bpfilter-nft/daemon/client"
	"github.com/bpfilter-nft/bpfilter-nft/internal/bpffstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// TestListDaemon: `list namespaces` and `list objects` ask the daemon at
// --socket (or $BPFILTER_NFT_SOCKET) and print the tree and the objects.
func TestListDaemon(t *testing.T) {
	privtest.Require(t)
	root := bpffstest.Mount(t)
	sock := filepath.Join(os.TempDir(), fmt.Sprintf("bpfnft-test-%d-cli.sock", os.Getpid()))
	s, err := daemon.Listen(daemon.Config{Socket: sock, StateRoot: filepath.Join(root, "state"), Log: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close(); os.Remove(sock) })
	ns, err := nsctx.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	conn, closer, err := client.Nftables(sock, client.WithNetNS(ns.File()))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "t"})
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		args []string
		env  string
		want []string
	}{
		{[]string{"--socket", sock, "list", "namespaces"}, "", []string{"(level 0)", fmt.Sprintf("netns %d ", ns.Inode()), "1 objects"}},
		{[]string{"list", "objects"}, sock, []string{"KIND", "table", "ip t", fmt.Sprint(ns.Inode())}},
	} {
		t.Setenv(client.SocketEnv, c.env)
		var out, errb bytes.Buffer
		if code := run(&out, &errb, c.args); code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, errb.String())
		}
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: output lacks %q:\n%s", c.args, w, out.String())
			}
		}
	}
	var out, errb bytes.Buffer
	if code := run(&out, &errb, []string{"--socket", sock + "-none", "list", "namespaces"}); code == 0 || !strings.Contains(errb.String(), "is the daemon running") {
		t.Errorf("no daemon: exit %d, %q", code, errb.String())
	}
}

// TestRulesetCommandsViaDaemon: with a daemon listening, the ruleset
// commands go through it (the CLI's own --state stays empty): load,
// traffic, list -a and -j with the live counters, an edit, a refused load
// that changes nothing and names the rule and expression, a parse error
// naming file:line, restore, flush; --no-daemon writes the state directly.
func TestRulesetCommandsViaDaemon(t *testing.T) {
	privtest.Require(t)
	o, err := oracle.New(oracle.Config{Hook: ir.HookIngress})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Load(""); err != nil {
		t.Fatal(err)
	}
	sock, daemonRoot := startDaemon(t, codegen.TC)
	cliRoot := filepath.Join(bpffstest.Mount(t), "state")
	nsPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), o.ReceiverNetNS().Fd())
	cli := func(args ...string) (string, string, int) {
		return runCLI(append([]string{"--socket", sock, "--state", cliRoot, "--netns", nsPath}, args...)...)
	}
	ns, err := nsctx.FromFile(o.ReceiverNetNS())
	if err != nil {
		t.Fatal(err)
	}
	stored := func(root string) string {
		t.Helper()
		st, err := state.Open(ns, state.Options{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		snap, err := loader.Load(st)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Manifest.Ruleset
	}
	send := func(port uint16, n int, want oracle.Result) {
		t.Helper()
		for range n {
			r, err := o.Verdict(udpFrame(o, false, port))
			if err != nil {
				t.Fatal(err)
			}
			if r == oracle.NotReached {
				r = oracle.Dropped // tcx drops before the netdev hook the oracle watches
			}
			if r != want {
				t.Fatalf("udp dport %d: %s, want %s", port, r, want)
			}
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.nft")
	writeFile(t, file, `flush ruleset
table netdev f {
	chain ing {
		type filter hook ingress device "`+o.ReceiverIfname()+`" priority 0; policy accept;
		udp dport 9 counter drop
		udp dport 10 counter accept
	}
}
`)
	if out, errOut, code := cli("-f", file); code != 0 {
		t.Fatalf("load: exit %d: %s %s", code, out, errOut)
	}
	if !strings.Contains(stored(daemonRoot), "udp dport 9 counter") {
		t.Fatalf("the daemon does not store the ruleset:\n%s", stored(daemonRoot))
	}
	if s := stored(cliRoot); s != "" {
		t.Fatalf("the CLI wrote its own state although a daemon runs:\n%s", s)
	}
	send(9, 4, oracle.Dropped)
	send(10, 3, oracle.Accepted)

	out, errOut, code := cli("-a", "list", "ruleset")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"udp dport 9 counter packets 4 bytes 112 drop # handle",
		"udp dport 10 counter packets 3 bytes 84 accept # handle",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}

	if _, errOut, code := cli("insert", "rule", "netdev", "f", "ing", "udp", "dport", "11", "drop"); code != 0 {
		t.Fatalf("insert: exit %d: %s", code, errOut)
	}
	send(11, 2, oracle.Dropped)
	send(9, 1, oracle.Dropped)
	out, _, _ = cli("list", "table", "netdev", "f")
	if !strings.Contains(out, "udp dport 9 counter packets 5 ") || strings.Index(out, "dport 11") > strings.Index(out, "dport 9") {
		t.Errorf("after insert (counters kept, new rule first):\n%s", out)
	}

	before := stored(daemonRoot)
	for _, c := range []struct {
		name, text string
		want       []string
	}{
		{"unsupported.nft", "flush ruleset\ntable ip t {\n\tchain c {\n\t\ttype filter hook input priority 0;\n\t\tct expiration 5s accept\n\t}\n}\n",
			[]string{"nothing applied", "ct"}},
		{"syntax.nft", "table ip t {\n\tchain c {\n\t\tudp dport nine drop\n\t}\n}\n", []string{"syntax.nft:3:"}},
	} {
		path := filepath.Join(dir, c.name)
		writeFile(t, path, c.text)
		_, errOut, code := cli("-f", path)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1: %s", c.name, code, errOut)
		}
		for _, w := range c.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: error lacks %q: %s", c.name, w, errOut)
			}
		}
		if after := stored(daemonRoot); after != before {
			t.Errorf("%s: refused, yet the ruleset changed:\n%s", c.name, after)
		}
	}
	send(9, 1, oracle.Dropped)
	send(10, 1, oracle.Accepted)

	out, _, code = cli("-j", "list", "ruleset")
	if code != 0 {
		t.Fatalf("list -j: exit %d", code)
	}
	if !strings.Contains(out, `"counter":{"bytes":168,"packets":6}`) {
		t.Errorf("JSON lacks the live counter of udp dport 9:\n%s", out)
	}

	// restore adds iptables' filter table next to table netdev f.
	restoreFile := filepath.Join(dir, "rules.v4")
	writeFile(t, restoreFile, "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp --dport 12 -j DROP\nCOMMIT\n")
	if _, errOut, code := cli("restore", restoreFile); code != 0 {
		t.Fatalf("restore: exit %d: %s", code, errOut)
	}
	if s := stored(daemonRoot); !strings.Contains(s, "table ip filter") || !strings.Contains(s, "udp dport 9 counter") {
		t.Errorf("after restore:\n%s", s)
	}

	if _, errOut, code := cli("flush", "ruleset"); code != 0 {
		t.Fatalf("flush: exit %d: %s", code, errOut)
	}
	send(9, 1, oracle.Accepted)
	if out, _, _ := cli("list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Errorf("list after flush: %q", out)
	}

	// --no-daemon: the direct path, into the CLI's own state.
	if _, errOut, code := cli("--no-daemon", "--netdev-backend", "tc", "-f", file); code != 0 {
		t.Fatalf("--no-daemon load: exit %d: %s", code, errOut)
	}
	if s := stored(cliRoot); !strings.Contains(s, "udp dport 9 counter") {
		t.Errorf("--no-daemon did not write the CLI's state:\n%s", s)
	}
	if s := stored(daemonRoot); s != "" {
		t.Errorf("--no-daemon went to the daemon:\n%s", s)
	}
	send(9, 1, oracle.Dropped)
	if _, errOut, code := cli("--no-daemon", "flush", "ruleset"); code != 0 {
		t.Fatalf("--no-daemon flush: exit %d: %s", code, errOut)
	}
}

// TestDaemonPathSameRuleset: a ruleset loaded through the daemon (sent as
// a batch of re-encoded objects) is stored exactly as the direct path
// stores it, constant and anonymous sets, intervals, jumps and comments included.
func TestDaemonPathSameRuleset(t *testing.T) {
	privtest.Require(t)
	sock, daemonRoot := startDaemon(t, codegen.XDP)
	cliRoot := filepath.Join(bpffstest.Mount(t), "state")
	file := filepath.Join(t.TempDir(), "rules.nft")
	writeFile(t, file, `table inet filter {
	set allowed {
		type ipv4_addr; flags constant, interval
		elements = { 192.0.2.0/28, 198.51.100.7, 203.0.113.10-203.0.113.20 }
	}
	chain input {
		type filter hook input priority 0; policy drop;
		iif "lo" accept
		ip saddr @allowed counter accept comment "known hosts"
		tcp dport 22 jump ssh
		udp dport { 53, 123, 5000-5010 } counter accept
		ip6 saddr 2001:db8::/32 icmpv6 type echo-request accept
		counter jump tail
	}
	chain ssh {
		ip saddr != 192.0.2.0/24 counter drop
		accept
	}
	chain tail {
		meta l4proto tcp drop
	}
}
table ip6 raw {
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		ip6 hoplimit 1 drop
	}
}
`)
	var texts []string
	for _, c := range []struct {
		args []string
		root string
	}{
		{[]string{"--socket", sock}, daemonRoot},
		{[]string{"--no-daemon", "--socket", sock, "--state", cliRoot}, cliRoot},
	} {
		ns, nsPath := scratchNetNS(t)
		if out, errOut, code := runCLI(append(c.args, "--netns", nsPath, "-f", file)...); code != 0 {
			t.Fatalf("%v: exit %d: %s %s", c.args, code, out, errOut)
		}
		st, err := state.Open(ns, state.Options{Root: c.root})
		if err != nil {
			t.Fatal(err)
		}
		snap, err := loader.Load(st)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, snap.Manifest.Ruleset)
		if out, errOut, code := runCLI(append(c.args, "--netns", nsPath, "flush", "ruleset")...); code != 0 {
			t.Fatalf("%v: flush: exit %d: %s %s", c.args, code, out, errOut)
		}
	}
	if texts[0] != texts[1] || !strings.Contains(texts[0], "known hosts") {
		t.Errorf("stored rulesets differ:\n--- through the daemon\n%s\n--- direct\n%s", texts[0], texts[1])
	}
}

package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

func TestRestoreOffline(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "rules.v4")
	writeFile(t, good, "*filter\n:INPUT DROP [0:0]\n-A INPUT -p udp -m multiport --dports 53,67:68 -j ACCEPT\n-A INPUT -m comment --comment \"ssh in\" -p tcp --dport 22 -j ACCEPT\nCOMMIT\n")
	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"translate", []string{"restore", "--translate", good}, 0, `udp dport { 53, 67-68 } counter accept`, ""},
		{"translate comment", []string{"restore", "--translate", good}, 0, `comment "ssh in"`, ""},
		{"test", []string{"restore", "--test", good}, 0, "2 rules in 1 programs compiled", ""},
		{"six", []string{"restore", "-6", "--test", good}, 0, "2 rules", ""},
		{"missing file", []string{"restore", "--test", filepath.Join(dir, "none")}, 1, "", "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := runCLI(c.args...)
			if code != c.code || !strings.Contains(out, c.stdout) || !strings.Contains(errOut, c.stderr) {
				t.Errorf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", code, c.code, out, c.stdout, errOut, c.stderr)
			}
		})
	}
	for _, c := range []struct {
		name, in, stderr string
		code             int
	}{
		{"bad option", "*filter\n-A INPUT --bogus -j ACCEPT\nCOMMIT\n", "line 2 failed", 2},
		{"unsupported", "*filter\n-A INPUT -m conntrack --ctexpire 5 -j ACCEPT\nCOMMIT\n", "line 2 failed: -m conntrack: unsupported: --ctexpire", 1},
		{"nat", "*nat\nCOMMIT\n", "line 1 failed: unsupported: table nat", 1},
		{"commit", "*filter\n", "line 2 failed: COMMIT expected", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := filepath.Join(dir, c.name)
			writeFile(t, f, c.in)
			_, errOut, code := runCLI("restore", "--test", f)
			if code != c.code || !strings.Contains(errOut, c.stderr) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, c.code, errOut, c.stderr)
			}
		})
	}
}

// TestRestoreApplies loads a restore script into the receiver namespace of
// an oracle pair at the input hook and checks verdicts; --noflush adds to
// it; a refused script changes nothing.
func TestRestoreApplies(t *testing.T) {
	privtest.Require(t)
	o, err := oracle.New(oracle.Config{Hook: ir.HookInput})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Load(""); err != nil {
		t.Fatal(err)
	}
	cli := receiverCLI(t, o)
	dir := t.TempDir()
	send := func(port uint16, want oracle.Result) {
		t.Helper()
		r, err := o.Verdict(udpFrame(o, false, port))
		if err != nil {
			t.Fatal(err)
		}
		if r != want {
			t.Errorf("udp dport %d: %s, want %s", port, r, want)
		}
	}
	base := filepath.Join(dir, "base.v4")
	writeFile(t, base, "*filter\n:INPUT ACCEPT [0:0]\n:blk - [0:0]\n-A INPUT -p udp -j blk\n-A blk -p udp -m multiport --dports 9,20:30 -j DROP\nCOMMIT\n")
	if out, errOut, code := cli("restore", base); code != 0 {
		t.Fatalf("restore: exit %d: %s %s", code, out, errOut)
	}
	send(9, oracle.Dropped)
	send(25, oracle.Dropped)
	send(10, oracle.Accepted)

	more := filepath.Join(dir, "more.v4")
	writeFile(t, more, "*filter\n-A blk -p udp --dport 10 -j DROP\nCOMMIT\n")
	if out, errOut, code := cli("restore", "--noflush", more); code != 0 {
		t.Fatalf("restore --noflush: exit %d: %s %s", code, out, errOut)
	}
	send(10, oracle.Dropped)
	send(9, oracle.Dropped)
	send(11, oracle.Accepted)

	bad := filepath.Join(dir, "bad.v4")
	writeFile(t, bad, "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m conntrack --ctexpire 5 -j DROP\nCOMMIT\n")
	if _, errOut, code := cli("restore", bad); code != 1 || !strings.Contains(errOut, "line 3 failed") {
		t.Errorf("refused restore: exit %d, stderr %q", code, errOut)
	}
	send(10, oracle.Dropped)

	// Without --noflush the table is replaced.
	if out, errOut, code := cli("restore", more+"x"); code != 1 {
		t.Errorf("missing file: exit %d: %s %s", code, out, errOut)
	}
	repl := filepath.Join(dir, "repl.v4")
	writeFile(t, repl, "*filter\n:INPUT DROP [0:0]\n-A INPUT -p udp --dport 11 -j ACCEPT\nCOMMIT\n")
	if out, errOut, code := cli("restore", repl); code != 0 {
		t.Fatalf("restore: exit %d: %s %s", code, out, errOut)
	}
	send(11, oracle.Accepted)
	send(10, oracle.Dropped)
	send(25, oracle.Dropped)
	out, _, _ := cli("list", "ruleset")
	if !strings.Contains(out, "policy drop") || strings.Contains(out, "blk") {
		t.Errorf("list after replace:\n%s", out)
	}
}

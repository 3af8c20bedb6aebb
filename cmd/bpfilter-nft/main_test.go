package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
)

func runCLI(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = run(&o, &e, args)
	return o.String(), e.String(), code
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		out, errIn string
	}{
		{nil, 2, "Commands:", ""},
		{[]string{"help"}, 0, "translate", ""},
		{[]string{"nosuch"}, 2, "", `unknown command "nosuch"`},
		{[]string{"translate"}, 2, "", "Usage: bpfilter-nft translate"},
		{[]string{"translate", "-o", "yaml", "x.nft"}, 2, "", `-o "yaml"`},
		{[]string{"translate", "--bogus", "x.nft"}, 2, "", "flag provided but not defined"},
		{[]string{"help", "translate"}, 0, "", "-hook-type"},
		{[]string{"translate", "--hook-type", "foo", "x.nft"}, 1, "", "unknown program type"},
	}
	for _, tt := range tests {
		out, errOut, code := runCLI(tt.args...)
		if code != tt.code || !strings.Contains(out, tt.out) || !strings.Contains(errOut, tt.errIn) {
			t.Errorf("%q: code %d, stdout %q, stderr %q; want code %d, stdout with %q, stderr with %q",
				tt.args, code, out, errOut, tt.code, tt.out, tt.errIn)
		}
	}
}

func TestFlagsAfterArguments(t *testing.T) {
	c := lookup("translate")
	fs := newFlagSet(c, &bytes.Buffer{}, "")
	o := fs.String("o", "text", "")
	if err := parseFlags(fs, []string{"file.nft", "-o", "json"}); err != nil {
		t.Fatal(err)
	}
	if *o != "json" || fs.NArg() != 1 || fs.Arg(0) != "file.nft" {
		t.Errorf("o=%q args=%q", *o, fs.Args())
	}
}

func TestTranslateJSON(t *testing.T) {
	privtest.Require(t)
	out, errOut, code := runCLI("translate", "-o", "json", "testdata/mixed.nft")
	if code != 1 {
		t.Errorf("exit %d, want 1 (one rule is unsupported); stderr %s", code, errOut)
	}
	if !strings.Contains(errOut, "rule handle") || !strings.Contains(errOut, "ct") {
		t.Errorf("stderr does not name the unsupported rule: %s", errOut)
	}
	status := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r jsonRule
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		status[r.Chain+": "+r.Rule] = r.Status
		if r.Status == "compiled" && r.Insns == 0 && !strings.HasPrefix(r.Rule, "jump") {
			t.Errorf("compiled rule %q has no instructions", r.Rule)
		}
		if r.Status == "unsupported" && r.Reason == "" {
			t.Errorf("unsupported rule %q has no reason", r.Rule)
		}
	}
	want := map[string]string{
		"input: meta l4proto tcp tcp dport 22 counter accept":     "compiled",
		"input: meta nfproto ipv4 ip saddr 192.0.2.0/24 jump lan": "compiled",
		"lan: meta l4proto udp udp dport 53 accept":               "compiled",
		"orphan: drop": "unreached",
	}
	for rule, st := range want {
		if status[rule] != st {
			t.Errorf("%s: status %q, want %q (all: %v)", rule, status[rule], st, status)
		}
	}
	unsupported := 0
	for _, st := range status {
		if st == "unsupported" {
			unsupported++
		}
	}
	if unsupported != 1 {
		t.Errorf("%d unsupported rules, want 1: %v", unsupported, status)
	}
}

func TestTranslateText(t *testing.T) {
	privtest.Require(t)
	out, _, code := runCLI("translate", "--hook-type", "nf", "../../testdata/diff/inet-prerouting.nft")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"table inet filter, chain pre: nf program (IPv6)", "; prologue", "rule handle", "instructions"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestTranslateSyntaxError(t *testing.T) {
	privtest.Require(t)
	stdin = strings.NewReader("table ip t {\n\tchain c {\n\t\ttcp dport twentytwo accept\n\t}\n}\n")
	defer func() { stdin = nil }()
	_, errOut, code := runCLI("translate", "-")
	if code != 1 || !strings.Contains(errOut, ":3:") {
		t.Errorf("exit %d, stderr %q; want 1 and nft's message with line 3", code, errOut)
	}
}

// TestDemo runs the demo end to end: it fails when a packet's fate differs
// from the story.
func TestDemo(t *testing.T) {
	privtest.Require(t)
	for _, typ := range []string{"xdp", "tc"} {
		out, errOut, code := runCLI("demo", "--hook-type", typ, "-n", "3")
		if code != 0 {
			t.Errorf("%s: exit %d: %s\n%s", typ, code, errOut, out)
		}
		if !strings.Contains(out, "packets   3") {
			t.Errorf("%s: no counters of 3 packets in:\n%s", typ, out)
		}
	}
}

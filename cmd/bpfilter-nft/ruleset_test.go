package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/bpffstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// TestRulesetCommands drives the nft-shaped commands against the receiving
// namespace of an oracle pair: load, traffic, list with counters, edits,
// JSON, a refused load that changes nothing, flush.
func TestRulesetCommands(t *testing.T) {
	privtest.Require(t)
	o, err := oracle.New(oracle.Config{Hook: ir.HookIngress})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Load(""); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(bpffstest.Mount(t), "state")
	nsPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), o.ReceiverNetNS().Fd())
	cli := func(args ...string) (string, string, int) {
		return runCLI(append([]string{"--state", root, "--netns", nsPath, "--netdev-backend", "tc"}, args...)...)
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
	udp := func(port uint16) []byte {
		return packet.MustBuild(&packet.Ethernet{Dst: o.ReceiverMAC(), Src: o.SenderMAC()},
			&packet.IPv4{Src: oracle.SenderIPv4, Dst: oracle.ReceiverIPv4}, &packet.UDP{SrcPort: 4000, DstPort: port})
	}
	send := func(port uint16, n int, want oracle.Result) {
		t.Helper()
		for i := 0; i < n; i++ {
			r, err := o.Verdict(udp(port))
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
	send(9, 4, oracle.Dropped)
	send(10, 3, oracle.Accepted)

	out, _, code := cli("-a", "list", "ruleset")
	if code != 0 {
		t.Fatalf("list: exit %d", code)
	}
	for _, want := range []string{
		"udp dport 9 counter packets 4 bytes 112 drop # handle",
		"udp dport 10 counter packets 3 bytes 84 accept # handle",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}

	// An edit keeps the counters of the unchanged rules.
	if _, errOut, code := cli("insert", "rule", "netdev", "f", "ing", "udp", "dport", "11", "drop"); code != 0 {
		t.Fatalf("insert: exit %d: %s", code, errOut)
	}
	send(11, 2, oracle.Dropped)
	send(9, 1, oracle.Dropped)
	out, _, _ = cli("list", "table", "netdev", "f")
	if !strings.Contains(out, "udp dport 9 counter packets 5 ") || strings.Index(out, "dport 11") > strings.Index(out, "dport 9") {
		t.Errorf("after insert:\n%s", out)
	}

	// A refused load leaves the running ruleset as it was.
	bad := filepath.Join(dir, "bad.nft")
	writeFile(t, bad, "flush ruleset\ntable ip t {\n\tchain c {\n\t\ttype filter hook input priority 0;\n\t\tct state established accept\n\t}\n}\n")
	if _, errOut, code := cli("-f", bad); code != 1 || !strings.Contains(errOut, "ct") || !strings.Contains(errOut, "nothing applied") {
		t.Errorf("unsupported load: exit %d, stderr %q", code, errOut)
	}
	send(9, 1, oracle.Dropped)
	send(10, 1, oracle.Accepted)

	// nft's JSON, with the live counters.
	out, _, code = cli("-j", "list", "ruleset")
	if code != 0 {
		t.Fatalf("list -j: exit %d", code)
	}
	var doc map[string][]map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(out, `"counter":{"bytes":168,"packets":6}`) {
		t.Errorf("JSON lacks the live counter of udp dport 9:\n%s", out)
	}

	if _, errOut, code := cli("flush", "ruleset"); code != 0 {
		t.Fatalf("flush: exit %d: %s", code, errOut)
	}
	send(9, 1, oracle.Accepted)
	if out, _, _ := cli("list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Errorf("list after flush: %q", out)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

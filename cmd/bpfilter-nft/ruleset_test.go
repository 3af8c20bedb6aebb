package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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
	cli := receiverCLI(t, o)
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
	send := func(port uint16, n int, want oracle.Result) {
		t.Helper()
		for i := 0; i < n; i++ {
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
	writeFile(t, bad, "flush ruleset\ntable ip t {\n\tchain c {\n\t\ttype filter hook input priority 0;\n\t\tct expiration 5s accept\n\t}\n}\n")
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

// receiverCLI returns a runner of the CLI acting in o's receiver namespace
// with a state directory on a bpffs of the test's own, netdev chains on
// tcx.
func receiverCLI(t *testing.T, o *oracle.Oracle) func(args ...string) (stdout, stderr string, code int) {
	cli, _ := receiverCLIRoot(t, o)
	return cli
}

// receiverCLIRoot is receiverCLI that also returns the --state directory.
func receiverCLIRoot(t *testing.T, o *oracle.Oracle) (cli func(args ...string) (stdout, stderr string, code int), root string) {
	root = filepath.Join(bpffstest.Mount(t), "state")
	nsPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), o.ReceiverNetNS().Fd())
	return func(args ...string) (string, string, int) {
		// A socket path nothing listens at: the direct path, whatever
		// daemon the machine runs.
		return runCLI(append([]string{"--socket", root + "-no-daemon.sock", "--state", root, "--netns", nsPath, "--netdev-backend", "tc"}, args...)...)
	}, root
}

// udpFrame is a UDP datagram from o's sender to its receiver, source port
// 4000.
func udpFrame(o *oracle.Oracle, v6 bool, port uint16) []byte {
	var ip packet.Layer = &packet.IPv4{Src: oracle.SenderIPv4, Dst: oracle.ReceiverIPv4}
	if v6 {
		ip = &packet.IPv6{Src: oracle.SenderIPv6, Dst: oracle.ReceiverIPv6}
	}
	return packet.MustBuild(&packet.Ethernet{Dst: o.ReceiverMAC(), Src: o.SenderMAC()}, ip, &packet.UDP{SrcPort: 4000, DstPort: port})
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// counterRE matches a counter with its values in a listing.
var counterRE = regexp.MustCompile(`counter packets (\d+) bytes (\d+)`)

// TestListReloads: the output of list ruleset, loaded back with -f (after
// "flush ruleset", as with nft: nft -f adds to the running ruleset), gives
// the same listing, counters included; the counters, all of whose rules are
// unchanged, go on counting from where they were.
func TestListReloads(t *testing.T) {
	privtest.Require(t)
	o, err := oracle.New(oracle.Config{Hook: ir.HookIngress})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Load(""); err != nil {
		t.Fatal(err)
	}
	cli := receiverCLI(t, o)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "rules.nft"), `flush ruleset
table netdev f {
	chain ing {
		type filter hook ingress device "`+o.ReceiverIfname()+`" priority 0; policy accept;
		udp dport 9 counter drop
		udp dport 7 counter
		udp dport 7 counter
		ip6 saddr 2001:db8::/64 udp dport 20-29 counter jump v6
		udp dport { 10, 11 } counter accept comment "pair"
		udp dport 7-8 jump same
	}
	chain v6 {
		udp dport 21 counter drop
		counter return
	}
	chain same {
		udp dport 7-8 counter
		meta protocol ip6 return
		udp dport 7-8 counter
		udp dport 8 return
		udp dport 7-8 counter
	}
}
table inet g {
	set ports {
		type inet_service; flags constant
		elements = { 53, 123 }
	}
	chain pre {
		type filter hook prerouting priority -5; policy accept;
		udp dport @ports counter accept comment "dns and ntp"
		ip6 nexthdr udp counter
	}
}
table ip h {
	chain in {
		type filter hook input priority 10; policy accept;
		udp dport 9999 counter drop
	}
}
`)
	load := func(name string) {
		t.Helper()
		if out, errOut, code := cli("-f", filepath.Join(dir, name)); code != 0 {
			t.Fatalf("-f %s: exit %d: %s %s", name, code, out, errOut)
		}
	}
	list := func() string {
		t.Helper()
		out, errOut, code := cli("list", "ruleset")
		if code != 0 {
			t.Fatalf("list ruleset: exit %d: %s", code, errOut)
		}
		return out
	}
	// Traffic that every counter sees.
	traffic := func() {
		t.Helper()
		for _, d := range []struct {
			v6    bool
			port  uint16
			times int
		}{
			{false, 7, 3}, {false, 8, 2}, {true, 7, 1}, {false, 9, 2}, {false, 10, 1}, {false, 11, 1}, {false, 53, 2}, {false, 9999, 2},
			{true, 21, 2}, {true, 22, 1}, {true, 123, 1},
		} {
			for range d.times {
				if _, err := o.Verdict(udpFrame(o, d.v6, d.port)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	load("rules.nft")
	traffic()
	before := list()
	counters := counterRE.FindAllStringSubmatch(before, -1)
	if n := strings.Count(before, "counter"); n != len(counters) {
		t.Errorf("%d of %d counters listed without values:\n%s", n-len(counters), n, before)
	}
	for _, m := range counters {
		if m[1] == "0" {
			t.Errorf("a counter stayed zero (the traffic misses its rule):\n%s", before)
			break
		}
	}
	// Equal rules of a chain keep their own counters: the first of the
	// three in chain same counts every datagram to 7 or 8, the second
	// the IPv4 ones, the third those to 7.
	if same := before[strings.Index(before, "chain same"):]; !regexp.MustCompile(`(?s)` +
		`dport <= 8 counter packets 6 bytes \d+\n.*` +
		`dport <= 8 counter packets 5 bytes \d+\n.*` +
		`dport <= 8 counter packets 3 bytes \d+\n`).MatchString(same) {
		t.Errorf("counters of the equal rules in chain same, want 6, 5 and 3 packets:\n%s", same)
	}
	writeFile(t, filepath.Join(dir, "x.nft"), "flush ruleset\n"+before)
	load("x.nft")
	if after := list(); after != before {
		t.Fatalf("listing changed by re-loading it:\n--- before\n%s\n--- after\n%s", before, after)
	}

	// The same traffic again doubles every counter.
	traffic()
	want := counterRE.ReplaceAllStringFunc(before, func(s string) string {
		m := counterRE.FindStringSubmatch(s)
		p, _ := strconv.ParseUint(m[1], 10, 64)
		b, _ := strconv.ParseUint(m[2], 10, 64)
		return fmt.Sprintf("counter packets %d bytes %d", 2*p, 2*b)
	})
	if got := list(); got != want {
		t.Errorf("counters did not go on from where they were:\n--- got\n%s\n--- want\n%s", got, want)
	}
}

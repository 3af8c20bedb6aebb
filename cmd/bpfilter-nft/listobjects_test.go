package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/bpffstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
)

func TestParseObjectListing(t *testing.T) {
	tests := []struct {
		args []string
		want objectListing
		ok   bool
	}{
		{[]string{"counters"}, objectListing{typ: ir.ObjectCounter}, true},
		{[]string{"quotas", "table", "ip", "t"}, objectListing{typ: ir.ObjectQuota, family: "ip", table: "t"}, true},
		{[]string{"limit", "inet", "t", "l1"}, objectListing{typ: ir.ObjectLimit, family: "inet", table: "t", name: "l1"}, true},
		{[]string{"counter", "inet", "t"}, objectListing{}, false},
		{[]string{"limits", "inet", "t"}, objectListing{}, false},
		{[]string{"ruleset"}, objectListing{}, false},
		{[]string{"sets"}, objectListing{}, false},
		{nil, objectListing{}, false},
	}
	for _, tt := range tests {
		got, ok := parseObjectListing(tt.args)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseObjectListing(%q) = %+v, %v; want %+v, %v", tt.args, got, ok, tt.want, tt.ok)
		}
	}
}

// TestListObjects loads named objects that two rules share, sends
// traffic through them and checks that `list counters|quotas|limits`,
// `list counter|quota|limit` and `list ruleset` print their live values
// exactly as nft prints objects declared with those values.
func TestListObjects(t *testing.T) {
	privtest.Require(t)
	o := objectsOracle(t)
	testListObjects(t, o, receiverCLI(t, o))
}

// TestListObjectsViaDaemon is TestListObjects with the ruleset loaded
// and listed through the daemon.
func TestListObjectsViaDaemon(t *testing.T) {
	privtest.Require(t)
	o := objectsOracle(t)
	sock, _ := startDaemon(t, codegen.TC)
	cliRoot := filepath.Join(bpffstest.Mount(t), "state")
	nsPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), o.ReceiverNetNS().Fd())
	testListObjects(t, o, func(args ...string) (string, string, int) {
		return runCLI(append([]string{"--socket", sock, "--state", cliRoot, "--netns", nsPath}, args...)...)
	})
}

func objectsOracle(t *testing.T) *oracle.Oracle {
	t.Helper()
	o, err := oracle.New(oracle.Config{Hook: ir.HookIngress})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	if err := o.Load(""); err != nil {
		t.Fatal(err)
	}
	return o
}

func testListObjects(t *testing.T, o *oracle.Oracle, cli func(args ...string) (string, string, int)) {
	file := filepath.Join(t.TempDir(), "rules.nft")
	writeFile(t, file, `flush ruleset
table netdev f {
	counter c1 {
		packets 0 bytes 0
	}
	quota q1 {
		over 100 bytes
	}
	limit l1 {
		rate 10/second
	}
	chain ing {
		type filter hook ingress device "`+o.ReceiverIfname()+`" priority 0; policy accept;
		udp dport 9 counter name "c1" drop
		udp dport 10 counter name "c1" quota name "q1" drop
		udp dport 11 limit name "l1" accept
	}
}
`)
	if out, errOut, code := cli("-f", file); code != 0 {
		t.Fatalf("load: exit %d: %s %s", code, out, errOut)
	}
	// 28-byte datagrams: 4 to port 9, dropped; 5 to port 10, of which
	// the quota (over 100 bytes) drops those after the first 3.
	for port, want := range map[uint16][]oracle.Result{
		9:  {oracle.Dropped, oracle.Dropped, oracle.Dropped, oracle.Dropped},
		10: {oracle.Accepted, oracle.Accepted, oracle.Accepted, oracle.Dropped, oracle.Dropped},
	} {
		for i, w := range want {
			r, err := o.Verdict(udpFrame(o, false, port))
			if err != nil {
				t.Fatal(err)
			}
			if r == oracle.NotReached {
				r = oracle.Dropped // tcx drops before the netdev hook the oracle watches
			}
			if r != w {
				t.Fatalf("udp dport %d, datagram %d: %s, want %s", port, i+1, r, w)
			}
		}
	}
	// What nft lists for objects holding these values (the quota's used
	// bytes, 140, capped at the quota as the kernel dumps them).
	live := `table netdev f {
	counter c1 {
		packets 9 bytes 252
	}
	quota q1 {
		over 100 bytes used 100 bytes
	}
	limit l1 {
		rate 10/second
	}
}
`
	for _, args := range [][]string{
		{"list", "counters"},
		{"list", "quotas"},
		{"list", "limits", "table", "netdev", "f"},
		{"list", "counter", "netdev", "f", "c1"},
		{"list", "quota", "netdev", "f", "q1"},
		{"list", "limit", "netdev", "f", "l1"},
	} {
		want, err := nftfile.Listing("objects", strings.NewReader(live), nftfile.Options{}, args...)
		if err != nil {
			t.Fatal(err)
		}
		got, errOut, code := cli(args...)
		if code != 0 {
			t.Errorf("%s: exit %d: %s", strings.Join(args, " "), code, errOut)
			continue
		}
		if got != want {
			t.Errorf("%s prints\n%s\nnft prints\n%s", strings.Join(args, " "), got, want)
		}
	}
	out, _, code := cli("list", "ruleset")
	if code != 0 {
		t.Fatalf("list ruleset: exit %d", code)
	}
	for _, want := range []string{
		"\tcounter c1 {\n\t\tpackets 9 bytes 252\n\t}\n\n\tquota q1 {\n\t\tover 100 bytes used 100 bytes\n\t}\n\n\tlimit l1 {\n\t\trate 10/second\n\t}\n",
		`udp dport 10 counter name "c1" quota name "q1" drop`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("list ruleset lacks %q:\n%s", want, out)
		}
	}
	js, _, code := cli("-j", "list", "ruleset")
	if code != 0 {
		t.Fatalf("list -j ruleset: exit %d", code)
	}
	for _, want := range []string{
		`{"counter":{"bytes":252,"family":"netdev","handle":`,
		`"name":"c1","packets":9,"table":"f"}}`,
		`{"quota":{"bytes":100,"family":"netdev","handle":`,
		`"inv":true,"name":"q1","table":"f","used":100}}`,
	} {
		if !strings.Contains(js, want) {
			t.Errorf("list -j ruleset lacks %s:\n%s", want, js)
		}
	}
	if _, errOut, code := cli("list", "counter", "netdev", "f", "nope"); code == 0 || !strings.Contains(errOut, "no such object") {
		t.Errorf("listing a missing counter: exit %d, %q", code, errOut)
	}
}

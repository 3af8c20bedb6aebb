package main

import (
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// listSetsRuleset has sets and maps of many kinds; hash sets with more
// than one element are marked "# unordered" (the kernel lists them in hash
// order).
const listSetsRuleset = `table inet t {
	set ports {
		type inet_service
		elements = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }
	}
	set nets {
		type ipv4_addr
		flags interval
		elements = { 192.0.2.0/25, 192.0.2.200-192.0.2.210, 198.51.100.1, 203.0.113.0/24, 203.0.114.0/24 }
	}
	set nets6 {
		type ipv6_addr
		flags interval
		elements = { 2001:db8::/64, 2001:db8:1::1, 2001:db8:2::1-2001:db8:2::9 }
	}
	set ranges {
		type inet_service
		flags interval
		elements = { 0-9, 22, 80-90, 443, 1000-2000, 65535 }
	}
	set pair {
		type ipv4_addr . inet_service
		flags interval
		elements = { 192.0.2.0/24 . 10-20, 198.51.100.1 . 5 }
	}
	set marks {
		type mark
		size 100
		elements = { 0x00000001 }
	}
	set empty {
		type ipv6_addr
	}
	map jumps {
		type inet_service : verdict
		flags interval
		elements = { 22 : accept, 80-89 : jump web, 443 : drop }
	}
	map one {
		type ifname : verdict
		elements = { "lo" : goto web }
	}
	chain web {
		counter
	}
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport vmap @jumps
		ip saddr @nets drop
	}
}
table ip u {
	set z {
		type ipv4_addr
	}
}
`

// unordered sorts the elements of hash-set listings, which nft prints in
// the kernel's hash order: the lines of each "elements = { … }" block are
// joined, split at commas and sorted.
func unordered(s string) string {
	var out []string
	lines := strings.Split(s, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if !strings.Contains(l, "elements = {") {
			out = append(out, l)
			continue
		}
		block := l
		for !strings.HasSuffix(strings.TrimSpace(block), "}") && i+1 < len(lines) {
			i++
			block += " " + strings.TrimSpace(lines[i])
		}
		inner := strings.TrimSuffix(strings.SplitN(block, "{", 2)[1], "}")
		var es []string
		for _, e := range strings.Split(inner, ",") {
			es = append(es, strings.TrimSpace(e))
		}
		sort.Strings(es)
		out = append(out, "elements: "+strings.Join(es, "|"))
	}
	return strings.Join(out, "\n")
}

// TestListSets: list set, list map, list sets and list maps print what
// nft prints for the same ruleset, byte for byte (up to element order in
// hash sets, which follows the kernel's hashing).
func TestListSets(t *testing.T) {
	privtest.Require(t)
	o, err := oracle.New(oracle.Config{Hook: ir.HookIngress})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	cli, _ := receiverCLIRoot(t, o)
	file := filepath.Join(t.TempDir(), "rules.nft")
	writeFile(t, file, "flush ruleset\n"+listSetsRuleset)
	if out, errOut, code := cli("-f", file); code != 0 {
		t.Fatalf("load: exit %d: %s %s", code, out, errOut)
	}
	ns, err := netnstest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if out, err := ns.Run(listSetsRuleset, "nft", "-f", "-"); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	for _, tc := range []struct {
		args    []string
		ordered bool
	}{
		{[]string{"set", "inet", "t", "nets"}, true},
		{[]string{"set", "inet", "t", "nets6"}, true},
		{[]string{"set", "inet", "t", "ranges"}, true},
		{[]string{"set", "inet", "t", "pair"}, true},
		{[]string{"set", "inet", "t", "marks"}, true},
		{[]string{"set", "inet", "t", "empty"}, true},
		{[]string{"set", "inet", "t", "ports"}, false},
		{[]string{"set", "u", "z"}, true},
		{[]string{"map", "inet", "t", "jumps"}, true},
		{[]string{"map", "inet", "t", "one"}, true},
		{[]string{"sets"}, false},
		{[]string{"sets", "ip"}, true},
		{[]string{"maps"}, true},
		{[]string{"maps", "inet"}, true},
	} {
		name := strings.Join(tc.args, " ")
		t.Run(name, func(t *testing.T) {
			want, err := ns.Run("", "nft", append([]string{"list"}, tc.args...)...)
			if err != nil {
				t.Fatalf("nft list %s: %v: %s", name, err, want)
			}
			got, errOut, code := cli(append([]string{"list"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if !tc.ordered {
				got, want = unordered(got), unordered(want)
			}
			if got != want {
				t.Errorf("bpfilter-nft list %s:\n%s\nnft:\n%s", name, got, want)
			}
		})
	}
	// A set that is not there, and a map asked for as a set.
	for _, args := range [][]string{{"list", "set", "inet", "t", "nope"}, {"list", "set", "inet", "t", "jumps"}} {
		if _, errOut, code := cli(args...); code == 0 || !strings.Contains(errOut, "no such set") {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
		}
	}
}

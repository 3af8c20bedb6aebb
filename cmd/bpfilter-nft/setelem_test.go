package main

import (
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// pinnedProgramIDs returns the kernel IDs of the programs pinned under
// root, sorted.
func pinnedProgramIDs(t *testing.T, root string) []ebpf.ProgramID {
	t.Helper()
	var ids []ebpf.ProgramID
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), "prog-") {
			return err
		}
		p, err := ebpf.LoadPinnedProgram(path, nil)
		if err != nil {
			return err
		}
		defer p.Close()
		info, err := p.Info()
		if err != nil {
			return err
		}
		id, _ := info.ID()
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// TestSetElementCommands: add element, delete element and flush set on a
// named set change the verdicts and the listing, and only the set's map:
// the programs stay (same kernel IDs). A change that needs a reload (a
// rule edit) gets new programs and keeps the set's elements.
func TestSetElementCommands(t *testing.T) {
	privtest.Require(t)
	o, err := oracle.New(oracle.Config{Hook: ir.HookIngress})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Load(""); err != nil {
		t.Fatal(err)
	}
	cli, root := receiverCLIRoot(t, o)
	file := filepath.Join(t.TempDir(), "rules.nft")
	writeFile(t, file, `flush ruleset
table netdev f {
	set blocked {
		type inet_service
		elements = { 9, 65535 }
	}
	chain ing {
		type filter hook ingress device "`+o.ReceiverIfname()+`" priority 0; policy accept;
		udp dport @blocked counter drop
		udp sport 4000 udp dport != @blocked udp dport 12 drop
	}
}
`)
	if out, errOut, code := cli("-f", file); code != 0 {
		t.Fatalf("load: exit %d: %s %s", code, out, errOut)
	}
	expect := func(step string, verdicts map[uint16]oracle.Result) {
		t.Helper()
		for port, want := range verdicts {
			r, err := o.Verdict(udpFrame(o, false, port))
			if err != nil {
				t.Fatal(err)
			}
			if r == oracle.NotReached {
				r = oracle.Dropped // tcx drops before the hook the oracle watches
			}
			if r != want {
				t.Errorf("%s: udp dport %d: %s, want %s", step, port, r, want)
			}
		}
	}
	const acc, drp = oracle.Accepted, oracle.Dropped
	expect("loaded", map[uint16]oracle.Result{9: drp, 65535: drp, 10: acc, 11: acc, 12: drp})
	progs := pinnedProgramIDs(t, root)
	if len(progs) == 0 {
		t.Fatal("no pinned programs")
	}

	for _, step := range []struct {
		args     []string
		verdicts map[uint16]oracle.Result
		listed   string
	}{
		{[]string{"add", "element", "netdev", "f", "blocked", "{", "10,", "11", "}"},
			map[uint16]oracle.Result{9: drp, 10: drp, 11: drp, 12: drp, 13: acc}, "elements = { 9, 10, 11, 65535 }"},
		{[]string{"delete", "element", "netdev", "f", "blocked", "{", "9", "}"},
			map[uint16]oracle.Result{9: acc, 10: drp, 11: drp, 65535: drp}, "elements = { 10, 11, 65535 }"},
		{[]string{"add", "element", "netdev", "f", "blocked", "{", "12", "}"},
			map[uint16]oracle.Result{12: drp, 9: acc}, "elements = { 10, 11, 12, 65535 }"},
		{[]string{"flush", "set", "netdev", "f", "blocked"},
			map[uint16]oracle.Result{10: acc, 11: acc, 65535: acc, 12: drp}, "type inet_service\n\t}"},
		{[]string{"add", "element", "netdev", "f", "blocked", "{", "0", "}"},
			map[uint16]oracle.Result{0: drp, 10: acc}, "elements = { 0 }"},
	} {
		name := strings.Join(step.args[:2], " ")
		if out, errOut, code := cli(step.args...); code != 0 {
			t.Fatalf("%s: exit %d: %s %s", name, code, out, errOut)
		}
		expect(name, step.verdicts)
		if got := pinnedProgramIDs(t, root); !equalIDs(got, progs) {
			t.Errorf("%s: programs %v, want the loaded ones %v", name, got, progs)
		}
		out, _, code := cli("list", "ruleset")
		if code != 0 || !strings.Contains(out, step.listed) {
			t.Errorf("%s: listing (exit %d) lacks %q:\n%s", name, code, step.listed, out)
		}
	}

	// An element nft refuses changes nothing.
	if _, _, code := cli("add", "element", "netdev", "f", "blocked", "{", "192.0.2.1", "}"); code == 0 {
		t.Error("an IPv4 address was accepted into a set of ports")
	}
	expect("refused", map[uint16]oracle.Result{0: drp, 10: acc})

	// A rule edit reloads the programs and keeps the set's elements.
	if _, errOut, code := cli("add", "rule", "netdev", "f", "ing", "udp", "dport", "13", "drop"); code != 0 {
		t.Fatalf("add rule: exit %d: %s", code, errOut)
	}
	if got := pinnedProgramIDs(t, root); equalIDs(got, progs) {
		t.Errorf("add rule kept programs %v", got)
	}
	expect("after add rule", map[uint16]oracle.Result{0: drp, 13: drp, 10: acc})
}

func equalIDs(a, b []ebpf.ProgramID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestIntervalSetElementCommands: element commands on a named interval set
// (an LPM trie) add and remove ranges that are not prefixes, live.
func TestIntervalSetElementCommands(t *testing.T) {
	privtest.Require(t)
	o, err := oracle.New(oracle.Config{Hook: ir.HookIngress})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Load(""); err != nil {
		t.Fatal(err)
	}
	cli, root := receiverCLIRoot(t, o)
	file := filepath.Join(t.TempDir(), "rules.nft")
	writeFile(t, file, `flush ruleset
table netdev f {
	set blocked {
		type inet_service
		flags interval
		elements = { 10-20 }
	}
	chain ing {
		type filter hook ingress device "`+o.ReceiverIfname()+`" priority 0; policy accept;
		udp dport @blocked drop
	}
}
`)
	if out, errOut, code := cli("-f", file); code != 0 {
		t.Fatalf("load: exit %d: %s %s", code, out, errOut)
	}
	expect := func(step string, verdicts map[uint16]oracle.Result) {
		t.Helper()
		for port, want := range verdicts {
			r, err := o.Verdict(udpFrame(o, false, port))
			if err != nil {
				t.Fatal(err)
			}
			if r == oracle.NotReached {
				r = oracle.Dropped
			}
			if r != want {
				t.Errorf("%s: udp dport %d: %s, want %s", step, port, r, want)
			}
		}
	}
	const acc, drp = oracle.Accepted, oracle.Dropped
	expect("loaded", map[uint16]oracle.Result{9: acc, 10: drp, 20: drp, 21: acc})
	progs := pinnedProgramIDs(t, root)
	for _, step := range []struct {
		args     []string
		verdicts map[uint16]oracle.Result
	}{
		{[]string{"add", "element", "netdev", "f", "blocked", "{", "30-41,", "65535", "}"},
			map[uint16]oracle.Result{29: acc, 30: drp, 41: drp, 42: acc, 15: drp, 65535: drp, 65534: acc}},
		{[]string{"delete", "element", "netdev", "f", "blocked", "{", "10-20", "}"},
			map[uint16]oracle.Result{10: acc, 15: acc, 20: acc, 35: drp}},
		{[]string{"flush", "set", "netdev", "f", "blocked"},
			map[uint16]oracle.Result{35: acc, 65535: acc}},
	} {
		name := strings.Join(step.args[:2], " ")
		if out, errOut, code := cli(step.args...); code != 0 {
			t.Fatalf("%s: exit %d: %s %s", name, code, out, errOut)
		}
		expect(name, step.verdicts)
		if got := pinnedProgramIDs(t, root); !equalIDs(got, progs) {
			t.Errorf("%s: programs %v, want the loaded ones %v", name, got, progs)
		}
	}
}

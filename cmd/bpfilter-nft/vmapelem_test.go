package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// TestVerdictMapElementCommands: element commands on a named verdict map
// change only its map while every element's verdict is one the programs
// were compiled for; an element with a new verdict (here the first goto)
// reloads the programs, and one naming a chain that does not exist is
// refused by nft and changes nothing.
func TestVerdictMapElementCommands(t *testing.T) {
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
	map ports {
		type inet_service : verdict
		elements = { 9 : drop, 10 : accept, 11 : jump c2 }
	}
	chain c2 {
		udp dport 11 drop
	}
	chain ing {
		type filter hook ingress device "`+o.ReceiverIfname()+`" priority 0; policy accept;
		udp dport vmap @ports
		udp dport 10-20 drop
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
	expect("loaded", map[uint16]oracle.Result{8: acc, 9: drp, 10: acc, 11: drp, 12: drp, 14: drp})
	progs := pinnedProgramIDs(t, root)
	if len(progs) == 0 {
		t.Fatal("no pinned programs")
	}
	for _, step := range []struct {
		args     []string
		verdicts map[uint16]oracle.Result
		reload   bool
		listed   string
	}{
		{[]string{"add", "element", "netdev", "f", "ports", "{", "12", ":", "accept,", "8", ":", "jump", "c2", "}"},
			map[uint16]oracle.Result{8: acc, 12: acc, 13: drp}, false, "elements = { 8 : jump c2, 9 : drop, 10 : accept, 11 : jump c2, 12 : accept }"},
		{[]string{"delete", "element", "netdev", "f", "ports", "{", "10", "}"},
			map[uint16]oracle.Result{10: drp, 12: acc, 9: drp}, false, "elements = { 8 : jump c2, 9 : drop, 11 : jump c2, 12 : accept }"},
		{[]string{"add", "element", "netdev", "f", "ports", "{", "14", ":", "goto", "c2", "}"},
			map[uint16]oracle.Result{14: acc, 13: drp, 11: drp, 12: acc}, true, "14 : goto c2"},
		{[]string{"flush", "map", "netdev", "f", "ports"},
			map[uint16]oracle.Result{9: acc, 12: drp, 14: drp}, false, "type inet_service : verdict\n\t}"},
	} {
		name := strings.Join(step.args, " ")
		if out, errOut, code := cli(step.args...); code != 0 {
			t.Fatalf("%s: exit %d: %s %s", name, code, out, errOut)
		}
		expect(name, step.verdicts)
		got := pinnedProgramIDs(t, root)
		if step.reload == equalIDs(got, progs) {
			t.Errorf("%s: programs %v, loaded ones %v; want a reload: %v", name, got, progs, step.reload)
		}
		progs = got
		out, _, code := cli("list", "ruleset")
		if code != 0 || !strings.Contains(out, step.listed) {
			t.Errorf("%s: listing (exit %d) lacks %q:\n%s", name, code, step.listed, out)
		}
	}
	// An element jumping to a chain that does not exist: nft refuses it.
	if _, _, code := cli("add", "element", "netdev", "f", "ports", "{", "15", ":", "jump", "nochain", "}"); code == 0 {
		t.Error("an element jumping to a missing chain was accepted")
	}
	expect("refused", map[uint16]oracle.Result{15: drp, 9: acc})
}

// TestRangeTableElementCommands: element commands on a named set of
// concatenated ranges (a range table) add and remove elements live; the
// programs stay.
func TestRangeTableElementCommands(t *testing.T) {
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
	src := oracle.SenderIPv4.String()
	writeFile(t, file, `flush ruleset
table netdev f {
	set blocked {
		type ipv4_addr . inet_service
		flags interval
		elements = { `+src+` . 10-20, 198.51.100.0/24 . 30 }
	}
	chain ing {
		type filter hook ingress device "`+o.ReceiverIfname()+`" priority 0; policy accept;
		ip saddr . udp dport @blocked drop
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
	expect("loaded", map[uint16]oracle.Result{9: acc, 10: drp, 20: drp, 21: acc, 30: acc})
	progs := pinnedProgramIDs(t, root)
	for _, step := range []struct {
		args     []string
		verdicts map[uint16]oracle.Result
	}{
		{[]string{"add", "element", "netdev", "f", "blocked", "{", src, ".", "30-40,", src, ".", "65535", "}"},
			map[uint16]oracle.Result{29: acc, 30: drp, 40: drp, 41: acc, 15: drp, 65535: drp, 65534: acc}},
		{[]string{"delete", "element", "netdev", "f", "blocked", "{", src, ".", "10-20", "}"},
			map[uint16]oracle.Result{10: acc, 15: acc, 20: acc, 35: drp, 65535: drp}},
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

// TestDataMapElementCommands: element commands on a data map (meta mark
// set … map @m, tc) change the map only.
func TestDataMapElementCommands(t *testing.T) {
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
	map marks {
		type inet_service : mark
		elements = { 9 : 0x2 }
	}
	chain ing {
		type filter hook ingress device "`+o.ReceiverIfname()+`" priority 0; policy accept;
		meta mark set udp dport map @marks
		meta mark 0x2 drop
	}
}
`)
	if out, errOut, code := cli("-f", file); code != 0 {
		t.Fatalf("load: exit %d: %s %s", code, out, errOut)
	}
	const acc, drp = oracle.Accepted, oracle.Dropped
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
	expect("loaded", map[uint16]oracle.Result{9: drp, 10: acc})
	progs := pinnedProgramIDs(t, root)
	for _, step := range []struct {
		args     []string
		verdicts map[uint16]oracle.Result
	}{
		{[]string{"add", "element", "netdev", "f", "marks", "{", "10", ":", "0x2,", "11", ":", "0x3", "}"},
			map[uint16]oracle.Result{9: drp, 10: drp, 11: acc}},
		{[]string{"delete", "element", "netdev", "f", "marks", "{", "9", "}"},
			map[uint16]oracle.Result{9: acc, 10: drp}},
		{[]string{"flush", "map", "netdev", "f", "marks"},
			map[uint16]oracle.Result{9: acc, 10: acc}},
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

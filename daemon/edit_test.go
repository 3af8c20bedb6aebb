package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/daemon/client"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// TestEditRule: a ruleset loaded as a google/nftables batch, then rule
// edits sent as ControlEditRule. The daemon applies them itself through
// the decoded ruleset it kept (its log names each edit), compiles only the
// edited table's chain (the other one comes from its compile cache), and
// answers what it cannot apply — an unknown chain or handle, a rule nft
// refuses — with EAGAIN, and a rule it cannot translate with EOPNOTSUPP,
// changing nothing in either case.
func TestEditRule(t *testing.T) {
	s := startServer(t, Limits{})
	ns := scratchNetNS(t)
	nc, closer, err := client.Nftables(s.Addr(), client.WithNetNS(ns.File()))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	pol := nftables.ChainPolicyAccept
	for _, tc := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"a", nftables.ChainHookInput}, {"b", nftables.ChainHookForward}} {
		tab := nc.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: tc.name})
		ch := nc.AddChain(&nftables.Chain{Name: "c", Table: tab, Type: nftables.ChainTypeFilter, Hooknum: tc.hook, Priority: nftables.ChainPriorityFilter, Policy: &pol})
		nc.AddRule(&nftables.Rule{Table: tab, Chain: ch, Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}}})
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(ns, state.Options{Root: s.cfg.StateRoot})
	if err != nil {
		t.Fatal(err)
	}
	stored := func() string {
		t.Helper()
		snap, err := loader.Load(st)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Manifest.Ruleset
	}
	conn, err := client.Dial(s.Addr(), client.WithNetNS(ns.File()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hits0, _ := s.compiled.Stats()
	for _, e := range []string{
		"insert rule ip a c udp dport 9 drop",
		"add rule ip a c position 3 udp dport { 10, 11 } counter drop",
		"replace rule ip a c handle 2 udp dport 12 drop",
		"delete rule ip a c handle 3",
	} {
		f := strings.Fields(e)
		if err := client.EditRule(conn, f[0], f[1:]); err != nil {
			t.Fatalf("%s: %v", e, err)
		}
		if !strings.Contains(s.log.String(), strings.Replace(e, "position", "handle", 1)) {
			t.Errorf("%s: not in the daemon's log:\n%s", e, s.log.String())
		}
	}
	want := "table ip a {\n\tchain c {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tmeta l4proto udp udp dport 12 drop\n\t\tmeta l4proto udp udp dport { 10, 11 } counter drop\n\t}\n}\n"
	if got := stored(); !strings.HasPrefix(got, want) {
		t.Errorf("stored ruleset:\n%s\nwant it to start with\n%s", got, want)
	}
	if hits, _ := s.compiled.Stats(); hits-hits0 < 4 {
		t.Errorf("%d compile cache hits for 4 edits of table a; want table b's chain served each time", hits-hits0)
	}
	before := stored()
	for _, c := range []struct {
		edit  string
		errno unix.Errno
	}{
		{"add rule ip a nochain accept", unix.EAGAIN},
		{"delete rule ip a c handle 99", unix.EAGAIN},
		{"add rule ip a c udp dport @nosuchset drop", unix.EAGAIN},
		{"add rule ip a c ct expiration 5s accept", unix.EOPNOTSUPP},
	} {
		f := strings.Fields(c.edit)
		if err := client.EditRule(conn, f[0], f[1:]); !errors.Is(err, c.errno) {
			t.Errorf("%s: %v, want %v", c.edit, err, c.errno)
		}
	}
	if after := stored(); after != before {
		t.Errorf("a refused edit changed the ruleset:\n%s\n---\n%s", before, after)
	}
	// A flushed namespace's decoded ruleset is no longer kept.
	nc.FlushRuleset()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	s.decoded.mu.Lock()
	_, kept := s.decoded.m[ns.Inode()]
	s.decoded.mu.Unlock()
	if kept {
		t.Error("the daemon keeps the decoded ruleset of a flushed namespace")
	}
}

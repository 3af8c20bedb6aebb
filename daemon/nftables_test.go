package daemon

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/daemon/client"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// TestGoogleNftablesClient drives the daemon with the real google/nftables
// library: table, base chain, rules and a named set go in as one batch;
// everything is read back over the same connection, and the ruleset runs
// as BPF in the target namespace.
func TestGoogleNftablesClient(t *testing.T) {
	s := startServer(t, Limits{})
	ns := scratchNetNS(t)
	conn, closer, err := client.Nftables(s.Addr(), client.WithNetNS(ns.File()))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()

	tab := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"})
	policy := nftables.ChainPolicyAccept
	ch := conn.AddChain(&nftables.Chain{
		Name: "input", Table: tab, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy,
	})
	set := &nftables.Set{Table: tab, Name: "blocked", KeyType: nftables.TypeIPAddr, Constant: true}
	if err := conn.AddSet(set, []nftables.SetElement{
		{Key: net.ParseIP("198.51.100.7").To4()},
		{Key: net.ParseIP("198.51.100.9").To4()},
	}); err != nil {
		t.Fatal(err)
	}
	saddr := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
	conn.AddRule(&nftables.Rule{Table: tab, Chain: ch, Exprs: []expr.Any{
		saddr,
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: net.ParseIP("192.0.2.1").To4()},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	conn.AddRule(&nftables.Rule{Table: tab, Chain: ch, Exprs: []expr.Any{
		saddr,
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := conn.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}

	tables, err := conn.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 1 || tables[0].Name != "filter" || tables[0].Family != nftables.TableFamilyIPv4 {
		t.Errorf("tables = %+v, want ip filter", tables)
	}
	chains, err := conn.ListChains()
	if err != nil {
		t.Fatal(err)
	}
	if len(chains) != 1 || chains[0].Name != "input" || chains[0].Hooknum == nil || *chains[0].Hooknum != *nftables.ChainHookInput {
		t.Errorf("chains = %+v, want input at the input hook", chains)
	}
	rules, err := conn.GetRules(tab, ch)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 {
		t.Fatalf("%d rules read back, want 2", len(rules))
	}
	if c, ok := rules[0].Exprs[1].(*expr.Cmp); !ok || !net.IP(c.Data).Equal(net.ParseIP("192.0.2.1")) {
		t.Errorf("rule 1 = %#v, want a compare with 192.0.2.1", rules[0].Exprs)
	}
	if l, ok := rules[1].Exprs[1].(*expr.Lookup); !ok || l.SetName != "blocked" {
		t.Errorf("rule 2 = %#v, want a lookup in @blocked", rules[1].Exprs)
	}
	sets, err := conn.GetSets(tab)
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 1 || sets[0].Name != "blocked" {
		t.Fatalf("sets = %+v, want blocked", sets)
	}
	elems, err := conn.GetSetElements(sets[0])
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range elems {
		got = append(got, net.IP(e.Key).String())
	}
	if strings.Join(got, ",") != "198.51.100.9,198.51.100.7" && strings.Join(got, ",") != "198.51.100.7,198.51.100.9" {
		t.Errorf("set elements = %v", got)
	}

	// The ruleset runs as BPF in the target namespace.
	st, err := state.Open(ns, state.Options{Root: filepath.Join(s.root, "state")})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := loader.Load(st)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Manifest.Points) != 1 || snap.Manifest.Points[0].Kind != loader.KindNetfilter {
		t.Errorf("attach points = %+v, want one netfilter link", snap.Manifest.Points)
	}
	for _, want := range []string{"ip saddr 192.0.2.1 drop", "ip saddr @blocked counter"} {
		if !strings.Contains(snap.Manifest.Ruleset, want) {
			t.Errorf("stored ruleset lacks %q:\n%s", want, snap.Manifest.Ruleset)
		}
	}

	// Errors are the kernel's: a rule in a chain that does not exist.
	conn.AddRule(&nftables.Rule{Table: tab, Chain: &nftables.Chain{Name: "nosuch", Table: tab}, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
	if err := conn.Flush(); !errors.Is(err, unix.ENOENT) {
		t.Errorf("rule in a missing chain: err = %v, want ENOENT", err)
	}
	// A rule the translator refuses fails the batch with EOPNOTSUPP
	// and changes nothing.
	conn.AddRule(&nftables.Rule{Table: tab, Chain: ch, Exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyEXPIRATION},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x88, 0x13, 0, 0}},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	err = conn.Flush()
	if !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("untranslatable rule: err = %v, want EOPNOTSUPP", err)
	}
	if rules, err := conn.GetRules(tab, ch); err != nil || len(rules) != 2 {
		t.Errorf("after refused batches: %d rules (%v), want 2", len(rules), err)
	}
	if snap2, err := loader.Load(st); err != nil || snap2.Manifest.Generation != snap.Manifest.Generation {
		t.Errorf("refused batch changed the stored ruleset (%v)", err)
	}

	// Deleting the table removes everything.
	conn.DelTable(tab)
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if tables, err := conn.ListTables(); err != nil || len(tables) != 0 {
		t.Errorf("after delete: tables %+v (%v)", tables, err)
	}
}

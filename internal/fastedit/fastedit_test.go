package fastedit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/bpffstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/state"
	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// rich has every kind of object whose handle nft numbers: two tables,
// chains, named objects, named sets and maps, rules with zero, one and two
// anonymous sets and maps.
const rich = `table inet filter {
	counter c1 { }
	set allowed {
		type ipv4_addr; flags interval
		elements = { 192.0.2.0/28 }
	}
	map vm { type inet_service : verdict; elements = { 22 : accept } }
	chain input {
		type filter hook input priority 0; policy drop;
		iif "lo" accept
		udp dport { 53, 123 } accept
		tcp dport vmap @vm
		tcp dport 22 jump ssh
		ip saddr { 192.0.2.1, 192.0.2.2 } tcp dport { 1, 2 } drop
		tcp dport vmap { 80 : accept, 81 : drop }
		counter name c1
	}
	chain ssh {
		ip saddr @allowed accept
		accept
	}
	quota q { 100 mbytes }
	counter c2 { }
}
table ip t2 {
	chain c {
		type filter hook forward priority 0; policy accept;
		udp dport 1 drop
		udp dport { 5, 6, 7 } counter accept
	}
}
`

// corpus returns the rulesets the tests run on: rich and the differential
// and front-end test rulesets that nft loads without their devices.
func corpus(t *testing.T) map[string]string {
	out := map[string]string{"rich": rich}
	for _, glob := range []string{"../../testdata/diff/*.nft", "../../translate/nftfile/testdata/*.nft", "../../translate/testdata/mixed.nft"} {
		files, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "device") || strings.Contains(string(b), "{{") {
				continue // netdev chains need their devices, templates theirs
			}
			out[filepath.Base(f)] = string(b)
		}
	}
	if len(out) < 8 {
		t.Fatalf("only %d rulesets found", len(out))
	}
	return out
}

func parse(t *testing.T, text string) *nlmsg.Ruleset {
	t.Helper()
	rs, err := nftfile.Parse("test", strings.NewReader(text), nftfile.Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	return rs
}

func print(t *testing.T, rs *nlmsg.Ruleset) string {
	t.Helper()
	lifted, err := translate.Lift(rs)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := lifted.Ruleset.Print(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// handles lists every object of rs with its handle (and an anonymous
// set's name), in an order independent of message order.
func handles(rs *nlmsg.Ruleset) string {
	var b strings.Builder
	for _, t := range rs.Tables {
		fmt.Fprintf(&b, "table %d %s %d\n", t.Family, t.Name, t.Handle)
		for _, c := range rs.Chains {
			if c.Family == t.Family && c.Table == t.Name {
				fmt.Fprintf(&b, "  chain %s %d\n", c.Name, c.Handle)
				for _, r := range rs.Rules {
					if r.Family == c.Family && r.Table == c.Table && r.Chain == c.Name {
						fmt.Fprintf(&b, "    rule %d", r.Handle)
						for _, e := range r.Exprs {
							if l, ok := e.(*nlmsg.Lookup); ok {
								for _, s := range rs.Sets {
									if s.Family == t.Family && s.Table == t.Name && s.Name == l.Set {
										fmt.Fprintf(&b, " @%s=%d", s.Name, s.Handle)
									}
								}
							}
						}
						b.WriteString("\n")
					}
				}
			}
		}
		for _, s := range rs.Sets {
			if s.Family == t.Family && s.Table == t.Name && s.Flags&nftSetAnonymous == 0 {
				fmt.Fprintf(&b, "  set %s %d\n", s.Name, s.Handle)
			}
		}
		for _, o := range rs.Objs {
			if o.Family == t.Family && o.Table == t.Name {
				fmt.Fprintf(&b, "  obj %d %s %d\n", o.Type, o.Name, o.Handle)
			}
		}
	}
	return b.String()
}

// TestCanonical: the handles and anonymous-set names Canonical computes
// for a parsed ruleset are those the real nft assigns when it loads the
// text printed from it (the stored text) into an empty namespace, for
// every corpus ruleset.
func TestCanonical(t *testing.T) {
	privtest.Require(t)
	for name, text := range corpus(t) {
		t.Run(name, func(t *testing.T) {
			// A parse whose handles are not canonical: the ruleset
			// loaded after a rule that is deleted again.
			first := parse(t, text)
			c, err := Canonical(first)
			if err != nil {
				t.Fatal(err)
			}
			stored := print(t, c)
			fresh := parse(t, stored)
			if got, want := handles(c), handles(fresh); got != want {
				t.Errorf("handles:\n--- Canonical\n%s--- nft\n%s", got, want)
			}
			if got := print(t, fresh); got != stored {
				t.Errorf("the stored text does not round-trip:\n%s\n---\n%s", stored, got)
			}
			// Round trip through the cache.
			back, err := Unmarshal(stored, Marshal(stored, c))
			if err != nil {
				t.Fatal(err)
			}
			if handles(back) != handles(c) || print(t, back) != stored {
				t.Error("the cache does not give the ruleset back")
			}
			if _, err := Unmarshal(stored+" ", Marshal(stored, c)); err == nil {
				t.Error("the cache of another text was served")
			}
		})
	}
}

// TestApply: a rule edit applied to the cached ruleset gives the ruleset,
// handles included, that nft gives when it parses the stored text followed
// by the command in a transaction of its own (as on a live system), for adds, inserts and replaces with and
// without positions, deletes, and rules with anonymous sets.
func TestApply(t *testing.T) {
	privtest.Require(t)
	stored := print(t, parse(t, rich))
	cur, err := Canonical(parse(t, stored))
	if err != nil {
		t.Fatal(err)
	}
	parser := NftParser(nftfile.Options{})
	h := func(chain string, nth int) string {
		n := 0
		for _, r := range cur.Rules {
			if r.Table == "filter" && r.Chain == chain {
				if n == nth {
					return fmt.Sprint(r.Handle)
				}
				n++
			}
		}
		t.Fatalf("chain %s has no rule %d", chain, nth)
		return ""
	}
	for _, c := range []struct {
		verb string
		args string
	}{
		{"add", "rule inet filter input tcp dport 8080 counter accept"},
		{"add", "rule inet filter input position " + h("input", 1) + " tcp dport { 8080, 8081 } accept"},
		{"add", "rule inet filter input handle " + h("input", 6) + " ip saddr @allowed drop"},
		{"insert", "rule inet filter input ip daddr { 198.51.100.1, 198.51.100.2 } drop"},
		{"insert", "rule inet filter ssh position " + h("ssh", 1) + " tcp dport 2222 accept comment \"alt ssh\""},
		{"replace", "rule inet filter input handle " + h("input", 1) + " udp dport { 53, 853 } accept"},
		{"replace", "rule inet filter input handle " + h("input", 4) + " tcp dport 23 drop"},
		{"delete", "rule inet filter input handle " + h("input", 4)},
		{"delete", "rule inet filter input handle " + h("input", 5)},
		{"add", "rule ip t2 c udp dport 9 drop"},
		{"insert", "rule t2 c udp dport 9 jump nowhere_else"},
	} {
		t.Run(c.verb+" "+c.args, func(t *testing.T) {
			cmd, ok := ParseCommand(c.verb, strings.Fields(c.args))
			if !ok {
				t.Fatalf("not recognised")
			}
			// nft on a live system: the stored ruleset is loaded,
			// then the command is a transaction of its own.
			slowRS, slowErr := nftfile.ParseSteps("<cmdline>", nftfile.Options{}, stored, c.verb+" "+c.args+"\n")
			fast, edit, err := Apply(cur, cmd, parser)
			if slowErr != nil {
				if err == nil {
					t.Fatalf("nft refuses the edit (%v), the fast path does not", slowErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			slow, err := Canonical(slowRS)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := print(t, fast), print(t, slow); got != want {
				t.Errorf("ruleset:\n--- fast\n%s--- nft\n%s", got, want)
			}
			if got, want := handles(fast), handles(slow); got != want {
				t.Errorf("handles:\n--- fast\n%s--- nft\n%s", got, want)
			}
			// And they are the handles a listing of the new stored
			// text shows.
			if got, want := handles(fast), handles(parse(t, print(t, fast))); got != want {
				t.Errorf("handles:\n--- fast\n%s--- listing\n%s", got, want)
			}
			// Replaying the edit as logged gives the same ruleset.
			_, _, edits, err := unmarshalLog(marshalLog([32]byte{}, [32]byte{}, []Edit{edit}))
			if err != nil {
				t.Fatal(err)
			}
			again, err := replay(cur, edits[0])
			if err != nil {
				t.Fatal(err)
			}
			if handles(again) != handles(fast) || print(t, again) != print(t, fast) {
				t.Errorf("the replayed edit gives another ruleset:\n%s", print(t, again))
			}
		})
	}
	// Edits the fast path leaves to nft.
	for _, args := range []string{
		"rule inet filter input index 1 accept",
		"rule inet filter input handle 7",
		"chain inet filter other",
		"rule inet filter input accept; add rule inet filter input drop",
	} {
		if _, ok := ParseCommand("add", strings.Fields(args)); ok {
			t.Errorf("add %s: recognised", args)
		}
	}
	for _, c := range []Command{
		{Op: OpDelete, Family: nlmsg.FamilyInet, Table: "filter", Chain: "input", Handle: 9999},
		{Op: OpAdd, Family: nlmsg.FamilyInet, Table: "filter", Chain: "nochain", Rule: "accept"},
	} {
		if _, _, err := Apply(cur, c, parser); err == nil {
			t.Errorf("%s: applied", c)
		}
	}
}

// TestCacheLog: the cache in a state directory — a base, then edits
// appended to its log, a new base once the log is full — always loads as
// the ruleset after the last edit, and never for another text.
func TestCacheLog(t *testing.T) {
	privtest.Require(t)
	ns, err := nsctx.Current()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	st, err := state.Open(ns, state.Options{Root: filepath.Join(bpffstest.Mount(t), "state")})
	if err != nil {
		t.Fatal(err)
	}
	text := print(t, parse(t, rich))
	cur, err := Canonical(parse(t, text))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Save(st, text, cur); err != nil {
		t.Fatal(err)
	}
	parser := NftParser(nftfile.Options{})
	for i := 0; i < MaxLog+3; i++ {
		got, s, err := Load(st, text)
		if err != nil {
			t.Fatalf("edit %d: %v", i, err)
		}
		if handles(got) != handles(cur) || print(t, got) != text {
			t.Fatalf("edit %d: the cache loads another ruleset:\n%s", i, print(t, got))
		}
		if _, _, err := Load(st, text+"\n"); !errors.Is(err, ErrNotCached) {
			t.Fatalf("edit %d: the cache of another text: %v", i, err)
		}
		f := strings.Fields(fmt.Sprintf("add rule inet filter ssh tcp dport { %d, %d } accept", 100+i, 200+i))
		if i%3 == 2 {
			var last uint64
			for _, r := range cur.Rules {
				if r.Chain == "ssh" {
					last = r.Handle
				}
			}
			f = strings.Fields(fmt.Sprintf("delete rule inet filter ssh handle %d", last))
		}
		cmd, ok := ParseCommand(f[0], f[1:])
		if !ok {
			t.Fatal(f)
		}
		next, e, err := Apply(cur, cmd, parser)
		if err != nil {
			t.Fatal(err)
		}
		cur, text = next, print(t, next)
		if s, err = Record(st, s, text, cur, e); err != nil {
			t.Fatal(err)
		}
		if logged := len(s.edits); logged > MaxLog || (i < MaxLog && logged != i+1) {
			t.Errorf("edit %d: %d edits logged", i, logged)
		}
	}
	if err := Drop(st); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(st, text); !errors.Is(err, ErrNotCached) {
		t.Errorf("dropped cache: %v", err)
	}
}

package corpus

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSplitCase(t *testing.T) {
	tests := []struct {
		in, rule, status, listed string
	}{
		{"ip ttl 0 drop;ok", "ip ttl 0 drop", "ok", ""},
		{"ip protocol tcp;ok;ip protocol 6", "ip protocol tcp", "ok", "ip protocol 6"},
		{"ip dscp vmap { cs1 : continue , cs4 : accept } counter;ok", "ip dscp vmap { cs1 : continue , cs4 : accept } counter", "ok", ""},
		{`meta iifname "a;b";fail`, `meta iifname "a;b"`, "fail", ""},
		{"tcp dport { 22; 23 };ok", "tcp dport { 22; 23 }", "ok", ""},
	}
	for _, tt := range tests {
		rule, status, listed := splitCase(tt.in)
		if rule != tt.rule || status != tt.status || listed != tt.listed {
			t.Errorf("splitCase(%q) = %q, %q, %q; want %q, %q, %q", tt.in, rule, status, listed, tt.rule, tt.status, tt.listed)
		}
	}
}

func TestReadNftFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.t")
	src := `:input;type filter hook input priority 0
:ingress;type filter hook ingress device lo priority 0

*ip;test-ip4;input
*netdev;test-netdev;ingress

!set1 type ipv4_addr;ok
# comment
ip saddr @set1 drop;ok
- ip version 2;ok
ip protocol 256;fail
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := ReadNftFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Chains["input"]; got != "type filter hook input priority 0" {
		t.Errorf("chain input = %q", got)
	}
	if len(f.Cases) != 3 {
		t.Fatalf("got %d cases, want 3", len(f.Cases))
	}
	c := f.Cases[0]
	if c.Line != 9 || !c.OK || c.Rule != "ip saddr @set1 drop" || len(c.Tables) != 2 || len(c.Decls) != 1 {
		t.Errorf("case 0 = %+v", c)
	}
	if c.Tables[1].Family != "netdev" || c.Tables[1].Chains[0] != "ingress" {
		t.Errorf("tables = %+v", c.Tables)
	}
	if !f.Cases[1].Disabled || f.Cases[2].OK {
		t.Errorf("cases 1, 2 = %+v, %+v", f.Cases[1], f.Cases[2])
	}
}

// TestReadUpstreamCorpus reads every nftables tests/py file of the shared
// corpus; it fails if the format changes under the parser.
func TestReadUpstreamCorpus(t *testing.T) {
	files, _ := filepath.Glob("../../../shared/corpus/nftables-py/*/*.t")
	if len(files) == 0 {
		t.Skip("corpus: ../shared/corpus/nftables-py not present beside the repository")
	}
	total := 0
	for _, p := range files {
		f, err := ReadNftFile(p)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		total += len(f.Cases)
	}
	if total < 500 {
		t.Errorf("read %d cases from %d files; the corpus has far more", total, len(files))
	}
	t.Logf("%d cases in %d files", total, len(files))
}

package pipeline

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
)

const cacheBase = `table ip t {
	set s { type ipv4_addr; elements = { 192.0.2.1 } }
	chain in {
		type filter hook input priority 0; policy accept;
		ip saddr @s counter jump sub
		tcp dport 22 drop
	}
	chain sub {
		udp dport 53 accept
	}
}
table ip u {
	chain fw {
		type filter hook forward priority 0; policy drop;
		ip protocol icmp accept
	}
}
table netdev n {
	chain i {
		type filter hook ingress device "lo" priority 0; policy accept;
		udp dport 7 counter drop
	}
}
`

// describe prints what a translation compiled: every program's chain,
// target, instructions, counter slots and named sets.
func describe(t *testing.T, res *Result) string {
	t.Helper()
	var b strings.Builder
	for _, p := range res.Programs {
		fmt.Fprintf(&b, "== %s %s %s %+v\n%v\nslots %v\n", p.Table.Family, p.Table.Name, p.Chain.Name, p.Target.Type, p.Program.Spec.Instructions, p.Program.CounterSlots)
		var sets []string
		for s := range p.Program.Sets {
			if tableSet(p.Table, s.Name) != s {
				t.Errorf("%s: program's set %s is not the table's", p.Chain.Name, s.Name)
			}
			sets = append(sets, fmt.Sprintf("%s %d %#x", s.Name, len(s.Elements), s.Flags))
		}
		sort.Strings(sets)
		fmt.Fprintf(&b, "sets %v\n", sets)
	}
	return b.String()
}

// TestCompileCache: a translation served by the compile cache gives the
// programs a translation without it gives, and the cache serves only base
// chains none of whose inputs changed: a referenced set's flags or
// elements, a jumped-to chain, the netdev backend or the code generator's
// options each make the chain compile again, while the other tables'
// chains are served.
func TestCompileCache(t *testing.T) {
	privtest.Require(t)
	xdp, tc := codegen.XDP, codegen.TC
	cache := NewCompileCache(16)
	for _, c := range []struct {
		name         string
		text         string
		opts         Options
		hits, misses int
	}{
		{"first", cacheBase, Options{NetdevBackend: &xdp}, 0, 3},
		{"unchanged", cacheBase, Options{NetdevBackend: &xdp}, 3, 0},
		{"set flags", strings.Replace(cacheBase, "type ipv4_addr;", "type ipv4_addr; flags interval;", 1), Options{NetdevBackend: &xdp}, 2, 1},
		{"set elements", strings.Replace(cacheBase, "192.0.2.1 }", "192.0.2.1, 192.0.2.2 }", 1), Options{NetdevBackend: &xdp}, 2, 1},
		{"jumped-to chain", strings.Replace(cacheBase, "udp dport 53 accept", "udp dport 54 accept", 1), Options{NetdevBackend: &xdp}, 2, 1},
		{"other table", strings.Replace(cacheBase, "ip protocol icmp accept", "ip protocol icmp drop", 1), Options{NetdevBackend: &xdp}, 2, 1},
		{"netdev backend", cacheBase, Options{NetdevBackend: &tc}, 2, 1},
		{"linear", cacheBase, Options{NetdevBackend: &xdp, Linear: true}, 0, 3},
		{"back to the first", cacheBase, Options{NetdevBackend: &xdp}, 3, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs, err := nftfile.Parse("cache", strings.NewReader(c.text), nftfile.Options{})
			if err != nil {
				t.Fatal(err)
			}
			want, err := Translate(rs, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			opts := c.opts
			opts.Cache = cache
			h0, m0 := cache.Stats()
			got, err := Translate(rs, opts)
			if err != nil {
				t.Fatal(err)
			}
			h1, m1 := cache.Stats()
			if h1-h0 != c.hits || m1-m0 != c.misses {
				t.Errorf("%d hits, %d misses; want %d and %d", h1-h0, m1-m0, c.hits, c.misses)
			}
			if g, w := describe(t, got), describe(t, want); g != w {
				t.Errorf("programs differ from an uncached translation:\n--- cached\n%s--- uncached\n%s", g, w)
			}
			// The programs handed out are copies: changing one does
			// not change what the cache serves next.
			for _, p := range got.Programs {
				p.Program.Spec.Instructions[0].Constant = 0x5a5a
			}
		})
	}
	if n := cache.Len(); n > 16 {
		t.Errorf("cache holds %d programs, bound 16", n)
	}
	small := NewCompileCache(1)
	rs, err := nftfile.Parse("cache", strings.NewReader(cacheBase), nftfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Translate(rs, Options{NetdevBackend: &xdp, Cache: small}); err != nil {
		t.Fatal(err)
	}
	if small.Len() != 1 {
		t.Errorf("a cache bounded to 1 program holds %d", small.Len())
	}
}

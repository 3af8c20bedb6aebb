package daemon

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/daemon/client"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// TestLoad: 50 clients in 10 network namespaces (5 each, each client its
// own table) reload their ruleset 20 times, all at once. Every client must
// end with exactly its last ruleset, each namespace with exactly its
// clients' tables and one program, link and dispatcher per table; after
// the namespaces go, nothing is left. Requests per second and latency
// percentiles are logged.
func TestLoad(t *testing.T) {
	s := startServer(t, Limits{})
	// The scale (50 clients, 10 namespaces, 20 reloads each) runs
	// with BPFNFT_LOAD_FULL=1 (make loadtest); make test runs a tenth.
	clients, namespaces, reloads := 10, 5, 4
	if os.Getenv("BPFNFT_LOAD_FULL") == "1" && !testing.Short() {
		clients, namespaces, reloads = 50, 10, 20
	}
	nss := make([]*nsctx.NetNS, namespaces)
	for i := range nss {
		ns, err := nsctx.New()
		if err != nil {
			t.Fatal(err)
		}
		nss[i] = ns
		defer ns.Close()
	}
	port := func(c, r int) uint16 { return uint16(10000 + c*100 + r) }

	var mu sync.Mutex
	var lat []time.Duration
	var errs []string
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			conn, closer, err := client.Nftables(s.Addr(), client.WithNetNS(nss[c%namespaces].File()))
			if err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
				return
			}
			defer closer.Close()
			for r := 0; r < reloads; r++ {
				t0 := time.Now()
				err := loadPortRulesetAt(conn, fmt.Sprintf("c%d", c), port(c, r), int32(c/namespaces))
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				if err != nil {
					errs = append(errs, fmt.Sprintf("client %d reload %d: %v", c, r, err))
				}
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, e := range errs {
		t.Error(e)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	t.Logf("%d clients in %d namespaces × %d reloads: %d requests in %v: %.1f requests/s; latency p50 %v, p90 %v, p99 %v, max %v",
		clients, namespaces, reloads, len(lat), elapsed.Round(time.Millisecond), float64(len(lat))/elapsed.Seconds(),
		pct(0.5).Round(time.Millisecond), pct(0.9).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))

	dport := regexp.MustCompile(`udp dport (\d+)`)
	var all []bpfIDs
	for i, ns := range nss {
		st, err := state.Open(ns, state.Options{Root: s.root + "/state"})
		if err != nil {
			t.Fatal(err)
		}
		snap, err := loader.Load(st)
		if err != nil {
			t.Fatal(err)
		}
		text := snap.Manifest.Ruleset
		var want []string
		for c := i; c < clients; c += namespaces {
			want = append(want, fmt.Sprintf("table ip c%d {", c))
			block := tableBlock(text, fmt.Sprintf("c%d", c))
			got := dport.FindAllStringSubmatch(block, -1)
			if len(got) != 1 || got[0][1] != fmt.Sprint(port(c, reloads-1)) {
				t.Errorf("namespace %d, client %d: table holds %v, want only its last port %d", i, c, got, port(c, reloads-1))
			}
		}
		if n := strings.Count(text, "table ip "); n != len(want) {
			t.Errorf("namespace %d: %d tables, want %d", i, n, len(want))
		}
		if len(snap.Manifest.Points) != len(want) {
			t.Errorf("namespace %d: %d attach points, want %d", i, len(snap.Manifest.Points), len(want))
		}
		ids := pinnedIDs(t, st.Path())
		if len(ids.links) != len(want) || len(ids.progs) != 2*len(want) {
			t.Errorf("namespace %d: pinned %d links and %d programs, want %d and %d (old generations leaked?)", i, len(ids.links), len(ids.progs), len(want), 2*len(want))
		}
		all = append(all, ids)
	}
	for i, ns := range nss {
		dir := nsDir(s, ns)
		ns.Close()
		waitReleased(t, all[i], dir)
	}
}

// tableBlock returns the text of table ip NAME in a printed ruleset.
func tableBlock(text, name string) string {
	i := strings.Index(text, "table ip "+name+" {")
	if i < 0 {
		return ""
	}
	rest := text[i:]
	if j := strings.Index(rest[1:], "\ntable "); j >= 0 {
		return rest[:j+1]
	}
	return rest
}

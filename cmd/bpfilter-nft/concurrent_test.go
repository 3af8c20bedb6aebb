package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/daemon"
	"github.com/bpfilter-nft/bpfilter-nft/daemon/client"
	"github.com/bpfilter-nft/bpfilter-nft/internal/bpffstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/state"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

var sockCounter int

// startDaemon starts a daemon on a socket and bpffs of the test's own and
// returns the socket path and the state root. Netdev chains go on backend.
func startDaemon(t *testing.T, backend codegen.ProgramType) (sock, root string) {
	t.Helper()
	return startDaemonBackend(t, &backend)
}

// startDaemonBackend is startDaemon with a backend that may be nil (the
// automatic choice per device).
func startDaemonBackend(t *testing.T, backend *codegen.ProgramType) (sock, root string) {
	t.Helper()
	root = filepath.Join(bpffstest.Mount(t), "state")
	sockCounter++
	sock = filepath.Join(os.TempDir(), fmt.Sprintf("bpfnft-test-%d-%d.sock", os.Getpid(), sockCounter))
	s, err := daemon.Listen(daemon.Config{Socket: sock, StateRoot: root, NetdevBackend: backend, Log: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close(); os.Remove(sock) })
	return sock, root
}

// scratchNetNS returns a new network namespace, closed when the test ends,
// and a path naming it.
func scratchNetNS(t *testing.T) (*nsctx.NetNS, string) {
	t.Helper()
	ns, err := nsctx.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns, fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), ns.File().Fd())
}

// TestConcurrentWriters: writers of one namespace's ruleset — two direct
// CLI writers (sharing the daemon's state root), a google/nftables client
// of the daemon and the CLI's daemon path (which the daemon sends back
// with ERESTART when the ruleset changed under it) — each add rules one at
// a time, all at once. Each
// change is computed from the stored ruleset; none may be lost.
func TestConcurrentWriters(t *testing.T) {
	privtest.Require(t)
	s, root := startDaemon(t, codegen.XDP)
	ns, nsPath := scratchNetNS(t)
	g := rulesetFlags{stateRoot: root, netns: nsPath, netdevBackend: "xdp"}
	direct := func(cmd string) error {
		return withTarget(g, func(t *target) error { return t.change(io.Discard, g, "<cmdline>", cmd+"\n") })
	}
	if err := direct("table ip t { chain c { type filter hook input priority 0; policy accept; }; }"); err != nil {
		t.Fatal(err)
	}

	const perWriter = 5
	var wg sync.WaitGroup
	errs := make(chan error, 4*perWriter)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if err := direct(fmt.Sprintf("add rule ip t c udp dport %d counter drop", 1000+100*w+i)); err != nil {
					errs <- fmt.Errorf("direct writer %d: %w", w, err)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		viaG := rulesetFlags{socket: s, netns: nsPath}
		for i := range perWriter {
			d, err := dialDaemon(viaG)
			if err == nil && d == nil {
				err = fmt.Errorf("no daemon at %s", s)
			}
			if err != nil {
				errs <- err
				return
			}
			if err := d.change(io.Discard, viaG, "<cmdline>", fmt.Sprintf("add rule ip t c udp dport %d counter drop\n", 1200+i)); err != nil {
				errs <- fmt.Errorf("CLI through the daemon: %w", err)
			}
			d.close()
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, closer, err := client.Nftables(s, client.WithNetNS(ns.File()))
		if err != nil {
			errs <- err
			return
		}
		defer closer.Close()
		table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "t"}
		chain := &nftables.Chain{Table: table, Name: "c"}
		for i := range perWriter {
			conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{&expr.Counter{}},
				UserData: userdata.AppendString(nil, userdata.TypeComment, fmt.Sprintf("daemon %d", i))})
			if err := conn.Flush(); err != nil {
				errs <- fmt.Errorf("daemon writer: rule %d: %w", i, err)
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	st, err := state.Open(ns, state.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := loader.Load(st)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range perWriter {
		want = append(want, fmt.Sprintf("udp dport %d counter", 1000+i), fmt.Sprintf("udp dport %d counter", 1100+i), fmt.Sprintf("udp dport %d counter", 1200+i), fmt.Sprintf(`comment "daemon %d"`, i))
	}
	for _, w := range want {
		if !strings.Contains(snap.Manifest.Ruleset, w) {
			t.Errorf("update lost: the stored ruleset lacks %q:\n%s", w, snap.Manifest.Ruleset)
		}
	}
	if n := strings.Count(snap.Manifest.Ruleset, "counter"); n != 4*perWriter {
		t.Errorf("%d rules with counters stored, want %d:\n%s", n, 4*perWriter, snap.Manifest.Ruleset)
	}
}

// TestStaleBatchRestarts: a batch computed from a ruleset that changed
// since it was fetched is refused with ERESTART and changes nothing.
func TestStaleBatchRestarts(t *testing.T) {
	privtest.Require(t)
	s, root := startDaemon(t, codegen.XDP)
	ns, nsPath := scratchNetNS(t)
	g := rulesetFlags{socket: s, netns: nsPath}
	d, err := dialDaemon(g)
	if err != nil || d == nil {
		t.Fatalf("dial daemon: %v", err)
	}
	defer d.close()
	info, err := d.fetch()
	if err != nil {
		t.Fatal(err)
	}
	stale, err := nftfileParse(d, info.Ruleset+"\ntable ip stale {}\n")
	if err != nil {
		t.Fatal(err)
	}
	// Another writer changes the ruleset.
	if err := d.change(io.Discard, g, "<cmdline>", "table ip other {}\n"); err != nil {
		t.Fatal(err)
	}
	if err := d.send(replaceBatch(stale, info.ID)); !errors.Is(err, unix.ERESTART) {
		t.Fatalf("stale batch: %v, want ERESTART", err)
	}
	st, err := state.Open(ns, state.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := loader.Load(st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(snap.Manifest.Ruleset, "table ip other") || strings.Contains(snap.Manifest.Ruleset, "stale") {
		t.Errorf("after the stale batch:\n%s", snap.Manifest.Ruleset)
	}
}

func nftfileParse(d *daemonTarget, text string) (*nlmsg.Ruleset, error) {
	return nftfile.Parse("test", strings.NewReader(text), nftfile.Options{TargetNetNS: d.ns.File()})
}

package daemon

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	ebpflink "github.com/cilium/ebpf/link"

	"github.com/bpfilter-nft/bpfilter-nft/daemon/client"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

// bpfIDs are the kernel IDs of the BPF objects pinned in a directory.
type bpfIDs struct {
	progs []ebpf.ProgramID
	maps  []ebpf.MapID
	links []ebpflink.ID
}

func pinnedIDs(t *testing.T, dir string) bpfIDs {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids bpfIDs
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		if l, err := ebpflink.LoadPinnedLink(p, nil); err == nil {
			if info, err := l.Info(); err == nil {
				ids.links = append(ids.links, info.ID)
				ids.progs = append(ids.progs, info.Program)
			}
			l.Close()
			continue
		}
		if pr, err := ebpf.LoadPinnedProgram(p, nil); err == nil {
			if info, err := pr.Info(); err == nil {
				if id, ok := info.ID(); ok {
					ids.progs = append(ids.progs, id)
				}
			}
			pr.Close()
			continue
		}
		if m, err := ebpf.LoadPinnedMap(p, nil); err == nil {
			if info, err := m.Info(); err == nil {
				if id, ok := info.ID(); ok {
					ids.maps = append(ids.maps, id)
				}
			}
			m.Close()
			continue
		}
		t.Errorf("pin %s: neither a link, a program nor a map", p)
	}
	return ids
}

// alive returns the objects of ids that still exist. Programs and maps
// are looked up in the kernel's ID tables without opening them: an open
// descriptor of a program array is a user reference, and dropping the last
// one schedules the array's clearing, which must not be provoked here.
func (ids bpfIDs) alive() []string {
	var out []string
	for _, id := range ids.progs {
		if next, err := ebpf.ProgramGetNextID(id - 1); err == nil && next == id {
			out = append(out, "program "+itoa(uint32(id)))
		}
	}
	for _, id := range ids.maps {
		if next, err := ebpf.MapGetNextID(id - 1); err == nil && next == id {
			out = append(out, "map "+itoa(uint32(id)))
		}
	}
	for _, id := range ids.links {
		if l, err := ebpflink.NewFromID(id); err == nil {
			l.Close()
			out = append(out, "link "+itoa(uint32(id)))
		}
	}
	return out
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func uitoa(v uint64) string { return strconv.FormatUint(v, 10) }

// waitReleased waits until none of ids exists and dir is gone.
func waitReleased(t *testing.T, ids bpfIDs, dir string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		runtime.GC() // objects a leaked descriptor holds would go with it
		left := ids.alive()
		_, err := os.Stat(dir)
		if len(left) == 0 && errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			for _, id := range ids.maps {
				out, _ := exec.Command("bpftool", "map", "show", "id", itoa(uint32(id))).CombinedOutput()
				t.Logf("map %d: %s", id, out)
			}
			t.Fatalf("namespace gone 20s ago, still alive: %v (state directory present: %v)", left, err == nil)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func nsDir(s *testServer, ns *nsctx.NetNS) string {
	return filepath.Join(s.root, "state", "netns-"+uitoa(ns.Inode()))
}

// TestNamespaceDeletion: when a network namespace with a ruleset loaded
// disappears, every program, map and link the daemon made for it is
// released, and its pins are gone.
func TestNamespaceDeletion(t *testing.T) {
	s := startServer(t, Limits{})
	ns, err := nsctx.New()
	if err != nil {
		t.Fatal(err)
	}
	if got := childApply(s.Addr(), []client.Option{client.WithNetNS(ns.File())}, 7001); got != "ok" {
		t.Fatalf("apply: %s", got)
	}
	dir := nsDir(s, ns)
	ids := pinnedIDs(t, dir)
	if len(ids.progs) < 2 || len(ids.maps) < 2 || len(ids.links) != 1 {
		t.Fatalf("pinned objects %+v: want a link, its dispatcher and chain programs, maps", ids)
	}
	if len(s.Registry().NetNSes()) != 1 {
		t.Fatalf("registry holds %d namespaces, want 1", len(s.Registry().NetNSes()))
	}
	t.Logf("before deletion: %d programs, %d maps, %d links", len(ids.progs), len(ids.maps), len(ids.links))
	ns.Close() // the last reference: the namespace is destroyed
	waitReleased(t, ids, dir)
	if n := len(s.Registry().NetNSes()); n != 0 {
		t.Errorf("registry still holds %d namespaces", n)
	}
}

// TestRestart: a new daemon rebuilds the registry (same IDs) from the
// pins, keeps watching live namespaces, and releases the pins of
// namespaces that disappeared while no daemon ran.
func TestRestart(t *testing.T) {
	s1 := startServer(t, Limits{})
	live, err := nsctx.New()
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead, err := nsctx.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []*nsctx.NetNS{live, dead} {
		if got := childApply(s1.Addr(), []client.Option{client.WithNetNS(ns.File())}, 7002); got != "ok" {
			t.Fatalf("apply: %s", got)
		}
	}
	before := s1.Registry().Visible(rootPath(t))
	deadIDs := pinnedIDs(t, nsDir(s1, dead))
	s1.Close()
	deadDir := nsDir(s1, dead)
	dead.Close()
	time.Sleep(200 * time.Millisecond)
	if _, err := os.Stat(deadDir); err != nil {
		t.Fatalf("pins released with no daemon running: %v", err)
	}

	s2 := startServerAt(t, s1.root, Limits{})
	waitReleased(t, deadIDs, deadDir)
	var want []ObjectInfo
	for _, o := range before {
		if o.NetNS == live.Inode() {
			want = append(want, o)
		}
	}
	if got := s2.Registry().Visible(rootPath(t)); !reflect.DeepEqual(got, want) {
		t.Errorf("after restart:\n%+v\nwant\n%+v", got, want)
	}
	// The live namespace is watched again.
	liveIDs := pinnedIDs(t, nsDir(s2, live))
	liveDir := nsDir(s2, live)
	live.Close()
	waitReleased(t, liveIDs, liveDir)
}

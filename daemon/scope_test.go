package daemon

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/daemon/client"
)

// nested runs the test binary as a one-shot client (load a one-table
// ruleset) inside depth nested user+network namespaces.
func nested(t *testing.T, sock string, depth int) string {
	t.Helper()
	var args []string
	for i := 0; i < depth; i++ {
		args = append(args, "unshare", "-Urn")
	}
	args = append(args, os.Args[0])
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"=once", client.SocketEnv+"="+sock)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%d nested namespaces: %v", depth, err)
	}
	return strings.TrimSpace(string(out))
}

// TestNestingLimit: a client 32 user namespaces below the host is served,
// one 33 below (the kernel allows that) is refused with ENOSPC.
func TestNestingLimit(t *testing.T) {
	s := startServer(t, Limits{})
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("privileged: unshare not installed")
	}
	for _, c := range []struct {
		depth int
		want  string
	}{
		{1, "ok"},
		{MaxLevel, "ok"},
		{MaxLevel + 1, "err 28 "},
	} {
		got := nested(t, s.Addr(), c.depth)
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("level %d: %q, want %q…", c.depth, got, c.want)
		}
		if c.depth > MaxLevel && !strings.Contains(got, "nesting deeper than 32 levels") {
			t.Errorf("level %d: error text %q does not explain the limit", c.depth, got)
		}
		t.Logf("level %d: %s", c.depth, got)
	}
	// A table loaded at level 32 has an ID at each of the 33 levels; its
	// owner sees it with its own level's ID only.
	c := startNestedChild(t, s.Addr(), MaxLevel)
	if got := c.do(t, "apply 0"); got != "ok" {
		t.Fatalf("level %d: %s", MaxLevel, got)
	}
	var deep *ObjectInfo
	for _, o := range s.Registry().Visible(rootPath(t)) {
		if len(o.IDs) == MaxLevel+1 {
			deep = &o
		}
	}
	if deep == nil || deep.Kind != KindTable || deep.Level != MaxLevel {
		t.Errorf("host does not see the level-%d table with %d IDs: %+v", MaxLevel, MaxLevel+1, deep)
	}
	own := decodeObjects(t, c.do(t, "list"))
	if len(own) != 1 || own[0].ID != 1 || len(own[0].IDs) != 1 || deep == nil || own[0].ID != deep.IDs[MaxLevel] {
		t.Errorf("level-%d client sees %+v, want its table with ID 1 (its level's)", MaxLevel, own)
	}
}

// rootPath is the host's user namespace chain.
func rootPath(t *testing.T) []uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &st); err != nil {
		t.Fatal(err)
	}
	return []uint64{st.Ino}
}

// TestQuota: a user's objects and namespaces are limited; the load over
// the limit is refused with ENOSPC and a clear message, nothing applied.
func TestQuota(t *testing.T) {
	// One table with an input chain is 5 objects: table, program, link,
	// dispatcher array, counter map.
	for _, c := range []struct {
		name   string
		limits Limits
		text   string
	}{
		{"objects", Limits{MaxObjects: 8}, "would own 10 objects (tables, programs, maps, links), more than the limit of 8"},
		{"namespaces", Limits{MaxNamespaces: 1}, "already has rulesets in 1 network namespaces, the limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startServer(t, c.limits)
			ns1, ns2 := scratchNetNS(t), scratchNetNS(t)
			if got := childApply(s.Addr(), []client.Option{client.WithNetNS(ns1.File())}, 6001); got != "ok" {
				t.Fatalf("first namespace: %s", got)
			}
			got := childApply(s.Addr(), []client.Option{client.WithNetNS(ns2.File())}, 6002)
			if !strings.HasPrefix(got, "err 28 ") || !strings.Contains(got, c.text) {
				t.Errorf("second namespace: %q, want ENOSPC with %q", got, c.text)
			}
			t.Logf("refusal: %s", got)
			for _, o := range s.Registry().Visible(rootPath(t)) {
				if o.NetNS == ns2.Inode() {
					t.Errorf("refused namespace has object %+v", o)
				}
			}
			// Reloading within the limit still works.
			if got := childApply(s.Addr(), []client.Option{client.WithNetNS(ns1.File())}, 6003); got != "ok" {
				t.Errorf("reload of the first namespace: %s", got)
			}
		})
	}
}

package loader

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
)

// cgroup2Root returns where the cgroup v2 hierarchy is mounted and the
// process's cgroup in it, or "" when there is none.
func cgroup2Root(t *testing.T) (root, self string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "", ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
			root = f[1]
			break
		}
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil || root == "" {
		return "", ""
	}
	for _, line := range strings.Split(string(cg), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return root, filepath.Join(root, p)
		}
	}
	return "", ""
}

// inCgroup runs fn with the whole process moved into cgroup dir, so that
// the sockets fn creates belong to it; the process moves back afterwards.
func inCgroup(t *testing.T, dir, home string, fn func()) {
	t.Helper()
	pid := []byte(fmt.Sprint(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := os.WriteFile(filepath.Join(home, "cgroup.procs"), pid, 0); err != nil {
			t.Fatalf("moving back to %s: %v", home, err)
		}
	}()
	fn()
}

// cgroupCases are the cgroup_skb attach kinds: input and output chains on a
// scratch cgroup holding the receiving (ingress) or sending (egress)
// sockets.
var cgroupCases = []attachCase{
	{"cgroup ingress", func(tp *topo) *netnstest.NS { return tp.b }, "ip", "type filter hook input priority 0;", ptr(codegen.CgroupSKB), KindCgroupIngress},
	{"cgroup egress", func(tp *topo) *netnstest.NS { return tp.a }, "ip", "type filter hook output priority 0;", ptr(codegen.CgroupSKB), KindCgroupEgress},
}

// scratchCgroup creates a cgroup for the test (removed at its end) and
// returns it and the process's own cgroup.
func scratchCgroup(t *testing.T, name string) (cg, home string) {
	t.Helper()
	root, home := cgroup2Root(t)
	if root == "" {
		t.Skip("privileged: no cgroup v2 hierarchy mounted")
	}
	cg = filepath.Join(root, fmt.Sprintf("bpfnft-loader-%d-%s", os.Getpid(), name))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	return cg, home
}

// TestAttachCgroup applies input and output chains as cgroup_skb programs
// on a scratch cgroup holding the receiving (ingress) or sending (egress)
// socket.
func TestAttachCgroup(t *testing.T) {
	for _, c := range cgroupCases {
		t.Run(c.name, func(t *testing.T) {
			tp := newTopo(t)
			cg, home := scratchCgroup(t, c.kind)
			ns := netns(t, c.where(tp))
			st := stateDir(t, ns)
			var rc *receiver
			var snd *sender
			// Only the filtered side's sockets join the cgroup.
			if c.kind == KindCgroupEgress {
				rc = listen(t, tp.b, 7, 9)
				inCgroup(t, cg, home, func() { snd = dial(t, tp.a) })
			} else {
				snd = dial(t, tp.a)
				inCgroup(t, cg, home, func() { rc = listen(t, tp.b, 7, 9) })
			}
			res := translate(t, ns, c.ruleset(9), c.typ)
			if err := Apply(ns, st, res, Options{CgroupPath: cg}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { Flush(st) })
			snap, err := Load(st)
			if err != nil {
				t.Fatal(err)
			}
			if len(snap.Manifest.Points) != 1 || snap.Manifest.Points[0].Kind != c.kind {
				t.Fatalf("points %+v, want one %s", snap.Manifest.Points, c.kind)
			}
			const n = 25
			snd.send(7, n)
			snd.send(9, n)
			got := rc.settleFor(map[int]int{7: n})
			if got[7] != n || got[9] != 0 {
				t.Errorf("received %d on port 7 and %d on port 9, want %d and 0", got[7], got[9], n)
			}
			if c7, c9 := counterOf(t, st, "dport 7"), counterOf(t, st, "dport 9"); c7 != n || c9 != n {
				t.Errorf("counters: port 7 %d, port 9 %d; want %d each", c7, c9, n)
			}
			// A reload updates the cgroup link in place.
			if err := Apply(ns, st, translate(t, ns, c.ruleset(7, 9), c.typ), Options{CgroupPath: cg}); err != nil {
				t.Fatal(err)
			}
			rc.reset()
			snd.send(7, n)
			if got := rc.settle(); got[7] != 0 {
				t.Errorf("after reload: received %d on port 7, want 0", got[7])
			}
			if err := Flush(st); err != nil {
				t.Fatal(err)
			}
			rc.reset()
			snd.send(9, n)
			if got := rc.settleFor(map[int]int{9: n}); got[9] != n {
				t.Errorf("after Flush: received %d of %d on port 9", got[9], n)
			}
		})
	}
}

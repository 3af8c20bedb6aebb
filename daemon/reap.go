package daemon

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Namespaces that disappear.
//
// A network namespace whose ruleset uses netfilter links never dies on its
// own: each BPF netfilter link holds a reference to its namespace
// (bpf_nf_link_attach takes one with get_net_track), and our pins hold
// the links. So the daemon treats a namespace as gone once user space can
// no longer reach it — no task lives in it, no open file refers to it
// (/proc/*/fd), no nsfs bind mount names it (every mount namespace's
// mountinfo, which covers /run/netns and container runtimes' own
// directories) — and then releases its links, programs, maps and pins,
// which lets the kernel destroy it. The reaper checks every registered
// namespace at Config.ReapInterval and releases one only after two
// consecutive checks found it unreachable, so a process in the middle of
// switching namespaces is not mistaken for none.
//
// A namespace kept alive only by sockets (no task, no namespace file, no
// mount) counts as gone: nothing can enter it to change its ruleset any
// more. Namespaces without netfilter links (XDP, tcx, cgroup only) are
// destroyed by the kernel as usual; the watcher (watch.go) hears of that
// at once.

// reap releases registered namespaces nobody can reach, until done.
func (s *Server) reap(interval time.Duration) {
	missed := map[uint64]int{}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		inos := s.reg.NetNSes()
		if len(inos) == 0 {
			continue
		}
		refs := reachableNetNS()
		next := map[uint64]int{}
		for _, ino := range inos {
			if refs[ino] {
				continue
			}
			if missed[ino]+1 >= 2 {
				s.namespaceGone(ino)
				continue
			}
			next[ino] = missed[ino] + 1
		}
		missed = next
	}
}

// reachableNetNS returns the inodes of the namespaces user space can reach:
// those of tasks, of open namespace files and of nsfs mounts. (It returns
// inodes of namespaces of every type; only network namespaces are asked
// about.)
func reachableNetNS() map[uint64]bool {
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		return nil
	}
	refs := map[uint64]bool{}
	add := func(path string) {
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil && st.Dev == self.Dev {
			refs[st.Ino] = true
		}
	}
	for _, g := range []string{"/proc/[0-9]*/task/[0-9]*/ns/net", "/proc/[0-9]*/fd/*"} {
		paths, _ := filepath.Glob(g)
		for _, p := range paths {
			add(p)
		}
	}
	seen := map[uint64]bool{}
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range pids {
		var st unix.Stat_t
		if unix.Stat(p+"/ns/mnt", &st) != nil || seen[st.Ino] {
			continue
		}
		seen[st.Ino] = true
		nsfsMounts(p+"/mountinfo", refs)
	}
	return refs
}

// nsfsMounts adds the namespaces bind-mounted in a mount namespace: the
// mountinfo lines of file system type nsfs, whose root is "net:[INODE]".
func nsfsMounts(path string, refs map[uint64]bool) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		_, post, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(post, "nsfs ") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 {
			continue
		}
		root := fields[3]
		if i := strings.Index(root, ":["); i >= 0 && strings.HasSuffix(root, "]") {
			if ino, err := strconv.ParseUint(root[i+2:len(root)-1], 10, 64); err == nil {
				refs[ino] = true
			}
		}
	}
}

package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	ebpflink "github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// restore rebuilds the registry from the pinned state: every
// netns-<inode> directory under the state root whose namespace still
// exists (found through /run/netns, /proc/*/ns/net, threads' namespaces
// and open files, and confirmed by its cookie) is registered again with
// its saved IDs and watched; the pins of namespaces that no longer exist
// are released.
func (s *Server) restore() error {
	des, err := os.ReadDir(s.cfg.StateRoot)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var want []uint64
	for _, de := range des {
		if ino, ok := netnsDir(de.Name()); ok {
			want = append(want, ino)
		}
	}
	if len(want) == 0 {
		return nil
	}
	found := findNetNS(want)
	for _, ino := range want {
		dir := filepath.Join(s.cfg.StateRoot, fmt.Sprintf("netns-%d", ino))
		ns := found[ino]
		if ns == nil {
			if err := releaseDir(dir); err != nil {
				s.logf("restore: netns %d is gone; releasing its pins: %v", ino, err)
			} else {
				s.logf("restore: netns %d is gone; its pins were released", ino)
			}
			continue
		}
		err := s.restoreOne(ns)
		ns.Close()
		if err != nil {
			s.logf("restore: netns %d: %v", ino, err)
		}
	}
	return nil
}

func (s *Server) restoreOne(ns *nsctx.NetNS) error {
	st, err := state.Open(ns, state.Options{Root: s.cfg.StateRoot})
	if err != nil {
		return err
	}
	snap, err := loader.Load(st)
	if err != nil {
		return err
	}
	var rec record
	if b, err := st.ReadBlob(RecordName); err == nil {
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("daemon record: %w", err)
		}
	}
	cookie, err := ns.Cookie()
	if err != nil {
		return err
	}
	if rec.Cookie != 0 && rec.Cookie != cookie {
		// The inode was reused by a new namespace: the one the pins
		// served is gone.
		s.logf("restore: netns %d: cookie %d, recorded %d: the recorded namespace is gone; releasing its pins", ns.Inode(), cookie, rec.Cookie)
		return loader.Flush(st)
	}
	owner, err := ns.OwningUserNS()
	if err != nil {
		return err
	}
	chain, err := owner.Ancestry()
	owner.Close()
	if err != nil {
		return err
	}
	t := &target{ns: ns, cookie: cookie}
	for _, u := range chain {
		t.path = append(t.path, u.Inode())
		u.Close()
	}
	s.reg.Set(t.path, ns.Inode(), cookie, rec.UID, snap.Manifest, rec.IDs)
	if err := s.w.watch(ns); err != nil {
		return err
	}
	s.logf("restore: netns %d: %d objects", ns.Inode(), len(s.reg.IDs(ns.Inode())))
	return nil
}

func netnsDir(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, "netns-")
	if !ok {
		return 0, false
	}
	ino, err := strconv.ParseUint(rest, 10, 64)
	return ino, err == nil
}

// findNetNS opens the network namespaces with the given inodes that can
// be found from this process.
func findNetNS(inodes []uint64) map[uint64]*nsctx.NetNS {
	want := map[uint64]bool{}
	for _, i := range inodes {
		want[i] = true
	}
	out := map[uint64]*nsctx.NetNS{}
	try := func(path string) {
		var st unix.Stat_t
		if unix.Stat(path, &st) != nil || !want[st.Ino] || out[st.Ino] != nil {
			return
		}
		ns, err := nsctx.OpenNetNS(path)
		if err != nil {
			return
		}
		if t, err := unix.IoctlRetInt(int(ns.File().Fd()), unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNET {
			ns.Close()
			return
		}
		out[st.Ino] = ns
	}
	globs := []string{"/run/netns/*", "/proc/[0-9]*/ns/net", "/proc/[0-9]*/task/[0-9]*/ns/net", "/proc/[0-9]*/fd/*"}
	for _, g := range globs {
		paths, _ := filepath.Glob(g)
		for _, p := range paths {
			if len(out) == len(want) {
				return out
			}
			try(p)
		}
	}
	return out
}

// releaseDir unpins everything in a namespace's state directory — links,
// then dispatcher arrays, then the rest, as loader.Flush does — and
// removes it.
func releaseDir(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, pass := range []func(string) bool{
		func(n string) bool { return strings.HasPrefix(n, "link-") },
		func(n string) bool { return strings.HasPrefix(n, "array-") },
		func(string) bool { return true },
	} {
		for _, de := range des {
			if !pass(de.Name()) {
				continue
			}
			if strings.HasPrefix(de.Name(), "link-") {
				// Detach now: a link whose last reference was a pin
				// is released later, from a work queue.
				if l, err := ebpflink.LoadPinnedLink(filepath.Join(dir, de.Name()), nil); err == nil {
					l.Detach()
					l.Close()
				}
			}
			if err := os.Remove(filepath.Join(dir, de.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// namespaceGone releases everything of a network namespace that
// disappeared (inode 0: notifications were lost; every registered
// namespace is checked).
func (s *Server) namespaceGone(ino uint64) {
	if ino == 0 {
		inos := s.reg.NetNSes()
		found := findNetNS(inos)
		for _, i := range inos {
			if ns := found[i]; ns != nil {
				ns.Close()
				continue
			}
			s.namespaceGone(i)
		}
		return
	}
	unlock := s.lockNS(ino)
	defer unlock()
	dir := filepath.Join(s.cfg.StateRoot, fmt.Sprintf("netns-%d", ino))
	err := releaseDir(dir)
	s.reg.Drop(ino)
	s.decoded.drop(ino)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		s.logf("netns %d disappeared; releasing its pins: %v", ino, err)
		return
	}
	s.logf("netns %d disappeared; its programs, maps, links and pins were released", ino)
}

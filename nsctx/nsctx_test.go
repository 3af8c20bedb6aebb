package nsctx

import (
	"os"
	"runtime"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"golang.org/x/sys/unix"
)

// newScratch makes an empty network namespace held by a file.
func newScratch(t *testing.T) *NetNS {
	t.Helper()
	var ns *NetNS
	err := func() error {
		done := make(chan error, 1)
		go func() {
			// This thread moves into the new namespace and is never
			// unlocked: the runtime destroys it when the goroutine ends.
			lockOSThread()
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				done <- err
				return
			}
			var err error
			ns, err = Current()
			done <- err
		}()
		return <-done
	}()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func TestDoAndInterfaceByName(t *testing.T) {
	privtest.Require(t)
	ns := newScratch(t)
	host, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	if ns.Inode() == host.Inode() {
		t.Fatal("scratch namespace has the host's inode")
	}
	var inside uint64
	if err := ns.Do(func() error {
		cur, err := Current()
		if err != nil {
			return err
		}
		defer cur.Close()
		inside = cur.Inode()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inside != ns.Inode() {
		t.Errorf("Do ran in namespace %d, want %d", inside, ns.Inode())
	}
	after, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if after.Inode() != host.Inode() {
		t.Errorf("thread left in namespace %d after Do", after.Inode())
	}

	lo, err := InterfaceByName(ns, "lo")
	if err != nil {
		t.Fatal(err)
	}
	if lo.Index != 1 || lo.Type != unix.ARPHRD_LOOPBACK {
		t.Errorf("lo = %+v, want index 1, type loopback", lo)
	}
	if _, err := InterfaceByName(ns, "nosuchdev0"); err == nil {
		t.Error("lookup of a missing device succeeded")
	}
}

func TestFromFileRejectsOtherFiles(t *testing.T) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromFile(f); err == nil {
		t.Error("FromFile accepted a file that is not a namespace")
	}
}

func lockOSThread() { runtime.LockOSThread() }

package nsctx

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
)

func TestIdentifyPeer(t *testing.T) {
	a, b, err := unixPair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	p, err := IdentifyPeer(a)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.PID != os.Getpid() || p.UID != uint32(os.Geteuid()) {
		t.Errorf("peer pid %d uid %d, want %d %d", p.PID, p.UID, os.Getpid(), os.Geteuid())
	}
	own, err := OpenNetNS("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if p.Net.Inode() != own.Inode() {
		t.Errorf("peer netns %d, want %d", p.Net.Inode(), own.Inode())
	}
	if !p.Alive() {
		t.Error("peer reported dead")
	}
	if p.Root() != "/proc/"+strconv.Itoa(os.Getpid())+"/root" {
		t.Errorf("Root() = %s", p.Root())
	}
}

func unixPair() (*net.UnixConn, *net.UnixConn, error) {
	dir, err := os.MkdirTemp("", "bpfnft-nsctx-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: dir + "/s", Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: dir + "/s", Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	s, err := ln.AcceptUnix()
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return s, c, nil
}

// userNSChild runs `sleep` in a new user namespace (uid 0 inside).
func userNSChild(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("unshare", "-Ur", "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip("privileged: unshare -Ur: ", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait until the child is in its namespace.
	self, _ := os.Readlink("/proc/self/ns/user")
	for i := 0; i < 1000; i++ {
		if l, err := os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/user"); err == nil && l != self {
			if c, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/comm"); err == nil && string(c) == "sleep\n" {
				return cmd
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("child never entered its user namespace")
	return nil
}

// TestHasNetAdminOver checks the kernel's capability rule: a process has
// CAP_NET_ADMIN in its own user namespace if it holds it, in every
// descendant, and nowhere else (not in a sibling, not in its parent).
func TestHasNetAdminOver(t *testing.T) {
	privtest.Require(t)
	a, b := userNSChild(t), userNSChild(t)
	host, err := OpenPeer(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	pa, err := OpenPeer(a.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	pb, err := OpenPeer(b.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	if chain, err := pa.User.Ancestry(); err != nil || len(chain) != 2 || !chain[0].Same(host.User) {
		t.Fatalf("child's user namespace ancestry %v (%v): want [host, child]", chain, err)
	}
	for _, c := range []struct {
		name   string
		peer   *Peer
		target *UserNS
		want   bool
	}{
		{"host over host", host, host.User, true},
		{"host over child", host, pa.User, true},
		{"child over itself", pa, pa.User, true},
		{"child over sibling", pa, pb.User, false},
		{"child over host", pa, host.User, false},
	} {
		got, err := c.peer.HasNetAdminOver(c.target)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

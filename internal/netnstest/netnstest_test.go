package netnstest

import (
	"os"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
)

func TestNamespaceIsolation(t *testing.T) {
	privtest.Require(t)
	hostIno := inode(t, "/proc/self/ns/net")
	ns, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	var inside string
	if err := ns.Do(func() error {
		var err error
		inside, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside == hostIno {
		t.Fatalf("Do ran in the host namespace %s", inside)
	}
	if got := inode(t, "/proc/self/ns/net"); got != hostIno {
		t.Fatalf("process namespace changed from %s to %s", hostIno, got)
	}
	out, err := ns.Run("", "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(out, "\n"); lines != 1 || !strings.Contains(out, "lo:") {
		t.Errorf("new namespace has links:\n%s", out)
	}
	if err := ns.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	out, err = ns.Run("", "cat", "/proc/sys/net/ipv4/ip_forward")
	if err != nil || strings.TrimSpace(out) != "1" {
		t.Errorf("ip_forward inside = %q, %v; want 1", out, err)
	}
	if _, err := ns.Run("", "false"); err == nil {
		t.Error("Run of false did not fail")
	}
}

func inode(t *testing.T, path string) string {
	t.Helper()
	s, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

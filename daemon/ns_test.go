package daemon

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/daemon/client"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

// inNS runs a command inside ns.
func inNS(t *testing.T, ns *nsctx.NetNS, args ...string) {
	t.Helper()
	if err := ns.Do(func() error {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// udpDelivered sends a datagram from ns src to dst:port and reports
// whether a socket listening in ns rcv got it. A datagram expected (want)
// is waited for up to 5 s (a loaded machine can be slow), one not expected
// 300 ms.
func udpDelivered(t *testing.T, src, rcv *nsctx.NetNS, srcIP, dstIP string, port int, want bool) bool {
	t.Helper()
	var l *net.UDPConn
	if err := rcv.Do(func() (err error) {
		l, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(dstIP), Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var s *net.UDPConn
	if err := src.Do(func() (err error) {
		s, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(srcIP)}, &net.UDPAddr{IP: net.ParseIP(dstIP), Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("bpfilter-nft")); err != nil {
		t.Fatal(err)
	}
	wait := 300 * time.Millisecond
	if want {
		wait = 5 * time.Second
	}
	l.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 64)
	_, err := l.Read(buf)
	return err == nil
}

func decodeObjects(t *testing.T, s string) []ObjectInfo {
	t.Helper()
	var objs []ObjectInfo
	if err := json.Unmarshal([]byte(s), &objs); err != nil {
		t.Fatalf("object list %q: %v", s, err)
	}
	return objs
}

// TestNamespaces: two clients in unprivileged user+network namespaces of
// their own and one on the host each load a ruleset through the daemon;
// packets over a veth between the two show each ruleset enforced in its
// own namespace only; each child sees only its objects, numbered from 1
// at its level; the host sees all, with nested IDs; touching another's
// ruleset gets EPERM.
func TestNamespaces(t *testing.T) {
	s := startServer(t, Limits{})
	b := startChild(t, s.Addr())
	nsB, err := nsctx.OpenNetNS("/proc/" + strconv.Itoa(b.pid()) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer nsB.Close()
	// A gets a descriptor of B's namespace, to try to change it.
	a := startChild(t, s.Addr(), nsB.File())
	nsA, err := nsctx.OpenNetNS("/proc/" + strconv.Itoa(a.pid()) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer nsA.Close()

	inNS(t, nsA, "ip", "link", "add", "vA", "address", "02:00:00:00:0a:01", "type", "veth",
		"peer", "name", "vB", "address", "02:00:00:00:0a:02", "netns", strconv.Itoa(b.pid()))
	for _, c := range []struct {
		ns            *nsctx.NetNS
		dev, ip, peer string
		peerMAC       string
	}{
		{nsA, "vA", "192.0.2.1", "192.0.2.2", "02:00:00:00:0a:02"},
		{nsB, "vB", "192.0.2.2", "192.0.2.1", "02:00:00:00:0a:01"},
	} {
		inNS(t, c.ns, "ip", "link", "set", "lo", "up")
		inNS(t, c.ns, "ip", "addr", "add", c.ip+"/24", "dev", c.dev)
		inNS(t, c.ns, "ip", "link", "set", c.dev, "up")
		inNS(t, c.ns, "ip", "neigh", "replace", c.peer, "lladdr", c.peerMAC, "dev", c.dev, "nud", "permanent")
	}
	if !udpDelivered(t, nsB, nsA, "192.0.2.2", "192.0.2.1", 5001, true) {
		t.Fatal("no delivery before any ruleset: the topology is broken")
	}

	if got := a.do(t, "apply 5001"); got != "ok" {
		t.Fatalf("child A apply: %s", got)
	}
	if got := b.do(t, "apply 5002"); got != "ok" {
		t.Fatalf("child B apply: %s", got)
	}
	host := scratchNetNS(t)
	if got := childApply(s.Addr(), []client.Option{client.WithNetNS(host.File())}, 5003); got != "ok" {
		t.Fatalf("host apply: %s", got)
	}

	for _, c := range []struct {
		src, rcv     *nsctx.NetNS
		srcIP, dstIP string
		port         int
		want         bool
	}{
		{nsB, nsA, "192.0.2.2", "192.0.2.1", 5001, false}, // A's rule
		{nsB, nsA, "192.0.2.2", "192.0.2.1", 5002, true},  // B's rule is not A's
		{nsA, nsB, "192.0.2.1", "192.0.2.2", 5002, false}, // B's rule
		{nsA, nsB, "192.0.2.1", "192.0.2.2", 5001, true},  // A's rule is not B's
	} {
		if got := udpDelivered(t, c.src, c.rcv, c.srcIP, c.dstIP, c.port, c.want); got != c.want {
			t.Errorf("%s → %s:%d delivered = %v, want %v", c.srcIP, c.dstIP, c.port, got, c.want)
		}
	}

	// Each child sees its own objects only, with IDs of its level.
	for _, c := range []struct {
		name string
		ch   *child
		ns   *nsctx.NetNS
	}{{"A", a, nsA}, {"B", b, nsB}} {
		objs := decodeObjects(t, c.ch.do(t, "list"))
		if len(objs) == 0 {
			t.Fatalf("child %s sees no objects", c.name)
		}
		kinds := map[string]int{}
		for _, o := range objs {
			kinds[o.Kind]++
			if o.NetNS != c.ns.Inode() || o.Level != 0 || len(o.IDs) != 1 || o.IDs[0] != o.ID {
				t.Errorf("child %s sees %+v: not its own object at its own level", c.name, o)
			}
			if o.Kind == KindTable && o.ID != 1 {
				t.Errorf("child %s: its only table has ID %d at its level, want 1", c.name, o.ID)
			}
		}
		if kinds[KindTable] != 1 || kinds[KindProgram] != 1 || kinds[KindLink] != 1 || kinds[KindMap] != 2 {
			t.Errorf("child %s sees %v, want 1 table, 1 program, 1 link, 2 maps", c.name, kinds)
		}
	}

	// The host sees all three rulesets; the children's objects with two
	// IDs (host level, their own).
	hc, err := client.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	var all []ObjectInfo
	if err := client.ListObjects(hc, &all); err != nil {
		t.Fatal(err)
	}
	perNS := map[uint64][]ObjectInfo{}
	hostTableIDs := map[uint32]bool{}
	for _, o := range all {
		perNS[o.NetNS] = append(perNS[o.NetNS], o)
		if o.Kind == KindTable {
			if hostTableIDs[o.ID] {
				t.Errorf("host-level table ID %d used twice", o.ID)
			}
			hostTableIDs[o.ID] = true
		}
	}
	for _, c := range []struct {
		ns     *nsctx.NetNS
		levels int
	}{{nsA, 2}, {nsB, 2}, {host, 1}} {
		objs := perNS[c.ns.Inode()]
		if len(objs) != 5 {
			t.Errorf("host sees %d objects of netns %d, want 5", len(objs), c.ns.Inode())
		}
		for _, o := range objs {
			if len(o.IDs) != c.levels {
				t.Errorf("host sees %+v: want %d nested IDs", o, c.levels)
			}
		}
	}

	// Touching another namespace's ruleset: EPERM, audited, nothing
	// changed.
	for _, cmd := range []string{"flush", "edit"} {
		got := a.do(t, cmd+" 3")
		if !strings.HasPrefix(got, "err 1 ") {
			t.Errorf("child A: %s child B's ruleset: %q, want EPERM", cmd, got)
		}
	}
	if !strings.Contains(s.log.String(), "audit: denied") {
		t.Errorf("no audit line in the daemon log:\n%s", s.log.String())
	}
	if !udpDelivered(t, nsB, nsA, "192.0.2.2", "192.0.2.1", 5002, true) || udpDelivered(t, nsA, nsB, "192.0.2.1", "192.0.2.2", 5002, false) {
		t.Error("child B's ruleset changed after refused requests")
	}

	// The namespace tree is for the host only.
	if got := a.do(t, "namespaces"); !strings.HasPrefix(got, "err 1 ") {
		t.Errorf("child lists namespaces: %q, want EPERM", got)
	}
	var tree NamespaceInfo
	if err := client.ListNamespaces(hc, &tree); err != nil {
		t.Fatal(err)
	}
	if tree.Level != 0 || len(tree.NetNS) != 1 || len(tree.Children) != 2 {
		t.Errorf("namespace tree: %+v, want the host with one netns and two child user namespaces", tree)
	}
	for _, c := range tree.Children {
		if c.Level != 1 || len(c.NetNS) != 1 {
			t.Errorf("child user namespace %+v: want level 1 with one netns", c)
		}
	}
}

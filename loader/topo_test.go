package loader

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/bpffstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// topo is three scratch namespaces: a sender A, a router R and a receiver
// B, joined by veth pairs a0–r0 (192.0.2.0/24) and r1–b0 (198.51.100.0/24),
// with static neighbours and explicit MAC addresses.
type topo struct {
	a, r, b *netnstest.NS
}

const (
	addrA = "192.0.2.1"
	addrB = "198.51.100.1"
)

func newTopo(t *testing.T) *topo {
	t.Helper()
	privtest.Require(t)
	tp := &topo{}
	for _, p := range []**netnstest.NS{&tp.a, &tp.r, &tp.b} {
		ns, err := netnstest.New()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		*p = ns
	}
	run := func(ns *netnstest.NS, files []*os.File, script string) {
		t.Helper()
		if _, err := ns.RunFiles(script, files, "ip", "-batch", "-"); err != nil {
			t.Fatal(err)
		}
	}
	run(tp.a, []*os.File{tp.r.File()}, `link add a0 address 02:0a:00:00:00:01 type veth peer name r0 address 02:0a:00:00:00:02 netns /proc/self/fd/3
`)
	run(tp.r, []*os.File{tp.b.File()}, `link add r1 address 02:0b:00:00:00:02 type veth peer name b0 address 02:0b:00:00:00:01 netns /proc/self/fd/3
`)
	run(tp.a, nil, `link set lo up
link set a0 up
addr add 192.0.2.1/24 dev a0
neigh replace 192.0.2.2 lladdr 02:0a:00:00:00:02 dev a0 nud permanent
route add 198.51.100.0/24 via 192.0.2.2
`)
	run(tp.r, nil, `link set lo up
link set r0 up
link set r1 up
addr add 192.0.2.2/24 dev r0
addr add 198.51.100.2/24 dev r1
neigh replace 192.0.2.1 lladdr 02:0a:00:00:00:01 dev r0 nud permanent
neigh replace 198.51.100.1 lladdr 02:0b:00:00:00:01 dev r1 nud permanent
`)
	run(tp.b, nil, `link set lo up
link set b0 up
addr add 198.51.100.1/24 dev b0
neigh replace 198.51.100.2 lladdr 02:0b:00:00:00:02 dev b0 nud permanent
route add 192.0.2.0/24 via 198.51.100.2
`)
	for _, ns := range []*netnstest.NS{tp.a, tp.r, tp.b} {
		for _, kv := range [][2]string{{"net.ipv4.conf.all.rp_filter", "0"}, {"net.ipv4.conf.default.rp_filter", "0"}} {
			if err := ns.Sysctl(kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tp.r.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	return tp
}

// netns returns ns as an nsctx.NetNS (a second reference, closed at the
// end of the test).
func netns(t *testing.T, ns *netnstest.NS) *nsctx.NetNS {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", ns.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	n, err := nsctx.FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// stateDir opens a state directory for ns on a bpffs of the test's own.
func stateDir(t *testing.T, ns *nsctx.NetNS) *state.Dir {
	t.Helper()
	st, err := state.Open(ns, state.Options{Root: filepath.Join(bpffstest.Mount(t), "bpfilter-nft")})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// translate runs the pipeline on ruleset for namespace ns.
func translate(t *testing.T, ns *nsctx.NetNS, ruleset string, typ *codegen.ProgramType) *pipeline.Result {
	t.Helper()
	res, err := pipeline.TranslateReader("test.nft", strings.NewReader(ruleset), pipeline.Options{NetNS: ns, Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	return res
}

// receiver counts UDP datagrams arriving in B per destination port.
type receiver struct {
	mu     sync.Mutex
	counts map[int]int
	fds    []int
	done   chan struct{}
	wg     sync.WaitGroup
}

func listen(t *testing.T, ns *netnstest.NS, ports ...int) *receiver {
	t.Helper()
	rc := &receiver{counts: map[int]int{}, done: make(chan struct{})}
	err := ns.Do(func() error {
		for _, port := range ports {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			rc.fds = append(rc.fds, fd)
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 20000})
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, fd := range rc.fds {
		port := ports[i]
		rc.wg.Add(1)
		go func() {
			defer rc.wg.Done()
			buf := make([]byte, 2048)
			for {
				n, _, err := unix.Recvfrom(fd, buf, 0)
				if n >= 0 && err == nil {
					rc.mu.Lock()
					rc.counts[port]++
					rc.mu.Unlock()
					continue
				}
				select {
				case <-rc.done:
					return
				default:
				}
			}
		}()
	}
	t.Cleanup(rc.close)
	return rc
}

func (rc *receiver) close() {
	select {
	case <-rc.done:
		return
	default:
	}
	close(rc.done)
	rc.wg.Wait()
	for _, fd := range rc.fds {
		unix.Close(fd)
	}
}

// settle waits until the counts stop changing.
func (rc *receiver) settle() map[int]int {
	var last map[int]int
	for i := 0; i < 50; i++ {
		time.Sleep(20 * time.Millisecond)
		rc.mu.Lock()
		cur := map[int]int{}
		for k, v := range rc.counts {
			cur[k] = v
		}
		rc.mu.Unlock()
		if last != nil && fmt.Sprint(cur) == fmt.Sprint(last) {
			return cur
		}
		last = cur
	}
	return last
}

func (rc *receiver) reset() {
	rc.settle()
	rc.mu.Lock()
	rc.counts = map[int]int{}
	rc.mu.Unlock()
}

// sender sends UDP datagrams from A to B.
type sender struct {
	fd int
}

func dial(t *testing.T, ns *netnstest.NS) *sender {
	t.Helper()
	s := &sender{fd: -1}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		s.fd = fd
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

// send sends n datagrams of 32 bytes to port on B. Drops at A's output
// hooks show up as send errors, which are expected and ignored.
func (s *sender) send(port, n int) {
	to := &unix.SockaddrInet4{Port: port, Addr: [4]byte(net.ParseIP(addrB).To4())}
	payload := make([]byte, 32)
	for i := 0; i < n; i++ {
		err := unix.Sendto(s.fd, payload, 0, to)
		if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
			time.Sleep(time.Millisecond)
			i--
		}
	}
}

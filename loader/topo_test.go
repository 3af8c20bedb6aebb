package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
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
// B, joined by veth pairs a0–r0 (192.0.2.0/24, 2001:db8:a::/64) and r1–b0
// (198.51.100.0/24, 2001:db8:b::/64), with static neighbours and explicit
// MAC addresses. Every topo is built the same way (the same names,
// addresses and MACs, in namespaces of its own), so that two of them are
// twins: one runs a ruleset in BPF, the other in the kernel's nftables.
type topo struct {
	a, r, b *netnstest.NS
}

const (
	addrA  = "192.0.2.1"
	addrB  = "198.51.100.1"
	addrA6 = "2001:db8:a::1"
	addrB6 = "2001:db8:b::1"
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
addr add 2001:db8:a::1/64 dev a0 nodad
neigh replace 192.0.2.2 lladdr 02:0a:00:00:00:02 dev a0 nud permanent
neigh replace 2001:db8:a::2 lladdr 02:0a:00:00:00:02 dev a0 nud permanent
route add 198.51.100.0/24 via 192.0.2.2
route add 2001:db8:b::/64 via 2001:db8:a::2
`)
	run(tp.r, nil, `link set lo up
link set r0 up
link set r1 up
addr add 192.0.2.2/24 dev r0
addr add 198.51.100.2/24 dev r1
addr add 2001:db8:a::2/64 dev r0 nodad
addr add 2001:db8:b::2/64 dev r1 nodad
neigh replace 192.0.2.1 lladdr 02:0a:00:00:00:01 dev r0 nud permanent
neigh replace 198.51.100.1 lladdr 02:0b:00:00:00:01 dev r1 nud permanent
neigh replace 2001:db8:a::1 lladdr 02:0a:00:00:00:01 dev r0 nud permanent
neigh replace 2001:db8:b::1 lladdr 02:0b:00:00:00:01 dev r1 nud permanent
`)
	run(tp.b, nil, `link set lo up
link set b0 up
addr add 198.51.100.1/24 dev b0
addr add 2001:db8:b::1/64 dev b0 nodad
neigh replace 198.51.100.2 lladdr 02:0b:00:00:00:02 dev b0 nud permanent
neigh replace 2001:db8:b::2 lladdr 02:0b:00:00:00:02 dev b0 nud permanent
route add 192.0.2.0/24 via 198.51.100.2
route add 2001:db8:a::/64 via 2001:db8:b::2
`)
	for _, ns := range []*netnstest.NS{tp.a, tp.r, tp.b} {
		for _, kv := range [][2]string{{"net.ipv4.conf.all.rp_filter", "0"}, {"net.ipv4.conf.default.rp_filter", "0"}} {
			if err := ns.Sysctl(kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, key := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		if err := tp.r.Sysctl(key, "1"); err != nil {
			t.Fatal(err)
		}
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

// receiver reads what arrives in a namespace: it counts UDP datagrams per
// destination port and records the sequence number of every tagged packet
// (see tag), whatever socket it arrived on.
type receiver struct {
	mu     sync.Mutex
	counts map[int]int    // UDP datagrams per port
	seqs   map[uint32]int // tagged packets per sequence number
	fds    []int
	done   chan struct{}
	wg     sync.WaitGroup
}

// sockSpec is a socket for a receiver: socket(2)'s arguments and, for UDP,
// the port to bind.
type sockSpec struct {
	domain, typ, proto, port int
}

// listen receives UDP over IPv4 on ports.
func listen(t *testing.T, ns *netnstest.NS, ports ...int) *receiver {
	t.Helper()
	var specs []sockSpec
	for _, port := range ports {
		specs = append(specs, sockSpec{unix.AF_INET, unix.SOCK_DGRAM, 0, port})
	}
	return listenOn(t, ns, specs)
}

// listenAll receives UDP over IPv4 and IPv6 on ports, and ICMP and ICMPv6
// on raw sockets (which get a copy of every ICMP message delivered
// locally).
func listenAll(t *testing.T, ns *netnstest.NS, ports ...int) *receiver {
	t.Helper()
	specs := []sockSpec{
		{unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP, 0},
		{unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6, 0},
	}
	for _, port := range ports {
		specs = append(specs, sockSpec{unix.AF_INET, unix.SOCK_DGRAM, 0, port}, sockSpec{unix.AF_INET6, unix.SOCK_DGRAM, 0, port})
	}
	return listenOn(t, ns, specs)
}

func listenOn(t *testing.T, ns *netnstest.NS, specs []sockSpec) *receiver {
	t.Helper()
	rc := &receiver{counts: map[int]int{}, seqs: map[uint32]int{}, done: make(chan struct{})}
	t.Cleanup(rc.close)
	err := ns.Do(func() error {
		for _, sp := range specs {
			fd, err := unix.Socket(sp.domain, sp.typ|unix.SOCK_CLOEXEC, sp.proto)
			if err != nil {
				return err
			}
			rc.fds = append(rc.fds, fd)
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 20000})
			if sp.typ != unix.SOCK_DGRAM {
				continue
			}
			var sa unix.Sockaddr = &unix.SockaddrInet4{Port: sp.port}
			if sp.domain == unix.AF_INET6 {
				if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
					return err
				}
				sa = &unix.SockaddrInet6{Port: sp.port}
			}
			if err := unix.Bind(fd, sa); err != nil {
				return fmt.Errorf("bind %+v: %w", sp, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, fd := range rc.fds {
		port := specs[i].port
		rc.wg.Add(1)
		go func() {
			defer rc.wg.Done()
			buf := make([]byte, 2048)
			for {
				n, _, err := unix.Recvfrom(fd, buf, 0)
				if n >= 0 && err == nil {
					seq, tagged := untag(buf[:n])
					rc.mu.Lock()
					if port != 0 {
						rc.counts[port]++
					}
					if tagged {
						rc.seqs[seq]++
					}
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

// settle waits until nothing more arrives and returns the UDP datagrams
// per port.
func (rc *receiver) settle() map[int]int {
	counts, _ := rc.settleAll()
	return counts
}

// settleAll waits until nothing more arrives and returns the UDP datagrams
// per port and the tagged packets per sequence number.
func (rc *receiver) settleAll() (counts map[int]int, seqs map[uint32]int) {
	// Nothing new for quietFor consecutive polls: one quiet poll is not
	// enough on a loaded machine, where a veth backlog can stall for
	// tens of milliseconds.
	const quietFor = 4
	var last string
	quiet := 0
	for i := 0; i < 150 && quiet < quietFor; i++ {
		time.Sleep(20 * time.Millisecond)
		rc.mu.Lock()
		counts, seqs = maps.Clone(rc.counts), maps.Clone(rc.seqs)
		rc.mu.Unlock()
		cur := fmt.Sprint(counts, seqs)
		if cur == last {
			quiet++
		} else {
			quiet = 0
		}
		last = cur
	}
	return counts, seqs
}

// settleFor waits until at least want[port] datagrams have arrived on
// each port, up to 10 s (on a loaded machine a veth backlog can stall for
// longer than settle's quiet period), then settles as settle does, so that
// datagrams beyond those wanted are counted too.
func (rc *receiver) settleFor(want map[int]int) map[int]int {
	for port, n := range want {
		rc.await(port, n, 10*time.Second)
	}
	return rc.settle()
}

// await waits until n UDP datagrams have arrived on port, or until the
// deadline, and returns how many have.
func (rc *receiver) await(port, n int, within time.Duration) int {
	deadline := time.Now().Add(within)
	for {
		rc.mu.Lock()
		got := rc.counts[port]
		rc.mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(time.Millisecond)
	}
}

func (rc *receiver) reset() {
	rc.settle()
	rc.mu.Lock()
	rc.counts = map[int]int{}
	rc.seqs = map[uint32]int{}
	rc.mu.Unlock()
}

// tagMagic starts a tagged payload; a big-endian sequence number follows.
const tagMagic = "bpfnft-seq:"

// tag returns a payload of size bytes (at least the tag's) carrying seq.
func tag(seq uint32, size int) []byte {
	b := make([]byte, max(size, len(tagMagic)+4))
	copy(b, tagMagic)
	binary.BigEndian.PutUint32(b[len(tagMagic):], seq)
	return b
}

// untag finds a tag in a received packet (a UDP payload, an ICMPv6
// message, or an IPv4 packet from a raw socket).
func untag(b []byte) (uint32, bool) {
	i := bytes.Index(b, []byte(tagMagic))
	if i < 0 || len(b) < i+len(tagMagic)+4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(b[i+len(tagMagic):]), true
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

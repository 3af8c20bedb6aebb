package ufwe2e

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/internal/bpffstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/state"
	"github.com/bpfilter-nft/bpfilter-nft/translate/iptables"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// Addresses of a twin: the firewalled host (fw) and the peer that sends
// to it over veth. far6 and far4 are peer-side sources inside and outside
// the ufw rules' source networks, reached through static neighbours.
var (
	peerMAC = net.HardwareAddr{0x02, 0xb5, 0xf0, 0, 0, 0x01}
	fwMAC   = net.HardwareAddr{0x02, 0xb5, 0xf0, 0, 0, 0x02}
	peer6   = netip.MustParseAddr("2001:db8::1")
	fw6     = netip.MustParseAddr("2001:db8::2")
	far6    = netip.MustParseAddr("2001:db8:1::5")
	peer4   = netip.MustParseAddr("192.0.2.1")
	fw4     = netip.MustParseAddr("192.0.2.2")
	far4    = netip.MustParseAddr("198.51.100.7")
)

// Ports the fw listens on: TCP (every one of them), UDP multicast.
var (
	tcpPorts = []int{22, 23, 80, 8080}
	udpPorts = []int{68, 80, 5353, 5354}
)

const peerTCPPort, peerUDPPort uint16 = 9000, 9053

var twinCounter atomic.Int64

// twin is a peer and a firewalled host joined by veth.
type twin struct {
	name     string
	peer, fw *netnstest.NS
	peerIf   string
	fwIf     string
	sock     int            // AF_PACKET socket on the peer's veth
	udp      map[int]int    // fw UDP sockets by port
	closers  []func() error // listeners
}

// run runs a command in ns and fails the test on error.
func run(t *testing.T, ns *netnstest.NS, args ...string) {
	t.Helper()
	if _, err := ns.Run("", args[0], args[1:]...); err != nil {
		t.Fatal(err)
	}
}

func newTwin(t *testing.T, name string) *twin {
	t.Helper()
	n := twinCounter.Add(1)
	tw := &twin{name: name, sock: -1, udp: map[int]int{},
		peerIf: fmt.Sprintf("ufp%d_%d", os.Getpid()%100000, n),
		fwIf:   fmt.Sprintf("uff%d_%d", os.Getpid()%100000, n)}
	var err error
	if tw.peer, err = netnstest.New(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tw.peer.Close() })
	if tw.fw, err = netnstest.New(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tw.fw.Close() })
	for _, ns := range []*netnstest.NS{tw.peer, tw.fw} {
		for _, kv := range [][2]string{
			{"net.ipv6.conf.default.accept_dad", "0"},
			{"net.ipv6.conf.default.router_solicitations", "0"},
			{"net.ipv6.conf.default.accept_ra", "0"},
		} {
			if err := ns.Sysctl(kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := tw.peer.RunFiles("", []*os.File{tw.fw.File()}, "ip", "link", "add",
		tw.peerIf, "address", peerMAC.String(), "type", "veth",
		"peer", "name", tw.fwIf, "address", fwMAC.String(), "netns", "/proc/self/fd/3"); err != nil {
		t.Fatal(err)
	}
	run(t, tw.fw, "ip", "link", "set", "lo", "up")
	run(t, tw.peer, "ip", "link", "set", "lo", "up")
	run(t, tw.fw, "ip", "addr", "add", fw6.String()+"/64", "dev", tw.fwIf, "nodad")
	run(t, tw.fw, "ip", "addr", "add", fw4.String()+"/24", "dev", tw.fwIf)
	run(t, tw.peer, "ip", "addr", "add", peer6.String()+"/64", "dev", tw.peerIf, "nodad")
	run(t, tw.peer, "ip", "addr", "add", peer4.String()+"/24", "dev", tw.peerIf)
	run(t, tw.fw, "ip", "link", "set", tw.fwIf, "up")
	run(t, tw.peer, "ip", "link", "set", tw.peerIf, "up")
	run(t, tw.fw, "ip", "-6", "route", "add", "2001:db8:1::/48", "dev", tw.fwIf)
	run(t, tw.fw, "ip", "-4", "route", "add", "198.51.100.0/24", "dev", tw.fwIf)
	for _, a := range []netip.Addr{peer6, far6, peer4, far4} {
		run(t, tw.fw, "ip", "neigh", "replace", a.String(), "lladdr", peerMAC.String(), "dev", tw.fwIf, "nud", "permanent")
	}
	for _, a := range []netip.Addr{fw6, fw4} {
		run(t, tw.peer, "ip", "neigh", "replace", a.String(), "lladdr", fwMAC.String(), "dev", tw.peerIf, "nud", "permanent")
	}

	// Listeners: TCP on the fw (the handshake is the kernel's, no accept
	// needed), UDP on the fw (joined to ff02::fb), TCP and UDP echo on
	// the peer for the fw's own connections.
	if err := tw.fw.Do(func() error {
		for _, p := range tcpPorts {
			l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
			if err != nil {
				return err
			}
			tw.closers = append(tw.closers, l.Close)
		}
		ifi, err := net.InterfaceByName(tw.fwIf)
		if err != nil {
			return err
		}
		for _, p := range udpPorts {
			fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			tw.udp[p] = fd
			fdc := fd
			tw.closers = append(tw.closers, func() error { return unix.Close(fdc) })
			if err := unix.Bind(fd, &unix.SockaddrInet6{Port: p}); err != nil {
				return err
			}
			mreq := &unix.IPv6Mreq{Interface: uint32(ifi.Index)}
			copy(mreq.Multiaddr[:], netip.MustParseAddr("ff02::fb").AsSlice())
			if err := unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq); err != nil {
				return err
			}
			// The socket takes IPv4 too (bindv6only is 0): join mDNS's
			// IPv4 group as well.
			mreq4 := &unix.IPMreqn{Multiaddr: [4]byte{224, 0, 0, 251}, Ifindex: int32(ifi.Index)}
			if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq4); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := tw.peer.Do(func() error {
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", peerTCPPort))
		if err != nil {
			return err
		}
		tw.closers = append(tw.closers, l.Close)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", peerUDPPort))
		if err != nil {
			return err
		}
		tw.closers = append(tw.closers, pc.Close)
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(buf[:n], from)
			}
		}()
		ifi, err := net.InterfaceByName(tw.peerIf)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		tw.sock = fd
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range tw.closers {
			c()
		}
		if tw.sock >= 0 {
			unix.Close(tw.sock)
		}
	})
	return tw
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// loadKernel loads script into the fw with the system's restore tool.
func (tw *twin) loadKernel(t *testing.T, tool, script string) {
	t.Helper()
	if _, err := tw.fw.Run(script, tool); err != nil {
		t.Fatal(err)
	}
}

// loadBPF loads script into the fw with bpfilter-nft: translate/iptables,
// the pipeline and the loader, as "bpfilter-nft restore" does.
func (tw *twin) loadBPF(t *testing.T, fam nlmsg.Family, script string) {
	t.Helper()
	rs, err := iptables.Restore(strings.NewReader(script), iptables.Options{Family: fam})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", tw.fw.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := nsctx.FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	res, err := pipeline.Translate(rs, pipeline.Options{NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(ns, state.Options{Root: filepath.Join(bpffstest.Mount(t), "bpfilter-nft")})
	if err != nil {
		t.Fatal(err)
	}
	if err := loader.Apply(ns, st, res, loader.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := loader.Flush(st); err != nil {
			t.Errorf("flush: %v", err)
		}
	})
	t.Logf("%s: %d rules in %d programs", tw.name, len(res.Rules), len(res.Programs))
}

// exchange sends frame from the peer and returns the frames the peer
// receives within wait, its own excluded.
func (tw *twin) exchange(frame []byte, wait time.Duration) ([][]byte, error) {
	buf := make([]byte, 65536)
	for {
		if n, _, err := unix.Recvfrom(tw.sock, buf, unix.MSG_DONTWAIT); err != nil || n < 0 {
			break
		}
	}
	if _, err := unix.Write(tw.sock, frame); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	var got [][]byte
	deadline := time.Now().Add(wait)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return got, nil
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(tw.sock, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return nil, err
		}
		n, from, err := unix.Recvfrom(tw.sock, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		got = append(got, append([]byte(nil), buf[:n]...))
	}
}

// udpReceived drains the fw's UDP socket on port and returns how many
// datagrams it held.
func (tw *twin) udpReceived(port int) int {
	n := 0
	buf := make([]byte, 2048)
	for {
		if _, _, err := unix.Recvfrom(tw.udp[port], buf, unix.MSG_DONTWAIT); err != nil {
			return n
		}
		n++
	}
}

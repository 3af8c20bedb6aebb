package rejecte2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/hooks"
	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

var (
	peerMAC = net.HardwareAddr{0x02, 0xbf, 0, 0, 0, 0x01}
	fwMAC   = net.HardwareAddr{0x02, 0xbf, 0, 0, 0, 0x02}
	peerV4  = []byte{192, 0, 2, 1}
	fwV4    = []byte{192, 0, 2, 2}
	peerV6  = []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	fwV6    = []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}
)

// eth6 builds an Ethernet/IPv6 frame from the peer to the fw device,
// filling in the checksum of l4 at sumAt (none if negative).
func eth6(proto byte, l4 []byte, sumAt int) []byte {
	l4 = append([]byte{}, l4...)
	if sumAt >= 0 {
		ph := append(append(append([]byte{}, peerV6...), fwV6...), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, proto)
		binary.BigEndian.PutUint16(l4[sumAt:], checksum(ph, l4))
	}
	ip := []byte{0x60, 0, 0, 0, byte(len(l4) >> 8), byte(len(l4)), proto, 64}
	ip = append(append(ip, peerV6...), fwV6...)
	f := append(append([]byte{}, fwMAC...), peerMAC...)
	f = append(f, 0x86, 0xdd)
	return append(append(f, ip...), l4...)
}

// vlanTag inserts an 802.1Q tag into an Ethernet frame: the receiving
// veth strips it into skb->vlan_tci before the ingress hooks run.
func vlanTag(f []byte, id uint16) []byte {
	out := append([]byte{}, f[:12]...)
	out = append(out, 0x81, 0x00, byte(id>>8), byte(id))
	return append(out, f[12:]...)
}

// tcpHdr is a TCP header (checksum 0) and payload.
func tcpHdr(dport uint16, seq, ack uint32, flags byte, payload []byte) []byte {
	th := binary.BigEndian.AppendUint16(nil, 40000)
	th = binary.BigEndian.AppendUint16(th, dport)
	th = binary.BigEndian.AppendUint32(th, seq)
	th = binary.BigEndian.AppendUint32(th, ack)
	th = append(th, 5<<4, flags, 0x20, 0, 0, 0, 0, 0)
	return append(th, payload...)
}

func udpHdr(dport uint16, payload []byte) []byte {
	uh := binary.BigEndian.AppendUint16(nil, 40000)
	uh = binary.BigEndian.AppendUint16(uh, dport)
	uh = binary.BigEndian.AppendUint16(uh, uint16(8+len(payload)))
	return append(append(uh, 0, 0), payload...)
}

// side is one namespace pair: peer (sends frames, captures replies) and fw
// (the device with the reject rule) joined by a veth pair.
type side struct {
	peer, fw *netnstest.NS
	peerIf   string
	fwIf     string
	fwIndex  int
	sock     int // AF_PACKET socket in peer, bound to peerIf
}

var counter int

func newSide(t *testing.T) *side {
	t.Helper()
	counter++
	s := &side{sock: -1,
		peerIf: fmt.Sprintf("rjp%d_%d", os.Getpid()%100000, counter),
		fwIf:   fmt.Sprintf("rjf%d_%d", os.Getpid()%100000, counter)}
	var err error
	if s.peer, err = netnstest.New(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.peer.Close() })
	if s.fw, err = netnstest.New(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.fw.Close() })
	for _, ns := range []*netnstest.NS{s.peer, s.fw} {
		for _, kv := range [][2]string{
			{"net.ipv6.conf.all.disable_ipv6", "1"},
			{"net.ipv6.conf.default.disable_ipv6", "1"},
		} {
			if err := ns.Sysctl(kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A TTL other than the usual 64, to see it read from the namespace.
	if err := s.fw.Sysctl("net.ipv4.ip_default_ttl", "77"); err != nil {
		t.Fatal(err)
	}
	if err := s.fw.Sysctl("net.ipv6.conf.all.hop_limit", "99"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.peer.RunFiles("", []*os.File{s.fw.File()}, "ip", "link", "add",
		s.peerIf, "address", peerMAC.String(), "type", "veth",
		"peer", "name", s.fwIf, "address", fwMAC.String(), "netns", "/proc/self/fd/3"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.peer.Run("", "ip", "link", "set", s.peerIf, "up"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.fw.Run("", "ip", "link", "set", s.fwIf, "up"); err != nil {
		t.Fatal(err)
	}
	if err := s.fw.Do(func() error {
		ifi, err := net.InterfaceByName(s.fwIf)
		if err != nil {
			return err
		}
		s.fwIndex = ifi.Index
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.peer.Do(func() error {
		ifi, err := net.InterfaceByName(s.peerIf)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		s.sock = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(s.sock) })
	return s
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// exchange sends frame from the peer and returns the frames the peer
// receives (its own outgoing frames excluded): collect's replies.
func (s *side) exchange(frame []byte, wait, grace time.Duration) ([][]byte, error) {
	// Flush anything queued before.
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	for {
		n, _, _, _, err := unix.Recvmsg(s.sock, buf, oob, unix.MSG_DONTWAIT)
		if err != nil || n < 0 {
			break
		}
	}
	if _, err := unix.Write(s.sock, frame); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	return s.collect(wait, grace)
}

// collect returns the frames the peer receives within wait, or, once one
// has come, within grace of the last one. Replies whose checksum the
// sender left to the device (TP_STATUS_CSUMNOTREADY: the kernel's TCP
// resets are CHECKSUM_PARTIAL, and veth hands them on as they are) get it
// completed here, as a NIC would on the wire.
func (s *side) collect(wait, grace time.Duration) ([][]byte, error) {
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	var got [][]byte
	deadline := time.Now().Add(wait)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return got, nil
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(s.sock, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return nil, err
		}
		n, oobn, _, from, err := unix.Recvmsg(s.sock, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		f := append([]byte(nil), buf[:n]...)
		if csumNotReady(oob[:oobn]) {
			completeChecksum(f)
		}
		got = append(got, f)
		deadline = time.Now().Add(grace)
	}
}

// Waits of a twin exchange: a reply the twin does not send is waited for
// silenceWait; once a reply has come, more are waited for replyGrace (a
// reject sends one frame, at once); a side whose twin replied waits up to
// lateWait for its own reply (on a loaded machine it can be late).
const (
	silenceWait = 300 * time.Millisecond
	replyGrace  = 50 * time.Millisecond
	lateWait    = 5 * time.Second
)

// exchangeTwins sends frame on both sides at once and returns the replies
// of each.
func exchangeTwins(kern, bpf *side, frame []byte) (want, got [][]byte, err error) {
	var wg sync.WaitGroup
	var errKern, errBPF error
	wg.Add(2)
	go func() { defer wg.Done(); want, errKern = kern.exchange(frame, silenceWait, replyGrace) }()
	go func() { defer wg.Done(); got, errBPF = bpf.exchange(frame, silenceWait, replyGrace) }()
	wg.Wait()
	if err := errors.Join(errKern, errBPF); err != nil {
		return nil, nil, err
	}
	switch {
	case len(want) > 0 && len(got) == 0:
		got, err = bpf.collect(lateWait, replyGrace)
	case len(got) > 0 && len(want) == 0:
		want, err = kern.collect(lateWait, replyGrace)
	}
	return want, got, err
}

func csumNotReady(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= 4 {
			return binary.NativeEndian.Uint32(m.Data)&unix.TP_STATUS_CSUMNOTREADY != 0
		}
	}
	return false
}

// completeChecksum completes the TCP checksum of an IPv4 frame whose
// checksum field holds the pseudo header sum (CHECKSUM_PARTIAL).
func completeChecksum(f []byte) {
	if len(f) < 34 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return
	}
	ihl := int(f[14]&0xf) * 4
	l4 := 14 + ihl
	if f[14+9] != 6 || len(f) < l4+18 {
		return
	}
	binary.BigEndian.PutUint16(f[l4+16:], ^fold(sum(0, f[l4:])))
}

func sum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func checksum(parts ...[]byte) uint16 {
	var s uint32
	for _, p := range parts {
		s = sum(s, p)
	}
	return ^fold(s)
}

// tcp4 builds an Ethernet/IPv4/TCP frame from the peer to the fw device.
func tcp4(dport uint16, seq, ack uint32, flags byte, payload []byte) []byte {
	th := binary.BigEndian.AppendUint16(nil, 40000)
	th = binary.BigEndian.AppendUint16(th, dport)
	th = binary.BigEndian.AppendUint32(th, seq)
	th = binary.BigEndian.AppendUint32(th, ack)
	th = append(th, 5<<4, flags, 0x20, 0, 0, 0, 0, 0)
	th = append(th, payload...)
	ph := append(append(append([]byte{}, peerV4...), fwV4...), 0, 6, byte(len(th)>>8), byte(len(th)))
	binary.BigEndian.PutUint16(th[16:], checksum(ph, th))
	return eth4(6, th)
}

func eth4(proto byte, l4 []byte) []byte {
	ip := []byte{0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	ip = append(append(ip, peerV4...), fwV4...)
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	f := append(append([]byte{}, fwMAC...), peerMAC...)
	f = append(f, 0x08, 0x00)
	return append(append(f, ip...), l4...)
}

// attachBPF translates ruleset for s's fw namespace and attaches its
// programs there as tcx (or XDP) programs; it returns the rule groups
// compiled.
func attachBPF(t *testing.T, s *side, ruleset string, typ codegen.ProgramType) int {
	t.Helper()
	ns, err := nsctx.OpenNetNS(fmt.Sprintf("/proc/self/fd/%d", s.fw.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	res, err := pipeline.TranslateReader("reject.nft", strings.NewReader(ruleset), pipeline.Options{NetdevBackend: &typ, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	groups := 0
	for _, p := range res.Programs {
		groups += len(p.Program.Groups)
		l, err := p.Program.Load()
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		t.Cleanup(func() { l.Close() })
		lk, err := hooks.Attach(ns, l.Program, hooks.Point{Target: p.Target, Priority: p.Chain.Base.Priority})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lk.Close() })
	}
	return groups
}

// udp4 builds an Ethernet/IPv4/UDP frame from the peer to the fw device.
func udp4(dport uint16, payload []byte, withSum bool) []byte {
	uh := binary.BigEndian.AppendUint16(nil, 40000)
	uh = binary.BigEndian.AppendUint16(uh, dport)
	uh = binary.BigEndian.AppendUint16(uh, uint16(8+len(payload)))
	uh = append(append(uh, 0, 0), payload...)
	if withSum {
		ph := append(append(append([]byte{}, peerV4...), fwV4...), 0, 17, byte(len(uh)>>8), byte(len(uh)))
		binary.BigEndian.PutUint16(uh[6:], checksum(ph, uh))
	}
	return eth4(17, uh)
}

// TestRejectTwin sends the same frames to the kernel's nft reject (netdev
// ingress) and to bpfilter-nft's tcx program for the same ruleset, each in
// its own namespace pair, and compares what the peers receive byte for
// byte.
func TestRejectTwin(t *testing.T) {
	privtest.Require(t)
	type frame struct {
		name  string
		frame []byte
	}
	badTCP := tcp4(80, 1, 0, 0x02, nil)
	badTCP[len(badTCP)-3] ^= 0xff
	badIP := tcp4(80, 1, 0, 0x02, nil)
	badIP[14+10] ^= 0x40
	badUDP := udp4(53, []byte("query"), true)
	badUDP[len(badUDP)-1] ^= 1
	echo := []byte{8, 0, 0, 0, 0, 1, 0, 1, 'p', 'i', 'n', 'g'}
	binary.BigEndian.PutUint16(echo[2:], checksum(echo))
	frames := []frame{
		{"tcp-syn", tcp4(80, 0x01020304, 0, 0x02, nil)},
		{"tcp-ack-data", tcp4(80, 0xfffffff0, 0x55667788, 0x18, []byte("GET / HTTP/1.0\r\n\r\n"))},
		{"tcp-fin", tcp4(80, 7, 0, 0x01, []byte("bye"))},
		{"tcp-rst", tcp4(80, 7, 0, 0x04, nil)},
		{"tcp-bad-checksum", badTCP},
		{"tcp-bad-ip-checksum", badIP},
		{"udp", udp4(53, []byte("query"), true)},
		{"udp-no-checksum", udp4(53, []byte("query"), false)},
		{"udp-bad-checksum", badUDP},
		{"udp-long", udp4(53, bytes.Repeat([]byte("0123456789"), 100), true)},
		{"udp-padded", append(udp4(53, nil, true), make([]byte, 18)...)},
		{"icmp-echo", eth4(1, echo)},
		{"tcp6-syn", eth6(6, tcpHdr(80, 0x01020304, 0, 0x02, nil), 16)},
		{"tcp6-ack-data", eth6(6, tcpHdr(80, 5, 0x55667788, 0x18, []byte("data")), 16)},
		{"tcp6-bad-checksum", eth6(6, tcpHdr(80, 5, 0, 0x02, nil), -1)},
		{"udp6", eth6(17, udpHdr(53, []byte("query")), 6)},
		{"udp6-zero-checksum", eth6(17, udpHdr(53, []byte("query")), -1)},
		{"udp6-long", eth6(17, udpHdr(53, bytes.Repeat([]byte("0123456789"), 140)), 6)},
		{"icmpv6-echo", eth6(58, []byte{128, 0, 0, 0, 0, 1, 0, 1, 'p', 'i', 'n', 'g'}, 2)},
		{"vlan-tcp-syn", vlanTag(tcp4(80, 0x01020304, 0, 0x02, nil), 42)},
		{"vlan-udp", vlanTag(udp4(53, []byte("query"), true), 42)},
		{"broadcast", append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, udp4(53, []byte("q"), true)[6:]...)},
	}
	rulesets := []struct {
		name, rules string
		groups      int // rule groups compiled
	}{
		{"tcp-reset", "tcp dport 80 reject with tcp reset", 0},
		{"icmp-port-unreachable", "reject with icmp type port-unreachable", 0},
		{"icmp-admin-prohibited", "reject with icmp type admin-prohibited", 0},
		{"icmpx-host-unreachable", "reject with icmpx type host-unreachable", 0},
		{"default", "reject", 0},
		// One rule group whose action blocks are three rejects and a
		// counter without verdict.
		{"group", strings.Join([]string{
			"tcp dport 81 reject with tcp reset",
			"tcp dport 80 counter",
			"tcp dport 82 reject with tcp reset",
			"udp dport 53 counter reject with icmpx type admin-prohibited",
			"tcp dport 79 reject with tcp reset",
			"udp dport 54 reject with icmpx type host-unreachable",
			"udp dport 55 reject with icmpx type host-unreachable",
			"tcp dport 83 reject with icmpx type port-unreachable",
			"udp dport 56 counter",
		}, "\n\t\t") + "\n\t\ttcp dport 80 reject with tcp reset", 1},
	}
	for _, rs := range rulesets {
		t.Run(rs.name, func(t *testing.T) {
			kern, bpf := newSide(t), newSide(t)
			text := func(s *side) string {
				return fmt.Sprintf("table netdev rj {\n\tchain in {\n\t\ttype filter hook ingress device %q priority 0; policy accept;\n\t\t%s\n\t}\n}\n", s.fwIf, rs.rules)
			}
			if _, err := kern.fw.Run(text(kern), "nft", "-f", "-"); err != nil {
				t.Fatal(err)
			}
			if g := attachBPF(t, bpf, text(bpf), codegen.TC); g != rs.groups {
				t.Fatalf("%d rule groups compiled, want %d", g, rs.groups)
			}
			replies := 0
			for _, f := range frames {
				t.Run(f.name, func(t *testing.T) {
					want, got, err := exchangeTwins(kern, bpf, f.frame)
					if err != nil {
						t.Fatal(err)
					}
					t.Logf("kernel: %x", want)
					replies += len(want)
					if len(got) != len(want) {
						t.Fatalf("bpfilter-nft sent %d frames %x, kernel %d %x", len(got), got, len(want), want)
					}
					for i := range want {
						if !bytes.Equal(got[i], want[i]) {
							t.Errorf("frame %d:\nbpf    %x\nkernel %x", i, got[i], want[i])
						}
					}
				})
			}
			if replies == 0 || replies == len(frames) {
				t.Errorf("the kernel replied to %d of %d frames: the frames do not tell replies from silence", replies, len(frames))
			}
		})
	}
}

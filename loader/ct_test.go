package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// The tests in this file run connection tracking rules end to end: B of a
// topology (see newTopo) is a workstation whose input chain filters by
// ct state; real TCP and UDP flows run between A and B, and packets
// conntrack finds invalid are injected from A. A twin topology runs the
// same ruleset in the kernel's nftables; every flow must have the same
// outcome and every counter the same value in both.

// ctRuleset is the workstation-style ruleset of TestConntrackTwin.
const ctRuleset = `table inet ws {
	chain input {
		type filter hook input priority 0; policy accept;
		ct state established,related counter accept
		ct state invalid counter drop
		iif lo accept
		tcp dport 22 ct state new counter accept
		meta l4proto ipv6-icmp counter accept
		counter drop
	}
}
`

// ctFlow is one exchange between A and B.
type ctFlow struct {
	name string
	v6   bool
	// udp selects a datagram exchange; else a TCP connection.
	udp bool
	// icmp selects an echo request answered by an echo reply.
	icmp bool
	// fromB says B starts it (to A), else A starts it (to B); self
	// says B talks to itself (over lo).
	fromB, self bool
	port        int
	works       bool
}

func (f ctFlow) String() string { return f.name }

var ctFlows = []ctFlow{
	{name: "B connects to A tcp/8080 (v4)", fromB: true, port: 8080, works: true},
	{name: "B connects to A tcp/8080 (v6)", v6: true, fromB: true, port: 8080, works: true},
	{name: "A connects to B tcp/22 (v4)", port: 22, works: true},
	{name: "A connects to B tcp/22 (v6)", v6: true, port: 22, works: true},
	{name: "A connects to B tcp/80 (v4)", port: 80},
	{name: "A connects to B tcp/80 (v6)", v6: true, port: 80},
	{name: "B asks A udp/5353 and gets the answer (v4)", udp: true, fromB: true, port: 5353, works: true},
	{name: "B asks A udp/5353 and gets the answer (v6)", v6: true, udp: true, fromB: true, port: 5353, works: true},
	{name: "A sends to B udp/53 (v4)", udp: true, port: 53},
	{name: "A sends to B udp/53 (v6)", v6: true, udp: true, port: 53},
}

func ctAddr(v6, ofB bool) netip.Addr {
	switch {
	case v6 && ofB:
		return netip.MustParseAddr(addrB6)
	case v6:
		return netip.MustParseAddr(addrA6)
	case ofB:
		return netip.MustParseAddr(addrB)
	}
	return netip.MustParseAddr(addrA)
}

func sockaddr(a netip.Addr, port int) unix.Sockaddr {
	if a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4(), Port: port}
	}
	return &unix.SockaddrInet6{Addr: a.As16(), Port: port}
}

func domainOf(v6 bool) int {
	if v6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// socketIn opens a socket in ns, closed at the end of the test.
func socketIn(t *testing.T, ns *netnstest.NS, domain, typ, proto int) int {
	t.Helper()
	fd := openIn(t, ns, domain, typ, proto)
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// openIn opens a socket in ns; the caller closes it.
func openIn(t *testing.T, ns *netnstest.NS, domain, typ, proto int) int {
	t.Helper()
	fd := -1
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		if domain == unix.AF_INET6 && (typ == unix.SOCK_STREAM || typ == unix.SOCK_DGRAM) {
			return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// echoServer accepts TCP connections (or datagrams) on port in ns and
// echoes what it receives, until the test ends.
func echoServer(t *testing.T, ns *netnstest.NS, v6, udp bool, port int) {
	t.Helper()
	typ := unix.SOCK_STREAM
	if udp {
		typ = unix.SOCK_DGRAM
	}
	fd := socketIn(t, ns, domainOf(v6), typ, 0)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	wild := netip.IPv4Unspecified()
	if v6 {
		wild = netip.IPv6Unspecified()
	}
	if err := unix.Bind(fd, sockaddr(wild, port)); err != nil {
		t.Fatalf("bind %d: %v", port, err)
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50000})
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); wg.Wait() })
	stopped := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	wg.Add(1)
	if udp {
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for !stopped() {
				n, from, err := recvfromEINTR(fd, buf, 0)
				if err == nil {
					unix.Sendto(fd, buf[:n], 0, from)
				}
			}
		}()
		return
	}
	if err := unix.Listen(fd, 16); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer wg.Done()
		for !stopped() {
			c, _, err := acceptEINTR(fd)
			if err != nil {
				continue
			}
			// Every client closes its end; the timeout only bounds a
			// client that died.
			unix.SetsockoptTimeval(c, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
			buf := make([]byte, 4096)
			for {
				n, err := readEINTR(c, buf)
				if err != nil || n <= 0 {
					break
				}
				if _, err := writeEINTR(c, buf[:n]); err != nil {
					break
				}
			}
			unix.Close(c)
		}
	}()
}

// Answers to a flow that should work are waited for up to ctWorks: on a
// loaded machine an answer can take long (a flow that works never waits
// that long). A flow that should not work waits ctFails for an answer
// that will not come — shorter than TCP's initial retransmission timeout
// (1 s), so that no retransmitted SYN follows it. (An answer that wrongly
// comes late still shows in the counters, which are compared too.)
const (
	ctWorks = 5 * time.Second
	ctFails = 300 * time.Millisecond
)

// timeval converts d for SO_RCVTIMEO and SO_SNDTIMEO.
func timeval(d time.Duration) *unix.Timeval {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	return &tv
}

// ctExchange runs one flow and reports whether it worked: a TCP
// connection that carries 3000 bytes there and back, or a datagram that
// reaches its destination (UDP to B) or is answered (UDP from B).
func ctExchange(t *testing.T, from *netnstest.NS, to netip.Addr, f ctFlow) bool {
	t.Helper()
	wait := ctFails
	if f.works {
		wait = ctWorks
	}
	if f.icmp {
		return ping(t, from, to, wait)
	}
	typ := unix.SOCK_STREAM
	if f.udp {
		typ = unix.SOCK_DGRAM
	}
	fd := openIn(t, from, domainOf(f.v6), typ, 0)
	// Closed at once: a connection attempt left open would retransmit
	// its SYN while the twin runs, and count there.
	defer unix.Close(fd)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, timeval(wait))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, timeval(wait))
	msg := []byte(strings.Repeat("bpfilter-nft conntrack ", 130))[:3000]
	if f.udp {
		msg = msg[:100]
	}
	if err := connectEINTR(fd, sockaddr(to, f.port), wait); err != nil {
		// A SYN without answer: connect gives up after SO_SNDTIMEO.
		if errors.Is(err, unix.EINPROGRESS) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ETIMEDOUT) {
			return false
		}
		t.Fatalf("%s: connect: %v", f, err)
	}
	if _, err := writeEINTR(fd, msg); err != nil {
		return false
	}
	got := 0
	buf := make([]byte, 4096)
	for got < len(msg) {
		n, err := readEINTR(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		got += n
	}
	return got == len(msg)
}

// ping sends an ICMP or ICMPv6 echo request from ns to addr and reports
// whether the echo reply arrives within wait.
func ping(t *testing.T, ns *netnstest.NS, to netip.Addr, wait time.Duration) bool {
	t.Helper()
	proto, req, rep := unix.IPPROTO_ICMP, uint8(8), uint8(0)
	var msg []byte
	if to.Is6() {
		proto, req, rep = unix.IPPROTO_ICMPV6, 128, 129
		msg = packet.MustBuild(&packet.ICMPv6{Type: req, ID: 0x7e57, Seq: 1, Checksum: ptr[uint16](0)}, packet.Payload("bpfilter-nft ping"))
	} else {
		msg = packet.MustBuild(&packet.ICMP{Type: req, ID: 0x7e57, Seq: 1}, packet.Payload("bpfilter-nft ping"))
	}
	fd := openIn(t, ns, domainOf(to.Is6()), unix.SOCK_RAW, proto)
	defer unix.Close(fd)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, timeval(wait))
	if err := unix.Sendto(fd, msg, 0, sockaddr(to, 0)); err != nil {
		t.Fatalf("ping %s: %v", to, err)
	}
	buf := make([]byte, 2048)
	for {
		n, _, err := recvfromEINTR(fd, buf, 0)
		if err != nil {
			return false
		}
		b := buf[:n]
		if !to.Is6() && n > 20 {
			b = b[int(b[0]&0xf)*4:] // raw IPv4 sockets see the IP header
		}
		if len(b) >= 8 && b[0] == rep && b[4] == 0x7e && b[5] == 0x57 {
			return true
		}
	}
}

// tcpSeqs returns the next sequence number a connected TCP socket sends
// and the one it expects, read in repair mode.
func tcpSeqs(fd int) (snd, rcv uint32, err error) {
	const sendQueue, recvQueue = 2, 1 // TCP_SEND_QUEUE, TCP_RECV_QUEUE
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, 1); err != nil {
		return 0, 0, fmt.Errorf("TCP_REPAIR: %w", err)
	}
	defer unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, 0)
	read := func(q int) (uint32, error) {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q); err != nil {
			return 0, err
		}
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
		return uint32(v), err
	}
	if snd, err = read(sendQueue); err != nil {
		return 0, 0, err
	}
	rcv, err = read(recvQueue)
	return snd, rcv, err
}

// injectInvalid sends, from A to B, TCP segments conntrack finds invalid:
// an ACK to a port without a connection (with nf_conntrack_tcp_loose 0
// conntrack does not pick up connections midstream), and a segment of an
// established connection to B's port 22 whose sequence number lies half
// the sequence space away from the window. It returns the number sent.
func injectInvalid(t *testing.T, a *netnstest.NS, v6 bool) int {
	t.Helper()
	src, dst := ctAddr(v6, false), ctAddr(v6, true)
	// The established connection, kept open during the injection and
	// closed after it (its closing handshake then runs like the flows').
	conn := openIn(t, a, domainOf(v6), unix.SOCK_STREAM, 0)
	defer unix.Close(conn)
	unix.SetsockoptTimeval(conn, unix.SOL_SOCKET, unix.SO_SNDTIMEO, timeval(ctWorks))
	if err := connectEINTR(conn, sockaddr(dst, 22), ctWorks); err != nil {
		t.Fatalf("connect to B's port 22: %v", err)
	}
	local, err := unix.Getsockname(conn)
	if err != nil {
		t.Fatal(err)
	}
	var sport int
	switch sa := local.(type) {
	case *unix.SockaddrInet4:
		sport = sa.Port
	case *unix.SockaddrInet6:
		sport = sa.Port
	}
	if _, err := writeEINTR(conn, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	unix.SetsockoptTimeval(conn, unix.SOL_SOCKET, unix.SO_RCVTIMEO, timeval(ctWorks))
	if n, err := readEINTR(conn, buf); err != nil || n != 5 {
		t.Fatalf("echo over B's port 22: %d bytes, %v", n, err)
	}
	snd, rcv, err := tcpSeqs(conn)
	if err != nil {
		t.Fatal(err)
	}
	var ipl packet.Layer = &packet.IPv4{Src: src, Dst: dst}
	proto := unix.IPPROTO_RAW
	if v6 {
		ipl = &packet.IPv6{Src: src, Dst: dst}
	}
	segs := [][]byte{
		packet.MustBuild(ipl, &packet.TCP{SrcPort: 40000, DstPort: 81, Seq: 12345, Ack: 67890, Flags: packet.TCPAck, Window: 512}),
		packet.MustBuild(ipl, &packet.TCP{SrcPort: uint16(sport), DstPort: 22, Seq: snd + 1<<31, Ack: rcv, Flags: packet.TCPAck | packet.TCPPsh, Window: 512},
			packet.Payload("out of window")),
	}
	raw := socketIn(t, a, domainOf(v6), unix.SOCK_RAW, proto)
	if v6 {
		// IPPROTO_RAW sockets of AF_INET6 take the IPv6 header too.
		if err := unix.SetsockoptInt(raw, unix.IPPROTO_IPV6, unix.IPV6_HDRINCL, 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range segs {
		if err := unix.Sendto(raw, s, 0, sockaddr(dst, 0)); err != nil {
			t.Fatalf("inject: %v", err)
		}
	}
	return len(segs)
}

// ctTwin is a conntrack twin test: a ruleset for B's namespace, the flows
// to run, and whether to inject invalid segments.
type ctTwin struct {
	ruleset string
	flows   []ctFlow
	inject  bool
	// router puts the ruleset in R's namespace (a forward chain), else
	// in B's.
	router bool
}

// where returns the namespace of tp the ruleset goes to.
func (c ctTwin) where(tp *topo) *netnstest.NS {
	if c.router {
		return tp.r
	}
	return tp.b
}

// run loads the ruleset with BPF in one topology and with the kernel's
// nftables in its twin, runs the flows in both, and compares outcomes and
// counters. It returns the BPF topology and state.
func (c ctTwin) run(t *testing.T) {
	bpf, kern := newTopo(t), newTopo(t)
	twins := []*topo{bpf, kern}
	for _, tp := range twins {
		if err := c.where(tp).Sysctl("net.netfilter.nf_conntrack_tcp_loose", "0"); err != nil {
			t.Fatal(err)
		}
		for _, v6 := range []bool{false, true} {
			echoServer(t, tp.a, v6, false, 8080)
			echoServer(t, tp.a, v6, true, 5353)
			echoServer(t, tp.b, v6, false, 22)
			echoServer(t, tp.b, v6, false, 80)
			echoServer(t, tp.b, v6, true, 53)
		}
		// Without delayed ACKs, what A and B send does not depend on
		// how fast their programs run: a delayed ACK of a FIN is merged
		// with the application's own FIN if it closes within the
		// delayed-ACK timeout (40 ms) and sent alone otherwise, so a
		// peer scheduled late on a loaded machine sent one packet more
		// in one twin than in the other. The higher minimum
		// retransmission timeout keeps late ACKs from causing
		// retransmissions (200 ms is the default on a veth's RTT).
		for _, r := range []struct {
			ns    *netnstest.NS
			route []string
		}{
			{tp.a, []string{"198.51.100.0/24", "via", "192.0.2.2"}},
			{tp.a, []string{"2001:db8:b::/64", "via", "2001:db8:a::2"}},
			{tp.b, []string{"192.0.2.0/24", "via", "198.51.100.2"}},
			{tp.b, []string{"2001:db8:a::/64", "via", "2001:db8:b::2"}},
		} {
			args := append(append([]string{"route", "change"}, r.route...), "quickack", "1", "rto_min", "2s")
			if _, err := r.ns.Run("", "ip", args...); err != nil {
				t.Fatal(err)
			}
		}
		// B finds its router's IPv6 address by neighbour discovery:
		// the advertisement must pass B's input chain.
		if _, err := tp.b.Run("", "ip", "-6", "neigh", "del", "2001:db8:b::2", "dev", "b0"); err != nil {
			t.Fatal(err)
		}
	}
	ns := netns(t, c.where(bpf))
	st := stateDir(t, ns)
	if err := Apply(ns, st, translate(t, ns, c.ruleset, nil), Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Flush(st); ReleaseConntrack(ns) })
	if _, err := c.where(kern).Run(c.ruleset, "nft", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	// The holder table is in B's namespace.
	if out, err := c.where(bpf).Run("", "nft", "list", "tables"); err != nil || !strings.Contains(out, "table inet "+ConntrackTable) {
		t.Fatalf("nft list tables: %q, %v; want the %s table", out, err, ConntrackTable)
	}
	// Each flow runs in both twins in turn, so that whatever follows a
	// flow (closing handshakes) happens at about the same time in both.
	outcome := map[*topo][]bool{}
	for _, f := range c.flows {
		for _, tp := range twins {
			from, to := tp.a, ctAddr(f.v6, true)
			switch {
			case f.self:
				from = tp.b
			case f.fromB:
				from, to = tp.b, ctAddr(f.v6, false)
			}
			outcome[tp] = append(outcome[tp], ctExchange(t, from, to, f))
		}
	}
	invalid := 0
	if c.inject {
		for _, v6 := range []bool{false, true} {
			for _, tp := range twins {
				n := injectInvalid(t, tp.a, v6)
				if tp == bpf {
					invalid += n
				}
			}
		}
	}
	// Let the connections close in both.
	settleTwins(t, twins, st, c.where(kern))
	for i, f := range c.flows {
		b, k := outcome[bpf][i], outcome[kern][i]
		switch {
		case b != k:
			t.Errorf("%s: works %v with BPF, %v with the kernel's nftables", f, b, k)
		case b != f.works:
			t.Errorf("%s: works %v with both, the test expects %v", f, b, f.works)
		}
	}

	got, texts := bpfCounters(t, st)
	want := nftCounters(t, c.where(kern))
	for chain, rules := range want {
		if len(got[chain]) != len(rules) {
			t.Errorf("chain %s: %d rules in BPF, %d in the kernel", chain, len(got[chain]), len(rules))
			continue
		}
		for i, w := range rules {
			if fmt.Sprint(got[chain][i]) != fmt.Sprint(w) {
				t.Errorf("rule %d (%s): BPF counters %v, nft %v", i, texts[chain][i], got[chain][i], w)
			}
			for _, v := range w {
				if v.Packets == 0 {
					t.Errorf("rule %d (%s): counter stayed zero; the traffic misses it", i, texts[chain][i])
				}
			}
			if c.inject && strings.Contains(texts[chain][i], "ct state invalid") && len(w) == 1 && w[0].Packets != uint64(invalid) {
				t.Errorf("rule %d (%s): %d packets, %d were injected", i, texts[chain][i], w[0].Packets, invalid)
			}
			t.Logf("%s rule %d (%s): %v", chain, i, texts[chain][i], w)
		}
	}

	// Flushing removes the holder table again.
	if err := Flush(st); err != nil {
		t.Fatal(err)
	}
	if err := ReleaseConntrack(ns); err != nil {
		t.Fatal(err)
	}
	if out, err := c.where(bpf).Run("", "nft", "list", "tables"); err != nil || strings.Contains(out, ConntrackTable) {
		t.Errorf("after flush: nft list tables: %q, %v", out, err)
	}
}

// settleTwins waits, up to 20 s, until what the flows started has ended
// in both twins: every TCP socket of A and B listens or is closed or in
// TIME-WAIT (the closing handshakes are done), and the BPF counters (of
// st) equal nft's (in kern: packets still queued somewhere, a dropped
// datagram say, are counted). A fixed sleep was not enough under load.
func settleTwins(t *testing.T, twins []*topo, st *state.Dir, kern *netnstest.NS) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		open := openTCP(t, twins)
		got, _ := bpfCounters(t, st)
		want := nftCounters(t, kern)
		if len(open) == 0 && fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			// The comparisons that follow report what differs.
			t.Logf("twins still busy after 20 s: TCP sockets %q", open)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// openTCP returns the TCP sockets of the twins' A and B that are neither
// listening nor closed nor in TIME-WAIT, as ss prints them.
func openTCP(t *testing.T, twins []*topo) []string {
	t.Helper()
	var open []string
	for _, tp := range twins {
		for _, ns := range []*netnstest.NS{tp.a, tp.b} {
			out, err := ns.Run("", "ss", "-Htan")
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Fields(line)
				if len(f) == 0 {
					continue
				}
				switch f[0] {
				case "LISTEN", "TIME-WAIT", "UNCONN", "CLOSED":
				default:
					open = append(open, line)
				}
			}
		}
	}
	return open
}

// TestConntrackTwin runs the workstation-style ruleset at B's input hook,
// with invalid segments injected.
func TestConntrackTwin(t *testing.T) {
	ctTwin{ruleset: ctRuleset, flows: ctFlows, inject: true}.run(t)
}

// ctRouterRuleset lets B's side (r1) open connections through R and
// nothing in from A's side but answers: a forward chain.
const ctRouterRuleset = `table inet gw {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related counter accept
		ct state invalid drop
		iifname "r1" ct state new ct direction original counter accept
		ct original ip saddr 192.0.2.1 ct protocol tcp counter
		ct reply ip daddr 192.0.2.1 meta l4proto udp ct original proto-dst 53 counter
		ct original ip6 saddr 2001:db8:a::1 meta l4proto tcp ct reply proto-src 22 counter
	}
}
`

// TestConntrackRouter runs a stateful forward chain at the router R.
func TestConntrackRouter(t *testing.T) {
	flows := []ctFlow{
		{name: "B connects to A tcp/8080 (v4)", fromB: true, port: 8080, works: true},
		{name: "B connects to A tcp/8080 (v6)", v6: true, fromB: true, port: 8080, works: true},
		{name: "B asks A udp/5353 (v4)", udp: true, fromB: true, port: 5353, works: true},
		{name: "B asks A udp/5353 (v6)", v6: true, udp: true, fromB: true, port: 5353, works: true},
		{name: "B pings A (v6)", v6: true, icmp: true, fromB: true, works: true},
		{name: "A connects to B tcp/22 (v4)", port: 22},
		{name: "A connects to B tcp/22 (v6)", v6: true, port: 22},
		{name: "A sends to B udp/53 (v4)", udp: true, port: 53},
		{name: "A pings B (v4)", icmp: true},
	}
	ctTwin{ruleset: ctRouterRuleset, flows: flows, router: true}.run(t)
}

// workstationNFT is Debian's example workstation ruleset.
const workstationNFT = "/usr/share/doc/nftables/examples/workstation.nft"

// TestConntrackWorkstation runs Debian's workstation.nft, read in place,
// at B: B's own connections work, nothing from A gets in but ICMPv6
// (echo, and the neighbour advertisements B's neighbour discovery needs),
// and B reaches itself over lo.
func TestConntrackWorkstation(t *testing.T) {
	text, err := os.ReadFile(workstationNFT)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s is not installed (Debian package nftables)", workstationNFT)
	}
	if err != nil {
		t.Fatal(err)
	}
	flows := []ctFlow{
		{name: "B connects to A tcp/8080 (v4)", fromB: true, port: 8080, works: true},
		{name: "B connects to A tcp/8080 (v6)", v6: true, fromB: true, port: 8080, works: true},
		{name: "B asks A udp/5353 (v4)", udp: true, fromB: true, port: 5353, works: true},
		{name: "B asks A udp/5353 (v6)", v6: true, udp: true, fromB: true, port: 5353, works: true},
		{name: "B pings A (v4)", icmp: true, fromB: true, works: true},
		{name: "B pings A (v6)", v6: true, icmp: true, fromB: true, works: true},
		{name: "A connects to B tcp/22 (v4)", port: 22},
		{name: "A connects to B tcp/22 (v6)", v6: true, port: 22},
		{name: "A sends to B udp/53 (v4)", udp: true, port: 53},
		{name: "A sends to B udp/53 (v6)", v6: true, udp: true, port: 53},
		{name: "A pings B (v4)", icmp: true},
		{name: "A pings B (v6)", v6: true, icmp: true, works: true},
		{name: "B connects to itself tcp/80 (v4)", self: true, port: 80, works: true},
		{name: "B connects to itself tcp/80 (v6)", v6: true, self: true, port: 80, works: true},
	}
	ctTwin{ruleset: string(text), flows: flows}.run(t)
}

// The Go runtime interrupts blocking system calls with signals; these
// retry them.

func readEINTR(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err != unix.EINTR {
			return n, err
		}
	}
}

func writeEINTR(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Write(fd, b)
		if err != unix.EINTR {
			return n, err
		}
	}
}

func connectEINTR(fd int, sa unix.Sockaddr, wait time.Duration) error {
	err := unix.Connect(fd, sa)
	if err != unix.EINTR {
		return err
	}
	// The connection attempt goes on: wait for its outcome.
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		n, err := unix.Poll(fds, int(time.Until(deadline)/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.ETIMEDOUT
		}
		soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if soerr != 0 {
			return unix.Errno(soerr)
		}
		return nil
	}
	return unix.ETIMEDOUT
}

func acceptEINTR(fd int) (int, unix.Sockaddr, error) {
	for {
		c, sa, err := unix.Accept(fd)
		if err != unix.EINTR {
			return c, sa, err
		}
	}
}

func recvfromEINTR(fd int, b []byte, flags int) (int, unix.Sockaddr, error) {
	for {
		n, from, err := unix.Recvfrom(fd, b, flags)
		if err != unix.EINTR {
			return n, from, err
		}
	}
}

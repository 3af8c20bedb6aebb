// Package oracle asks the kernel's own nftables for the verdict on a frame.
//
// An Oracle owns two scratch network namespaces, "sender" and "receiver",
// joined by a veth pair. A ruleset is loaded into the receiver with nft(8),
// together with two observer tables of the oracle's own on the hook under
// test: one base chain at the lowest priority counts arrivals, one at the
// highest priority counts the packets that every other base chain on the
// hook let through (an accept ends one base chain and the packet goes on to
// the next, a drop ends them all). Verdict sends one frame from the sender
// with an AF_PACKET socket and compares the counters, read over netlink.
//
// A frame that never reaches the hook (ip_rcv discarded it, it was not for
// this host, …) is detected with a sentinel frame sent after it: frames are
// sent from a thread pinned to one CPU, so they are processed in order,
// and once the sentinel has been counted the frame before it has been
// handled one way or the other.
package oracle

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Addresses of the two ends of the veth pair.
var (
	SenderIPv4   = netip.MustParseAddr("192.0.2.1")
	ReceiverIPv4 = netip.MustParseAddr("192.0.2.2")
	SenderIPv6   = netip.MustParseAddr("2001:db8::1")
	ReceiverIPv6 = netip.MustParseAddr("2001:db8::2")

	senderMAC   = net.HardwareAddr{0x02, 0xb0, 0x00, 0x00, 0x00, 0x01}
	receiverMAC = net.HardwareAddr{0x02, 0xb0, 0x00, 0x00, 0x00, 0x02}
	// sentinelMAC is the source address of netdev sentinel frames.
	sentinelMAC = net.HardwareAddr{0x02, 0xb0, 0xff, 0xff, 0xff, 0xfe}
	// sentinelIPv4 is the source address of IP sentinel packets.
	sentinelIPv4 = netip.MustParseAddr("192.0.2.254")
)

const (
	senderIfname   = "otx"
	receiverIfname = "orx"
	firstTable     = "bpfnft_oracle_first"
	lastTable      = "bpfnft_oracle_last"
	quietTable     = "bpfnft_oracle_quiet"
	sentinelProto  = 253 // RFC 3692 experimental protocol
	sentinelMagic  = "bpfnftOS"
)

// Config says which hook an Oracle observes.
type Config struct {
	// Hook is ir.HookIngress (a netdev table with a base chain on the
	// receiver device), ir.HookPrerouting or ir.HookInput (ip, ip6 and
	// inet tables).
	Hook ir.Hook
	// Timeout bounds the wait for the sentinel frame; 0 means one second.
	Timeout time.Duration
}

// Result is the kernel's verdict on a frame.
type Result uint8

// Results.
const (
	// NotReached: the frame never arrived at the hook.
	NotReached Result = iota
	// Accepted: every base chain on the hook let the frame through.
	Accepted
	// Dropped: a base chain on the hook dropped the frame.
	Dropped
)

func (r Result) String() string {
	switch r {
	case NotReached:
		return "not-reached"
	case Accepted:
		return "accepted"
	case Dropped:
		return "dropped"
	}
	return fmt.Sprintf("Result(%d)", uint8(r))
}

// Oracle is a pair of scratch namespaces with a veth link between them.
// Its methods may be called from several goroutines; Verdict calls are
// serialised.
type Oracle struct {
	cfg      Config
	sender   *netnstest.NS
	receiver *netnstest.NS

	rxIndex, txIndex int

	sock     int // AF_PACKET socket in the sender namespace, or -1
	counters *counterReader
	sentinel []byte

	mu     sync.Mutex
	last   counts // counter values after the previous frame
	closed bool
}

// New creates the namespaces, the veth pair and the sender's socket.
func New(cfg Config) (*Oracle, error) {
	switch cfg.Hook {
	case ir.HookIngress, ir.HookPrerouting, ir.HookInput:
	default:
		return nil, fmt.Errorf("oracle: hook %d not supported (want ingress, prerouting or input)", cfg.Hook)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	o := &Oracle{cfg: cfg, sock: -1}
	if err := o.setup(); err != nil {
		o.Close()
		return nil, fmt.Errorf("oracle: %w", err)
	}
	return o, nil
}

func (o *Oracle) setup() error {
	var err error
	if o.sender, err = netnstest.New(); err != nil {
		return err
	}
	if o.receiver, err = netnstest.New(); err != nil {
		return err
	}
	for _, ns := range []*netnstest.NS{o.sender, o.receiver} {
		for _, kv := range [][2]string{
			{"net.ipv6.conf.all.accept_dad", "0"},
			{"net.ipv6.conf.default.accept_dad", "0"},
			{"net.ipv6.conf.default.router_solicitations", "0"},
			{"net.ipv6.conf.default.accept_ra", "0"},
			{"net.ipv4.conf.all.rp_filter", "0"},
			{"net.ipv4.conf.default.rp_filter", "0"},
			{"net.ipv4.conf.all.accept_local", "1"},
			{"net.ipv4.conf.default.accept_local", "1"},
		} {
			if err := ns.Sysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
	}
	if _, err := o.sender.RunFiles("", []*os.File{o.receiver.File()}, "ip", "link", "add",
		senderIfname, "address", senderMAC.String(), "type", "veth",
		"peer", "name", receiverIfname, "address", receiverMAC.String(), "netns", "/proc/self/fd/3"); err != nil {
		return err
	}
	ends := []struct {
		ns                *netnstest.NS
		ifname            string
		v4, v6, peerV4    netip.Addr
		peerV6            netip.Addr
		peerMAC           net.HardwareAddr
		index             *int
		quietSenderOutput bool
	}{
		{o.sender, senderIfname, SenderIPv4, SenderIPv6, ReceiverIPv4, ReceiverIPv6, receiverMAC, &o.txIndex, true},
		{o.receiver, receiverIfname, ReceiverIPv4, ReceiverIPv6, SenderIPv4, SenderIPv6, senderMAC, &o.rxIndex, false},
	}
	for _, e := range ends {
		batch := fmt.Sprintf(`link set lo up
link set %[1]s up
addr add %[2]s/24 dev %[1]s
addr add %[3]s/64 dev %[1]s nodad
neigh replace %[4]s lladdr %[6]s dev %[1]s nud permanent
neigh replace %[5]s lladdr %[6]s dev %[1]s nud permanent
`, e.ifname, e.v4, e.v6, e.peerV4, e.peerV6, e.peerMAC)
		if _, err := e.ns.Run(batch, "ip", "-batch", "-"); err != nil {
			return err
		}
		index := e.index
		ifname := e.ifname
		if err := e.ns.Do(func() error {
			ifi, err := net.InterfaceByName(ifname)
			if err != nil {
				return err
			}
			*index = ifi.Index
			return nil
		}); err != nil {
			return err
		}
	}
	// The sender's own stack must not talk to the receiver (router and
	// neighbour solicitations, MLD reports): that would move the
	// receiver's counters. Frames from the AF_PACKET socket do not pass
	// these hooks.
	if _, err := o.sender.Run(`table inet bpfnft_oracle_quiet {
	chain out { type filter hook output priority 0; policy drop; }
}
table arp bpfnft_oracle_quiet {
	chain out { type filter hook output priority 0; policy drop; }
}
`, "nft", "-f", "-"); err != nil {
		return err
	}
	if err := o.sender.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		o.sock = fd
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: o.txIndex})
	}); err != nil {
		return err
	}
	if o.counters, err = newCounterReader(o.receiver); err != nil {
		return err
	}
	if o.sentinel, err = o.sentinelFrame(); err != nil {
		return err
	}
	return nil
}

// onPinnedThread runs fn on the calling goroutine's OS thread, pinned to
// the CPU it is on, so that the frames fn sends are processed in the order
// they are sent: received frames wait in a per-CPU backlog. The thread's
// CPU affinity is restored afterwards; if that fails, the thread stays
// locked and dies with its goroutine.
func onPinnedThread(fn func() error) error {
	runtime.LockOSThread()
	var saved unix.CPUSet
	if err := unix.SchedGetaffinity(0, &saved); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	var cpu uint32
	if _, _, errno := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0); errno != 0 {
		runtime.UnlockOSThread()
		return fmt.Errorf("getcpu: %w", errno)
	}
	var one unix.CPUSet
	one.Set(int(cpu))
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("sched_setaffinity(cpu %d): %w", cpu, err)
	}
	ferr := fn()
	if err := unix.SchedSetaffinity(0, &saved); err != nil {
		// Leave the thread locked: it must not run other goroutines
		// pinned to one CPU.
		return errors.Join(ferr, fmt.Errorf("restoring CPU affinity: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

func (o *Oracle) sentinelFrame() ([]byte, error) {
	if o.cfg.Hook == ir.HookIngress {
		return packet.Build(
			&packet.Ethernet{Dst: receiverMAC, Src: sentinelMAC, Type: packet.Ptr(packet.EtherTypeLocal)},
			packet.Payload(sentinelMagic+strings.Repeat("\x00", 46-len(sentinelMagic))))
	}
	return packet.Build(
		&packet.Ethernet{Dst: receiverMAC, Src: senderMAC},
		&packet.IPv4{Src: sentinelIPv4, Dst: ReceiverIPv4},
		&packet.RawIP{Protocol: sentinelProto, Data: []byte(sentinelMagic)})
}

// ReceiverIfindex is the receiver veth's interface index (in the receiver
// namespace).
func (o *Oracle) ReceiverIfindex() int { return o.rxIndex }

// ReceiverIfname is the receiver veth's name; netdev rulesets name it as
// their device.
func (o *Oracle) ReceiverIfname() string { return receiverIfname }

// ReceiverMAC is the receiver veth's address: frames for IP hooks must be
// sent to it.
func (o *Oracle) ReceiverMAC() net.HardwareAddr { return append(net.HardwareAddr(nil), receiverMAC...) }

// SenderMAC is the sender veth's address.
func (o *Oracle) SenderMAC() net.HardwareAddr { return append(net.HardwareAddr(nil), senderMAC...) }

// ReceiverNetNS is the receiver namespace. It stays owned by o.
func (o *Oracle) ReceiverNetNS() *os.File { return o.receiver.File() }

// observers returns the oracle's two observer tables: the first goes before
// the user's ruleset (so that its chain comes first among chains of equal
// priority), the last after it.
func (o *Oracle) observers() (first, last string) {
	family, hook, device, iif := "inet", "prerouting", "", `iifname "`+receiverIfname+`" `
	sentinel := fmt.Sprintf("ip saddr %s ip protocol %d @nh,160,64 0x%x", sentinelIPv4, sentinelProto, sentinelMagic)
	switch o.cfg.Hook {
	case ir.HookInput:
		hook = "input"
	case ir.HookIngress:
		family, hook, device, iif = "netdev", "ingress", ` device "`+receiverIfname+`"`, ""
		sentinel = fmt.Sprintf("ether saddr %s ether type 0x%04x", sentinelMAC, packet.EtherTypeLocal)
	}
	first = fmt.Sprintf(`table %[1]s %[2]s {
	counter arrived { }
	counter sentinel { }
	chain first {
		type filter hook %[3]s%[4]s priority -2147483648; policy accept;
		%[5]s counter name "sentinel" drop
		%[6]scounter name "arrived"
	}
}
`, family, firstTable, hook, device, sentinel, iif)
	last = fmt.Sprintf(`table %[1]s %[2]s {
	counter passed { }
	chain last {
		type filter hook %[3]s%[4]s priority 2147483647; policy accept;
		%[5]scounter name "passed"
	}
}
`, family, lastTable, hook, device, iif)
	return first, last
}

// receiverQuiet keeps the receiver's own stack from sending: a reply to a
// frame from its subnet's broadcast address, for one, is looped back in
// through the veth and would count as a second arrival.
const receiverQuiet = `table inet ` + quietTable + ` {
	chain out { type filter hook output priority 0; policy drop; }
}
`

// Load replaces the receiver's ruleset with ruleset (nft -f syntax) and
// the oracle's observers.
func (o *Oracle) Load(ruleset string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	first, last := o.observers()
	text := "flush ruleset\n" + receiverQuiet + first + ruleset + "\n" + last
	if _, err := o.receiver.Run(text, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("oracle: loading ruleset: %w", err)
	}
	c, err := o.counters.read()
	if err != nil {
		return fmt.Errorf("oracle: %w", err)
	}
	if !c.complete() {
		return errors.New("oracle: observer counters missing after load (does the ruleset flush or delete tables?)")
	}
	o.last = c
	return nil
}

// Verdict sends frame from the sender and reports what the hook did to it.
// Frames for IP hooks must be addressed to ReceiverMAC.
func (o *Oracle) Verdict(frame []byte) (Result, error) {
	if len(frame) < 14 {
		return NotReached, fmt.Errorf("oracle: frame of %d bytes is shorter than an Ethernet header", len(frame))
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return NotReached, errors.New("oracle: closed")
	}
	var res Result
	err := onPinnedThread(func() error {
		var err error
		res, err = o.verdict(frame)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("oracle: %w", err)
	}
	return res, nil
}

func (o *Oracle) send(frame []byte) error {
	to := &unix.SockaddrLinklayer{Ifindex: o.txIndex, Halen: 6}
	copy(to.Addr[:], frame[:6])
	if err := unix.Sendto(o.sock, frame, 0, to); err != nil {
		return fmt.Errorf("sending %d-byte frame: %w", len(frame), err)
	}
	return nil
}

// verdict runs on a thread pinned to one CPU.
func (o *Oracle) verdict(frame []byte) (Result, error) {
	before := o.last
	if err := o.send(frame); err != nil {
		return NotReached, err
	}
	now, err := o.counters.read()
	if err != nil {
		return NotReached, err
	}
	if now.arrived == before.arrived {
		// Not counted yet: either it never reaches the hook or its
		// processing was deferred. The sentinel settles it.
		if err := o.send(o.sentinel); err != nil {
			return NotReached, err
		}
		deadline := time.Now().Add(o.cfg.Timeout)
		for wait := time.Duration(0); ; wait = min(2*wait+10*time.Microsecond, time.Millisecond) {
			if now, err = o.counters.read(); err != nil {
				return NotReached, err
			}
			if now.sentinel > before.sentinel {
				break
			}
			if time.Now().After(deadline) {
				return NotReached, fmt.Errorf("sentinel frame not seen after %v", o.cfg.Timeout)
			}
			time.Sleep(wait)
		}
	}
	o.last = now
	if !now.complete() {
		return NotReached, errors.New("observer counters gone (was the ruleset changed behind the oracle's back?)")
	}
	switch arrived, passed := now.arrived-before.arrived, now.passed-before.passed; {
	case arrived == 0 && passed == 0:
		return NotReached, nil
	case arrived == 1 && passed == 0:
		return Dropped, nil
	case arrived == 1 && passed == 1:
		return Accepted, nil
	default:
		return NotReached, fmt.Errorf("unexpected traffic on the hook: %d arrivals, %d passed for one frame", arrived, passed)
	}
}

// Close deletes the namespaces and everything in them.
func (o *Oracle) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var errs []error
	o.closed = true
	if o.counters != nil {
		errs = append(errs, o.counters.close())
		o.counters = nil
	}
	if o.sock >= 0 {
		errs = append(errs, unix.Close(o.sock))
		o.sock = -1
	}
	for _, ns := range []**netnstest.NS{&o.sender, &o.receiver} {
		if *ns != nil {
			errs = append(errs, (*ns).Close())
			*ns = nil
		}
	}
	return errors.Join(errs...)
}

// SentinelMAC returns the source MAC address of the oracle's netdev
// sentinel frames. A program attached before the netdev ingress hook must
// let these frames through for Verdict to work.
func SentinelMAC() net.HardwareAddr { return append(net.HardwareAddr(nil), sentinelMAC...) }

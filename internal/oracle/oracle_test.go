package oracle

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

func newOracle(t testing.TB, hook ir.Hook) *Oracle {
	t.Helper()
	privtest.Require(t)
	o, err := New(Config{Hook: hook})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return o
}

var otherAddr4 = netip.MustParseAddr("198.51.100.7")

// udp4 builds a UDP frame from src to dst, addressed to the receiver.
func udp4(o *Oracle, src, dst netip.Addr) []byte {
	return packet.MustBuild(&packet.Ethernet{Dst: o.ReceiverMAC(), Src: o.SenderMAC()},
		&packet.IPv4{Src: src, Dst: dst}, &packet.UDP{SrcPort: 1000, DstPort: 2000}, packet.Payload("x"))
}

func udp6(o *Oracle, src, dst netip.Addr) []byte {
	return packet.MustBuild(&packet.Ethernet{Dst: o.ReceiverMAC(), Src: o.SenderMAC()},
		&packet.IPv6{Src: src, Dst: dst}, &packet.UDP{SrcPort: 1000, DstPort: 2000}, packet.Payload("x"))
}

type frameCase struct {
	name  string
	frame func(o *Oracle) []byte
	want  Result
}

type rulesetCase struct {
	name    string
	ruleset string
	frames  []frameCase
}

func run(t *testing.T, hook ir.Hook, cases []rulesetCase) {
	o := newOracle(t, hook)
	for _, rc := range cases {
		t.Run(rc.name, func(t *testing.T) {
			if err := o.Load(rc.ruleset); err != nil {
				t.Fatal(err)
			}
			for _, fc := range rc.frames {
				got, err := o.Verdict(fc.frame(o))
				if err != nil {
					t.Fatalf("%s: %v", fc.name, err)
				}
				if got != fc.want {
					t.Errorf("%s: verdict %v, want %v", fc.name, got, fc.want)
				}
			}
		})
	}
}

var (
	fromSender = frameCase{"from sender", func(o *Oracle) []byte { return udp4(o, SenderIPv4, ReceiverIPv4) }, Accepted}
	fromOther  = frameCase{"from other", func(o *Oracle) []byte { return udp4(o, otherAddr4, ReceiverIPv4) }, Accepted}
)

func with(fc frameCase, want Result) frameCase { fc.want = want; return fc }

func TestIngress(t *testing.T) {
	vlan := func(id uint16) func(o *Oracle) []byte {
		return func(o *Oracle) []byte {
			return packet.MustBuild(&packet.Ethernet{Dst: o.ReceiverMAC(), Src: o.SenderMAC(), Tags: []packet.VLAN{{ID: id}}},
				&packet.IPv4{Src: SenderIPv4, Dst: ReceiverIPv4}, &packet.UDP{SrcPort: 1, DstPort: 2})
		}
	}
	arp := func(o *Oracle) []byte {
		return packet.MustBuild(&packet.Ethernet{Dst: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: o.SenderMAC(),
			Type: packet.Ptr(packet.EtherTypeARP)}, packet.Payload(make([]byte, 28)))
	}
	badIPv4 := func(o *Oracle) []byte {
		return packet.MustBuild(&packet.Ethernet{Dst: o.ReceiverMAC(), Src: o.SenderMAC()},
			&packet.IPv4{Src: SenderIPv4, Dst: ReceiverIPv4, Checksum: packet.Ptr[uint16](1)}, &packet.UDP{})
	}
	run(t, ir.HookIngress, []rulesetCase{
		{"no user chain", "", []frameCase{fromSender, {"arp", arp, Accepted}}},
		{"drop by saddr", `table netdev t {
	chain c {
		type filter hook ingress device "orx" priority 0;
		ip saddr 192.0.2.1 drop
	}
}`,
			[]frameCase{with(fromSender, Dropped), fromOther, {"bad ipv4 checksum still reaches ingress", badIPv4, Dropped}}},
		{"policy drop", `table netdev t {
	chain c {
		type filter hook ingress device "orx" priority 0; policy drop;
		ip saddr 198.51.100.7 accept
	}
}`,
			[]frameCase{with(fromSender, Dropped), fromOther, {"arp", arp, Dropped}}},
		{"vlan id", `table netdev t {
	chain c {
		type filter hook ingress device "orx" priority 0;
		vlan id 100 drop
	}
}`,
			[]frameCase{{"vlan 100", vlan(100), Dropped}, {"vlan 200", vlan(200), Accepted}, fromSender}},
		{"accept then drop in later base chain", `table netdev t {
	chain a {
		type filter hook ingress device "orx" priority 0;
		accept
	}
	chain b {
		type filter hook ingress device "orx" priority 10;
		ip saddr 192.0.2.1 drop
	}
}`,
			[]frameCase{with(fromSender, Dropped), fromOther}},
	})
}

func TestPrerouting(t *testing.T) {
	wrongMAC := func(o *Oracle) []byte {
		return packet.MustBuild(&packet.Ethernet{Dst: net.HardwareAddr{2, 9, 9, 9, 9, 9}, Src: o.SenderMAC()},
			&packet.IPv4{Src: SenderIPv4, Dst: ReceiverIPv4}, &packet.UDP{})
	}
	badSum := func(o *Oracle) []byte {
		return packet.MustBuild(&packet.Ethernet{Dst: o.ReceiverMAC(), Src: o.SenderMAC()},
			&packet.IPv4{Src: SenderIPv4, Dst: ReceiverIPv4, Checksum: packet.Ptr[uint16](1)}, &packet.UDP{})
	}
	truncated := func(o *Oracle) []byte { return packet.TruncateFromEnd(udp4(o, SenderIPv4, ReceiverIPv4), 4) }
	v6 := func(src netip.Addr) func(o *Oracle) []byte {
		return func(o *Oracle) []byte { return udp6(o, src, ReceiverIPv6) }
	}
	notLocal := func(o *Oracle) []byte { return udp4(o, SenderIPv4, netip.MustParseAddr("203.0.113.9")) }
	run(t, ir.HookPrerouting, []rulesetCase{
		{"no user chain", "", []frameCase{fromSender, {"ipv6", v6(SenderIPv6), Accepted}, {"not local", notLocal, Accepted}}},
		{"drop by saddr", `table ip t {
	chain c {
		type filter hook prerouting priority 0;
		ip saddr 192.0.2.1 drop
	}
}`,
			[]frameCase{with(fromSender, Dropped), fromOther, {"ipv6 unaffected", v6(SenderIPv6), Accepted}}},
		{"inet drop ipv6 saddr", `table inet t {
	chain c {
		type filter hook prerouting priority -150;
		ip6 saddr 2001:db8::1 drop
	}
}`,
			[]frameCase{{"ipv6 sender", v6(SenderIPv6), Dropped}, {"ipv6 other", v6(netip.MustParseAddr("2001:db8::77")), Accepted}, fromSender}},
		{"policy drop", `table ip t {
	chain c {
		type filter hook prerouting priority 0; policy drop;
	}
}`,
			[]frameCase{with(fromSender, Dropped), with(fromOther, Dropped), {"ipv6 has no ip chain", v6(SenderIPv6), Accepted}}},
		{"malformed never reaches prerouting", `table ip t {
	chain c {
		type filter hook prerouting priority 0; policy drop;
	}
}`,
			[]frameCase{{"bad checksum", badSum, NotReached}, {"truncated", truncated, NotReached}, {"other host mac", wrongMAC, NotReached}}},
	})
}

func TestInput(t *testing.T) {
	notLocal := func(o *Oracle) []byte { return udp4(o, SenderIPv4, netip.MustParseAddr("203.0.113.9")) }
	run(t, ir.HookInput, []rulesetCase{
		{"drop by saddr", `table ip t {
	chain c {
		type filter hook input priority 0;
		ip saddr 192.0.2.1 drop
	}
}`,
			[]frameCase{with(fromSender, Dropped), fromOther, {"not local is not routed to input", notLocal, NotReached}}},
	})
}

func TestNewRefusesHook(t *testing.T) {
	if _, err := New(Config{Hook: ir.HookForward}); err == nil {
		t.Error("New accepted the forward hook")
	}
}

func TestVerdictSpeed(t *testing.T) {
	o := newOracle(t, ir.HookPrerouting)
	if err := o.Load(`table ip t {
	chain c {
		type filter hook prerouting priority 0;
		ip saddr 192.0.2.1 drop
	}
}`); err != nil {
		t.Fatal(err)
	}
	for _, fc := range []frameCase{with(fromSender, Dropped), fromOther, {"other mac", func(o *Oracle) []byte {
		f := udp4(o, SenderIPv4, ReceiverIPv4)
		f[0] = 0x06
		return f
	}, NotReached}} {
		frame := fc.frame(o)
		const n = 200
		start := time.Now()
		for range n {
			got, err := o.Verdict(frame)
			if err != nil {
				t.Fatal(err)
			}
			if got != fc.want {
				t.Fatalf("%s: verdict %v, want %v", fc.name, got, fc.want)
			}
		}
		t.Logf("%s: %v per frame", fc.name, time.Since(start)/n)
	}
}

// TestParallelOracles runs oracles side by side, each with its own ruleset,
// and checks that their verdicts do not leak into each other.
func TestParallelOracles(t *testing.T) {
	privtest.Require(t)
	const n = 3
	errs := make(chan error, n)
	for i := range n {
		go func() {
			o, err := New(Config{Hook: ir.HookPrerouting})
			if err != nil {
				errs <- err
				return
			}
			defer o.Close()
			// Oracle i drops only odd sources when i is odd.
			rs := "table ip t {\n\tchain c {\n\t\ttype filter hook prerouting priority 0;\n\t\tip saddr 192.0.2.1 accept\n\t}\n}"
			if i%2 == 1 {
				rs = "table ip t {\n\tchain c {\n\t\ttype filter hook prerouting priority 0;\n\t\tip saddr 192.0.2.1 drop\n\t}\n}"
			}
			if err := o.Load(rs); err != nil {
				errs <- err
				return
			}
			want := Accepted
			if i%2 == 1 {
				want = Dropped
			}
			for range 300 {
				got, err := o.Verdict(udp4(o, SenderIPv4, ReceiverIPv4))
				if err == nil && got != want {
					err = fmt.Errorf("oracle %d: verdict %v, want %v", i, got, want)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestLoadRejectsFlush(t *testing.T) {
	o := newOracle(t, ir.HookIngress)
	if err := o.Load("flush ruleset"); err == nil {
		t.Error("Load accepted a ruleset that deletes the observers")
	}
	if err := o.Load("this is not nft syntax"); err == nil {
		t.Error("Load accepted a syntax error")
	}
}

// TestBroadcastSourceIsOneFrame sends frames whose source is the receiver
// subnet's broadcast address: the receiver's reply, looped back through the
// veth, must not count as a second arrival.
func TestBroadcastSourceIsOneFrame(t *testing.T) {
	privtest.Require(t)
	for _, hook := range []ir.Hook{ir.HookIngress, ir.HookPrerouting} {
		o, err := New(Config{Hook: hook})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		if err := o.Load(""); err != nil {
			t.Fatal(err)
		}
		for _, src := range []string{"192.0.2.255", "255.255.255.255", "192.0.2.1"} {
			f := packet.MustBuild(&packet.Ethernet{Dst: o.ReceiverMAC(), Src: o.SenderMAC()},
				&packet.IPv4{Src: netip.MustParseAddr(src), Dst: ReceiverIPv4, TTL: packet.Ptr(uint8(64))},
				&packet.UDP{SrcPort: 1, DstPort: 2})
			r, err := o.Verdict(f)
			if err != nil || r != Accepted {
				t.Errorf("%s: source %s: got %s, %v; want accepted", hook, src, r, err)
			}
		}
	}
}

package loader

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// twinRule is a line of the twin ruleset and the protocol family it is
// for: 4, 6, or 0 for both.
type twinRule struct {
	fam  int
	text string
}

// twinChains is the ruleset of TestKernelTwin: a base chain (its header
// comes from the attach case) and two user chains. Every rule with a
// counter matches only traffic from A to B, so that the counters see only
// the test's probes and none of the namespaces' own IPv6 chatter.
var twinChains = []struct {
	name  string
	fam   int
	rules []twinRule
}{
	{"c", 0, []twinRule{
		{4, "ip daddr 198.51.100.1 counter"},
		{6, "ip6 daddr 2001:db8:b::1 counter"},
		{0, "udp sport 4001 udp dport 7 counter drop"},
		{4, "ip saddr 192.0.2.1 udp dport { 9, 11 } counter drop"},
		{4, "ip daddr 198.51.100.1 udp dport 20-22 counter drop"},
		{4, "ip daddr 198.51.100.1 udp length > 200 counter drop"},
		{4, "ip daddr 198.51.100.1 udp dport 30-39 jump v4x"},
		{4, "ip daddr 198.51.100.1 icmp type timestamp-request counter drop"},
		{4, "ip daddr 198.51.100.1 icmp type echo-request icmp sequence 0-3 counter drop"},
		{4, "ip daddr 198.51.100.1 meta l4proto udp counter accept"},
		{6, "ip6 daddr 2001:db8:b::1 udp dport { 9, 21 } counter drop"},
		{6, "ip6 daddr 2001:db8:b::1 icmpv6 type echo-request ip6 length > 100 counter drop"},
		{6, "ip6 daddr 2001:db8:b::1 jump v6x"},
	}},
	{"v4x", 4, []twinRule{
		{4, "udp dport 31 counter drop"},
		{4, "udp dport @blocked4 counter drop"},
		{4, "counter return"},
	}},
	{"v6x", 6, []twinRule{
		{6, "udp dport 10 counter drop"},
		{6, "icmpv6 type 200 counter drop"},
		{6, "udp dport 12 counter return"},
		{6, "meta l4proto ipv6-icmp counter accept"},
	}},
}

// twinRuleset returns the twin ruleset for a case: one table holding
// everything for the inet and netdev families, an ip and an ip6 table (each
// with its part) for ip.
func twinRuleset(c attachCase) string {
	type table struct {
		family string
		fams   []int
	}
	tables := []table{{c.family, []int{0, 4, 6}}}
	if c.family == "ip" {
		tables = []table{{"ip", []int{0, 4}}, {"ip6", []int{0, 6}}}
	}
	var b strings.Builder
	for _, tb := range tables {
		fmt.Fprintf(&b, "table %s t {\n", tb.family)
		if slices.Contains(tb.fams, 4) {
			b.WriteString("\tset blocked4 {\n\t\ttype inet_service; flags constant\n\t\telements = { 33, 35 }\n\t}\n")
		}
		for _, ch := range twinChains {
			if !slices.Contains(tb.fams, ch.fam) {
				continue
			}
			fmt.Fprintf(&b, "\tchain %s {\n", ch.name)
			if ch.name == "c" {
				fmt.Fprintf(&b, "\t\t%s policy accept;\n", c.header)
			}
			for _, r := range ch.rules {
				if slices.Contains(tb.fams, r.fam) {
					fmt.Fprintf(&b, "\t\t%s\n", r.text)
				}
			}
			b.WriteString("\t}\n")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// probe is a kind of packet sent from A to B, n times. Every attach
// kind sees every probe (all go from A to B), so what twinChains do with
// it does not depend on the hook: deliver says what that is.
type probe struct {
	v6       bool
	icmp     bool
	sport    int // UDP
	dport    int // UDP
	icmpType uint8
	icmpSeq  uint16
	size     int // payload bytes
	n        int
	deliver  bool
}

func (p probe) String() string {
	ip := "IPv4"
	if p.v6 {
		ip = "IPv6"
	}
	if p.icmp {
		return fmt.Sprintf("%s ICMP type %d seq %d, %d payload bytes", ip, p.icmpType, p.icmpSeq, p.size)
	}
	return fmt.Sprintf("%s UDP %d→%d, %d payload bytes", ip, p.sport, p.dport, p.size)
}

func udp4(sport, dport, size, n int, deliver bool) probe {
	return probe{sport: sport, dport: dport, size: size, n: n, deliver: deliver}
}

func udp6(sport, dport, size, n int, deliver bool) probe {
	p := udp4(sport, dport, size, n, deliver)
	p.v6 = true
	return p
}

func icmp4(typ uint8, seq uint16, size, n int, deliver bool) probe {
	return probe{icmp: true, icmpType: typ, icmpSeq: seq, size: size, n: n, deliver: deliver}
}

func icmp6(typ uint8, seq uint16, size, n int, deliver bool) probe {
	p := icmp4(typ, seq, size, n, deliver)
	p.v6 = true
	return p
}

// twinTraffic is what TestKernelTwin sends, and what twinChains should do
// with each probe (the rule deciding it in the comment).
var twinTraffic = []probe{
	udp4(4000, 7, 32, 6, true),   // udp accept
	udp4(4001, 7, 32, 4, false),  // sport 4001 dport 7
	udp4(4000, 9, 32, 4, false),  // dport { 9, 11 }
	udp4(4000, 10, 32, 4, true),  // udp accept
	udp4(4000, 11, 32, 4, false), // dport { 9, 11 }
	udp4(4000, 21, 32, 4, false), // dport 20-22
	udp4(4000, 23, 32, 2, true),  // udp accept
	udp4(4000, 7, 300, 4, false), // udp length > 200
	udp4(4000, 31, 32, 4, false), // v4x: dport 31
	udp4(4000, 33, 32, 4, false), // v4x: @blocked4
	udp4(4000, 34, 32, 4, true),  // v4x: return, then udp accept
	icmp4(8, 2, 32, 4, false),    // echo-request sequence 0-3
	icmp4(8, 5, 32, 4, true),     // policy
	icmp4(13, 0, 32, 2, false),   // timestamp-request
	udp6(4000, 7, 32, 6, true),   // policy
	udp6(4001, 7, 32, 4, false),  // sport 4001 dport 7
	udp6(4000, 9, 32, 4, false),  // dport { 9, 21 }
	udp6(4000, 21, 32, 4, false), // dport { 9, 21 }
	udp6(4000, 10, 32, 4, false), // v6x: dport 10
	udp6(4000, 11, 32, 4, true),  // policy
	udp6(4000, 12, 32, 4, true),  // v6x: return, then policy
	icmp6(128, 1, 32, 4, true),   // v6x: l4proto ipv6-icmp accept
	icmp6(128, 2, 200, 4, false), // echo-request ip6 length > 100
	icmp6(200, 0, 32, 2, false),  // v6x: icmpv6 type 200
}

// tagged is one packet of the traffic: its probe and its sequence number
// (the tag in its payload).
type tagged struct {
	seq   uint32
	probe probe
}

// expand lists the traffic packet by packet, the probes interleaved.
func expand(probes []probe) []tagged {
	var out []tagged
	for round := 0; ; round++ {
		more := false
		for _, p := range probes {
			if round < p.n {
				out = append(out, tagged{uint32(len(out)), p})
				more = more || round+1 < p.n
			}
		}
		if !more {
			return out
		}
	}
}

// prober sends probes from a namespace: UDP sockets bound to each source
// port, and raw ICMP and ICMPv6 sockets.
type prober struct {
	udp4, udp6   map[int]int
	icmp4, icmp6 int
}

func openProber(t *testing.T, ns *netnstest.NS, sports ...int) *prober {
	t.Helper()
	p := &prober{udp4: map[int]int{}, udp6: map[int]int{}, icmp4: -1, icmp6: -1}
	var fds []int
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	open := func(domain, typ, proto int) (int, error) {
		fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
		if err == nil {
			fds = append(fds, fd)
		}
		return fd, err
	}
	err := ns.Do(func() error {
		var err error
		if p.icmp4, err = open(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP); err != nil {
			return err
		}
		if p.icmp6, err = open(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6); err != nil {
			return err
		}
		for _, sport := range sports {
			fd, err := open(unix.AF_INET, unix.SOCK_DGRAM, 0)
			if err != nil {
				return err
			}
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: sport}); err != nil {
				return err
			}
			p.udp4[sport] = fd
			if fd, err = open(unix.AF_INET6, unix.SOCK_DGRAM, 0); err != nil {
				return err
			}
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
				return err
			}
			if err := unix.Bind(fd, &unix.SockaddrInet6{Port: sport}); err != nil {
				return err
			}
			p.udp6[sport] = fd
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	sockB4 = netip.MustParseAddr(addrB).As4()
	sockB6 = netip.MustParseAddr(addrB6).As16()
)

// send sends one packet to B. A drop at A's own output hooks may show up
// as EPERM (netfilter, cgroup) or ENOBUFS (tc, on raw IPv6 sockets).
func (p *prober) send(pk tagged) error {
	pr := pk.probe
	payload := tag(pk.seq, pr.size)
	switch {
	case pr.icmp && !pr.v6:
		msg := packet.MustBuild(&packet.ICMP{Type: pr.icmpType, ID: 0x7e57, Seq: pr.icmpSeq}, packet.Payload(payload))
		return unix.Sendto(p.icmp4, msg, 0, &unix.SockaddrInet4{Addr: sockB4})
	case pr.icmp:
		// The kernel fills in the checksum of ICMPv6 on raw sockets.
		msg := packet.MustBuild(&packet.ICMPv6{Type: pr.icmpType, ID: 0x7e57, Seq: pr.icmpSeq, Checksum: ptr[uint16](0)}, packet.Payload(payload))
		return unix.Sendto(p.icmp6, msg, 0, &unix.SockaddrInet6{Addr: sockB6})
	case !pr.v6:
		return unix.Sendto(p.udp4[pr.sport], payload, 0, &unix.SockaddrInet4{Port: pr.dport, Addr: sockB4})
	default:
		return unix.Sendto(p.udp6[pr.sport], payload, 0, &unix.SockaddrInet6{Port: pr.dport, Addr: sockB6})
	}
}

// exchange sends pkts from A to B in tp, in order, and returns the
// sequence numbers that arrived at B's sockets. recvIn and sendIn, when
// not nil, wrap the creation of B's and A's sockets (to create them in a
// cgroup).
func exchange(t *testing.T, tp *topo, pkts []tagged, recvIn, sendIn func(func())) map[uint32]int {
	t.Helper()
	var ports, sports []int
	for _, pk := range pkts {
		if !pk.probe.icmp {
			ports = append(ports, pk.probe.dport)
			sports = append(sports, pk.probe.sport)
		}
	}
	slices.Sort(ports)
	slices.Sort(sports)
	within := func(wrap func(func()), fn func()) {
		if wrap == nil {
			fn()
		} else {
			wrap(fn)
		}
	}
	var rc *receiver
	var pr *prober
	within(recvIn, func() { rc = listenAll(t, tp.b, slices.Compact(ports)...) })
	within(sendIn, func() { pr = openProber(t, tp.a, slices.Compact(sports)...) })
	for i, pk := range pkts {
		if err := pr.send(pk); err != nil && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.ENOBUFS) {
			t.Fatalf("sending packet %d (%v): %v", pk.seq, pk.probe, err)
		}
		if i%8 == 7 {
			// Stay far below the queues of veth (with XDP: a ring
			// of 256 frames).
			time.Sleep(time.Millisecond)
		}
	}
	_, seqs := rc.settleAll()
	return seqs
}

// ruleCounters are the counter values of every rule, chain by chain
// ("family table chain"), rules in chain order.
type ruleCounters map[string][][]codegen.CounterValue

// nftCounters reads the counters of the kernel's ruleset in ns.
func nftCounters(t *testing.T, ns *netnstest.NS) ruleCounters {
	t.Helper()
	out, err := ns.Run("", "nft", "-j", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Family, Table, Chain string
				Expr                 []map[string]json.RawMessage
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j list ruleset: %v", err)
	}
	rc := ruleCounters{}
	for _, o := range doc.Nftables {
		r := o.Rule
		if r == nil {
			continue
		}
		vals := []codegen.CounterValue{}
		for _, e := range r.Expr {
			raw, ok := e["counter"]
			if !ok {
				continue
			}
			var v codegen.CounterValue
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatalf("counter %s: %v", raw, err)
			}
			vals = append(vals, v)
		}
		k := r.Family + " " + r.Table + " " + r.Chain
		rc[k] = append(rc[k], vals)
	}
	return rc
}

// bpfCounters reads the counters of the ruleset recorded in st, and the
// rules' texts.
func bpfCounters(t *testing.T, st *state.Dir) (ruleCounters, map[string][]string) {
	t.Helper()
	snap, err := Load(st)
	if err != nil {
		t.Fatal(err)
	}
	rc, texts := ruleCounters{}, map[string][]string{}
	for i, r := range snap.Manifest.Rules {
		k := r.Family + " " + r.Table + " " + r.Chain
		rc[k] = append(rc[k], snap.Counters[i])
		texts[k] = append(texts[k], r.Text)
	}
	return rc, texts
}

// TestKernelTwin runs each attach kind against its twin: the same ruleset
// loaded into BPF in one topology and into the kernel's nftables (with
// nft -f, at the corresponding hook and namespace) in an identical second
// one. The same packets, sent in the same order, must arrive at the
// receiver in both — and be those the ruleset should let through — and
// every BPF counter must equal nft's.
func TestKernelTwin(t *testing.T) {
	pkts := expand(twinTraffic)
	for _, c := range append(slices.Clone(attachCases), cgroupCases...) {
		t.Run(c.name, func(t *testing.T) {
			bpf, kern := newTopo(t), newTopo(t)
			ruleset := twinRuleset(c)

			var opts Options
			var recvIn, sendIn func(func())
			if c.typ != nil && *c.typ == codegen.CgroupSKB {
				cg, home := scratchCgroup(t, "twin-"+c.kind)
				opts.CgroupPath = cg
				in := func(fn func()) { inCgroup(t, cg, home, fn) }
				if c.kind == KindCgroupEgress {
					sendIn = in
				} else {
					recvIn = in
				}
			}
			ns := netns(t, c.where(bpf))
			st := stateDir(t, ns)
			if err := Apply(ns, st, translate(t, ns, ruleset, c.typ), opts); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { Flush(st) })
			snap, err := Load(st)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range snap.Manifest.Points {
				if p.Kind != c.kind {
					t.Fatalf("attach point %+v, want kind %s", p, c.kind)
				}
			}
			if _, err := c.where(kern).Run(ruleset, "nft", "-f", "-"); err != nil {
				t.Fatal(err)
			}

			gotBPF := exchange(t, bpf, pkts, recvIn, sendIn)
			gotKern := exchange(t, kern, pkts, nil, nil)

			var delivered int
			for _, pk := range pkts {
				b, k := gotBPF[pk.seq], gotKern[pk.seq]
				switch {
				case b != k:
					t.Errorf("packet %d (%v): arrived %d times with BPF, %d times with the kernel's nftables", pk.seq, pk.probe, b, k)
				case b > 1:
					t.Errorf("packet %d (%v): arrived %d times", pk.seq, pk.probe, b)
				case (k == 1) != pk.probe.deliver:
					t.Errorf("packet %d (%v): delivered %v by both, the test expects %v", pk.seq, pk.probe, k == 1, pk.probe.deliver)
				}
				delivered += k
			}
			t.Logf("%d packets sent, %d delivered", len(pkts), delivered)

			got, texts := bpfCounters(t, st)
			want := nftCounters(t, c.where(kern))
			for k, rules := range want {
				if len(got[k]) != len(rules) {
					t.Errorf("chain %s: %d rules in BPF, %d in the kernel", k, len(got[k]), len(rules))
					continue
				}
				for i, w := range rules {
					if fmt.Sprint(got[k][i]) != fmt.Sprint(w) {
						t.Errorf("chain %s rule %d (%s): BPF counters %v, nft %v", k, i, texts[k][i], got[k][i], w)
					}
					for _, v := range w {
						if v.Packets == 0 {
							t.Errorf("chain %s rule %d (%s): counter stayed zero; the traffic misses it", k, i, texts[k][i])
						}
					}
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("chain %s is in BPF, not in the kernel", k)
				}
			}
		})
	}
}

package codegen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

func fibf(flags ir.FIBFlags) ir.Field { return ir.Field{Source: ir.SourceFIB, FIB: flags, Len: 4} }

// addrType is a type's register image: a host-order u32.
func addrType(t uint32) []byte { return binary.NativeEndian.AppendUint32(nil, t) }

// TestFIBLoad has the verifier load fib … type at every netfilter hook,
// for both addresses and with the device restrictions the hook allows.
func TestFIBLoad(t *testing.T) {
	privileged(t)
	hooks := []ir.Hook{ir.HookPrerouting, ir.HookInput, ir.HookForward, ir.HookOutput, ir.HookPostrouting}
	for _, hook := range hooks {
		for _, flags := range []ir.FIBFlags{ir.FIBDaddr, ir.FIBSaddr, ir.FIBDaddr | ir.FIBIif, ir.FIBSaddr | ir.FIBOif} {
			fl := flavour{name: "nf", fam: ir.FamilyIPv4, hook: hook,
				tgt: Target{Type: Netfilter, Family: ir.FamilyIPv4, Hook: hook, ProtoFamily: ir.FamilyIPv4}}
			dev := flags&(ir.FIBIif|ir.FIBOif) != 0
			in := flags&ir.FIBIif != 0
			absent := (in && (hook == ir.HookOutput || hook == ir.HookPostrouting)) ||
				(dev && !in && (hook == ir.HookPrerouting || hook == ir.HookInput))
			t.Run(fmt.Sprintf("nf/%s/%s", hook, fibField(flags)), func(t *testing.T) {
				r := rule(eq(fibf(flags), addrType(ir.AddrLocal)), drop)
				tab, ch := table(ir.FamilyIPv4, hook, ir.VerdictAccept, []*ir.Rule{r})
				if absent || (dev && vrfPossible()) {
					_, err := Compile(tab, ch, fl.tgt)
					var ue *UnsupportedError
					if !errors.As(err, &ue) {
						t.Fatalf("compile: %v, want a refusal", err)
					}
					return
				}
				loadFlavour(t, fl, tab, ch)
			})
		}
	}
}

func fibField(f ir.FIBFlags) string {
	return ir.FormatStmt(ir.FamilyIPv4, eq(fibf(f), addrType(ir.AddrLocal)))
}

// TestFIBLoadCgroup has the verifier load fib … type in cgroup_skb
// programs of ip tables, at ingress and egress.
func TestFIBLoadCgroup(t *testing.T) {
	privileged(t)
	for _, egress := range []bool{false, true} {
		hook := ir.HookInput
		dev := ir.FIBIif
		if egress {
			hook, dev = ir.HookOutput, ir.FIBOif
		}
		for _, flags := range []ir.FIBFlags{ir.FIBDaddr, ir.FIBSaddr, ir.FIBDaddr | dev} {
			t.Run(fmt.Sprintf("%s/%s", hook, fibField(flags)), func(t *testing.T) {
				fl := flavour{name: "cgroup", fam: ir.FamilyIPv4, hook: hook,
					tgt: Target{Type: CgroupSKB, Family: ir.FamilyIPv4, Hook: hook, ProtoFamily: ir.FamilyIPv4, Egress: egress}, l2: true}
				r := rule(eq(fibf(flags), addrType(ir.AddrLocal)), drop)
				tab, ch := table(ir.FamilyIPv4, hook, ir.VerdictAccept, []*ir.Rule{r})
				if flags&dev != 0 && vrfPossible() {
					if _, err := Compile(tab, ch, fl.tgt); err == nil {
						t.Fatal("compiled, want a refusal")
					}
					return
				}
				loadFlavour(t, fl, tab, ch)
			})
		}
	}
}

// TestFIBRefused checks the targets fib … type is refused at.
func TestFIBRefused(t *testing.T) {
	cases := []struct {
		name string
		tgt  Target
		want string
	}{
		{"xdp", Target{Type: XDP, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}, "only supported at netfilter hooks"},
		{"tc", Target{Type: TC, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}, "only supported at netfilter hooks"},
		{"cgroup-inet", Target{Type: CgroupSKB, Family: ir.FamilyInet, Hook: ir.HookInput, ProtoFamily: ir.FamilyInet}, "IPv6"},
		{"ipv6", Target{Type: Netfilter, Family: ir.FamilyInet, Hook: ir.HookInput, ProtoFamily: ir.FamilyIPv6}, "IPv6"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rule(eq(fibf(ir.FIBDaddr), addrType(ir.AddrLocal)), drop)
			tab, ch := table(c.tgt.Family, c.tgt.Hook, ir.VerdictAccept, []*ir.Rule{r})
			_, err := Compile(tab, ch, c.tgt)
			var ue *UnsupportedError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("compile: %v, want a refusal naming %q", err, c.want)
			}
		})
	}
}

// udp4To builds an IPv4/UDP packet (no Ethernet header) from src to dst.
func udp4To(src, dst netip.Addr) []byte {
	p := make([]byte, 28)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], 28)
	p[8] = 64
	p[9] = 17
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[20:], 1000)
	binary.BigEndian.PutUint16(p[22:], 2000)
	binary.BigEndian.PutUint16(p[24:], 8)
	return p
}

// fibTypeOf runs the programs (progs[t] accepts packets whose address is
// of type t) on a packet in the current namespace and returns the type.
func fibTypeOf(t *testing.T, fl flavour, progs []*Loaded, pkt []byte) (uint32, error) {
	got := -1
	frame := append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00}, pkt...)
	if !fl.l2 {
		frame = pkt
	}
	for typ, l := range progs {
		opts := &ebpf.RunOptions{Data: frame, Repeat: 1}
		if fl.tgt.Type == Netfilter {
			opts.Context = nfHookStateCtx(t, ir.FamilyIPv4, fl.hook)
		}
		ret, err := l.Program.Run(opts)
		if err != nil {
			return 0, err
		}
		v, err := VerdictOf(fl.tgt.Type, ret)
		if err != nil {
			return 0, err
		}
		if v == ir.VerdictAccept {
			if got >= 0 {
				return 0, fmt.Errorf("types %d and %d both match", got, typ)
			}
			got = typ
		}
	}
	if got < 0 {
		return 0, fmt.Errorf("no type matches")
	}
	return uint32(got), nil
}

// TestFIBTestRun answers fib daddr type with BPF_PROG_TEST_RUN in a
// scratch namespace (test_run's skb device is the caller's loopback), for
// netfilter (input and output) and cgroup_skb programs,
// for addresses of every kind, and again after routes and addresses
// change without reloading.
func TestFIBTestRun(t *testing.T) {
	privileged(t)
	ns, err := netnstest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	setup := []string{
		"link set lo up",
		"link add d0 type veth peer name d0p",
		"link set d0 up",
		"link set d0p up",
		"addr add 192.0.2.1/24 dev d0",
		"addr add 192.0.2.77/32 dev d0",
		"link add d1 type veth peer name d1p",
		"link set d1 up",
		"link set d1p up",
		"addr add 203.0.113.1/25 dev d1",
		"route add local 198.51.100.0/28 dev lo",
		"route add blackhole 203.0.113.200/32",
		"route add prohibit 203.0.113.201/32",
	}
	for _, c := range setup {
		if out, err := ns.Run("", "ip", strings.Fields(c)...); err != nil {
			t.Fatalf("ip %s: %v\n%s", c, err, out)
		}
	}
	fl := flavour{name: "nf-input", fam: ir.FamilyIPv4, hook: ir.HookInput,
		tgt: Target{Type: Netfilter, Family: ir.FamilyIPv4, Hook: ir.HookInput, ProtoFamily: ir.FamilyIPv4}, l2: true}
	cg := flavour{name: "cgroup-ingress", fam: ir.FamilyIPv4, hook: ir.HookInput,
		tgt: Target{Type: CgroupSKB, Family: ir.FamilyIPv4, Hook: ir.HookInput, ProtoFamily: ir.FamilyIPv4}, l2: true}
	out := flavour{name: "nf-output", fam: ir.FamilyIPv4, hook: ir.HookOutput,
		tgt: Target{Type: Netfilter, Family: ir.FamilyIPv4, Hook: ir.HookOutput, ProtoFamily: ir.FamilyIPv4}, l2: false}
	var progs, cgProgs, outProgs []*Loaded
	for typ := uint32(0); typ <= ir.AddrXResolve; typ++ {
		for _, p := range []struct {
			fl    flavour
			progs *[]*Loaded
		}{{fl, &progs}, {cg, &cgProgs}, {out, &outProgs}} {
			r := rule(eq(fibf(ir.FIBDaddr), addrType(typ)), accept)
			tab, ch := table(ir.FamilyIPv4, p.fl.hook, ir.VerdictDrop, []*ir.Rule{r})
			*p.progs = append(*p.progs, loadFlavour(t, p.fl, tab, ch))
		}
	}
	src := netip.MustParseAddr("192.0.2.9")
	check := func(t *testing.T, cases map[string]uint32) {
		t.Helper()
		for a, want := range cases {
			for _, p := range []struct {
				fl    flavour
				progs []*Loaded
			}{{fl, progs}, {cg, cgProgs}, {out, outProgs}} {
				var got uint32
				err := ns.Do(func() error {
					var err error
					got, err = fibTypeOf(t, p.fl, p.progs, udp4To(src, netip.MustParseAddr(a)))
					return err
				})
				if err != nil {
					t.Errorf("%s: %s: %v", p.fl.name, a, err)
					continue
				}
				if got != want {
					t.Errorf("%s: fib daddr type of %s: %s, want %s", p.fl.name, a, ir.AddrTypeName(got), ir.AddrTypeName(want))
				}
			}
		}
	}
	check(t, map[string]uint32{
		"192.0.2.1":       ir.AddrLocal,
		"192.0.2.77":      ir.AddrLocal,
		"192.0.2.255":     ir.AddrBroadcast,
		"192.0.2.0":       ir.AddrUnicast, // no network broadcast route since 5.x? see the twin test
		"192.0.2.50":      ir.AddrUnicast,
		"127.0.0.1":       ir.AddrLocal,
		"127.1.2.3":       ir.AddrLocal,
		"203.0.113.1":     ir.AddrLocal,
		"203.0.113.127":   ir.AddrBroadcast,
		"203.0.113.200":   ir.AddrUnicast,
		"203.0.113.201":   ir.AddrUnicast,
		"198.51.100.5":    ir.AddrLocal,
		"198.51.100.16":   ir.AddrUnicast,
		"255.255.255.255": ir.AddrBroadcast,
		"0.0.0.0":         ir.AddrBroadcast,
		"0.1.2.3":         ir.AddrUnicast,
		"224.0.0.1":       ir.AddrMulticast,
		"239.255.0.1":     ir.AddrMulticast,
		"198.51.100.200":  ir.AddrUnicast,
	})
	// The programs read the FIB as it is now: no reload.
	for _, c := range []string{
		"addr del 192.0.2.77/32 dev d0",
		"route add local 198.51.100.200/32 dev lo",
		"route del local 198.51.100.0/28 dev lo",
		"route add broadcast 203.0.113.100 dev d1 table local",
		"addr add 203.0.113.200/32 dev d1",
	} {
		if out, err := ns.Run("", "ip", strings.Fields(c)...); err != nil {
			t.Fatalf("ip %s: %v\n%s", c, err, out)
		}
	}
	check(t, map[string]uint32{
		"192.0.2.1":      ir.AddrLocal,
		"192.0.2.77":     ir.AddrUnicast,
		"198.51.100.200": ir.AddrLocal,
		"198.51.100.5":   ir.AddrUnicast,
		"203.0.113.100":  ir.AddrBroadcast,
		"203.0.113.1":    ir.AddrLocal,
		"203.0.113.200":  ir.AddrLocal,
	})
	// The cost of a lookup: the program answering local, run on
	// 0.0.0.0 (answered before any lookup: the test run's own cost), on
	// local addresses and on one without a route.
	for _, a := range []string{"0.0.0.0", "192.0.2.1", "127.0.0.1", "198.51.100.77"} {
		frame := append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00}, udp4To(src, netip.MustParseAddr(a))...)
		const n = 20000
		var d time.Duration
		err := ns.Do(func() error {
			start := time.Now()
			_, err := progs[ir.AddrLocal].Program.Run(&ebpf.RunOptions{Data: frame, Repeat: n, Context: nfHookStateCtx(t, ir.FamilyIPv4, fl.hook)})
			d = time.Since(start) / n
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("fib daddr type of %s: %v per run (%d runs)", a, d, n)
	}
}

// TestFIBSplit: a chain of fib rules long enough to be cut into
// tail-called parts answers in every part (each part's own prologue and
// lookup).
func TestFIBSplit(t *testing.T) {
	privileged(t)
	var rules []*ir.Rule
	for i := 0; i < 40; i++ {
		// Error route types: never an answer, so the packet goes on.
		rules = append(rules, rule(eq(fibf(ir.FIBDaddr), addrType(ir.AddrBlackhole+uint32(i%5))), drop))
	}
	rules = append(rules, rule(eq(fibf(ir.FIBDaddr), addrType(ir.AddrLocal)), drop))
	fl := flavour{name: "nf-input", fam: ir.FamilyIPv4, hook: ir.HookInput,
		tgt: Target{Type: Netfilter, Family: ir.FamilyIPv4, Hook: ir.HookInput, ProtoFamily: ir.FamilyIPv4}, l2: true}
	tab, ch := table(ir.FamilyIPv4, ir.HookInput, ir.VerdictAccept, rules)
	p, err := Compile(tab, ch, fl.tgt)
	if err != nil {
		t.Fatal(err)
	}
	if p.Parts() < 2 {
		t.Fatalf("%d parts, want the chain cut", p.Parts())
	}
	l := loadFlavour(t, fl, tab, ch)
	ns, err := netnstest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	if out, err := ns.Run("", "ip", "link", "set", "lo", "up"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	eth := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00}
	src := netip.MustParseAddr("192.0.2.1")
	ctx := nfHookStateCtx(t, ir.FamilyIPv4, fl.hook)
	for _, c := range []struct {
		dst  string
		want ir.VerdictKind
	}{{"127.0.0.1", ir.VerdictDrop}, {"224.0.0.1", ir.VerdictAccept}, {"0.0.0.0", ir.VerdictAccept}} {
		frame := append(append([]byte(nil), eth...), udp4To(src, netip.MustParseAddr(c.dst))...)
		var v ir.VerdictKind
		err := ns.Do(func() error {
			ret, err := l.Program.Run(&ebpf.RunOptions{Data: frame, Repeat: 1, Context: ctx})
			if err != nil {
				return err
			}
			v, err = VerdictOf(Netfilter, ret)
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", c.dst, err)
		}
		if v != c.want {
			t.Errorf("%s: %s, want %s", c.dst, vname(v), vname(c.want))
		}
	}
	t.Logf("%d rules in %d parts", len(rules), p.Parts())
}

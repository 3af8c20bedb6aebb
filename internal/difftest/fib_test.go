package difftest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pktgen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/translate/iptables"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// fibTwinAddrs are the addresses whose type the twin test asks for, and
// the type the kernel gives each in the namespace fibTwinSetup builds
// (phase 0); the test checks the BPF answers against the kernel's, and
// the kernel's against these.
var fibTwinAddrs = []struct {
	addr string
	want uint32
}{
	{"192.0.2.2", ir.AddrLocal},           // the receiver's own address (/24 on orx)
	{"192.0.2.255", ir.AddrBroadcast},     // its subnet broadcast
	{"192.0.2.0", ir.AddrUnicast},         // the subnet's network address (no broadcast route for it)
	{"192.0.2.50", ir.AddrUnicast},        // a neighbour
	{"192.0.2.77", ir.AddrLocal},          // a /32 on fa0
	{"203.0.113.1", ir.AddrLocal},         // a /25 on fa1
	{"203.0.113.127", ir.AddrBroadcast},   // its broadcast
	{"203.0.113.126", ir.AddrUnicast},     // a neighbour there
	{"203.0.113.200", ir.AddrUnicast},     // outside every route
	{"127.0.0.1", ir.AddrLocal},           // lo
	{"127.5.5.5", ir.AddrLocal},           // lo's /8
	{"198.51.100.5", ir.AddrLocal},        // the AnyIP route in main (local 198.51.100.0/28 dev lo)
	{"198.51.100.20", ir.AddrUnicast},     // beyond it
	{"198.51.100.60", ir.AddrLocal},       // local route through a nexthop object
	{"198.51.100.61", ir.AddrBroadcast},   // broadcast route through a nexthop object
	{"198.51.100.62", ir.AddrAnycast},     // anycast route through a nexthop group
	{"198.51.100.63", ir.AddrUnicast},     // local route through a blackhole nexthop: the lookup fails
	{"198.51.100.64", ir.AddrUnicast},     // unicast route through a group, in the local table
	{"198.51.100.70", ir.AddrUnicast},     // unreachable route in the local table: the lookup fails
	{"198.51.100.81", ir.AddrUnicast},     // throw route in the local table
	{"198.51.100.90", ir.AddrLocal},       // local route, a longer prefix under a throw
	{"255.255.255.255", ir.AddrBroadcast}, // limited broadcast
	{"0.0.0.0", ir.AddrBroadcast},         // zeronet
	{"0.1.2.3", ir.AddrUnicast},           // 0.0.0.0/8 is unicast: ipv4_is_zeronet is 0.0.0.0 only
	{"224.0.0.1", ir.AddrMulticast},
	{"239.1.2.3", ir.AddrMulticast},
}

var fibTwinSetup = []string{
	"link add fa0 type veth peer name fa0p",
	"link add fa1 type veth peer name fa1p",
	"link set fa0 up", "link set fa0p up", "link set fa1 up", "link set fa1p up",
	"addr add 192.0.2.77/32 dev fa0",
	"addr add 203.0.113.1/25 dev fa1",
	"route add local 198.51.100.0/28 dev lo",
	"nexthop add id 71 dev fa0",
	"nexthop add id 72 dev fa1",
	"nexthop add id 73 blackhole",
	"nexthop add id 74 group 71/72",
	"route add local 198.51.100.60 nhid 71 table local",
	"route add broadcast 198.51.100.61 nhid 72 table local",
	"route add anycast 198.51.100.62 nhid 74 table local",
	"route add local 198.51.100.63 nhid 73 table local",
	"route add 198.51.100.64 nhid 74 table local",
	"route add unreachable 198.51.100.70 table local",
	"route add throw 198.51.100.80/28 table local",
	"route add local 198.51.100.90/31 dev lo table local",
}

// fibTwinPhases change addresses and routes while the programs stay as
// they are: the answers must follow the kernel's FIB.
var fibTwinPhases = [][]string{
	nil,
	{
		"addr del 192.0.2.77/32 dev fa0",
		"addr add 198.51.100.20/32 dev fa0",
		"route del local 198.51.100.0/28 dev lo",
		"route add local 198.51.100.0/29 dev lo",
		"addr add 203.0.113.129/25 dev fa0",
		"route del 198.51.100.64 nhid 74 table local",
	},
	{
		// A policy rule splits the local table from main (fib_unmerge):
		// main's AnyIP route stops counting.
		"rule add from 198.51.100.222 table 100",
		// A link down: fa1's routes get RTNH_F_LINKDOWN, which counts
		// once ignore_routes_with_linkdown is set.
		"link set fa1p down",
	},
	{"sysctl:net.ipv4.conf.all.ignore_routes_with_linkdown=1"},
}

// fibTwinRulesets ask for one bit of the type of the destination (or
// source) address each; the types a lookup can answer are unicast (1) to
// multicast (5).
func fibTwinRulesets(addr string) []string {
	bits := [][]string{{"unicast", "broadcast", "multicast"}, {"local", "broadcast"}, {"anycast", "multicast"}}
	var out []string
	for _, names := range bits {
		out = append(out, fmt.Sprintf("table ip fibtwin {\n\tchain pre {\n\t\ttype filter hook prerouting priority 0; policy drop;\n\t\tfib %s type { %s } accept\n\t}\n}\n", addr, strings.Join(names, ", ")))
	}
	// One single compare, negated, as iptables' ! --dst-type LOCAL.
	out = append(out, fmt.Sprintf("table ip fibtwin {\n\tchain pre {\n\t\ttype filter hook prerouting priority 0; policy accept;\n\t\tfib %s type != local drop\n\t}\n}\n", addr))
	return out
}

func nsIP(nsf *os.File, args ...string) error {
	var cmd *exec.Cmd
	if len(args) == 1 && strings.HasPrefix(args[0], "sysctl:") {
		cmd = exec.Command("nsenter", "--net=/proc/self/fd/3", "sysctl", "-qw", strings.TrimPrefix(args[0], "sysctl:"))
	} else {
		cmd = exec.Command("nsenter", append([]string{"--net=/proc/self/fd/3", "ip"}, args...)...)
	}
	cmd.ExtraFiles = []*os.File{nsf}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// fibTypes asks the kernel's nftables and the attached netfilter programs
// (one ruleset per bit of the type, see fibTwinRulesets) for the type of
// the side ("daddr" or "saddr") address of each of addrs at the oracle's
// prerouting hook; a verdict that differs is an error. It returns the
// types the kernel gave and the number of verdicts compared.
func fibTypes(t *testing.T, o *oracle.Oracle, ns *nsctx.NetNS, side string, addrs []string, what string) ([]uint32, int) {
	t.Helper()
	frame := func(src, dst string) []byte {
		return packet.MustBuild(&packet.Ethernet{Dst: o.ReceiverMAC(), Src: o.SenderMAC()},
			&packet.IPv4{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst)},
			&packet.UDP{SrcPort: 1000, DstPort: 2000}, packet.Payload("x"))
	}
	var cases []pktgen.Case
	for _, a := range addrs {
		f := frame(oracle.SenderIPv4.String(), a)
		if side == "saddr" {
			f = frame(a, oracle.ReceiverIPv4.String())
		}
		cases = append(cases, pktgen.Case{Name: a, Frame: f})
	}
	typ := codegen.Netfilter
	types := make([]uint32, len(cases))
	compared := 0
	for bit, rs := range fibTwinRulesets(side) {
		res, err := pipeline.TranslateReader("fibtwin", strings.NewReader(rs), pipeline.Options{Type: &typ, NetNS: ns})
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Err(); err != nil {
			t.Fatalf("%s: %v", rs, err)
		}
		if err := o.Load(rs); err != nil {
			t.Fatal(err)
		}
		kernel := make([]oracle.Result, len(cases))
		for i, c := range cases {
			if kernel[i], err = o.Verdict(c.Frame); err != nil {
				t.Fatal(err)
			}
		}
		got, err := attachedVerdicts(o, ns, res, ir.HookPrerouting, cases)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range cases {
			compared++
			if kernel[i] == oracle.NotReached {
				t.Errorf("%s, fib %s of %s: the frame never reached prerouting", what, side, c.Name)
				continue
			}
			if got[i] != kernel[i] {
				t.Errorf("%s, %q, fib %s of %s: kernel %s, BPF %s", what, strings.TrimSpace(strings.Split(rs, "\n")[3]), side, c.Name, kernel[i], got[i])
			}
			if bit < 3 && kernel[i] == oracle.Accepted {
				types[i] |= 1 << bit
			}
		}
	}
	return types, compared
}

// TestFIBTwin compares fib daddr type and fib saddr type as the kernel's
// nftables and the attached netfilter programs answer them, in the same
// namespace, for addresses of every kind (own addresses on several
// devices, /32 and /24, lo, subnet and limited broadcast, zeronet,
// multicast, foreign unicast, an AnyIP route, nexthop objects and groups,
// error routes), and again after addresses, routes, policy rules and link
// states change (no reload: the programs read the FIB live).
func TestFIBTwin(t *testing.T) {
	privtest.Require(t)
	o, err := oracle.New(oracle.Config{Hook: ir.HookPrerouting})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	ns, err := receiverNS(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	nsf := o.ReceiverNetNS()
	for _, c := range fibTwinSetup {
		if err := nsIP(nsf, strings.Fields(c)...); err != nil {
			t.Fatal(err)
		}
	}
	var addrs []string
	for _, a := range fibTwinAddrs {
		addrs = append(addrs, a.addr)
	}
	compared := 0
	for phase, changes := range fibTwinPhases {
		for _, c := range changes {
			if err := nsIP(nsf, strings.Fields(c)...); err != nil {
				t.Fatal(err)
			}
		}
		for _, side := range []string{"daddr", "saddr"} {
			types, n := fibTypes(t, o, ns, side, addrs, fmt.Sprintf("phase %d", phase))
			compared += n
			if phase != 0 {
				continue
			}
			for i, a := range fibTwinAddrs {
				if types[i] != a.want {
					t.Errorf("fib %s type of %s: the kernel says %s, the test expects %s", side, a.addr, ir.AddrTypeName(types[i]), ir.AddrTypeName(a.want))
				}
			}
		}
	}
	t.Logf("%d (frame, ruleset, phase) verdicts compared", compared)
}

// TestFIBTwinManyRoutes compares fib daddr type with the kernel's over
// every address of 198.51.100.0/24 and 203.0.113.0/24 after 600 random
// routes of every type and prefix length from /20 to /32 (nested and
// overlapping, in the local and main tables; three seeds) have made the
// trie deep, with tnodes of several bits and long backtracking.
func TestFIBTwinManyRoutes(t *testing.T) {
	privtest.Require(t)
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) { fibManyRoutes(t, seed) })
	}
}

func fibManyRoutes(t *testing.T, seed uint64) {
	o, err := oracle.New(oracle.Config{Hook: ir.HookPrerouting})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	ns, err := receiverNS(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	nsf := o.ReceiverNetNS()
	for _, c := range fibTwinSetup[:6] { // the devices fa0, fa1
		if err := nsIP(nsf, strings.Fields(c)...); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	types := []string{"local", "broadcast", "anycast", "unicast", "blackhole", "unreachable", "prohibit", "throw", "multicast"}
	nets := []uint32{0xc6336400, 0xcb007100} // 198.51.100.0, 203.0.113.0
	var batch strings.Builder
	seen := map[string]bool{}
	for len(seen) < 600 {
		plen := 20 + rng.IntN(13)
		base := nets[rng.IntN(2)]
		if plen < 24 {
			base &^= 1<<(32-plen) - 1
		} else {
			base |= uint32(rng.IntN(256)) &^ (1<<(32-plen) - 1)
		}
		prefix := fmt.Sprintf("%d.%d.%d.%d/%d", base>>24, base>>16&0xff, base>>8&0xff, base&0xff, plen)
		typ := types[rng.IntN(len(types))]
		table := "local"
		if rng.IntN(3) == 0 {
			table = "main"
		}
		key := prefix + " " + table
		if seen[key] {
			continue
		}
		seen[key] = true
		dev := " dev fa0"
		switch typ {
		case "blackhole", "unreachable", "prohibit", "throw":
			dev = ""
		}
		fmt.Fprintf(&batch, "route add %s %s%s table %s\n", typ, prefix, dev, table)
	}
	cmd := exec.Command("nsenter", "--net=/proc/self/fd/3", "ip", "-batch", "-")
	cmd.ExtraFiles = []*os.File{nsf}
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v: %s", err, out)
	}
	var addrs []string
	for _, n := range nets {
		for i := uint32(0); i < 256; i++ {
			a := n | i
			addrs = append(addrs, fmt.Sprintf("%d.%d.%d.%d", a>>24, a>>16&0xff, a>>8&0xff, a&0xff))
		}
	}
	got, compared := fibTypes(t, o, ns, "daddr", addrs, "600 routes")
	hist := map[string]int{}
	for _, ty := range got {
		hist[ir.AddrTypeName(ty)]++
	}
	if len(hist) < 4 {
		t.Errorf("the kernel's answers %v: want at least four types", hist)
	}
	t.Logf("%d verdicts compared; the kernel's types: %v", compared, hist)
}

// addrtypeScripts are iptables-restore scripts with -m addrtype, loaded
// with iptables-nft-restore (the kernel's own xt_addrtype) and with
// bpfilter-nft (fib … type in netfilter programs) at the input hook.
var addrtypeScripts = []string{
	"-A INPUT -m addrtype --dst-type LOCAL -j DROP",
	"-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in -j DROP",
	"-A INPUT -m addrtype ! --dst-type BROADCAST,MULTICAST -j DROP",
	"-A INPUT -m addrtype --src-type LOCAL -j DROP",
	"-A INPUT -m addrtype --src-type UNICAST --dst-type LOCAL --limit-iface-in -j DROP",
	// ufw's before.rules: ufw-not-local returns for local, multicast
	// and broadcast destinations and drops the rest.
	"-N ufw-not-local\n-A INPUT -j ufw-not-local\n-A INPUT -m addrtype --dst-type BROADCAST -j DROP\n" +
		"-A ufw-not-local -m addrtype --dst-type LOCAL -j RETURN\n-A ufw-not-local -m addrtype --dst-type MULTICAST -j RETURN\n" +
		"-A ufw-not-local -m addrtype --dst-type BROADCAST -j RETURN\n-A ufw-not-local -j DROP",
}

// TestAddrtypeTwin compares iptables' -m addrtype as the kernel's
// xt_addrtype (loaded by iptables-nft-restore) and the netfilter programs
// bpfilter-nft compiles from the same script answer it, on frames from
// and to addresses of several types, the input device restriction
// included (an address local on another device is unicast through it).
func TestAddrtypeTwin(t *testing.T) {
	privtest.Require(t)
	const tool = "iptables-nft-restore"
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("privileged: %s not installed", tool)
	}
	o, err := oracle.New(oracle.Config{Hook: ir.HookInput})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	ns, err := receiverNS(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	nsf := o.ReceiverNetNS()
	// Local sources are accepted (not martians), so that --src-type
	// LOCAL sees them at input.
	setup := append(append([]string(nil), fibTwinSetup...),
		"sysctl:net.ipv4.conf.all.accept_local=1", "sysctl:net.ipv4.conf.orx.accept_local=1")
	for _, c := range setup {
		if err := nsIP(nsf, strings.Fields(c)...); err != nil {
			t.Fatal(err)
		}
	}
	var cases []pktgen.Case
	for _, src := range []string{oracle.SenderIPv4.String(), "198.51.100.20", "192.0.2.77", "203.0.113.1"} {
		for _, dst := range []string{"192.0.2.2", "192.0.2.255", "255.255.255.255", "224.0.0.1", "192.0.2.77",
			"203.0.113.1", "203.0.113.127", "198.51.100.5", "198.51.100.60", "198.51.100.90"} {
			cases = append(cases, pktgen.Case{Name: src + " > " + dst, Frame: packet.MustBuild(
				&packet.Ethernet{Dst: o.ReceiverMAC(), Src: o.SenderMAC()},
				&packet.IPv4{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst)},
				&packet.UDP{SrcPort: 1000, DstPort: 2000}, packet.Payload("x"))})
		}
	}
	typ := codegen.Netfilter
	counts := map[oracle.Result]int{}
	compared := 0
	for _, body := range addrtypeScripts {
		script := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" + body + "\nCOMMIT\n"
		t.Run(strings.SplitN(body, "\n", 2)[0], func(t *testing.T) {
			rs, err := iptables.Restore(strings.NewReader(script), iptables.Options{Family: nlmsg.FamilyIPv4})
			if err != nil {
				t.Fatal(err)
			}
			res, err := pipeline.Translate(rs, pipeline.Options{Type: &typ, NetNS: ns})
			if err != nil {
				t.Fatal(err)
			}
			if err := res.Err(); err != nil {
				t.Fatal(err)
			}
			if err := o.Load(""); err != nil {
				t.Fatal(err)
			}
			err = ns.Do(func() error {
				cmd := exec.Command(tool)
				cmd.Stdin = strings.NewReader(script)
				if out, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("%s: %v: %s", tool, err, out)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			kernel := make([]oracle.Result, len(cases))
			for i, c := range cases {
				if kernel[i], err = o.Verdict(c.Frame); err != nil {
					t.Fatal(err)
				}
			}
			got, err := attachedVerdicts(o, ns, res, ir.HookInput, cases)
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range cases {
				compared++
				counts[kernel[i]]++
				if got[i] != kernel[i] {
					t.Errorf("%s: kernel %s, BPF %s", c.Name, kernel[i], got[i])
				}
			}
		})
	}
	if counts[oracle.Accepted] == 0 || counts[oracle.Dropped] == 0 {
		t.Errorf("kernel verdicts %v: want both accepted and dropped frames", counts)
	}
	t.Logf("%d verdicts compared, kernel %v", compared, counts)
}

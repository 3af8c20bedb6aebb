package codegen

import (
	"fmt"
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// benchTarget is one program type BenchmarkRun measures.
type benchTarget struct {
	name string
	tgt  Target
	fam  ir.Family
	// l2 says whether the program gets an Ethernet frame (else an IP
	// packet).
	l2 bool
}

// benchTargets has one target per program type. Netfilter programs run at
// LOCAL_OUT for IPv4, the hook BPF_PROG_TEST_RUN uses without a context.
var benchTargets = []benchTarget{
	{"XDP", Target{Type: XDP, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}, ir.FamilyNetdev, true},
	{"TC", Target{Type: TC, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev}, ir.FamilyNetdev, true},
	{"Netfilter", Target{Type: Netfilter, Family: ir.FamilyIPv4, Hook: ir.HookOutput, ProtoFamily: ir.FamilyIPv4}, ir.FamilyIPv4, false},
	{"CgroupSKB", Target{Type: CgroupSKB, Family: ir.FamilyIPv4, Hook: ir.HookInput, ProtoFamily: ir.FamilyIPv4}, ir.FamilyIPv4, true},
}

// benchSizes are the chain lengths BenchmarkRun compares.
var benchSizes = []int{0, 10, 100, 1000}

// benchRules returns n rules "ip saddr 198.51.100.X tcp dport Y drop" as
// nft writes them for the table family (netdev tables test the protocol
// first).
func benchRules(fam ir.Family, n int) []*ir.Rule {
	var rules []*ir.Rule
	for i := 0; i < n; i++ {
		var s []ir.Stmt
		if fam == ir.FamilyNetdev {
			s = append(s, eq(meta(ir.MetaProtocol), u16(ethPIP)))
		}
		s = append(s,
			eq(nh(12, 4), ip4(198, 51, 100, byte(1+i%254))),
			eq(meta(ir.MetaL4Proto), b(protoTCP)),
			eq(th(2, 2), u16(uint16(1000+i))),
			drop,
		)
		rules = append(rules, rule(s...))
	}
	return rules
}

// benchRepeat is how often one BPF_PROG_TEST_RUN call runs a program of n
// rules: about 20 ms of work, if a rule costs 10 ns.
func benchRepeat(n int) int {
	return 20_000_000 / (25 + 10*n)
}

// BenchmarkRun measures the time per packet of programs with 0 to 1000
// rules that all miss, so that every rule is evaluated and the policy
// decides. Each measurement runs the program BPF_PROG_TEST_RUN's Repeat
// times in the kernel and is paired with one of the same type's empty
// program, whose ratio is reported as x-empty.
func BenchmarkRun(b *testing.B) {
	privileged(b)
	// 192.0.2.1 → 198.51.100.2, tcp dport 80: no rule matches.
	frame := eth(ethPIP, v4{proto: protoTCP}.build(tcp(40000, 80, 0x02)))
	for _, bt := range benchTargets {
		b.Run(bt.name, func(b *testing.B) {
			progs := map[int]*Loaded{}
			for _, n := range benchSizes {
				progs[n] = loadBench(b, bt, n)
			}
			data := frame
			if !bt.l2 {
				data = frame[14:]
			}
			for _, n := range benchSizes {
				b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
					repeat := benchRepeat(n)
					var prog, empty time.Duration
					for i := 0; i < b.N; i++ {
						prog += runBench(b, bt, progs[n], data, repeat)
						empty += runBench(b, bt, progs[0], data, benchRepeat(0))
					}
					b.ReportMetric(float64(prog.Nanoseconds())/float64(b.N), "ns/packet")
					b.ReportMetric(float64(prog)/float64(empty), "x-empty")
				})
			}
		})
	}
}

// loadBench compiles and loads the n-rule chain for bt.
func loadBench(b *testing.B, bt benchTarget, n int) *Loaded {
	b.Helper()
	tab, c := table(bt.fam, bt.tgt.Hook, ir.VerdictAccept, benchRules(bt.fam, n))
	p, err := Compile(tab, c, bt.tgt)
	if err != nil {
		b.Fatalf("compile %d rules: %v", n, err)
	}
	l, err := p.Load()
	if err != nil {
		b.Fatalf("load %d rules: %v", n, err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

// runBench runs l repeat times on data and returns the time per run. It
// fails unless the policy accepted the packet.
func runBench(b *testing.B, bt benchTarget, l *Loaded, data []byte, repeat int) time.Duration {
	ret, per, err := l.Program.Benchmark(data, repeat, nil)
	if err != nil {
		b.Fatal(err)
	}
	if v, err := VerdictOf(bt.tgt.Type, ret); err != nil || v != ir.VerdictAccept {
		b.Fatalf("verdict %d (%v), want the accept policy", ret, err)
	}
	return per
}

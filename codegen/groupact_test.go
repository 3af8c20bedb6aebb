package codegen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// actionOpts says which statements a flavour's programs can carry.
type actionOpts struct {
	marks  bool // meta mark set (tc, cgroup_skb)
	reject bool // reject (tc at netdev ingress)
	chains int  // user chains "c0"… jumped to
	state  bool // limit and quota
}

// randomActionRuleset returns a base chain whose rules come in runs of
// one shape with few distinct keys and have the actions groups now take:
// counters without verdict, logs with and without verdict, marks, jumps
// to many chains, gotos, rejects; then, where marks are set, one counting
// rule per mark, so that the marks a packet leaves with show in the
// counters.
func randomActionRuleset(rng *rand.Rand, n, runMax int, o actionOpts) ([]*ir.Rule, []*ir.Chain) {
	logStmt := func() *ir.Log {
		k := rng.IntN(3)
		return &ir.Log{Prefix: fmt.Sprintf("p%d ", k), HasPrefix: true, Level: uint32(4 + k%2), HasLevel: true}
	}
	mark := func() *ir.MetaSet {
		return &ir.MetaSet{Key: ir.MetaMark, Value: u32le(uint32(1 + rng.IntN(3)))}
	}
	limit := func() *ir.Limit {
		return &ir.Limit{Rate: 1, Unit: ir.LimitHour, Burst: uint32(1 + rng.IntN(2)), Over: rng.IntN(2) == 0}
	}
	quota := func() *ir.Quota {
		return &ir.Quota{Bytes: uint64(100 + 50*rng.IntN(3)), Over: rng.IntN(2) == 0}
	}
	stmts := func() []ir.Stmt {
		switch k := rng.IntN(14); {
		case k == 0 && o.state:
			return []ir.Stmt{limit(), counter, drop}
		case k == 1 && o.state:
			return []ir.Stmt{counter, limit(), logStmt(), accept}
		case k == 2 && o.state:
			return []ir.Stmt{quota(), counter}
		case k == 3 && o.state:
			return []ir.Stmt{quota(), drop}
		}
		var s []ir.Stmt
		if rng.IntN(2) == 0 {
			s = append(s, counter)
		}
		for {
			switch k := rng.IntN(11); {
			case k == 0:
				return append(s, logStmt(), drop)
			case k == 1:
				return append(s, logStmt())
			case k == 2 && o.marks:
				return append(s, mark(), accept)
			case k == 3 && o.marks:
				return append(s, mark(), logStmt())
			case k == 4:
				return append(s, jump(fmt.Sprintf("c%d", rng.IntN(o.chains))))
			case k == 5:
				return append(s, gotoV(fmt.Sprintf("c%d", rng.IntN(o.chains))))
			case k == 6 && o.reject:
				return append(s, &ir.Reject{Type: ir.RejectICMPXUnreach, Code: uint8(rng.IntN(4))})
			case k == 7:
				return append(s, contin)
			case k == 8:
				if len(s) > 0 {
					return s
				}
			case k == 9:
				return append(s, accept)
			case k == 10:
				return append(s, drop)
			}
		}
	}
	var rules []*ir.Rule
	for len(rules) < n {
		runLen := 1 + rng.IntN(runMax)
		shape := rng.IntN(3)
		for i := 0; i < runLen && len(rules) < n; i++ {
			switch shape {
			case 0:
				rules = append(rules, saddrPort(byte(1+rng.IntN(5)), uint16(19+rng.IntN(7)), stmts()...))
			case 1:
				rules = append(rules, udpPort(uint16(19+rng.IntN(7)), stmts()...))
			default:
				rules = append(rules, dnet(byte(rng.IntN(12)), stmts()...))
			}
		}
	}
	if o.marks {
		for m := uint32(1); m <= 3; m++ {
			rules = append(rules, rule(eq(meta(ir.MetaMark), u32le(m)), counter))
		}
	}
	var user []*ir.Chain
	for i := 0; i < o.chains; i++ {
		user = append(user, &ir.Chain{Name: fmt.Sprintf("c%d", i), Rules: []*ir.Rule{
			udpPort(uint16(19+i%7), counter, drop),
			rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), counter),
		}})
	}
	return rules, user
}

// logRecord is what a test compares of a log event.
type logRecord struct {
	handle uint64
	prefix string
	level  byte
	len    uint32
}

// drainEvents reads the events waiting in rd.
func drainEvents(t *testing.T, rd *ringbuf.Reader) []logRecord {
	t.Helper()
	var out []logRecord
	for rd != nil {
		rd.SetDeadline(time.Now().Add(time.Millisecond))
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b := rec.RawSample
		if len(b) != LogEventLen {
			t.Fatalf("event of %d bytes", len(b))
		}
		p := b[EvPrefix : EvPrefix+LogPrefixLen]
		out = append(out, logRecord{
			handle: binary.LittleEndian.Uint64(b[EvHandle:]),
			prefix: string(p[:bytes.IndexByte(p, 0)]),
			level:  b[EvLevel],
			len:    binary.LittleEndian.Uint32(b[EvLen:]),
		})
	}
	return nil
}

// runRaw runs a program on frame and returns its return value and the
// packet as it leaves (a reject's reply).
func runRaw(t *testing.T, fl flavour, l *Loaded, frame []byte) (int32, []byte) {
	t.Helper()
	data := frame
	opts := &ebpf.RunOptions{Repeat: 1}
	if fl.tgt.Type == Netfilter {
		opts.Context = nfHookStateCtx(t, fl.tgt.ProtoFamily, fl.hook)
		if !fl.l2 {
			data = frame[14:]
		}
	}
	opts.Data = data
	opts.DataOut = make([]byte, len(data)+256)
	ret, err := l.Program.Run(opts)
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return int32(ret), opts.DataOut
}

// TestGroupActionsMatchLinear compiles random rulesets whose rules have
// counters without verdicts, logs, marks, rejects, jumps to 24 chains and
// gotos, as rule groups and as straight-line code, and requires for every
// frame the same return value, the same packet out, the same log events
// (rule handle, prefix, level, length) and at the end the same counters
// (which include the marks the packets left with), on every program type.
func TestGroupActionsMatchLinear(t *testing.T) {
	privileged(t)
	frames := groupTestFrames()
	var fls []flavour
	for _, fl := range allFlavours(ir.FamilyIPv4) {
		switch fl.name {
		case "xdp", "tc-ingress", "nf-input", "cgroup-ingress":
			fls = append(fls, fl)
		}
	}
	totals := map[string]int{}
	t.Cleanup(func() {
		if !t.Failed() && (totals["events"] == 0 || totals["counters"] == 0 || totals["actions>16"] == 0 || totals["resuming"] == 0 || totals["stateful"] == 0 || totals["one outcome"] > 2) {
			t.Errorf("the rulesets did not exercise the group actions: %v", totals)
		}
	})
	for seed := uint64(1); seed <= 6; seed++ {
		for _, fl := range fls {
			o := actionOpts{chains: 24, state: seed%2 == 1}
			o.marks = fl.tgt.Type == TC || fl.tgt.Type == CgroupSKB
			o.reject = fl.tgt.Type == TC
			rng := rand.New(rand.NewPCG(seed, 7))
			rules, user := randomActionRuleset(rng, 100, 24, o)
			t.Run(fmt.Sprintf("seed%d/%s", seed, fl.name), func(t *testing.T) {
				tab, c := table(fl.fam, fl.hook, ir.VerdictAccept, rules, user...)
				tab.Family, c.Base.Hook = fl.fam, fl.hook
				load := func(opts Options) (*Loaded, *Program, *ringbuf.Reader) {
					p, err := CompileWith(tab, c, fl.tgt, opts)
					if err != nil {
						t.Fatalf("compile: %v", err)
					}
					l, err := p.Load()
					if err != nil {
						t.Fatalf("load: %v", err)
					}
					t.Cleanup(func() { l.Close() })
					if l.Events == nil {
						return l, p, nil
					}
					rd, err := ringbuf.NewReader(l.Events)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { rd.Close() })
					return l, p, rd
				}
				lin, linP, linR := load(Options{Linear: true})
				grp, grpP, grpR := load(Options{GroupMin: 2})
				if len(grpP.Groups) == 0 {
					t.Fatal("no rule groups formed")
				}
				for _, a := range grpP.Annotations {
					var rules, maps, keys, actions int
					var h1, h2 uint64
					if _, err := fmt.Sscanf(a.Text, "group of %d rules (handles %d…%d) in %d hash lookups (%d keys, %d actions)", &rules, &h1, &h2, &maps, &keys, &actions); err == nil && actions > 16 {
						totals["actions>16"]++
					}
				}
				for _, gm := range grpP.Groups {
					for _, h := range gm.Handles {
						for _, r := range rules {
							if r.Handle == h {
								if gr, ok := asGroupRule(r); ok && gr.resumes() {
									totals["resuming"]++
								}
								if gr, ok := asGroupRule(r); ok && gr.state >= 0 {
									totals["stateful"]++
								}
							}
						}
					}
				}
				rets := map[int32]int{}
				for i, f := range frames {
					wantRet, wantOut := runRaw(t, fl, lin, f)
					gotRet, gotOut := runRaw(t, fl, grp, f)
					if gotRet != wantRet || !bytes.Equal(gotOut, wantOut) {
						t.Errorf("frame %d (%x): grouped returns %d (%x), linear %d (%x)", i, f, gotRet, gotOut, wantRet, wantOut)
					}
					rets[wantRet]++
					want, got := drainEvents(t, linR), drainEvents(t, grpR)
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Errorf("frame %d: grouped logs %v, linear %v", i, got, want)
					}
					totals["events"] += len(want)
				}
				nonzero := sameCounters(t, lin, linP, grp, grpP)
				totals["counters"] += nonzero
				if len(rets) < 2 {
					totals["one outcome"]++
				}
				t.Logf("%d frames, %d groups, return values %v, %d counters hit", len(frames), len(grpP.Groups), rets, nonzero)
			})
		}
	}
	t.Logf("totals %v", totals)
}

// TestGroupDispatch: 1,000 rules, each jumping to a chain of its own,
// form a few groups of hundreds of actions each (found by binary
// search; the chains' code is bounded per group), give every rule's
// packet its chain's verdict and counter, on XDP and netfilter, and their
// code stays smaller than the straight-line code of the same rules.
func TestGroupDispatch(t *testing.T) {
	const n = 1000
	var rules []*ir.Rule
	var user []*ir.Chain
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("c%d", i)
		rules = append(rules, udpPort(uint16(1000+i), counter, jump(name)))
		v := accept
		if i%3 == 0 {
			v = drop
		}
		user = append(user, &ir.Chain{Name: name, Rules: []*ir.Rule{rule(eq(meta(ir.MetaL4Proto), b(protoUDP)), counter, v)}})
	}
	rules = append(rules, rule(eq(meta(ir.MetaL4Proto), b(protoUDP)), counter, drop))
	for _, fl := range []flavour{netdevFlavours()[0], ipFlavours(ir.FamilyIPv4)[1]} {
		t.Run(fl.name, func(t *testing.T) {
			tab, c := table(fl.fam, fl.hook, ir.VerdictAccept, rules, user...)
			p, err := CompileWith(tab, c, fl.tgt, Options{})
			if err != nil {
				t.Fatal(err)
			}
			keys := 0
			for _, gm := range p.Groups {
				keys += len(gm.Keys)
			}
			if len(p.Groups) > 8 || keys < n-8*DefaultGroupMin {
				t.Fatalf("%d groups of %d keys, want at most 8 of nearly %d", len(p.Groups), keys, n)
			}
			most := 0
			for _, a := range p.Annotations {
				var rules, maps, keys, actions int
				var h1, h2 uint64
				if _, err := fmt.Sscanf(a.Text, "group of %d rules (handles %d…%d) in %d hash lookups (%d keys, %d actions)", &rules, &h1, &h2, &maps, &keys, &actions); err == nil {
					most = max(most, actions)
				}
			}
			if most < 100 {
				t.Errorf("the largest group has %d actions", most)
			}
			lin, err := CompileWith(tab, c, fl.tgt, Options{Linear: true})
			if err != nil {
				t.Fatal(err)
			}
			gi, _ := p.joinTail()
			li, _ := lin.joinTail()
			if len(gi) >= len(li) {
				t.Errorf("%d instructions grouped, %d straight-line", len(gi), len(li))
			}
			privileged(t)
			t0 := time.Now()
			l := loadFlavour(t, fl, tab, c)
			t.Logf("%d groups (up to %d actions), %d instructions (%d parts, loaded in %v), %d straight-line (%d parts)", len(p.Groups), most, len(gi), p.Parts(), time.Since(t0), len(li), lin.Parts())
			for _, i := range []int{0, 1, 2, 3, 499, 500, 998, 999} {
				want := ir.VerdictAccept
				if i%3 == 0 {
					want = ir.VerdictDrop
				}
				if got := run(t, fl, l, udp4(uint16(1000+i))); got != want {
					t.Errorf("rule %d: %s, want %s", i, vname(got), vname(want))
				}
			}
			if got := run(t, fl, l, udp4(999)); got != ir.VerdictDrop {
				t.Errorf("no rule: %s, want the last rule's drop", vname(got))
			}
			vals, err := l.ReadCounters()
			if err != nil {
				t.Fatal(err)
			}
			hit := 0
			for i, s := range p.CounterSlots {
				if vals[i].Packets > 0 {
					hit++
				}
				if s.Chain == "c499" && vals[i].Packets != 1 {
					t.Errorf("chain c499's counter %d", vals[i].Packets)
				}
			}
			if hit != 2*8+1 {
				t.Errorf("%d counters counted, want %d", hit, 2*8+1)
			}
		})
	}
}

// BenchmarkGroupDispatch measures, on XDP, the packet of the last of
// 1,000 rules that each jump to a chain of their own (grouped: a few
// lookups and a binary search over hundreds of action blocks each;
// straight-line: every rule's compare) and a packet no rule matches.
func BenchmarkGroupDispatch(bm *testing.B) {
	privileged(bm)
	const n = 1000
	var rules []*ir.Rule
	var user []*ir.Chain
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("c%d", i)
		rules = append(rules, udpPort(uint16(1000+i), jump(name)))
		user = append(user, &ir.Chain{Name: name, Rules: []*ir.Rule{rule(eq(meta(ir.MetaL4Proto), b(protoUDP)), counter, drop)}})
	}
	fl := netdevFlavours()[0]
	for _, mode := range []string{"grouped", "linear"} {
		tab, c := table(fl.fam, fl.hook, ir.VerdictAccept, rules, user...)
		p, err := CompileWith(tab, c, fl.tgt, Options{Linear: mode == "linear"})
		if err != nil {
			bm.Fatal(err)
		}
		l, err := p.Load()
		if err != nil {
			bm.Fatal(err)
		}
		for _, f := range []struct {
			name  string
			frame []byte
			want  ir.VerdictKind
		}{{"last", udp4(1000 + n - 1), ir.VerdictDrop}, {"miss", udp4(999), ir.VerdictAccept}} {
			bm.Run(mode+"/"+f.name, func(bm *testing.B) {
				ret, per, err := l.Program.Benchmark(f.frame, bm.N, nil)
				if err != nil {
					bm.Fatal(err)
				}
				if v, _ := VerdictOf(XDP, ret); v != f.want {
					bm.Fatalf("verdict %s, want %s", vname(v), vname(f.want))
				}
				bm.ReportMetric(float64(per.Nanoseconds()), "ns/packet")
			})
		}
		l.Close()
	}
}

// TestGroupStateShared loads a group of quota rules with LoadWith, its
// state slots moved to chosen slots of a larger state map, and checks
// that each rule's packets are consumed in exactly its slot.
func TestGroupStateShared(t *testing.T) {
	privileged(t)
	var rules []*ir.Rule
	for i := 0; i < 10; i++ {
		rules = append(rules, udpPort(uint16(100+i), &ir.Quota{Bytes: 1 << 20}, counter, drop))
	}
	fl := netdevFlavours()[0]
	tab, c := table(fl.fam, fl.hook, ir.VerdictAccept, rules)
	p, err := CompileWith(tab, c, fl.tgt, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Groups) != 1 || len(p.StateSlots) != len(rules) {
		t.Fatalf("%d groups, %d state slots", len(p.Groups), len(p.StateSlots))
	}
	counters, err := ebpf.NewMap(p.Counters)
	if err != nil {
		t.Fatal(err)
	}
	defer counters.Close()
	state, err := ebpf.NewMap(StateMapSpec(64))
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	ctrSlots := make([]uint32, len(p.CounterSlots))
	for i := range ctrSlots {
		ctrSlots[i] = uint32(i)
	}
	stateSlots := make([]uint32, len(p.StateSlots))
	where := map[uint64]uint32{} // rule handle → map slot
	for i, s := range p.StateSlots {
		stateSlots[i] = uint32(63 - 5*i)
		where[s.Handle] = stateSlots[i]
	}
	prog, err := p.LoadWith(SharedMaps{Counters: counters, CounterSlots: ctrSlots, State: state, StateSlots: stateSlots})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	sent := map[uint32]uint64{}
	for i, r := range rules {
		f := udp4(uint16(100 + i))
		for k := 0; k <= i%3; k++ {
			ret, err := prog.Run(&ebpf.RunOptions{Data: f})
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := VerdictOf(XDP, ret); v != ir.VerdictDrop {
				t.Fatalf("rule %d: %s", i, vname(v))
			}
			sent[where[r.Handle]] += uint64(len(f) - 14)
		}
	}
	for slot := uint32(0); slot < 64; slot++ {
		var v StateValue
		if err := state.Lookup(slot, &v); err != nil {
			t.Fatal(err)
		}
		if v.A != sent[slot] {
			t.Errorf("state slot %d consumed %d bytes, want %d", slot, v.A, sent[slot])
		}
	}
}

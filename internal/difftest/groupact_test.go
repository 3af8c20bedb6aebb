package difftest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/hooks"
	"github.com/bpfilter-nft/bpfilter-nft/internal/bench"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

// actionRuleset returns n accounting rules ("ip saddr A tcp dport P
// counter", no verdict), n rules with the same keys that drop a packet
// once their quota is over ("quota over 100 bytes counter drop": a
// packet of 58 bytes passes the first time), n that log and drop or
// accept (every one with a counter), then n/2 more accounting rules: a
// packet of the first rules' keys is counted, then, unless dropped by
// its quota, logged and decided; the last rules count what the log rules
// accepted.
func actionRuleset(n int) []bench.Rule {
	acct := bench.Generate(bench.Accounting, n, false)
	quota := bench.Generate(bench.Uniform, n, false)
	for i := range quota {
		quota[i].QuotaOver, quota[i].Counter = 100, true
	}
	logs := bench.Generate(bench.LogDrop, n, false)
	for i := range logs {
		logs[i].Counter = true
		logs[i].Accept = i%4 == 3
	}
	return append(append(append(acct, quota...), logs...), acct[:n/2]...)
}

// withMACs returns frame addressed from the oracle's sender to its
// receiver.
func withMACs(o *oracle.Oracle, frame []byte) []byte {
	f := append([]byte(nil), frame...)
	copy(f[0:6], o.ReceiverMAC())
	copy(f[6:12], o.SenderMAC())
	return f
}

// kernelRuleCounters lists the packets counted by each rule of chain
// input of table netdev bench in the receiver, by rule handle, and the
// handles of the rules in order.
func kernelRuleCounters(ns *nsctx.NetNS) (map[uint64]uint64, []uint64, error) {
	var out []byte
	err := ns.Do(func() error {
		var err error
		out, err = exec.Command("nft", "-j", "list", "chain", "netdev", "bench", "input").Output()
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("nft list chain: %w", err)
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Handle uint64
				Expr   []map[string]json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, nil, err
	}
	counts := map[uint64]uint64{}
	var handles []uint64
	for _, o := range doc.Nftables {
		if o.Rule == nil {
			continue
		}
		handles = append(handles, o.Rule.Handle)
		for _, e := range o.Rule.Expr {
			if c, ok := e["counter"]; ok {
				var v struct{ Packets uint64 }
				if err := json.Unmarshal(c, &v); err != nil {
					return nil, nil, err
				}
				counts[o.Rule.Handle] = v.Packets
			}
		}
	}
	return counts, handles, nil
}

// bpfRun is what the BPF side did with the frames: verdicts, packets
// counted per rule handle, and log events per rule handle (all with
// prefix bench.LogPrefix).
type bpfRun struct {
	verdicts []oracle.Result
	counters map[uint64]uint64
	events   map[uint64]uint64
}

// runBPF compiles text for typ (grouped unless linear), attaches it in
// the receiver (tc) or runs it there with BPF_PROG_TEST_RUN (XDP), and
// sends frames.
func runBPF(t *testing.T, o *oracle.Oracle, ns *nsctx.NetNS, text string, typ codegen.ProgramType, linear bool, frames [][]byte) bpfRun {
	t.Helper()
	res, err := pipeline.TranslateReader("ruleset", strings.NewReader(text), pipeline.Options{Type: &typ, NetNS: ns, Linear: linear})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if len(res.Programs) != 1 {
		t.Fatalf("%d programs, want 1", len(res.Programs))
	}
	p := res.Programs[0]
	grouped := 0
	for _, gm := range p.Program.Groups {
		grouped += len(gm.Handles)
	}
	if want := len(p.Chain.Rules); !linear && grouped != want || linear && grouped != 0 {
		t.Fatalf("linear %v: %d of %d rules in %d rule groups", linear, grouped, want, len(p.Program.Groups))
	}
	if err := o.Load(""); err != nil {
		t.Fatal(err)
	}
	l, err := p.Program.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rd, err := ringbuf.NewReader(l.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	out := bpfRun{counters: map[uint64]uint64{}, events: map[uint64]uint64{}}
	if typ == codegen.TC {
		closeSentinel, err := attachSentinelPass(ns, p.Target)
		if err != nil {
			t.Fatal(err)
		}
		defer closeSentinel()
		lk, err := hooks.Attach(ns, l.Program, hooks.Point{Target: p.Target, Priority: p.Chain.Base.Priority})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range frames {
			r, err := o.Verdict(f)
			if err != nil {
				t.Fatal(err)
			}
			if r == oracle.NotReached {
				r = oracle.Dropped
			}
			out.verdicts = append(out.verdicts, r)
		}
		lk.Close()
	} else {
		err := ns.Do(func() error {
			for _, f := range frames {
				ctx := xdpMD{DataEnd: uint32(len(f)), IngressIfindex: uint32(o.ReceiverIfindex())}
				ret, err := l.Program.Run(&ebpf.RunOptions{Data: f, Context: ctx})
				if err != nil {
					return err
				}
				v, err := codegen.VerdictOf(typ, ret)
				if err != nil {
					return err
				}
				r := oracle.Accepted
				if v == ir.VerdictDrop {
					r = oracle.Dropped
				}
				out.verdicts = append(out.verdicts, r)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	vals, err := l.ReadCounters()
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range p.Program.CounterSlots {
		out.counters[s.Handle] += vals[i].Packets
	}
	for {
		rd.SetDeadline(time.Now().Add(10 * time.Millisecond))
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b := rec.RawSample
		prefix := b[codegen.EvPrefix : codegen.EvPrefix+codegen.LogPrefixLen]
		if p := string(prefix[:bytes.IndexByte(prefix, 0)]); p != bench.LogPrefix {
			t.Errorf("event with prefix %q", p)
		}
		out.events[binary.LittleEndian.Uint64(b[codegen.EvHandle:])]++
	}
	return out
}

// TestGroupActionsTwin compares the kernel with grouped and straight-line
// programs (tc attached to the oracle's veth, XDP run on its device) on
// rulesets whose rule groups have action blocks: accounting rules without
// verdict, then log-and-drop/accept rules of the same keys, then more
// accounting. Per frame the verdicts, per rule the packets counted (the
// kernel's from nft's listing) and per logging rule its log events (the
// packets the kernel counted at that rule) must agree; pktgen's frames
// must get the kernel's verdicts (Check).
func TestGroupActionsTwin(t *testing.T) {
	privtest.Require(t)
	o, err := oracle.New(oracle.Config{Hook: ir.HookIngress})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	ns, err := receiverNS(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	const n = 400
	rules := actionRuleset(n)
	text := bench.Ruleset(ir.FamilyNetdev, ir.HookIngress, o.ReceiverIfname(), rules)

	rep, err := Check(o, ir.HookIngress, text, Options{Seed: 11, Count: 40, Stride: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range rep.Mismatches {
		if i == 10 {
			t.Errorf("… %d mismatches", len(rep.Mismatches))
			break
		}
		t.Errorf("%s", m)
	}
	t.Logf("pktgen: %d frames, %d compared, kernel %v", rep.Frames, rep.Compared, rep.Kernel)

	// Frames of sampled rules (each its rule's twin later in the chain
	// too), several times each, and one no rule matches.
	var frames [][]byte
	for i := 0; i < n; i += 7 {
		for k := 0; k <= i%3; k++ {
			frames = append(frames, withMACs(o, rules[i].Frame()))
		}
	}
	frames = append(frames, withMACs(o, bench.MissFrame()))
	if err := o.Load(text); err != nil {
		t.Fatal(err)
	}
	var kernel []oracle.Result
	for _, f := range frames {
		r, err := o.Verdict(f)
		if err != nil {
			t.Fatal(err)
		}
		kernel = append(kernel, r)
	}
	kc, handles, err := kernelRuleCounters(ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(kc) != len(rules) || len(handles) != len(rules) {
		t.Fatalf("nft lists %d rules and %d counters, want %d", len(handles), len(kc), len(rules))
	}
	hit := 0
	for _, v := range kc {
		if v > 0 {
			hit++
		}
	}
	if hit < n/7 {
		t.Fatalf("the kernel counted at only %d rules", hit)
	}
	logHandles := map[uint64]bool{}
	for _, h := range handles[2*n : 3*n] {
		logHandles[h] = true
	}
	for _, typ := range []codegen.ProgramType{codegen.TC, codegen.XDP} {
		for _, linear := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/linear=%v", typ, linear), func(t *testing.T) {
				got := runBPF(t, o, ns, text, typ, linear, frames)
				for i := range frames {
					if got.verdicts[i] != kernel[i] {
						t.Errorf("frame %d: kernel %s, bpf %s", i, kernel[i], got.verdicts[i])
					}
				}
				// The pipeline keeps the handles nft gave the rules.
				for h, want := range kc {
					if got.counters[h] != want {
						t.Errorf("rule handle %d: kernel counted %d packets, bpf %d", h, want, got.counters[h])
					}
				}
				events := uint64(0)
				for h, e := range got.events {
					events += e
					if !logHandles[h] {
						t.Errorf("log event of rule handle %d, which does not log", h)
					} else if e != kc[h] {
						t.Errorf("rule handle %d: %d log events, kernel counted %d packets there", h, e, kc[h])
					}
				}
				if events == 0 {
					t.Error("no log events")
				}
				t.Logf("%d frames, %d log events", len(frames), events)
			})
		}
	}
}

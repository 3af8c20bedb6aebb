package codegen

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// monotonicNow is bpf_ktime_get_ns's clock.
func monotonicNow(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

func readState(t *testing.T, l *Loaded, slot uint32) StateValue {
	t.Helper()
	var v StateValue
	if err := l.State.Lookup(slot, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func writeState(t *testing.T, l *Loaded, slot uint32, v StateValue) {
	t.Helper()
	if err := l.State.Update(slot, v, 0); err != nil {
		t.Fatal(err)
	}
}

// TestLimitBucket checks the token bucket arithmetic against
// ir.Limit.Take on every program type: a fresh bucket lets the burst
// through; with "last" set in the future, time stands still (the program
// never moves the clock backwards), so the tokens a packet takes and the
// tokens left are exact; with "last" in the past the bucket refills, up to
// its size.
func TestLimitBucket(t *testing.T) {
	privileged(t)
	frame := udp4(53)
	limits := []*ir.Limit{
		{Rate: 10, Unit: ir.LimitSecond, Burst: 3},
		{Rate: 10, Unit: ir.LimitSecond, Burst: 3, Over: true},
		{Rate: 1, Unit: ir.LimitMinute, Burst: 5},
		{Rate: 1000, Unit: ir.LimitSecond, Burst: 100, Bytes: true},
		{Rate: 1000, Unit: ir.LimitSecond, Burst: 100, Bytes: true, Over: true},
		{Rate: 7, Unit: ir.LimitWeek, Burst: 0, Bytes: true},
	}
	for _, lim := range limits {
		p, err := lim.Params()
		if err != nil {
			t.Fatal(err)
		}
		for _, fl := range allFlavours(ir.FamilyIPv4) {
			t.Run(lim.String()+"/"+fl.name, func(t *testing.T) {
				tab, c := table(fl.fam, fl.hook, ir.VerdictDrop, []*ir.Rule{rule(counter, lim, accept)})
				l := loadFlavour(t, fl, tab, c)
				// The packet's length as nf_tables sees it, from the counter.
				run(t, fl, l, frame)
				ctr, err := l.ReadCounters()
				if err != nil {
					t.Fatal(err)
				}
				n := uint32(ctr[0].Bytes)
				verdict := func(goOn bool) ir.VerdictKind {
					if goOn {
						return ir.VerdictAccept
					}
					return ir.VerdictDrop
				}

				// Frozen time: exact tokens.
				future := monotonicNow(t) + uint64(time.Hour)
				cost := p.Cost
				if lim.Bytes {
					cost = p.Nsecs * uint64(n) / lim.Rate
				}
				tokens := 2*cost + 1
				writeState(t, l, 0, StateValue{A: future, B: tokens})
				for i := 0; i < 4; i++ {
					wantTokens, _, goOn := lim.Take(p, tokens, future, future, n)
					if got := run(t, fl, l, frame); got != verdict(goOn) {
						t.Fatalf("packet %d with %d tokens (cost %d): %s, want %s", i+1, tokens, cost, vname(got), vname(verdict(goOn)))
					}
					st := readState(t, l, 0)
					if st.B != wantTokens || st.A != future {
						t.Fatalf("packet %d: bucket {last %d tokens %d}, want {%d %d}", i+1, st.A, st.B, future, wantTokens)
					}
					tokens = wantTokens
				}

				// A bucket never used, or unused for long, is full.
				lasts := []uint64{0}
				if now := monotonicNow(t); now > p.TokensMax+uint64(time.Second) {
					lasts = append(lasts, now-p.TokensMax-uint64(time.Second))
				}
				for _, last := range lasts {
					writeState(t, l, 0, StateValue{A: last, B: 0})
					passes := 0
					for i := 0; i < 20; i++ {
						if run(t, fl, l, frame) == ir.VerdictAccept {
							passes++
						}
					}
					full := int(p.TokensMax / cost) // packets a full bucket lets through
					if cost == 0 {
						full = 20
					}
					want := min(full, 20)
					if lim.Over {
						want = 20 - want
					}
					if passes != want {
						t.Errorf("bucket last=%d: %d of 20 packets went on, want %d (size %d, cost %d)", last, passes, want, p.TokensMax, cost)
					}
				}

				// Refill: an empty bucket last used 1.5 costs ago lets one
				// packet through (the test takes far less than half a cost).
				if cost > uint64(10*time.Millisecond) && cost <= p.TokensMax && monotonicNow(t) > 2*cost {
					writeState(t, l, 0, StateValue{A: monotonicNow(t) - cost*3/2, B: 0})
					first, second := run(t, fl, l, frame), run(t, fl, l, frame)
					if first != verdict(!lim.Over) || second != verdict(lim.Over) {
						t.Errorf("after 1.5 costs: %s then %s, want %s then %s", vname(first), vname(second), vname(verdict(!lim.Over)), vname(verdict(lim.Over)))
					}
				}
			})
		}
	}
}

// TestQuotaBytes checks nft_quota's rule: the bytes of every packet that
// reaches the quota are added, and the rule ends once the sum exceeds it
// ("over": until it does). "used" counts as consumed from the start.
func TestQuotaBytes(t *testing.T) {
	privileged(t)
	frame := udp4(53)
	for _, q := range []*ir.Quota{{Bytes: 200}, {Bytes: 200, Over: true}, {Bytes: 200, Used: 100}} {
		for _, fl := range allFlavours(ir.FamilyIPv4) {
			t.Run(q.String()+"/"+fl.name, func(t *testing.T) {
				tab, c := table(fl.fam, fl.hook, ir.VerdictDrop, []*ir.Rule{rule(counter, q, accept)})
				l := loadFlavour(t, fl, tab, c)
				consumed := q.Used
				for i := 0; i < 10; i++ {
					got := run(t, fl, l, frame)
					ctr, err := l.ReadCounters()
					if err != nil {
						t.Fatal(err)
					}
					n := ctr[0].Bytes / ctr[0].Packets
					consumed += n
					over := consumed > q.Bytes
					want := ir.VerdictAccept
					if over != q.Over {
						want = ir.VerdictDrop
					}
					if got != want {
						t.Fatalf("packet %d (%d bytes, %d consumed): %s, want %s", i+1, n, consumed, vname(got), vname(want))
					}
					if st := readState(t, l, 0); st.A+q.Used != consumed {
						t.Fatalf("packet %d: slot holds %d consumed (+%d used), want %d", i+1, st.A, q.Used, consumed)
					}
				}
			})
		}
	}
}

// TestMetaMarkSet checks that tc and cgroup_skb programs set skb->mark
// (a later rule of the chain sees it) and that XDP and netfilter programs
// refuse it naming the reason.
func TestMetaMarkSet(t *testing.T) {
	privileged(t)
	set := &ir.MetaSet{Key: ir.MetaMark, Value: u32le(0x2a)}
	rules := func() []*ir.Rule {
		return []*ir.Rule{rule(set), rule(eq(meta(ir.MetaMark), u32le(0x2a)), accept)}
	}
	for _, fl := range allFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			tab, c := table(fl.fam, fl.hook, ir.VerdictDrop, rules())
			tab.Family, c.Base.Hook = fl.fam, fl.hook
			_, err := Compile(tab, c, fl.tgt)
			switch fl.tgt.Type {
			case XDP, Netfilter:
				ue, ok := err.(*UnsupportedError)
				if !ok || ue.Stmt != "meta mark set 0x0000002a" {
					t.Fatalf("compile: %v, want a refusal of meta mark set", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l := loadFlavour(t, fl, tab, c)
			if got := run(t, fl, l, udp4(53)); got != ir.VerdictAccept {
				t.Errorf("mark not seen by the next rule: %s", vname(got))
			}
		})
	}
}

// TestLogEvent loads a log statement on every program type, runs a packet
// and checks the event in the ring buffer: prefix, level, flags, hook,
// length, the bytes from the network header, and that the verdict is
// unaffected.
func TestLogEvent(t *testing.T) {
	privileged(t)
	frame := udp4(53)
	lg := &ir.Log{Prefix: "p: ", HasPrefix: true, Level: ir.LogInfo, HasLevel: true, Flags: ir.LogTCPSeq}
	for _, fl := range allFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			r := rule(counter, lg, drop)
			tab, c := table(fl.fam, fl.hook, ir.VerdictAccept, []*ir.Rule{r})
			l := loadFlavour(t, fl, tab, c)
			rd, err := ringbuf.NewReader(l.Events)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			if got := run(t, fl, l, frame); got != ir.VerdictDrop {
				t.Fatalf("verdict %s, want drop", vname(got))
			}
			rd.SetDeadline(time.Now().Add(time.Second))
			rec, err := rd.Read()
			if err != nil {
				t.Fatal(err)
			}
			b := rec.RawSample
			if len(b) != LogEventLen {
				t.Fatalf("event of %d bytes", len(b))
			}
			le := binary.LittleEndian
			ctr, _ := l.ReadCounters()
			ip := frame[14:]
			checks := []struct {
				what      string
				got, want uint64
			}{
				{"magic", uint64(le.Uint32(b[EvMagic:])), LogEventMagic},
				{"hook", uint64(b[EvHook]), uint64(fl.hook)},
				{"level", uint64(b[EvLevel]), uint64(ir.LogInfo)},
				{"flags", uint64(le.Uint32(b[EvFlags:])), uint64(ir.LogTCPSeq)},
				{"len", uint64(le.Uint32(b[EvLen:])), ctr[0].Bytes},
				{"handle", le.Uint64(b[EvHandle:]), r.Handle},
				{"avail", uint64(le.Uint32(b[EvAvail:])), uint64(len(ip))},
				{"captured", uint64(le.Uint16(b[EvCapLen:])), uint64(len(ip))},
				{"protocol", uint64(le.Uint16(b[EvProto:])), 0x0800},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
				}
			}
			if p := string(b[EvPrefix : EvPrefix+4]); p != "p: \x00" {
				t.Errorf("prefix %q", p)
			}
			if d := b[EvData : EvData+len(ip)]; string(d) != string(ip) {
				t.Errorf("data %x, want %x", d, ip)
			}
			if fl.l2 && fl.tgt.Type != CgroupSKB {
				if n := le.Uint16(b[EvMACLen:]); n != 14 || string(b[EvMAC:EvMAC+14]) != string(frame[:14]) {
					t.Errorf("mac header %d bytes %x, want %x", n, b[EvMAC:EvMAC+14], frame[:14])
				}
			}
		})
	}
}

// TestRejectRefused checks that reject is refused on netfilter and
// cgroup_skb programs with the reason (netdev targets: reject_test.go).
func TestRejectRefused(t *testing.T) {
	for _, fl := range ipFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			tab, c := table(fl.fam, fl.hook, ir.VerdictAccept, []*ir.Rule{rule(eq(meta(ir.MetaL4Proto), b(protoTCP)), &ir.Reject{Type: ir.RejectTCPReset})})
			_, err := Compile(tab, c, fl.tgt)
			ue, ok := err.(*UnsupportedError)
			if !ok || ue.Stmt != "reject with tcp reset" {
				t.Fatalf("compile: %v, want a refusal of the reject", err)
			}
			want := map[ProgramType]string{Netfilter: "NF_ACCEPT or NF_DROP", CgroupSKB: "only pass or drop"}[fl.tgt.Type]
			if !strings.Contains(ue.Reason, want) {
				t.Errorf("reason %q does not say %q", ue.Reason, want)
			}
		})
	}
}

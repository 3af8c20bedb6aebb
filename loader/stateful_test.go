package loader

import (
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// flood sends 32-byte datagrams from ns to port on B at pps packets per
// second for d, and returns the times (from the start) at which it sent
// each one.
func flood(t *testing.T, ns *netnstest.NS, port, pps int, d time.Duration) []time.Duration {
	t.Helper()
	s := dial(t, ns)
	to := &unix.SockaddrInet4{Port: port, Addr: [4]byte(net.ParseIP(addrB).To4())}
	payload := make([]byte, 32)
	const tick = 5 * time.Millisecond
	perTick := pps * int(tick) / int(time.Second)
	start := time.Now()
	var sent []time.Duration
	for next := start; time.Since(start) < d; next = next.Add(tick) {
		time.Sleep(time.Until(next))
		// Catch up on ticks the scheduler made us miss.
		want := int(float64(pps) * time.Since(start).Seconds())
		for n := 0; n < perTick || len(sent) < want; n++ {
			err := unix.Sendto(s.fd, payload, 0, to)
			if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
				break
			}
			sent = append(sent, time.Since(start))
		}
	}
	return sent
}

// modelPasses runs the send times through nft_limit's arithmetic
// (ir.Limit.Take): how many packets a bucket that sees each packet when
// it was sent lets through. A sender the scheduler stalls for longer than
// the burst lasts loses tokens; the model counts that in.
func modelPasses(l *ir.Limit, sent []time.Duration) int {
	p, _ := l.Params()
	tokens, last, n := p.TokensMax, uint64(0), 0
	for i, at := range sent {
		now := uint64(at)
		if i == 0 {
			last = now
		}
		var ok bool
		tokens, last, ok = l.Take(p, tokens, last, now, 60)
		if ok {
			n++
		}
	}
	return n
}

// TestLimitRateEndToEnd floods UDP at 10× a limit's rate through BPF and,
// in the same run, through the kernel's nftables in a twin topology, and
// checks that each lets through the configured rate (±5%) plus the burst:
// exactly, what nft_limit's arithmetic gives for the times the packets
// were sent (rate × time + burst when the sender never stalls).
func TestLimitRateEndToEnd(t *testing.T) {
	const (
		rate  = 200 // packets per second
		burst = 20
		port  = 9
		d     = 4 * time.Second
	)
	// A packet limit at netfilter input; a byte limit (60-byte datagrams:
	// the same 200 packets/s) at tcx ingress.
	cases := []struct {
		attachCase
		limit string
		lim   *ir.Limit
	}{
		{attachCases[4], fmt.Sprintf("limit rate %d/second burst %d packets", rate, burst), &ir.Limit{Rate: rate, Unit: ir.LimitSecond, Burst: burst}},
		{attachCases[1], fmt.Sprintf("limit rate %d bytes/second burst %d bytes", rate*60, burst*60), &ir.Limit{Rate: rate * 60, Unit: ir.LimitSecond, Burst: burst * 60, Bytes: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ruleset := fmt.Sprintf(`table %s t {
	chain c {
		%s policy accept;
		ip daddr %s udp dport %d %s counter accept
		ip daddr %s udp dport %d counter drop
	}
}
`, c.family, c.header, addrB, port, c.limit, addrB, port)
			bpf, kern := newTopo(t), newTopo(t)
			ns := netns(t, c.where(bpf))
			st := stateDir(t, ns)
			if err := Apply(ns, st, translate(t, ns, ruleset, c.typ), Options{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { Flush(st) })
			if _, err := c.where(kern).Run(ruleset, "nft", "-f", "-"); err != nil {
				t.Fatal(err)
			}
			type result struct {
				sent []time.Duration
				got  int
			}
			var res [2]result
			var wg sync.WaitGroup
			for i, tp := range []*topo{bpf, kern} {
				rc := listen(t, tp.b, port)
				wg.Add(1)
				go func() {
					defer wg.Done()
					res[i].sent = flood(t, tp.a, port, 10*rate, d)
					res[i].got = rc.settle()[port]
				}()
			}
			wg.Wait()
			lim := c.lim
			for i, name := range []string{"BPF", "nftables"} {
				r := res[i]
				span := r.sent[len(r.sent)-1]
				// A never-stalled sender gets the bucket's content plus the
				// refill over the span (a byte limit's bucket holds
				// rate + burst bytes, nft_limit_init's tokens_max).
				p, _ := lim.Params()
				cost := p.Cost
				if lim.Bytes {
					cost = p.Nsecs * 60 / lim.Rate
				}
				ideal := float64(p.TokensMax/cost) + float64(span)/float64(cost)
				model := modelPasses(lim, r.sent)
				t.Logf("%s: %d sent in %v (%.0f/s), %d let through; bucket + rate × time = %.0f, the bucket over the actual send times = %d",
					name, len(r.sent), span.Round(time.Millisecond), float64(len(r.sent))/span.Seconds(), r.got, ideal, model)
				if float64(len(r.sent))/span.Seconds() < 5*rate {
					t.Fatalf("%s: the flood reached only %.0f packets/s; the machine is too busy to measure", name, float64(len(r.sent))/span.Seconds())
				}
				tol := 0.05 * rate * span.Seconds()
				if math.Abs(float64(r.got)-float64(model)) > tol {
					t.Errorf("%s let %d packets through, want %d ± %.0f", name, r.got, model, tol)
				}
				if math.Abs(float64(model)-ideal) > tol {
					t.Logf("%s: the sender stalled; the bucket lost %.0f packets' worth of tokens", name, ideal-float64(model))
				}
			}
			// The counters of both rules agree with what arrived.
			if n := counterOf(t, st, "limit rate"); int(n) != res[0].got {
				t.Errorf("BPF: the limit rule counted %d packets, %d arrived", n, res[0].got)
			}
		})
	}
}

// TestLimitStateKeptAcrossReloads checks that a reload keeps the bucket of
// an unchanged limit (and the bytes of an unchanged quota), as nftables
// keeps the state of rules a transaction does not replace, and that a
// changed limit starts with a full bucket.
func TestLimitStateKeptAcrossReloads(t *testing.T) {
	c := attachCases[4] // netfilter input
	tp := newTopo(t)
	ns := netns(t, c.where(tp))
	st := stateDir(t, ns)
	t.Cleanup(func() { Flush(st) })
	rs := func(burst, extra int) string {
		return fmt.Sprintf(`table ip t {
	chain c {
		%s policy accept;
		ip daddr %s udp dport 9 limit rate 1/minute burst %d packets accept
		ip daddr %s udp dport 9 drop
		ip daddr %s udp dport 7 quota 96 bytes accept
		ip daddr %s udp dport 7 drop
		ip daddr %s udp dport %d drop
	}
}
`, c.header, addrB, burst, addrB, addrB, addrB, addrB, extra)
	}
	rc := listen(t, tp.b, 9, 7)
	s := dial(t, tp.a)
	steps := []struct {
		ruleset    string
		want9      int // of 5 datagrams to port 9
		want7      int // of 2 datagrams (60 bytes each) to port 7
		whatChange string
	}{
		{rs(3, 100), 3, 1, "first load: full bucket, empty quota"},
		{rs(3, 101), 0, 0, "another rule changed: bucket and quota kept"},
		{rs(4, 101), 4, 0, "the limit changed: a new, full bucket; quota kept"},
	}
	for i, step := range steps {
		if err := Apply(ns, st, translate(t, ns, step.ruleset, c.typ), Options{}); err != nil {
			t.Fatal(err)
		}
		rc.reset()
		s.send(9, 5)
		s.send(7, 2)
		got := rc.settleFor(map[int]int{9: step.want9, 7: step.want7})
		if got[9] != step.want9 || got[7] != step.want7 {
			t.Errorf("step %d (%s): %d of 5 to port 9 and %d of 2 to port 7 arrived, want %d and %d", i+1, step.whatChange, got[9], got[7], step.want9, step.want7)
		}
	}
}

// TestQuotaEndToEnd sends datagrams of several sizes through a quota and
// an "over" quota, in BPF and in the kernel's nftables (twin topologies,
// same run), and checks that the same datagrams arrive.
func TestQuotaEndToEnd(t *testing.T) {
	c := attachCases[4] // netfilter input
	ruleset := fmt.Sprintf(`table ip t {
	chain c {
		%s policy accept;
		ip daddr %s udp dport 9 quota 1000 bytes accept
		ip daddr %s udp dport 9 drop
		ip daddr %s udp dport 7 quota over 500 bytes used 100 bytes drop
	}
}
`, c.header, addrB, addrB, addrB)
	bpf, kern := newTopo(t), newTopo(t)
	ns := netns(t, c.where(bpf))
	st := stateDir(t, ns)
	if err := Apply(ns, st, translate(t, ns, ruleset, c.typ), Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Flush(st) })
	if _, err := c.where(kern).Run(ruleset, "nft", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	var pkts []tagged
	for i, size := range []int{100, 300, 20, 400, 50, 200, 10, 100, 300, 5} {
		pkts = append(pkts, tagged{uint32(2 * i), udp4(4000, 9, size, 1, true)}, tagged{uint32(2*i + 1), udp4(4000, 7, size, 1, true)})
	}
	gotBPF := exchange(t, bpf, pkts, nil, nil)
	gotKern := exchange(t, kern, pkts, nil, nil)
	delivered := 0
	for _, pk := range pkts {
		if gotBPF[pk.seq] != gotKern[pk.seq] {
			t.Errorf("packet %d (%v): arrived %d times with BPF, %d times with the kernel's nftables", pk.seq, pk.probe, gotBPF[pk.seq], gotKern[pk.seq])
		}
		delivered += gotKern[pk.seq]
	}
	if delivered == 0 || delivered == len(pkts) {
		t.Errorf("%d of %d delivered: the quotas decided nothing", delivered, len(pkts))
	}
	t.Logf("%d of %d datagrams delivered by both", delivered, len(pkts))
}

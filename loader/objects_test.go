package loader

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// objectState returns the live state of the named object typ/name of
// table fam/t in st's ruleset.
func objectState(t *testing.T, st *state.Dir, fam ir.Family, o *ir.Object) codegen.StateValue {
	t.Helper()
	snap, err := Load(st)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := snap.Objects[ObjectStateID(fam, "t", o)]
	if !ok {
		t.Fatalf("no state for %s %s in %v", o.Type, o.Name, snap.Objects)
	}
	return v
}

// kernelObject returns the numbers nft lists for an object of table t in
// ns: packets and bytes of a counter, the used bytes of a quota.
func kernelObject(t *testing.T, ns *netnstest.NS, fam, typ, name string) (a, b uint64) {
	t.Helper()
	out, err := ns.Run("", "nft", "list", typ, fam, "t", name)
	if err != nil {
		t.Fatal(err)
	}
	switch typ {
	case "counter":
		m := regexp.MustCompile(`packets (\d+) bytes (\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("nft lists no counter values:\n%s", out)
		}
		a, _ = strconv.ParseUint(m[1], 10, 64)
		b, _ = strconv.ParseUint(m[2], 10, 64)
	case "quota":
		if m := regexp.MustCompile(`used (\d+) bytes`).FindStringSubmatch(out); m != nil {
			a, _ = strconv.ParseUint(m[1], 10, 64)
		}
	}
	return a, b
}

// TestObjectsEndToEnd sends datagrams through named counter, quota and
// limit objects, each referred to by several rules (the counter from two
// chains), in BPF and in the kernel's nftables (twin topologies, same
// run), and checks that the same datagrams arrive and that the objects
// end with the same counts and consumed bytes.
func TestObjectsEndToEnd(t *testing.T) {
	for _, c := range []attachCase{attachCases[4], attachCases[1]} {
		t.Run(c.name, func(t *testing.T) {
			ruleset := fmt.Sprintf(`table %s t {
	counter c1 {
	}
	quota q1 {
		1000 bytes
	}
	limit l1 {
		rate 1/minute burst 3 packets
	}
	chain u {
		counter name "c1"
		udp dport 5 limit name "l1" accept
		udp dport 5 drop
	}
	chain c {
		%s policy accept;
		ip daddr %s counter name "c1"
		ip daddr %s udp dport 9 quota name "q1" accept
		ip daddr %s udp dport 7 quota name "q1" accept
		ip daddr %s udp dport 9 drop
		ip daddr %s udp dport 7 drop
		ip daddr %s udp dport 5 jump u
	}
}
`, c.family, c.header, addrB, addrB, addrB, addrB, addrB, addrB)
			bpf, kern := newTopo(t), newTopo(t)
			ns := netns(t, c.where(bpf))
			st := stateDir(t, ns)
			res := translate(t, ns, ruleset, c.typ)
			if err := Apply(ns, st, res, Options{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { Flush(st) })
			if _, err := c.where(kern).Run(ruleset, "nft", "-f", "-"); err != nil {
				t.Fatal(err)
			}
			var pkts []tagged
			for i, size := range []int{100, 300, 20, 400, 50, 200, 10, 100} {
				port := 9
				if i%2 == 1 {
					port = 7
				}
				pkts = append(pkts, tagged{uint32(i), udp4(4000, port, size, 1, true)})
			}
			for i := range 5 {
				pkts = append(pkts, tagged{uint32(100 + i), udp4(4000, 5, 30, 1, true)})
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
				t.Errorf("%d of %d delivered: the objects decided nothing", delivered, len(pkts))
			}
			tab := res.Ruleset.Tables[0]
			cnt := objectState(t, st, tab.Family, tab.Object(ir.ObjectCounter, "c1"))
			kp, kb := kernelObject(t, c.where(kern), c.family, "counter", "c1")
			if cnt.A != kp || cnt.B != kb {
				t.Errorf("counter c1: BPF counted packets %d bytes %d, the kernel packets %d bytes %d", cnt.A, cnt.B, kp, kb)
			}
			// Every datagram passes the first rule; those to port 5
			// also the user chain's.
			if want := uint64(len(pkts) + 5); kp != want {
				t.Errorf("counter c1: the kernel counted %d packets, want %d (shared by two chains)", kp, want)
			}
			q := objectState(t, st, tab.Family, tab.Object(ir.ObjectQuota, "q1"))
			ku, _ := kernelObject(t, c.where(kern), c.family, "quota", "q1")
			// The kernel lists the consumed bytes capped at the quota.
			if min(q.A, 1000) != ku || q.A <= 1000 {
				t.Errorf("quota q1: BPF consumed %d bytes, the kernel lists %d (want more than the quota: the test sends more)", q.A, ku)
			}
			t.Logf("%d of %d datagrams delivered by both; counter c1 packets %d bytes %d; quota q1 used %d", delivered, len(pkts), kp, kb, ku)
		})
	}
}

// TestObjectStateKeptAcrossReloads checks that a reload keeps the state
// of an unchanged named object (a quota's consumed bytes, a counter's
// counts) even when the rules referring to it change, and that a changed
// object starts afresh, as nftables replaces it.
func TestObjectStateKeptAcrossReloads(t *testing.T) {
	c := attachCases[4] // netfilter input
	tp := newTopo(t)
	ns := netns(t, c.where(tp))
	st := stateDir(t, ns)
	t.Cleanup(func() { Flush(st) })
	rs := func(quota, extra, packets int) string {
		return fmt.Sprintf(`table ip t {
	counter c1 {
		packets %d bytes 0
	}
	quota q1 {
		%d bytes
	}
	chain c {
		%s policy accept;
		ip daddr %s udp dport %d drop
		ip daddr %s udp dport 7 counter name "c1" quota name "q1" accept
		ip daddr %s udp dport 7 drop
	}
}
`, packets, quota, c.header, addrB, extra, addrB, addrB)
	}
	rc := listen(t, tp.b, 7)
	s := dial(t, tp.a)
	steps := []struct {
		ruleset    string
		want       int    // of 2 datagrams (60 bytes each)
		packets    uint64 // counter c1's slot afterwards (declared packets not included)
		whatChange string
	}{
		{rs(96, 100, 0), 1, 2, "first load: empty quota"},
		{rs(96, 101, 0), 0, 4, "a rule changed: quota and counter kept"},
		{rs(97, 101, 0), 1, 6, "the quota changed: a new, empty quota; counter kept"},
		{rs(97, 101, 10), 0, 2, "the counter changed (declared packets): a new counter; quota kept"},
	}
	for i, step := range steps {
		res := translate(t, ns, step.ruleset, c.typ)
		if err := Apply(ns, st, res, Options{}); err != nil {
			t.Fatal(err)
		}
		rc.reset()
		s.send(7, 2)
		if got := rc.settleFor(map[int]int{7: step.want})[7]; got != step.want {
			t.Errorf("step %d (%s): %d of 2 arrived, want %d", i+1, step.whatChange, got, step.want)
		}
		tab := res.Ruleset.Tables[0]
		if v := objectState(t, st, tab.Family, tab.Object(ir.ObjectCounter, "c1")); v.A != step.packets {
			t.Errorf("step %d (%s): counter c1 has %d packets, want %d", i+1, step.whatChange, v.A, step.packets)
		}
	}
}

package codegen

import (
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// TestObjectsShareState runs rules that refer to named objects on every
// program type: two references to one counter object use one state slot
// (it counts every packet twice), a quota object shared by two rules
// counts the bytes of both, and a limit object's bucket is shared.
func TestObjectsShareState(t *testing.T) {
	privileged(t)
	frame := udp4(53)
	c1 := &ir.Object{Type: ir.ObjectCounter, Name: "c1"}
	q1 := &ir.Object{Type: ir.ObjectQuota, Name: "q1", Quota: &ir.Quota{Bytes: 400}}
	l1 := &ir.Object{Type: ir.ObjectLimit, Name: "l1", Limit: &ir.Limit{Rate: 1, Unit: ir.LimitMinute, Burst: 3}}
	ref := func(o *ir.Object) ir.Stmt { return &ir.ObjRef{Object: o} }
	for _, fl := range allFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			tab, c := table(fl.fam, fl.hook, ir.VerdictDrop, []*ir.Rule{
				rule(ref(c1), ref(q1)),
				rule(ref(c1), ref(q1), ref(l1), accept),
			})
			tab.Objects = []*ir.Object{c1, q1, l1}
			p, err := Compile(tab, c, fl.tgt)
			if err != nil {
				t.Fatal(err)
			}
			want := []CounterSlot{ObjectSlot(c1), ObjectSlot(q1), ObjectSlot(l1)}
			if len(p.StateSlots) != len(want) {
				t.Fatalf("state slots %v, want %v", p.StateSlots, want)
			}
			for i := range want {
				if p.StateSlots[i] != want[i] {
					t.Fatalf("state slot %d is %+v, want %+v", i, p.StateSlots[i], want[i])
				}
			}
			l := loadFlavour(t, fl, tab, c)
			var size uint64
			for i := 1; i <= 8; i++ {
				got := run(t, fl, l, frame)
				ctr := readState(t, l, 0)
				if ctr.A != uint64(2*i) {
					t.Fatalf("packet %d: counter object holds %d packets, want %d", i, ctr.A, 2*i)
				}
				size = ctr.B / ctr.A
				// Two quota references per packet: the first rule's
				// reference consumes, the second's too.
				consumed := readState(t, l, 1).A
				if consumed != 2*uint64(i)*size {
					t.Fatalf("packet %d: quota object consumed %d bytes, want %d", i, consumed, 2*uint64(i)*size)
				}
				// The packet passes the second rule's quota while the sum
				// stays within 400 bytes, and then the limit's burst of 3.
				want := ir.VerdictDrop
				if consumed <= 400 && i <= 3 {
					want = ir.VerdictAccept
				}
				if got != want {
					t.Fatalf("packet %d (%d bytes consumed): %s, want %s", i, consumed, vname(got), vname(want))
				}
			}
		})
	}
}

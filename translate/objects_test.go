package translate

import (
	"errors"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// objRuleset is a table with named objects and one rule made of exprs.
func objRuleset(objs []*nlmsg.Obj, exprs ...nlmsg.Expr) *nlmsg.Ruleset {
	return &nlmsg.Ruleset{
		Tables: []*nlmsg.Table{{Family: nlmsg.FamilyInet, Name: "t"}},
		Chains: []*nlmsg.Chain{{Family: nlmsg.FamilyInet, Table: "t", Name: "c"}},
		Objs:   objs,
		Rules:  []*nlmsg.Rule{{Family: nlmsg.FamilyInet, Table: "t", Chain: "c", Handle: 2, Exprs: exprs}},
	}
}

func TestLiftObjects(t *testing.T) {
	counter := &nlmsg.Obj{Family: nlmsg.FamilyInet, Table: "t", Name: "c1", Type: 1,
		Data: attrBytes(nftaCounterBytes, uint64(100), nftaCounterPackets, uint64(3))}
	quota := &nlmsg.Obj{Family: nlmsg.FamilyInet, Table: "t", Name: "q1", Type: 2,
		Data: attrBytes(nftaQuotaBytes, uint64(1000), nftaQuotaFlags, uint32(nftQuotaFInv))}
	limit := &nlmsg.Obj{Family: nlmsg.FamilyInet, Table: "t", Name: "l1", Type: 4,
		Data: attrBytes(nftaLimitRate, uint64(10), nftaLimitUnit, uint64(1), nftaLimitBurst, uint32(5))}
	objs := []*nlmsg.Obj{counter, quota, limit}
	tests := []struct {
		name   string
		objs   []*nlmsg.Obj
		exprs  []nlmsg.Expr
		want   string // the rule as printed
		ruleEr string // a rule error containing this
		liftEr string // a Lift error containing this
		unsupp bool   // the error wraps ErrUnsupported
	}{
		{name: "counter", objs: objs, exprs: []nlmsg.Expr{opaque("objref", nftaObjrefImmType, uint32(1), nftaObjrefImmName, "c1")}, want: `counter name "c1"`},
		{name: "quota and limit", objs: objs, exprs: []nlmsg.Expr{
			opaque("objref", nftaObjrefImmType, uint32(2), nftaObjrefImmName, "q1"),
			opaque("objref", nftaObjrefImmType, uint32(4), nftaObjrefImmName, "l1"),
		}, want: `quota name "q1" limit name "l1"`},
		{name: "wrong type", objs: objs, exprs: []nlmsg.Expr{opaque("objref", nftaObjrefImmType, uint32(2), nftaObjrefImmName, "c1")}, ruleEr: `quota object "c1" not found`},
		{name: "unknown name", objs: objs, exprs: []nlmsg.Expr{opaque("objref", nftaObjrefImmType, uint32(1), nftaObjrefImmName, "nope")}, ruleEr: `counter object "nope" not found`},
		{name: "object map", objs: objs, exprs: []nlmsg.Expr{opaque("objref", nftaObjrefSetSreg, uint32(1), nftaObjrefSetName, "__objmap%d")}, ruleEr: "object maps", unsupp: true},
		{name: "no name", objs: objs, exprs: []nlmsg.Expr{opaque("objref", nftaObjrefImmType, uint32(1))}, ruleEr: "without an object type and name"},
		{name: "ct helper object", objs: []*nlmsg.Obj{{Family: nlmsg.FamilyInet, Table: "t", Name: "h", Type: 3}}, liftEr: "object h: unsupported: stateful object type 3", unsupp: true},
		{name: "object of unknown table", objs: []*nlmsg.Obj{{Family: nlmsg.FamilyIPv4, Table: "t", Name: "c", Type: 1}}, liftEr: "object c: table ip t not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Lift(objRuleset(tt.objs, tt.exprs...))
			if tt.liftEr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.liftEr) {
					t.Fatalf("Lift error %v, want one containing %q", err, tt.liftEr)
				}
				if errors.Is(err, ErrUnsupported) != tt.unsupp {
					t.Errorf("errors.Is(%v, ErrUnsupported) = %v, want %v", err, !tt.unsupp, tt.unsupp)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.ruleEr != "" {
				err := res.Err()
				if err == nil || !strings.Contains(err.Error(), tt.ruleEr) {
					t.Fatalf("rule error %v, want one containing %q", err, tt.ruleEr)
				}
				if errors.Is(err, ErrUnsupported) != tt.unsupp {
					t.Errorf("errors.Is(%v, ErrUnsupported) = %v, want %v", err, !tt.unsupp, tt.unsupp)
				}
				return
			}
			if err := res.Err(); err != nil {
				t.Fatal(err)
			}
			tab := res.Ruleset.Tables[0]
			if len(tab.Objects) != 3 {
				t.Fatalf("%d objects, want 3", len(tab.Objects))
			}
			if o := tab.Objects[0]; o.Packets != 3 || o.Bytes != 100 {
				t.Errorf("counter object %+v, want packets 3 bytes 100", o)
			}
			r := tab.Chain("c").Rules[0]
			if got := ir.FormatRule(tab.Family, r); got != tt.want {
				t.Errorf("rule prints as %q, want %q", got, tt.want)
			}
			for _, s := range r.Stmts {
				ref, ok := s.(*ir.ObjRef)
				if !ok || tab.Object(ref.Object.Type, ref.Object.Name) != ref.Object {
					t.Errorf("statement %v does not refer to the table's object", s)
				}
			}
		})
	}
}

// TestObjectsPrintLikeNft loads named objects and rules referring to them
// into the real nft, lifts the dump and checks that the ruleset prints
// exactly as `nft list ruleset` prints it.
func TestObjectsPrintLikeNft(t *testing.T) {
	privtest.Require(t)
	const ruleset = `table ip a {
	chain u {
		accept
	}
}
table inet t {
	counter c1 {
		packets 0 bytes 0
	}

	quota q1 {
		over 1000 bytes
	}

	counter c2 {
		packets 12 bytes 3456
	}

	limit l1 {
		rate 10/second
	}

	quota q2 {
		2000 bytes used 100 bytes
	}

	limit l2 {
		rate over 1000 kbytes/second burst 2000 bytes
	}

	limit l3 {
		rate over 7/minute burst 9 packets
	}

	quota q3 {
		5 mbytes
	}

	quota q4 {
		100 bytes used 100 bytes
	}

	chain c {
		counter name "c1" counter name "c2"
		counter name "c1" quota name "q1" limit name "l1" accept
		quota name "q2" drop
		limit name "l2" counter name "c2" limit name "l3" quota name "q3"
		quota name "q4" quota 50 bytes used 50 bytes
	}
}
`
	rs, err := nftfile.Parse("objects", strings.NewReader(ruleset), nftfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Lift(rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	for _, tab := range res.Ruleset.Tables {
		listing, err := nftfile.Listing("objects", strings.NewReader(ruleset), nftfile.Options{}, "list", "table", tab.Family.String(), tab.Name)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := tab.Print(&b); err != nil {
			t.Fatal(err)
		}
		if b.String() != listing {
			t.Errorf("table %s %s printed:\n%s\nnft lists:\n%s", tab.Family, tab.Name, b.String(), listing)
		}
		if !strings.Contains(ruleset, listing) {
			t.Errorf("nft lists table %s %s differently from its input:\n%s", tab.Family, tab.Name, listing)
		}
	}
	if n := len(res.Ruleset.Tables[1].Objects); n != 9 {
		t.Errorf("%d objects lifted, want 9", n)
	}
}

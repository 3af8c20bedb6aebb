package codegen

import (
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

func TestSmoke(t *testing.T) {
	privileged(t)
	for _, fl := range allFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			tab, c := table(ir.FamilyIPv4, 0, ir.VerdictAccept, []*ir.Rule{
				rule(eq(th(2, 2), u16(22)), counter, drop),
			})
			l := loadFlavour(t, fl, tab, c)
			if v := run(t, fl, l, tcp4(22)); v != ir.VerdictDrop {
				t.Errorf("tcp 22: got %s", vname(v))
			}
			if v := run(t, fl, l, tcp4(80)); v != ir.VerdictAccept {
				t.Errorf("tcp 80: got %s", vname(v))
			}
		})
	}
}

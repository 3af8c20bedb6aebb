package codegen

import (
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// maskLookup emits the lookup of a class of a masked group: its guards,
// then every column it loads (a field that cannot be loaded goes to next,
// as NFT_BREAK ends the rules that load it), masked into the key, and the
// lookup, which leaves the map value in R0.
func (g *gen) maskLookup(c *ir.Chain, p *groupPlan, cl *groupClass, next string) (*GroupMap, error) {
	mc := cl.mask
	g.curRule = c.Rules[p.start+cl.members[0]] // errors name the class's first rule
	g.b.invertNext = true
	for _, m := range mc.guards {
		g.curStmt = m
		if err := g.match(m, next); err != nil {
			return nil, err
		}
	}
	g.curStmt = nil
	offs, lens, keyLen := mc.keyLayout()
	for off := 0; off < keyLen; off += 8 {
		g.b.emit(stImm64(asm.R10, int16(groupKeyOff+off), 0))
	}
	flat := 0
	for i, f := range mc.fields {
		f := f
		if err := g.loadField(&f, uint32(mc.widths[i]), next); err != nil {
			return nil, err
		}
		for _, ch := range chunks(uint32(lens[i])) {
			pos, sz := int(ch[0]), ch[1]
			m := mc.mask[flat+pos : flat+pos+int(sz)]
			if allZero(m) {
				continue
			}
			g.b.emit(asm.LoadMem(asm.R0, asm.R10, int16(bufOff+pos), asmSize(sz)))
			if !allOnes(m) {
				g.loadConst(asm.R1, leValue(m))
				g.b.emit(asm.And.Reg(asm.R0, asm.R1))
			}
			g.b.emit(asm.StoreMem(asm.R10, int16(groupKeyOff+offs[i]+pos), asm.R0, asmSize(sz)))
		}
		flat += mc.widths[i]
	}

	rules := c.Rules[p.start:p.end]
	gm := &GroupMap{Chain: c.Name, wide: p.wide}
	counters := map[int]int32{}
	for _, idx := range cl.members {
		gr, r := p.rules[idx], rules[idx]
		gm.Handles = append(gm.Handles, r.Handle)
		ctr := int32(-1)
		if gr.counter >= 0 {
			ctr = int32(g.slotFor(CounterSlot{Chain: c.Name, Handle: r.Handle, Stmt: gr.counter}))
		}
		counters[idx] = ctr
	}
	for _, val := range mc.order {
		idx := mc.entries[val]
		gm.Keys = append(gm.Keys, mc.key(val, offs, lens, keyLen))
		gm.Values = append(gm.Values, GroupValue{Rule: uint32(idx), Counter: counters[idx], Action: p.action(p.rules[idx]), State: g.groupStateSlot(c, rules[idx], p.rules[idx]), Handle: rules[idx].Handle})
	}
	g.groupLookup(gm, keyLen, next)
	return gm, nil
}

func allOnes(b []byte) bool {
	for _, c := range b {
		if c != 0xff {
			return false
		}
	}
	return true
}

// Package pktgen generates frames that exercise an nftables chain.
//
// For every Match of every rule reachable from a chain it builds frames
// whose field takes the compared constant, its neighbours, the boundaries
// of ranges and set elements, and a random value, with the earlier matches
// of the rule satisfied so that the probed match is actually reached. It
// adds seeded random frames of many shapes. Generate does not predict
// verdicts: the frames go to the kernel (package oracle) and to the BPF
// program, and their verdicts are compared.
package pktgen

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"

	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Kind says which frames a hook can be given.
type Kind uint8

// Kinds.
const (
	// KindAnyFrame is for netdev hooks: any Ethernet frame, VLAN tagged,
	// truncated or not IP at all.
	KindAnyFrame Kind = iota
	// KindIPHook is for netfilter IP hooks (prerouting, input): frames
	// with IP headers the kernel accepts, sent to DstMAC. Probing a field
	// can still break a header (that is a case too).
	KindIPHook
)

// Options tune Generate.
type Options struct {
	Seed  uint64
	Count int // random frames added after the probes
	Kind  Kind
	// Addresses of the template frames; zero values take the defaults
	// of package oracle's namespaces (02:b0::01 → 02:b0::02, 192.0.2.1 →
	// 192.0.2.2, 2001:db8::1 → 2001:db8::2).
	SrcMAC, DstMAC net.HardwareAddr
	Src4, Dst4     netip.Addr
	Src6, Dst6     netip.Addr
}

// Case is one generated frame.
type Case struct {
	// Name says what the frame probes, e.g. "chain c rule 2 match 1
	// (payload nh+12/4): value+1".
	Name  string
	Frame []byte
}

func (o *Options) defaults() {
	if o.SrcMAC == nil {
		o.SrcMAC = net.HardwareAddr{0x02, 0xb0, 0, 0, 0, 1}
	}
	if o.DstMAC == nil {
		o.DstMAC = net.HardwareAddr{0x02, 0xb0, 0, 0, 0, 2}
	}
	if !o.Src4.IsValid() {
		o.Src4 = netip.MustParseAddr("192.0.2.1")
	}
	if !o.Dst4.IsValid() {
		o.Dst4 = netip.MustParseAddr("192.0.2.2")
	}
	if !o.Src6.IsValid() {
		o.Src6 = netip.MustParseAddr("2001:db8::1")
	}
	if !o.Dst6.IsValid() {
		o.Dst6 = netip.MustParseAddr("2001:db8::2")
	}
}

// Generate returns frames that exercise chain c of table t and the user
// chains it jumps or goes to. Frames are deduplicated; the result is the
// same for the same arguments.
func Generate(t *ir.Table, c *ir.Chain, opt Options) []Case {
	opt.defaults()
	g := &generator{
		opt:  opt,
		rand: rand.New(rand.NewPCG(opt.Seed, 0x706b7467656e)),
		seen: map[string]bool{},
		ipv6: t.Family == ir.FamilyIPv6,
	}
	for _, ch := range reachable(t, c) {
		for ri, rule := range ch.Rules {
			g.rule(ch, ri, rule)
		}
	}
	g.random()
	if readsCTState(t, c) {
		g.repeat()
	}
	return g.cases
}

// readsCTState reports whether a chain reachable from c reads ct state
// or status.
func readsCTState(t *ir.Table, c *ir.Chain) bool {
	for _, ch := range reachable(t, c) {
		for _, r := range ch.Rules {
			for _, st := range r.Stmts {
				for _, f := range ir.StmtFields(st) {
					if f.Source == ir.SourceCT && (f.CT == ir.CTState || f.CT == ir.CTStatus) {
						return true
					}
				}
			}
		}
	}
	return false
}

// repeat sends every frame twice in a row: the second one meets the
// conntrack entry the first created (established once the receiver has
// answered, as it answers echo requests).
func (g *generator) repeat() {
	out := make([]Case, 0, 2*len(g.cases))
	for _, c := range g.cases {
		out = append(out, c, Case{Name: c.Name + " (again)", Frame: c.Frame})
	}
	g.cases = out
}

// reachable returns c and the user chains of t reachable from it, in the
// order they are first reached.
func reachable(t *ir.Table, c *ir.Chain) []*ir.Chain {
	byName := map[string]*ir.Chain{}
	for _, ch := range t.Chains {
		byName[ch.Name] = ch
	}
	var out []*ir.Chain
	seen := map[*ir.Chain]bool{}
	var walk func(*ir.Chain)
	walk = func(ch *ir.Chain) {
		if ch == nil || seen[ch] {
			return
		}
		seen[ch] = true
		out = append(out, ch)
		for _, r := range ch.Rules {
			for _, s := range r.Stmts {
				if v, ok := s.(*ir.Verdict); ok && (v.Kind == ir.VerdictJump || v.Kind == ir.VerdictGoto) {
					walk(byName[v.Chain])
				}
				if vm, ok := s.(*ir.VerdictMap); ok && vm.Set != nil {
					for _, e := range vm.Set.Elements {
						if v := e.Verdict; v != nil && (v.Kind == ir.VerdictJump || v.Kind == ir.VerdictGoto) {
							walk(byName[v.Chain])
						}
					}
				}
			}
		}
	}
	walk(c)
	return out
}

type generator struct {
	opt   Options
	rand  *rand.Rand
	seen  map[string]bool
	cases []Case
	ipv6  bool // template is IPv6 (ip6 tables)
}

func (g *generator) add(name string, frame []byte) {
	if frame == nil || g.seen[string(frame)] {
		return
	}
	g.seen[string(frame)] = true
	g.cases = append(g.cases, Case{Name: name, Frame: frame})
}

func fieldString(f ir.Field) string {
	if f.Source == ir.SourceMeta {
		return fmt.Sprintf("meta %d", f.Meta)
	}
	if f.Source == ir.SourceCT {
		return fmt.Sprintf("ct %d dir %d", f.CT, f.CTDir)
	}
	base := [...]string{"ll", "nh", "th", "inner"}[f.Base&3]
	return fmt.Sprintf("payload %s+%d/%d", base, f.Offset, f.Len)
}

// rule probes each match of rule with the earlier matches satisfied.
func (g *generator) rule(ch *ir.Chain, ri int, rule *ir.Rule) {
	var matches []*ir.Match
	for _, s := range rule.Stmts {
		if m, ok := s.(*ir.Match); ok {
			matches = append(matches, m)
		}
		matches = append(matches, keyMatches(s)...)
	}
	g.concatProbes(ch, ri, rule, matches)
	var hits []assignment
	for mi, m := range matches {
		for _, cand := range candidates(m, g.rand) {
			sp := g.template()
			for _, h := range hits {
				sp.set(h.field, h.value)
			}
			sp.set(m.Field, cand.value)
			// Also satisfy the later matches where possible, so that a
			// hit of this match can lead to the rule's verdict.
			for _, later := range matches[mi+1:] {
				if v, ok := hitValue(later); ok {
					sp.set(later.Field, v)
				}
			}
			name := fmt.Sprintf("chain %s rule %d match %d (%s): %s", ch.Name, ri, mi, fieldString(m.Field), cand.label)
			g.add(name, sp.build())
		}
		v, ok := hitValue(m)
		if !ok {
			break // later matches cannot be reached on purpose
		}
		hits = append(hits, assignment{m.Field, v})
	}
}

type assignment struct {
	field ir.Field
	value []byte
}

// template returns the base frame description for probes.
func (g *generator) template() *spec {
	sp := &spec{opt: &g.opt, etherType: packet.EtherTypeIPv4, l4: packet.ProtoUDP, dstMAC: g.opt.DstMAC}
	if g.ipv6 {
		sp.etherType = packet.EtherTypeIPv6
	}
	return sp
}

// random adds opt.Count seeded random frames.
func (g *generator) random() {
	l4s := []uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMP, packet.ProtoICMPv6, packet.ProtoSCTP, packet.ProtoUDPLite, 47, 253}
	srcs4 := []string{"192.0.2.", "198.51.100.", "203.0.113."}
	for i := 0; i < g.opt.Count; i++ {
		r := g.rand
		sp := g.template()
		if r.IntN(2) == 0 {
			sp.etherType = packet.EtherTypeIPv6
		} else {
			sp.etherType = packet.EtherTypeIPv4
		}
		sp.l4 = l4s[r.IntN(len(l4s))]
		sp.random = r
		if sp.etherType == packet.EtherTypeIPv4 {
			a := netip.MustParseAddr(srcs4[r.IntN(3)] + fmt.Sprint(1+r.IntN(254)))
			sp.src = &a
		} else {
			b := g.opt.Src6.As16()
			binary.BigEndian.PutUint16(b[14:], uint16(r.UintN(0x10000)))
			a := netip.AddrFrom16(b)
			sp.src = &a
		}
		if g.opt.Kind == KindAnyFrame && r.IntN(4) == 0 {
			sp.dstMAC = net.HardwareAddr{0x02, 0x99, byte(r.UintN(256)), 0, 0, 1}
		}
		if r.IntN(5) == 0 { // fragment
			sp.fragOffset = uint16(r.IntN(3))
			sp.moreFrags = r.IntN(2) == 0
			sp.fragment = sp.fragOffset != 0 || sp.moreFrags || sp.etherType == packet.EtherTypeIPv6
		}
		if r.IntN(5) == 0 {
			sp.ipOptions = true
		}
		label := "random"
		if g.opt.Kind == KindAnyFrame {
			switch r.IntN(8) {
			case 0:
				sp.tags = []packet.VLAN{{ID: uint16(1 + r.IntN(4094)), PCP: uint8(r.IntN(8))}}
				label = "random vlan"
			case 1:
				sp.tags = []packet.VLAN{{TPID: packet.EtherTypeQinQ, ID: uint16(1 + r.IntN(4094))}, {ID: uint16(1 + r.IntN(4094))}}
				label = "random qinq"
			case 2:
				sp.etherType = []uint16{packet.EtherTypeARP, packet.EtherTypeLocal, 0x8847}[r.IntN(3)]
				label = "random non-ip"
			case 3:
				sp.truncate = 1 + r.IntN(40)
				label = "random truncated"
			}
		}
		g.add(fmt.Sprintf("%s %d", label, i), sp.build())
	}
}

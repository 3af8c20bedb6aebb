package iptables

import (
	"fmt"

	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// build emits the expressions of r, in the order iptables-nft emits them:
// input and output interface, protocol, source and destination address,
// fragment flag, the matches in the order given, a counter and the
// verdict. A rule with several source or destination addresses becomes
// one rule per combination, as with iptables.
func (r *ruleSpec) build() ([]*exprs, error) {
	srcs, dsts := r.src, r.dst
	if !r.hasSrc {
		srcs = []addr{{}}
	}
	if !r.hasDst {
		dsts = []addr{{}}
	}
	var out []*exprs
	for _, s := range srcs {
		for _, d := range dsts {
			e := &exprs{}
			if err := r.emit(e, s, d); err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	}
	return out, nil
}

func (r *ruleSpec) emit(e *exprs, src, dst addr) error {
	if r.inIface != "" {
		emitIface(e, metaIifName, r.inIface, r.invIn)
	}
	if r.outIface != "" {
		emitIface(e, metaOifName, r.outIface, r.invOut)
	}
	if r.hasProto && r.proto != 0 {
		e.meta(metaL4Proto)
		e.cmp(opOf(r.invProto), []byte{r.proto})
	}
	srcOff, dstOff := uint32(12), uint32(16)
	if r.family == nlmsg.FamilyIPv6 {
		srcOff, dstOff = 8, 24
	}
	if r.hasSrc {
		if err := emitAddr(e, srcOff, src, r.invSrc); err != nil {
			return fmt.Errorf("-s: %w", err)
		}
	}
	if r.hasDst {
		if err := emitAddr(e, dstOff, dst, r.invDst); err != nil {
			return fmt.Errorf("-d: %w", err)
		}
	}
	if r.frag {
		// The fragment offset (13 bits of frag_off) is non-zero.
		e.payload(baseNetwork, 6, 2)
		e.mask([]byte{0x1f, 0xff})
		op := uint32(cmpNeq)
		if r.invFrag {
			op = cmpEq
		}
		e.cmp(op, []byte{0, 0})
	}
	for _, m := range r.matches {
		if err := m.emit(r, e); err != nil {
			return fmt.Errorf("-m %s: %w", m.name(), err)
		}
	}
	e.add(&nlmsg.Counter{})
	if r.targetMod != nil {
		if err := r.targetMod.emit(r, e); err != nil {
			return fmt.Errorf("-j %s: %w", r.targetMod.name(), err)
		}
	}
	switch r.target {
	case targetAccept:
		e.add(verdict(nlmsg.VerdictAccept, ""))
	case targetDrop:
		e.add(verdict(nlmsg.VerdictDrop, ""))
	case targetReturn:
		e.add(verdict(nlmsg.VerdictReturn, ""))
	case targetJump:
		e.add(verdict(nlmsg.VerdictJump, r.chain))
	case targetGoto:
		e.add(verdict(nlmsg.VerdictGoto, r.chain))
	}
	return nil
}

func verdict(code int32, chain string) *nlmsg.Immediate {
	return &nlmsg.Immediate{DReg: 0, Verdict: &nlmsg.Verdict{Code: code, Chain: chain}}
}

func opOf(inv bool) uint32 {
	if inv {
		return cmpNeq
	}
	return cmpEq
}

// emitIface compares the interface name: the whole name with its NUL, or
// only the part before a trailing "+" wildcard. "+" alone matches every
// interface; "! +" none, which iptables-nft spells as a compare with a
// name no interface can have.
func emitIface(e *exprs, key uint32, name string, inv bool) {
	if name[len(name)-1] == '+' {
		prefix := name[:len(name)-1]
		if prefix == "" {
			if inv {
				e.meta(key)
				e.cmp(cmpEq, append([]byte("INVAL/D"), 0))
			}
			return
		}
		e.meta(key)
		e.cmp(opOf(inv), []byte(prefix))
		return
	}
	e.meta(key)
	e.cmp(opOf(inv), append([]byte(name), 0))
}

// emitAddr loads and compares an address under its mask: only the whole
// bytes of a prefix mask are loaded; any other mask goes through a bitwise
// and.
func emitAddr(e *exprs, off uint32, a addr, inv bool) error {
	n := len(a.mask)
	i := 0
	for i < n && a.mask[i] == 0xff {
		i++
	}
	bitwise := false
	if i < n {
		bitwise = a.mask[i] != 0
		for j := i + 1; !bitwise && j < n; j++ {
			bitwise = a.mask[j] != 0
		}
	}
	length := n
	if !bitwise {
		length = i
	}
	if length == 0 {
		if inv {
			// iptables-nft emits a zero-length load, which the kernel
			// refuses.
			return fmt.Errorf("! with an all-zero mask never matches and cannot be loaded")
		}
		return nil
	}
	e.payload(baseNetwork, off, uint32(length))
	if bitwise {
		e.mask(append([]byte(nil), a.mask...))
	}
	e.cmp(opOf(inv), append([]byte(nil), a.ip[:length]...))
	return nil
}

package codegen

import (
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// loadExthdr places the register image of an IPv6 extension header Field
// in the buffer, or jumps to fail where nf_tables would break (see
// ir.ExthdrMode). The header is found as ipv6_find_hdr does with the
// header's number as target and no flags.
func (g *gen) loadExthdr(f *ir.Field, span uint32, fail string) error {
	if f.Offset > 0xffff {
		return g.unsupported("extension header offset %d beyond 65535", f.Offset)
	}
	found := g.b.newLabel("xh_found")
	missing := fail
	malformed := fail
	switch f.ExthdrMode {
	case ir.ExthdrLoad:
	case ir.ExthdrPresent:
		missing = g.b.newLabel("xh_missing")
		malformed = missing
	case ir.ExthdrXT:
		if !isIPv6ExtHdr(int32(f.Exthdr)) {
			return g.unsupported("xtables extension header match of protocol %d", f.Exthdr)
		}
		malformed = g.b.newLabel("xh_hotdrop")
	default:
		return g.unsupported("extension header mode %d", f.ExthdrMode)
	}
	// nft_exthdr_ipv6_eval breaks for packets that are not IPv6.
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, slotProto, asm.DWord),
		asm.JNE.Imm(asm.R0, ethPIPv6, fail),
		asm.LoadMem(asm.R2, asm.R10, slotNH, asm.DWord),
		asm.Add.Imm(asm.R2, 6),
	)
	g.loadBytes(bufOff, 1)
	g.b.emit(
		asm.JNE.Imm(asm.R0, 0, fail),
		asm.LoadMem(asm.R7, asm.R10, bufOff, asm.Byte),
		asm.StoreMem(asm.R10, slotT1, asm.R7, asm.DWord),
		asm.LoadMem(asm.R8, asm.R10, slotNH, asm.DWord),
		asm.Add.Imm(asm.R8, 40),
	)
	g.launder(asm.R8, slotT2)
	g.findHdr(int32(f.Exthdr), found, missing, malformed)

	g.b.label(found)
	switch f.ExthdrMode {
	case ir.ExthdrPresent:
		done := g.b.newLabel("xh_done")
		g.zeroBuf(span)
		g.b.emit(
			asm.StoreImm(asm.R10, bufOff, 1, asm.Byte),
			asm.Ja.Label(done),
		)
		g.b.label(missing)
		g.zeroBuf(span)
		g.b.label(done)
		return nil
	case ir.ExthdrXT:
		// The header's length field (ipv6_optlen) must fit the packet,
		// else the packet is dropped too; the walk left the header's
		// first bytes in the buffer.
		whole := g.b.newLabel("xh_whole")
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R10, bufOff+1, asm.Byte),
			asm.Add.Imm(asm.R1, 1),
			asm.LSh.Imm(asm.R1, 3),
			asm.Add.Reg(asm.R1, asm.R8),
			asm.LoadMem(asm.R0, asm.R10, slotTotal, asm.DWord),
			asm.JLE.Reg(asm.R1, asm.R0, whole),
		)
		g.b.label(malformed)
		g.b.emit(asm.LongJump(labelDrop))
		g.b.label(whole)
	}
	g.zeroBuf(span)
	g.b.emit(
		asm.Mov.Reg(asm.R2, asm.R8),
		asm.Add.Imm(asm.R2, int32(f.Offset)),
	)
	g.loadBytes(bufOff, f.Len)
	g.b.emit(asm.JNE.Imm(asm.R0, 0, fail))
	return nil
}

// findHdr walks the IPv6 extension headers like ipv6_find_hdr with target
// (no flags), from the protocol number in slotT1 and the offset in slotT2
// (laundered). It jumps to found with the target header's offset from the
// load origin in R8 (its first bytes, up to 4, in the buffer when it is an
// extension header), to missing where ipv6_find_hdr returns -ENOENT and
// to malformed where it returns -EBADMSG.
func (g *gen) findHdr(target int32, found, missing, malformed string) {
	g.ipv6ExtWalk(findHdrWalk(target, found, missing, malformed))
}

// findHdrWalk is the walk of findHdr.
func findHdrWalk(target int32, found, missing, malformed string) ipv6Walk {
	w := ipv6Walk{
		proto: slotT1, off: slotT2, hdr: bufOff,
		// Any other header that is no extension header: -ENOENT.
		end:       missing,
		laterFrag: missing, // a later fragment hides what follows it
		bad:       malformed,
		exhausted: missing,
	}
	if isIPv6ExtHdr(target) {
		// An extension header is found once its first bytes are read,
		// a later fragment's header too when it is the target.
		w.read = []walkExit{{target, found}}
	} else {
		// A protocol (or NEXTHDR_NONE) is found where it is met.
		w.meet = []walkExit{{target, found}}
	}
	return w
}

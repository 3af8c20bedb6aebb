package codegen

import (
	"github.com/cilium/ebpf/asm"
)

// IPv6 extension header protocol numbers (include/net/ipv6.h).
const (
	nextHdrHopOpts  = 0
	nextHdrRouting  = 43
	nextHdrFragment = 44
	nextHdrAuth     = 51
	nextHdrNone     = 59
	nextHdrDest     = 60
)

// ipv6ExtHdrs are the headers ipv6_ext_hdr() accepts, NEXTHDR_NONE
// excluded (ESP is not one).
var ipv6ExtHdrs = []int32{nextHdrHopOpts, nextHdrRouting, nextHdrFragment, nextHdrAuth, nextHdrDest}

func isIPv6ExtHdr(p int32) bool {
	for _, x := range ipv6ExtHdrs {
		if x == p {
			return true
		}
	}
	return false
}

// ipv6Walk is one use of the walk over IPv6 extension headers that the
// kernel's ipv6_find_hdr and ipv6_skip_exthdr do. What they share is the
// walk itself: an extension header (hop-by-hop, routing, fragment, AH,
// destination options) is read (two bytes, four for routing and fragment
// headers: struct ipv6_rt_hdr, frag_off), its length taken as
// ipv6_optlen ((hdrlen + 1) * 8), ipv6_authlen for AH ((hdrlen + 2) * 4),
// or 8 for the first fragment, and the walk goes on with its next header.
// Where they differ — what ends the walk (a target, AH with
// IP6_FH_F_AUTH, NEXTHDR_NONE), what a later fragment means — is the
// caller's: the walk jumps to the caller's labels with
//
//	R7 the protocol number of the current header,
//	R8 its offset (as in the off slot),
//
// and the slots proto and off holding the same. The walk uses R0-R5, R7-R9.
type ipv6Walk struct {
	// proto and off are the stack slots of the current header's protocol
	// number and offset; the caller sets them to the fixed header's next
	// header and its end (off laundered, see launder) before the walk.
	proto, off int16
	// base, if nonzero, is a stack slot added to off to give the offset
	// of a load (off is then relative to it); else off is the load offset.
	base int16
	// hdr is the stack buffer each extension header's first bytes are
	// read to (it must be bufOff where loadBE16 reads it).
	hdr int16
	// limit, if nonzero, is a stack slot with the length of the packet as
	// the walk's caller sees it (a trimmed skb): header bytes beyond it
	// cannot be read, even where the packet has them.
	limit int16

	// meet are headers that end the walk where they are met, unread,
	// before the extension header test.
	meet []walkExit
	// end is where any other header that is not an extension header
	// (NEXTHDR_NONE included) ends the walk.
	end string
	// read are extension headers that end the walk once their first
	// bytes are read (into hdr).
	read []walkExit
	// laterFrag is where a fragment header with a non-zero fragment offset
	// ends the walk; R1 holds the offset (host order, flags masked off)
	// and hdr the header's first four bytes.
	laterFrag string
	// bad is where a header that cannot be read (skb_header_pointer
	// fails) ends the walk, and exhausted where the loop's iteration
	// budget (may_goto) runs out.
	bad, exhausted string
}

// walkExit ends an IPv6 extension header walk at header proto, at label to.
type walkExit struct {
	proto int32
	to    string
}

// ipv6ExtWalk emits the walk w describes.
func (g *gen) ipv6ExtWalk(w ipv6Walk) {
	loop := g.b.newLabel("v6w_loop")
	isExt := g.b.newLabel("v6w_ext")
	read4 := g.b.newLabel("v6w_read4")
	read := g.b.newLabel("v6w_read")
	notFrag := g.b.newLabel("v6w_notfrag")
	optlen := g.b.newLabel("v6w_optlen")
	next := g.b.newLabel("v6w_next")

	g.b.label(loop)
	g.b.emit(
		asm.Instruction{OpCode: asm.OpCode(asm.JumpClass).SetJumpOp(asm.JCOND), Offset: -1}.WithReference(w.exhausted),
		asm.LoadMem(asm.R7, asm.R10, w.proto, asm.DWord),
		asm.LoadMem(asm.R8, asm.R10, w.off, asm.DWord),
		// Offsets this far cannot be read: the walk only gets here over
		// headers read from the packet.
		asm.JGT.Imm(asm.R8, 0xffffff, w.bad),
	)
	for _, x := range w.meet {
		g.b.emit(asm.JEq.Imm(asm.R7, x.proto, x.to))
	}
	for _, p := range ipv6ExtHdrs {
		g.b.emit(asm.JEq.Imm(asm.R7, p, isExt))
	}
	g.b.emit(asm.Ja.Label(w.end))

	g.b.label(isExt)
	if w.limit != 0 {
		g.walkFits(w, 2)
	}
	g.b.emit(asm.Mov.Reg(asm.R2, asm.R8))
	if w.base != 0 {
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, w.base, asm.DWord),
			asm.Add.Reg(asm.R2, asm.R0),
		)
	}
	g.b.emit(
		asm.JEq.Imm(asm.R7, nextHdrRouting, read4),
		asm.JEq.Imm(asm.R7, nextHdrFragment, read4),
	)
	g.loadBytes(int32(w.hdr), 2)
	g.b.emit(asm.Ja.Label(read))
	g.b.label(read4)
	g.loadBytes(int32(w.hdr), 4)
	g.b.label(read)
	g.b.emit(asm.JNE.Imm(asm.R0, 0, w.bad))
	for _, x := range w.read {
		g.b.emit(asm.JEq.Imm(asm.R7, x.proto, x.to))
	}
	g.b.emit(
		asm.Mov.Imm(asm.R9, 8),
		asm.JNE.Imm(asm.R7, nextHdrFragment, notFrag),
	)
	if w.limit != 0 {
		g.walkFits(w, 4)
	}
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, w.hdr+2, asm.Half),
		asm.BSwap(asm.R1, asm.Half),
		asm.And.Imm(asm.R1, 0xfff8),
		asm.JEq.Imm(asm.R1, 0, next),
		asm.Ja.Label(w.laterFrag),
	)
	g.b.label(notFrag)
	g.b.emit(
		asm.LoadMem(asm.R9, asm.R10, w.hdr+1, asm.Byte),
		asm.JNE.Imm(asm.R7, nextHdrAuth, optlen),
		// ipv6_authlen: (hdrlen + 2) * 4 bytes.
		asm.Add.Imm(asm.R9, 2),
		asm.LSh.Imm(asm.R9, 2),
		asm.Ja.Label(next),
	)
	g.b.label(optlen)
	g.b.emit(
		// ipv6_optlen: (hdrlen + 1) * 8 bytes.
		asm.Add.Imm(asm.R9, 1),
		asm.LSh.Imm(asm.R9, 3),
	)
	g.b.label(next)
	g.b.emit(
		asm.LoadMem(asm.R7, asm.R10, w.hdr, asm.Byte),
		asm.StoreMem(asm.R10, w.proto, asm.R7, asm.DWord),
		asm.Add.Reg(asm.R8, asm.R9),
	)
	g.launder(asm.R8, w.off)
	g.b.emit(asm.Ja.Label(loop))
}

// walkFits jumps to w.bad unless n bytes from the offset in R8 lie within
// w.limit.
func (g *gen) walkFits(w ipv6Walk, n int32) {
	g.b.emit(
		asm.Mov.Reg(asm.R0, asm.R8),
		asm.Add.Imm(asm.R0, n),
		asm.LoadMem(asm.R1, asm.R10, w.limit, asm.DWord),
		asm.JGT.Reg(asm.R0, asm.R1, w.bad),
	)
}

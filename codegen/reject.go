package codegen

import (
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Reject at the netdev ingress hook (tc and XDP programs).
//
// The kernel's nft_reject_netdev_eval builds a new packet — a TCP reset
// (nf_reject_skb_v4_tcp_reset, nf_reject_skb_v6_tcp_reset) or an ICMP /
// ICMPv6 destination unreachable error (nf_reject_skb_v4_unreach,
// nf_reject_skb_v6_unreach) — puts an Ethernet header with the original
// addresses swapped in front of it (dev_hard_header), queues it on the
// device the original came in on (dev_queue_xmit) and drops the original.
// It sends nothing for frames to a broadcast or multicast address, for
// protocols other than IPv4 and IPv6, and for packets its validation turns
// down (bad IP header, fragments, not TCP for a reset, RSTs, bad
// checksums).
//
// The program does the same in place: it checks what the kernel checks,
// rewrites the frame into the reply (bpf_skb_change_tail and
// bpf_skb_store_bytes at tc) and sends it out of the device it came in on
// (bpf_redirect to the egress of the same ifindex), or drops the frame
// when the kernel would send nothing.
//
// The statement ends the program, so it may use the stack below the
// pktinfo slots freely (the rule buffers are dead by then).
const (
	rjHdr = -512 // 120 bytes: the original headers (see rjEth, rjNet, rjL4)
	rjBuf = -392 // 200 bytes: checksum chunks, pseudo headers, then the reply
	rjOff = -192 // checksum loop: packet offset
	rjRem = -184 // checksum loop: bytes left
	rjSum = -176 // checksum loop: running sum (32 bits)

	rjEth = rjHdr      // original Ethernet header, 14 bytes
	rjNet = rjHdr + 16 // original IPv4/IPv6 header, up to 40 bytes
	rjL4  = rjHdr + 56 // original TCP header, 20 bytes

	// The reply is built at rjOut: its network header (rjOut+14) is 8-byte
	// and its transport header 4-byte aligned, as stack accesses must be.
	rjOut = rjBuf + 2

	rjChunk = 192 // bytes summed per bpf_csum_diff call (the buffer has 4 spare bytes for rounding up)

	rjIHL       = slotT1      // IPv4 header length in bytes
	rjSummed    = slotT2      // skb->ip_summed (tc), or -1 (XDP: unknown)
	rjQLen      = rjHdr + 80  // bytes of the original an ICMP error quotes
	rjTot       = rjHdr + 88  // IPv4 tot_len of the original, then of the reply
	rjCsumValid = rjHdr + 96  // skb->csum_valid (tc)
	rjProto     = rjHdr + 104 // IPv6: the protocol ipv6_skip_exthdr found
	rjFragOff   = rjHdr + 112 // IPv6: the offset of the later fragment it stopped at (host order, flags masked), or 0
)

// Checksum states of an skb (include/linux/skbuff.h).
const (
	checksumNone        = 0
	checksumUnnecessary = 1
	checksumComplete    = 2
	checksumPartial     = 3
)

// Helper flags.
const (
	bpfFRecomputeCsum = 1 // BPF_F_RECOMPUTE_CSUM
	tcActRedirect     = 7
	xdpTX             = 3
)

// ICMPx codes (NFT_REJECT_ICMPX_*) and what nft_reject_icmp_code /
// nft_reject_icmpv6_code turn them into.
var (
	icmpxToV4 = [...]uint8{0, 3, 1, 13} // net, port, host unreachable; communication administratively prohibited (ICMP_PKT_FILTERED)
	icmpxToV6 = [...]uint8{0, 4, 3, 1}  // no route, port, address unreachable; administratively prohibited
)

// rejectPlan says what a reject statement sends per IP version.
type rejectPlan struct {
	reset  bool  // TCP reset for both versions
	v4Code uint8 // ICMP code of the unreachable error (if !reset)
	v6Code uint8 // ICMPv6 code
}

func planReject(r *ir.Reject) (rejectPlan, error) {
	switch r.Type {
	case ir.RejectTCPReset:
		return rejectPlan{reset: true}, nil
	case ir.RejectICMPUnreach:
		// nft_reject_netdev_eval passes the code unchanged to both
		// nf_reject_skb_v4_unreach and nf_reject_skb_v6_unreach.
		return rejectPlan{v4Code: r.Code, v6Code: r.Code}, nil
	case ir.RejectICMPXUnreach:
		if int(r.Code) >= len(icmpxToV4) {
			return rejectPlan{}, errRejectCode
		}
		return rejectPlan{v4Code: icmpxToV4[r.Code], v6Code: icmpxToV6[r.Code]}, nil
	}
	return rejectPlan{}, errRejectType
}

type rejectError string

func (e rejectError) Error() string { return string(e) }

const (
	errRejectCode = rejectError("reject: unknown icmpx code")
	errRejectType = rejectError("reject: unknown reject type")
)

// rejectNetdev compiles reject for an XDP or tc program.
func (g *gen) rejectNetdev(r *ir.Reject) error {
	if g.tgt.Family != ir.FamilyNetdev {
		return g.unsupported("reject: %s programs serve netdev chains only", g.tgt.Type)
	}
	if g.tgt.Hook != ir.HookIngress || g.tgt.Egress {
		return g.unsupported("reject: the kernel allows reject in netdev chains only at the ingress hook (nft_reject_netdev_validate)")
	}
	if d := g.tgt.Device; d != nil && d.Type != 1 {
		return g.unsupported("reject: device %s is not an Ethernet device (ARPHRD %d); the reply's link-layer header is built for Ethernet only", d.Name, d.Type)
	}
	plan, err := planReject(r)
	if err != nil {
		return g.unsupported("%v", err)
	}
	if g.tgt.Type != TC {
		return g.unsupported("reject: an XDP program cannot see skb->ip_summed, which decides whether the kernel checks the original's checksum before it replies (CHECKSUM_UNNECESSARY and CHECKSUM_PARTIAL packets, e.g. locally generated ones crossing a veth, get a reply unchecked), so it cannot tell exactly when the kernel sends one; use tcx (--netdev-backend tc)")
	}
	return g.rejectTC(plan)
}

// rejectTC emits the reject code of a tc ingress program.
func (g *gen) rejectTC(plan rejectPlan) error {
	summed, err := kernelMember("sk_buff", "ip_summed")
	if err != nil {
		return err
	}
	valid, err := kernelMember("sk_buff", "csum_valid")
	if err != nil {
		return err
	}
	// At tc ingress skb->data is the MAC header: the frame must start
	// there with a 14-byte Ethernet header (a hardware-accelerated VLAN
	// tag is not in the data).
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, slotLL, asm.DWord),
		asm.JNE.Imm(asm.R0, 0, labelDrop),
		asm.LoadMem(asm.R0, asm.R10, slotNH, asm.DWord),
		asm.JNE.Imm(asm.R0, 14, labelDrop),
		asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
		asm.LoadMem(asm.R0, asm.R1, summed.Off, asm.Byte),
	)
	if summed.BitOff != 0 {
		g.b.emit(asm.RSh.Imm(asm.R0, int32(summed.BitOff)))
	}
	g.b.emit(
		asm.And.Imm(asm.R0, 3),
		asm.StoreMem(asm.R10, rjSummed, asm.R0, asm.DWord),
		asm.LoadMem(asm.R0, asm.R1, valid.Off, asm.Byte),
	)
	if valid.BitOff != 0 {
		g.b.emit(asm.RSh.Imm(asm.R0, int32(valid.BitOff)))
	}
	g.b.emit(
		asm.And.Imm(asm.R0, 1),
		asm.StoreMem(asm.R10, rjCsumValid, asm.R0, asm.DWord),
	)
	if err := g.rejectEthCheck(); err != nil {
		return err
	}
	v6 := g.b.newLabel("rj_v6")
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, slotProto, asm.DWord),
		asm.JEq.Imm(asm.R0, ethPIPv6, v6),
		// No explicit way to reject other protocols: drop.
		asm.JNE.Imm(asm.R0, ethPIP, labelDrop),
	)
	if err := g.rejectV4Validate(); err != nil {
		return err
	}
	if plan.reset {
		if err := g.rejectV4Reset(); err != nil {
			return err
		}
	} else if err := g.rejectV4Unreach(plan.v4Code); err != nil {
		return err
	}
	g.b.label(v6)
	if err := g.rejectV6Validate(); err != nil {
		return err
	}
	if plan.reset {
		return g.rejectV6Reset()
	}
	return g.rejectV6Unreach(plan.v6Code)
}

// rejectEthCheck loads the Ethernet header and drops frames sent to a
// broadcast or multicast address (nft_reject_netdev_eval sends no reply).
func (g *gen) rejectEthCheck() error {
	g.b.emit(asm.LoadMem(asm.R2, asm.R10, slotLL, asm.DWord))
	g.loadBytes(rjEth, 14)
	g.b.emit(
		asm.JNE.Imm(asm.R0, 0, labelDrop),
		asm.LoadMem(asm.R0, asm.R10, rjEth, asm.Byte),
		asm.And.Imm(asm.R0, 1),
		asm.JNE.Imm(asm.R0, 0, labelDrop),
	)
	return nil
}

// rejectTCPHeader writes the reset's TCP header at tcp (checksum 0):
// ports swapped, doff 5, RST; with the original's ACK the sequence number
// is its ack_seq, else ack_seq acknowledges what it carried (SYN and FIN
// count one each, the data is skb->len less the transport header offset
// in rjIHL less doff*4).
func (g *gen) rejectTCPHeader(tcp int16) {
	hasAck := g.b.newLabel("rj_ack")
	flagsDone := g.b.newLabel("rj_flags")
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjL4+2, asm.Half),
		asm.StoreMem(asm.R10, tcp, asm.R0, asm.Half),
		asm.LoadMem(asm.R0, asm.R10, rjL4, asm.Half),
		asm.StoreMem(asm.R10, tcp+2, asm.R0, asm.Half),
		asm.LoadMem(asm.R1, asm.R10, rjL4+13, asm.Byte), // flags
		asm.Mov.Reg(asm.R0, asm.R1),
		asm.And.Imm(asm.R0, 0x10),
		asm.JNE.Imm(asm.R0, 0, hasAck),
		stImm32(asm.R10, tcp+4, 0),
		asm.LoadMem(asm.R0, asm.R10, rjL4+4, asm.Word),
		asm.BSwap(asm.R0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.And.Imm(asm.R2, 1), // FIN
		asm.Add.Reg(asm.R0, asm.R2),
		asm.RSh.Imm(asm.R1, 1),
		asm.And.Imm(asm.R1, 1), // SYN
		asm.Add.Reg(asm.R0, asm.R1),
		asm.LoadMem(asm.R1, asm.R10, slotLen, asm.DWord),
		asm.Add.Reg(asm.R0, asm.R1),
		asm.LoadMem(asm.R1, asm.R10, rjIHL, asm.DWord),
		asm.Sub.Reg(asm.R0, asm.R1),
		asm.LoadMem(asm.R1, asm.R10, rjL4+12, asm.Byte),
		asm.RSh.Imm(asm.R1, 4),
		asm.LSh.Imm(asm.R1, 2),
		asm.Sub.Reg(asm.R0, asm.R1),
		asm.BSwap(asm.R0, asm.Word),
		asm.StoreMem(asm.R10, tcp+8, asm.R0, asm.Word),
		stImm32(asm.R10, tcp+12, 0x50|0x14<<8), // doff 5, RST|ACK, window 0
		asm.Ja.Label(flagsDone),
	)
	g.b.label(hasAck)
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjL4+8, asm.Word),
		asm.StoreMem(asm.R10, tcp+4, asm.R0, asm.Word),
		stImm32(asm.R10, tcp+8, 0),
		stImm32(asm.R10, tcp+12, 0x50|0x04<<8), // doff 5, RST, window 0
	)
	g.b.label(flagsDone)
	g.b.emit(stImm32(asm.R10, tcp+16, 0)) // checksum, urgent pointer
}

// rejectTCPChecksum stores the reset's checksum, given R0 holding the
// 32-bit sum of its pseudo header: complete, or partial (the folded
// pseudo header sum, as a CHECKSUM_PARTIAL skb carries it) when the
// original skb is CHECKSUM_PARTIAL and will be completed by the device.
func (g *gen) rejectTCPChecksum(tcp int16) {
	partial := g.b.newLabel("rj_partial")
	store := g.b.newLabel("rj_store")
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, rjSummed, asm.DWord),
		asm.JEq.Imm(asm.R1, checksumPartial, partial),
		asm.StoreMem(asm.R10, rjOff, asm.R0, asm.DWord),
	)
	g.csumStack(tcp, 20, rjOff)
	fold16(g.b, asm.R0)
	g.b.emit(
		asm.Xor.Imm(asm.R0, 0xffff),
		asm.Ja.Label(store),
	)
	g.b.label(partial)
	fold16(g.b, asm.R0)
	g.b.label(store)
	g.b.emit(asm.StoreMem(asm.R10, tcp+16, asm.R0, asm.Half))
}

// rejectEthReply writes the reply's Ethernet header: the original's
// source and destination swapped, and ethertype.
func (g *gen) rejectEthReply(ethertype uint16) {
	for i := int16(0); i < 6; i += 2 {
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, rjEth+6+i, asm.Half),
			asm.StoreMem(asm.R10, rjOut+i, asm.R0, asm.Half),
			asm.LoadMem(asm.R0, asm.R10, rjEth+i, asm.Half),
			asm.StoreMem(asm.R10, rjOut+6+i, asm.R0, asm.Half),
		)
	}
	g.b.emit(
		asm.Mov.Imm(asm.R0, int32(ethertype)),
		asm.BSwap(asm.R0, asm.Half),
		asm.StoreMem(asm.R10, rjOut+12, asm.R0, asm.Half),
	)
}

// rejectSendTC turns the frame into the n-byte reply at rjOut and sends
// it out of the device it came in on.
func (g *gen) rejectSendTC(n int32) error {
	g.b.emit(
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, n),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnSkbChangeTail.Call(),
		asm.JNE.Imm(asm.R0, 0, labelDrop),
	)
	g.rejectFinishTC(n)
	return nil
}

// rejectSendTCQuote makes room for grow bytes of headers behind the
// Ethernet header (bpf_skb_adjust_room, BPF_ADJ_ROOM_MAC), so that the
// original's network header becomes the quote, cuts the frame to hdr
// bytes of headers and the quote (its length in stack slot qlen), writes
// the hdr bytes at rjOut over the start and sends it out of the device it
// came in on.
func (g *gen) rejectSendTCQuote(grow, hdr int32, qlen int16) error {
	g.b.emit(
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, grow),
		asm.Mov.Imm(asm.R3, 1), // BPF_ADJ_ROOM_MAC
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkbAdjustRoom.Call(),
		asm.JNE.Imm(asm.R0, 0, labelDrop),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMem(asm.R2, asm.R10, qlen, asm.DWord),
		asm.Add.Imm(asm.R2, hdr),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnSkbChangeTail.Call(),
		asm.JNE.Imm(asm.R0, 0, labelDrop),
	)
	g.rejectFinishTC(hdr)
	return nil
}

// rejectFinishTC removes an accelerated VLAN tag (the kernel's reply
// leaves untagged), writes the first n bytes of the reply from rjOut and
// redirects the frame to the egress of the device it came in on.
func (g *gen) rejectFinishTC(n int32) {
	noTag := g.b.newLabel("rj_notag")
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, slotVlan, asm.DWord),
		asm.JEq.Imm(asm.R0, 0, noTag),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnSkbVlanPop.Call(),
		asm.JNE.Imm(asm.R0, 0, labelDrop),
	)
	g.b.label(noTag)
	g.b.emit(
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.R10),
		asm.Add.Imm(asm.R3, rjOut),
		asm.Mov.Imm(asm.R4, n),
		asm.Mov.Imm(asm.R5, bpfFRecomputeCsum),
		asm.FnSkbStoreBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, labelDrop),
		asm.LoadMem(asm.R1, asm.R6, skbIfindex, asm.Word),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
	)
}

// csumStack sums n bytes (a multiple of 4) of the stack at off with
// bpf_csum_diff, seeded with the 32-bit sum in stack slot seed (none if
// seed is -1); the sum is left in R0 (32 bits).
func (g *gen) csumStack(off int16, n int32, seed int16) {
	g.b.emit(
		asm.Mov.Imm(asm.R1, 0),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.R10),
		asm.Add.Imm(asm.R3, int32(off)),
		asm.Mov.Imm(asm.R4, n),
	)
	if seed == -1 {
		g.b.emit(asm.Mov.Imm(asm.R5, 0))
	} else {
		g.b.emit(asm.LoadMem(asm.R5, asm.R10, seed, asm.DWord))
	}
	g.b.emit(
		asm.FnCsumDiff.Call(),
		asm.Mov.Reg32(asm.R0, asm.R0),
	)
}

// csumPacket adds the packet bytes [rjOff, rjOff+rjRem) to the 32-bit
// sum in rjSum, rjChunk bytes per bpf_csum_diff call; a last chunk of odd
// length is padded with zeros, as csum_partial pads. Chunks start at even
// offsets from the first byte, so the sum is that of csum_partial. The
// loop counters pass through bpf_probe_read_kernel so that the verifier
// sees the same state on every round.
func (g *gen) csumPacket() {
	loop := g.b.newLabel("rj_csum_loop")
	full := g.b.newLabel("rj_csum_full")
	done := g.b.newLabel("rj_csum_done")
	g.b.emit(asm.LoadMem(asm.R0, asm.R10, rjOff, asm.DWord))
	g.launder(asm.R0, rjOff)
	g.b.emit(asm.LoadMem(asm.R0, asm.R10, rjRem, asm.DWord))
	g.launder(asm.R0, rjRem)
	g.b.emit(asm.LoadMem(asm.R0, asm.R10, rjSum, asm.DWord))
	g.launder(asm.R0, rjSum)
	g.b.label(loop)
	g.b.emit(
		asm.Instruction{OpCode: asm.OpCode(asm.JumpClass).SetJumpOp(asm.JCOND), Offset: -1}.WithReference(labelDrop),
		asm.LoadMem(asm.R7, asm.R10, rjRem, asm.DWord),
		asm.JEq.Imm(asm.R7, 0, done),
		asm.JGT.Imm(asm.R7, 0xffffff, labelDrop),
		asm.JGE.Imm(asm.R7, rjChunk, full),
	)
	// A short last chunk: zero the buffer first, so that rounding up to
	// a multiple of 4 adds zeros.
	for off := int16(0); off < rjChunk+8; off += 8 {
		g.b.emit(stImm64(asm.R10, rjBuf+off, 0))
	}
	g.b.emit(asm.Ja.Label(full + "_go"))
	g.b.label(full)
	g.b.emit(asm.Mov.Imm(asm.R7, rjChunk))
	g.b.label(full + "_go")
	g.b.emit(
		asm.LoadMem(asm.R2, asm.R10, rjOff, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Reg(asm.R3, asm.R10),
		asm.Add.Imm(asm.R3, rjBuf),
		asm.Mov.Reg(asm.R4, asm.R7),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, labelDrop),
		asm.Mov.Imm(asm.R1, 0),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.R10),
		asm.Add.Imm(asm.R3, rjBuf),
		asm.Mov.Reg(asm.R4, asm.R7),
		asm.Add.Imm(asm.R4, 3),
		asm.And.Imm(asm.R4, ^3),
		asm.LoadMem(asm.R5, asm.R10, rjSum, asm.DWord),
		asm.FnCsumDiff.Call(),
		asm.Mov.Reg32(asm.R0, asm.R0),
	)
	g.launder(asm.R0, rjSum)
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjOff, asm.DWord),
		asm.Add.Reg(asm.R0, asm.R7),
	)
	g.launder(asm.R0, rjOff)
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjRem, asm.DWord),
		asm.Sub.Reg(asm.R0, asm.R7),
	)
	g.launder(asm.R0, rjRem)
	g.b.emit(asm.Ja.Label(loop))
	g.b.label(done)
}

// fold16 folds the 32-bit ones' complement sum in r to 16 bits (not
// inverted), using R1.
func fold16(b *builder, r asm.Register) {
	for range 2 {
		b.emit(
			asm.Mov.Reg(asm.R1, r),
			asm.RSh.Imm(asm.R1, 16),
			asm.And.Imm(r, 0xffff),
			asm.Add.Reg(r, asm.R1),
		)
	}
}

// stImm32 emits *(u32 *)(dst + off) = value.
func stImm32(dst asm.Register, off int16, value int32) asm.Instruction {
	return asm.Instruction{OpCode: asm.StoreImmOp(asm.Word), Dst: dst, Offset: off, Constant: int64(value)}
}

// sumQuote sums the rjQLen bytes an ICMP error quotes, from the original's
// network header, into rjSum.
func (g *gen) sumQuote() {
	g.b.emit(
		stImm64(asm.R10, rjSum, 0),
		asm.LoadMem(asm.R0, asm.R10, slotNH, asm.DWord),
		asm.StoreMem(asm.R10, rjOff, asm.R0, asm.DWord),
		asm.LoadMem(asm.R0, asm.R10, rjQLen, asm.DWord),
		asm.StoreMem(asm.R10, rjRem, asm.R0, asm.DWord),
	)
	g.csumPacket()
}

// rejectCsumSkip is nf_reject_verify_csum for the transport protocol in
// R7 (the header length in rjIHL, the length to check in rjTot): it jumps
// to skip for protocols whose checksum the kernel does not check and for
// UDP with a zero checksum, to verify otherwise; a UDP header that cannot
// be loaded drops the frame.
func (g *gen) rejectCsumSkip(skip, verify string) {
	for _, p := range []int32{47, 51, 50, 132, 136, 33} { // GRE, AH, ESP, SCTP, UDP-Lite, DCCP
		g.b.emit(asm.JEq.Imm(asm.R7, p, skip))
	}
	g.b.emit(
		asm.JNE.Imm(asm.R7, 17, verify),
		// UDP: no checksum to check if it is zero (and the header is
		// there, within tot_len).
		asm.LoadMem(asm.R1, asm.R10, rjIHL, asm.DWord),
		asm.Add.Imm(asm.R1, 8),
		asm.LoadMem(asm.R0, asm.R10, rjTot, asm.DWord),
		asm.JGT.Reg(asm.R1, asm.R0, verify),
		asm.LoadMem(asm.R2, asm.R10, slotNH, asm.DWord),
		asm.LoadMem(asm.R1, asm.R10, rjIHL, asm.DWord),
		asm.Add.Reg(asm.R2, asm.R1),
	)
	g.loadBytes(rjL4, 8)
	g.b.emit(
		asm.JNE.Imm(asm.R0, 0, labelDrop),
		asm.LoadMem(asm.R0, asm.R10, rjL4+6, asm.Half),
		asm.JEq.Imm(asm.R0, 0, skip),
	)
}

package codegen

import (
	"github.com/cilium/ebpf/asm"
)

// IPv4 replies of reject: nf_reject_ipv4.c in the program.

// rejectV4Validate is nf_reject_iphdr_validate: it loads the IPv4 header
// to rjNet and leaves its length in rjIHL.
func (g *gen) rejectV4Validate() error {
	g.b.emit(asm.LoadMem(asm.R2, asm.R10, slotNH, asm.DWord))
	g.loadBytes(rjNet, 20)
	g.b.emit(
		asm.JNE.Imm(asm.R0, 0, labelDrop),
		asm.LoadMem(asm.R1, asm.R10, rjNet, asm.Byte),
		asm.Mov.Reg(asm.R0, asm.R1),
		asm.RSh.Imm(asm.R0, 4),
		asm.JNE.Imm(asm.R0, 4, labelDrop),
		asm.And.Imm(asm.R1, 0xf),
		asm.JLT.Imm(asm.R1, 5, labelDrop),
		asm.LSh.Imm(asm.R1, 2),
		asm.StoreMem(asm.R10, rjIHL, asm.R1, asm.DWord),
		asm.LoadMem(asm.R2, asm.R10, rjNet+2, asm.Half),
		asm.BSwap(asm.R2, asm.Half), // tot_len
		asm.LoadMem(asm.R3, asm.R10, slotLen, asm.DWord),
		asm.JLT.Reg(asm.R3, asm.R2, labelDrop), // skb->len < tot_len
		asm.JLT.Reg(asm.R2, asm.R1, labelDrop), // tot_len < ihl*4
	)
	return nil
}

// rejectV4Reset follows nf_reject_ip_tcphdr_get and builds the reset of
// nf_reject_skb_v4_tcp_reset.
func (g *gen) rejectV4Reset() error {
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjNet+6, asm.Half),
		asm.BSwap(asm.R0, asm.Half),
		asm.And.Imm(asm.R0, 0x1fff), // IP_OFFSET
		asm.JNE.Imm(asm.R0, 0, labelDrop),
		asm.LoadMem(asm.R0, asm.R10, rjNet+9, asm.Byte),
		asm.JNE.Imm(asm.R0, 6, labelDrop),
		asm.LoadMem(asm.R2, asm.R10, slotNH, asm.DWord),
		asm.LoadMem(asm.R1, asm.R10, rjIHL, asm.DWord),
		asm.Add.Reg(asm.R2, asm.R1),
	)
	g.loadBytes(rjL4, 20)
	g.b.emit(
		asm.JNE.Imm(asm.R0, 0, labelDrop),
		asm.LoadMem(asm.R0, asm.R10, rjL4+13, asm.Byte),
		asm.And.Imm(asm.R0, 0x04), // RST
		asm.JNE.Imm(asm.R0, 0, labelDrop),
	)
	// nf_ip_checksum: CHECKSUM_UNNECESSARY and CHECKSUM_PARTIAL pass,
	// anything else is summed over the pseudo header and the whole skb.
	sumOK := g.b.newLabel("rj_sum_ok")
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjSummed, asm.DWord),
		asm.JEq.Imm(asm.R0, checksumUnnecessary, sumOK),
		asm.JEq.Imm(asm.R0, checksumPartial, sumOK),
	)
	// Pseudo header at rjBuf: saddr, daddr, 0, protocol, length.
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjNet+12, asm.Word),
		asm.StoreMem(asm.R10, rjBuf, asm.R0, asm.Word),
		asm.LoadMem(asm.R0, asm.R10, rjNet+16, asm.Word),
		asm.StoreMem(asm.R10, rjBuf+4, asm.R0, asm.Word),
		asm.LoadMem(asm.R0, asm.R10, slotLen, asm.DWord),
		asm.LoadMem(asm.R1, asm.R10, rjIHL, asm.DWord),
		asm.Sub.Reg(asm.R0, asm.R1),
		asm.BSwap(asm.R0, asm.Half),
		asm.LSh.Imm(asm.R0, 16),
		asm.Or.Imm(asm.R0, 6<<8),
		asm.StoreMem(asm.R10, rjBuf+8, asm.R0, asm.Word),
	)
	// __skb_checksum_complete sums from skb->data, the network header:
	// the IPv4 header is in the sum too (a valid one adds nothing).
	g.csumStack(rjBuf, 12, -1)
	g.b.emit(
		asm.StoreMem(asm.R10, rjSum, asm.R0, asm.DWord),
		asm.LoadMem(asm.R0, asm.R10, slotNH, asm.DWord),
		asm.StoreMem(asm.R10, rjOff, asm.R0, asm.DWord),
		asm.LoadMem(asm.R0, asm.R10, slotLen, asm.DWord),
		asm.StoreMem(asm.R10, rjRem, asm.R0, asm.DWord),
	)
	g.csumPacket()
	g.b.emit(asm.LoadMem(asm.R0, asm.R10, rjSum, asm.DWord))
	fold16(g.b, asm.R0)
	g.b.emit(asm.JNE.Imm(asm.R0, 0xffff, labelDrop))
	g.b.label(sumOK)

	const ip, tcp = rjOut + 14, rjOut + 34
	g.rejectEthReply(ethPIP)
	g.b.emit(stImm64(asm.R10, rjTot, 40))
	if err := g.rejectIPv4Header(ip, rjTot, 6); err != nil {
		return err
	}
	g.rejectTCPHeader(tcp)
	// The kernel leaves the checksum to the device (CHECKSUM_PARTIAL,
	// the field holds the folded pseudo header sum); the program writes
	// the complete checksum, or, when the skb itself is CHECKSUM_PARTIAL
	// (its csum_start/csum_offset then point at this very field when the
	// original had a 20-byte IPv4 header), the partial one as the kernel.
	g.b.emit(
		stImm64(asm.R10, rjSum, 0x14000600), // 0, IPPROTO_TCP, length 20
	)
	g.csumStack(rjSum, 4, -1)
	g.b.emit(asm.StoreMem(asm.R10, rjOff, asm.R0, asm.DWord))
	g.csumStack(ip+12, 8, rjOff)
	g.rejectTCPChecksum(tcp)
	return g.rejectSendTC(54)
}

// rejectIPv4Header writes the reply's IPv4 header at off as
// nf_reject_iphdr_put does (tos 0, id 0, DF, the netns' default TTL,
// addresses swapped) with the total length in stack slot totLen, and its
// checksum.
func (g *gen) rejectIPv4Header(off, totLen int16, proto uint8) error {
	if err := g.loadDefaultTTL(asm.R0); err != nil {
		return err
	}
	g.b.emit(
		asm.Or.Imm(asm.R0, int32(proto)<<8),
		asm.StoreMem(asm.R10, off+8, asm.R0, asm.Word), // ttl, protocol, check 0
		asm.LoadMem(asm.R0, asm.R10, totLen, asm.DWord),
		asm.BSwap(asm.R0, asm.Half),
		asm.LSh.Imm(asm.R0, 16),
		asm.Or.Imm(asm.R0, 0x45),
		asm.StoreMem(asm.R10, off, asm.R0, asm.Word), // version, ihl, tos 0, tot_len
		stImm32(asm.R10, off+4, 0x40<<16),            // id 0, DF
		asm.LoadMem(asm.R0, asm.R10, rjNet+16, asm.Word),
		asm.StoreMem(asm.R10, off+12, asm.R0, asm.Word),
		asm.LoadMem(asm.R0, asm.R10, rjNet+12, asm.Word),
		asm.StoreMem(asm.R10, off+16, asm.R0, asm.Word),
	)
	g.csumStack(off, 20, -1)
	fold16(g.b, asm.R0)
	g.b.emit(
		asm.Xor.Imm(asm.R0, 0xffff),
		asm.StoreMem(asm.R10, off+10, asm.R0, asm.Half),
	)
	return nil
}

// rejectV4Unreach builds the ICMP destination unreachable error of
// nf_reject_skb_v4_unreach: it quotes the first min(536, skb->len) bytes
// of the original from its network header (skb->len before the trim to
// tot_len, so Ethernet padding is quoted too), after checking the
// original's checksum unless skb_csum_unnecessary or
// nf_reject_verify_csum says not to.
func (g *gen) rejectV4Unreach(code uint8) error {
	sumOK := g.b.newLabel("rj_sum_ok")
	verify := g.b.newLabel("rj_verify")
	noPseudo := g.b.newLabel("rj_nopseudo")
	pseudoDone := g.b.newLabel("rj_pseudo_done")
	makePseudo := g.b.newLabel("rj_pseudo")
	short := g.b.newLabel("rj_short")
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjNet+6, asm.Half),
		asm.BSwap(asm.R0, asm.Half),
		asm.And.Imm(asm.R0, 0x1fff), // IP_OFFSET
		asm.JNE.Imm(asm.R0, 0, labelDrop),
		// Quote length.
		asm.LoadMem(asm.R0, asm.R10, slotLen, asm.DWord),
		asm.JLE.Imm(asm.R0, 536, short),
		asm.Mov.Imm(asm.R0, 536),
	)
	g.b.label(short)
	g.b.emit(
		asm.StoreMem(asm.R10, rjQLen, asm.R0, asm.DWord),
		asm.LoadMem(asm.R0, asm.R10, rjNet+2, asm.Half),
		asm.BSwap(asm.R0, asm.Half),
		asm.StoreMem(asm.R10, rjTot, asm.R0, asm.DWord), // skb->len after pskb_trim_rcsum
		// skb_csum_unnecessary.
		asm.LoadMem(asm.R0, asm.R10, rjSummed, asm.DWord),
		asm.JEq.Imm(asm.R0, checksumUnnecessary, sumOK),
		asm.JEq.Imm(asm.R0, checksumPartial, sumOK),
		asm.LoadMem(asm.R0, asm.R10, rjCsumValid, asm.DWord),
		asm.JNE.Imm(asm.R0, 0, sumOK),
		// nf_reject_verify_csum.
		asm.LoadMem(asm.R7, asm.R10, rjNet+9, asm.Byte),
	)
	g.rejectCsumSkip(sumOK, verify)
	g.b.label(verify)
	// nf_ip_checksum over the trimmed skb: a pseudo header for TCP and
	// UDP, then everything from the network header to tot_len.
	g.b.emit(
		stImm64(asm.R10, rjSum, 0),
		asm.JEq.Imm(asm.R7, 6, makePseudo),
		asm.JNE.Imm(asm.R7, 17, noPseudo),
	)
	g.b.label(makePseudo)
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjNet+12, asm.Word),
		asm.StoreMem(asm.R10, rjBuf, asm.R0, asm.Word),
		asm.LoadMem(asm.R0, asm.R10, rjNet+16, asm.Word),
		asm.StoreMem(asm.R10, rjBuf+4, asm.R0, asm.Word),
		asm.LoadMem(asm.R0, asm.R10, rjTot, asm.DWord),
		asm.LoadMem(asm.R1, asm.R10, rjIHL, asm.DWord),
		asm.Sub.Reg(asm.R0, asm.R1),
		asm.BSwap(asm.R0, asm.Half),
		asm.LSh.Imm(asm.R0, 16),
		asm.LSh.Imm(asm.R7, 8),
		asm.Or.Reg(asm.R0, asm.R7),
		asm.StoreMem(asm.R10, rjBuf+8, asm.R0, asm.Word),
	)
	g.csumStack(rjBuf, 12, -1)
	g.b.emit(
		asm.StoreMem(asm.R10, rjSum, asm.R0, asm.DWord),
		asm.Ja.Label(pseudoDone),
	)
	g.b.label(noPseudo)
	g.b.label(pseudoDone)
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, slotNH, asm.DWord),
		asm.StoreMem(asm.R10, rjOff, asm.R0, asm.DWord),
		asm.LoadMem(asm.R0, asm.R10, rjTot, asm.DWord),
		asm.StoreMem(asm.R10, rjRem, asm.R0, asm.DWord),
	)
	g.csumPacket()
	g.b.emit(asm.LoadMem(asm.R0, asm.R10, rjSum, asm.DWord))
	fold16(g.b, asm.R0)
	g.b.emit(asm.JNE.Imm(asm.R0, 0xffff, labelDrop))
	g.b.label(sumOK)

	// The sum of the quoted bytes, for the ICMP checksum.
	g.sumQuote()

	const ip, icmp = rjOut + 14, rjOut + 34
	g.rejectEthReply(ethPIP)
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjQLen, asm.DWord),
		asm.Add.Imm(asm.R0, 28),
		asm.StoreMem(asm.R10, rjTot, asm.R0, asm.DWord),
	)
	if err := g.rejectIPv4Header(ip, rjTot, 1); err != nil {
		return err
	}
	g.b.emit(
		stImm32(asm.R10, icmp, int32(3|uint32(code)<<8)), // type, code, checksum 0
		stImm32(asm.R10, icmp+4, 0),
	)
	g.csumStack(icmp, 8, rjSum)
	fold16(g.b, asm.R0)
	g.b.emit(
		asm.Xor.Imm(asm.R0, 0xffff),
		asm.StoreMem(asm.R10, icmp+2, asm.R0, asm.Half),
	)
	return g.rejectSendTCQuote(28, 42, rjQLen)
}

// loadDefaultTTL loads net.ipv4.ip_default_ttl of the device's network
// namespace into dst, as nf_reject_skb_v4_* read it
// (skb->dev->nd_net.net->ipv4.sysctl_ip_default_ttl).
func (g *gen) loadDefaultTTL(dst asm.Register) error {
	dev, err := kernelMember("sk_buff", "dev")
	if err != nil {
		return err
	}
	ndNet, err := kernelMember("net_device", "nd_net")
	if err != nil {
		return err
	}
	ipv4, err := kernelMember("net", "ipv4")
	if err != nil {
		return err
	}
	ttl, err := kernelMember("netns_ipv4", "sysctl_ip_default_ttl")
	if err != nil {
		return err
	}
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, dev.Off, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, labelDrop),
		asm.LoadMem(asm.R1, asm.R1, ndNet.Off, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, labelDrop),
		asm.LoadMem(dst, asm.R1, ipv4.Off+ttl.Off, asm.Byte),
	)
	return nil
}

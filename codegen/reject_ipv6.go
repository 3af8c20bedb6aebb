package codegen

import (
	"github.com/cilium/ebpf/asm"
)

// IPv6 replies of reject: nf_reject_ipv6.c in the program.

// rejectV6Validate is nf_reject_ip6hdr_validate: it loads the IPv6 header
// to rjNet.
func (g *gen) rejectV6Validate() error {
	g.b.emit(asm.LoadMem(asm.R2, asm.R10, slotNH, asm.DWord))
	g.loadBytes(rjNet, 40)
	g.b.emit(
		asm.JNE.Imm(asm.R0, 0, labelDrop),
		asm.LoadMem(asm.R0, asm.R10, rjNet, asm.Byte),
		asm.RSh.Imm(asm.R0, 4),
		asm.JNE.Imm(asm.R0, 6, labelDrop),
		asm.LoadMem(asm.R1, asm.R10, rjNet+4, asm.Half),
		asm.BSwap(asm.R1, asm.Half),
		asm.Add.Imm(asm.R1, 40),
		asm.LoadMem(asm.R0, asm.R10, slotLen, asm.DWord),
		asm.JGT.Reg(asm.R1, asm.R0, labelDrop),
	)
	return nil
}

// rejectV6Skip is ipv6_skip_exthdr from the end of the fixed header, in
// an skb of rjTot bytes: it leaves the transport header offset (from the
// network header) in rjIHL, the protocol in rjProto and, where it stops at
// a later fragment, the fragment's offset in rjFragOff (else 0); where
// ipv6_skip_exthdr fails (-1) the frame is dropped without a reply, as
// both of its callers do.
func (g *gen) rejectV6Skip() {
	later := g.b.newLabel("rj_skip_later")
	done := g.b.newLabel("rj_skip_done")
	g.b.emit(
		stImm64(asm.R10, rjFragOff, 0),
		asm.LoadMem(asm.R0, asm.R10, rjNet+6, asm.Byte),
		asm.StoreMem(asm.R10, rjProto, asm.R0, asm.DWord),
		asm.Mov.Imm(asm.R0, 40),
	)
	g.launder(asm.R0, rjIHL)
	g.ipv6ExtWalk(skipExthdrWalk(done, later))
	// A later fragment: the walk stops at the fragment header.
	g.b.label(later)
	g.b.emit(asm.StoreMem(asm.R10, rjFragOff, asm.R1, asm.DWord))
	g.b.label(done)
}

// skipExthdrWalk is the walk of rejectV6Skip: it ends at done with the
// protocol and offset in rjProto and rjIHL, at later at a later fragment
// (its offset in R1), and drops the frame where ipv6_skip_exthdr fails.
// A routing header is read with four bytes where ipv6_skip_exthdr reads
// two: with two or three left in the packet the kernel's walk goes on past
// the packet's end, and both callers drop the frame then too.
func skipExthdrWalk(done, later string) ipv6Walk {
	return ipv6Walk{
		proto: rjProto, off: rjIHL, base: slotNH, hdr: rjL4, limit: rjTot,
		meet:      []walkExit{{nextHdrNone, labelDrop}}, // NEXTHDR_NONE fails
		end:       done,
		laterFrag: later,
		bad:       labelDrop,
		exhausted: labelDrop,
	}
}

// rejectV6Pseudo writes the IPv6 pseudo header of the original (its
// addresses, the length in R0, protocol in stack slot rjProto) to rjBuf
// and leaves its sum in rjSum.
func (g *gen) rejectV6Pseudo() {
	g.b.emit(
		asm.BSwap(asm.R0, asm.Word),
		asm.StoreMem(asm.R10, rjBuf+32, asm.R0, asm.Word),
		asm.LoadMem(asm.R0, asm.R10, rjProto, asm.DWord),
		asm.LSh.Imm(asm.R0, 24),
		asm.StoreMem(asm.R10, rjBuf+36, asm.R0, asm.Word),
	)
	for i := int16(0); i < 32; i += 8 {
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, rjNet+8+i, asm.DWord),
			asm.StoreMem(asm.R10, rjBuf+i, asm.R0, asm.DWord),
		)
	}
	g.csumStack(rjBuf, 40, -1)
	g.b.emit(asm.StoreMem(asm.R10, rjSum, asm.R0, asm.DWord))
}

// rejectV6Verify checks nf_ip6_checksum over the pseudo header and the
// skb from the transport header (rjIHL) to rjTot; a bad sum drops the
// frame.
func (g *gen) rejectV6Verify() {
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjTot, asm.DWord),
		asm.LoadMem(asm.R1, asm.R10, rjIHL, asm.DWord),
		asm.Sub.Reg(asm.R0, asm.R1),
	)
	g.rejectV6Pseudo()
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, slotNH, asm.DWord),
		asm.LoadMem(asm.R1, asm.R10, rjIHL, asm.DWord),
		asm.Add.Reg(asm.R0, asm.R1),
		asm.StoreMem(asm.R10, rjOff, asm.R0, asm.DWord),
		asm.LoadMem(asm.R0, asm.R10, rjTot, asm.DWord),
		asm.LoadMem(asm.R1, asm.R10, rjIHL, asm.DWord),
		asm.Sub.Reg(asm.R0, asm.R1),
		asm.StoreMem(asm.R10, rjRem, asm.R0, asm.DWord),
	)
	g.csumPacket()
	g.b.emit(asm.LoadMem(asm.R0, asm.R10, rjSum, asm.DWord))
	fold16(g.b, asm.R0)
	g.b.emit(asm.JNE.Imm(asm.R0, 0xffff, labelDrop))
}

// rejectV6Reset follows nf_reject_ip6_tcphdr_get and builds the reset of
// nf_reject_skb_v6_tcp_reset.
func (g *gen) rejectV6Reset() error {
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, slotLen, asm.DWord),
		asm.StoreMem(asm.R10, rjTot, asm.R0, asm.DWord),
	)
	g.rejectV6Skip()
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjProto, asm.DWord),
		asm.JNE.Imm(asm.R0, 6, labelDrop),
		asm.LoadMem(asm.R1, asm.R10, rjIHL, asm.DWord),
		asm.Add.Imm(asm.R1, 20),
		asm.LoadMem(asm.R0, asm.R10, slotLen, asm.DWord),
		asm.JGT.Reg(asm.R1, asm.R0, labelDrop), // otcplen < sizeof(struct tcphdr)
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
	sumOK := g.b.newLabel("rj_sum_ok")
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjSummed, asm.DWord),
		asm.JEq.Imm(asm.R0, checksumUnnecessary, sumOK),
		asm.JEq.Imm(asm.R0, checksumPartial, sumOK),
	)
	g.rejectV6Verify()
	g.b.label(sumOK)

	const ip6, tcp = rjOut + 14, rjOut + 54
	g.rejectEthReply(ethPIPv6)
	g.b.emit(stImm64(asm.R10, rjTot, 20))
	if err := g.rejectIPv6Header(ip6, rjTot, 6); err != nil {
		return err
	}
	g.rejectTCPHeader(tcp)
	// Pseudo header: the reply's addresses, length 20, IPPROTO_TCP.
	g.b.emit(
		stImm32(asm.R10, rjSum, 20<<24),
		stImm32(asm.R10, rjSum+4, 6<<24),
	)
	g.csumStack(rjSum, 8, -1)
	g.b.emit(asm.StoreMem(asm.R10, rjOff, asm.R0, asm.DWord))
	g.csumStack(ip6+8, 32, rjOff)
	g.rejectTCPChecksum(tcp)
	return g.rejectSendTC(74)
}

// rejectV6Unreach builds the ICMPv6 destination unreachable error of
// nf_reject_skb_v6_unreach: it quotes the first min(1220, skb->len)
// bytes from the network header, after nf_reject_v6_csum_ok.
func (g *gen) rejectV6Unreach(code uint8) error {
	sumOK := g.b.newLabel("rj_sum_ok")
	verify := g.b.newLabel("rj_verify")
	short := g.b.newLabel("rj_short")
	trimmed := g.b.newLabel("rj_trimmed")
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, slotLen, asm.DWord),
		asm.JLE.Imm(asm.R0, 1220, short),
		asm.Mov.Imm(asm.R0, 1220),
	)
	g.b.label(short)
	g.b.emit(
		asm.StoreMem(asm.R10, rjQLen, asm.R0, asm.DWord),
		// skb_csum_unnecessary.
		asm.LoadMem(asm.R0, asm.R10, rjSummed, asm.DWord),
		asm.JEq.Imm(asm.R0, checksumUnnecessary, sumOK),
		asm.JEq.Imm(asm.R0, checksumPartial, sumOK),
		asm.LoadMem(asm.R0, asm.R10, rjCsumValid, asm.DWord),
		asm.JNE.Imm(asm.R0, 0, sumOK),
		// pskb_trim_rcsum to payload_len + 40 unless payload_len is 0.
		asm.LoadMem(asm.R0, asm.R10, slotLen, asm.DWord),
		asm.LoadMem(asm.R1, asm.R10, rjNet+4, asm.Half),
		asm.JEq.Imm(asm.R1, 0, trimmed),
		asm.BSwap(asm.R1, asm.Half),
		asm.Add.Imm(asm.R1, 40),
		asm.Mov.Reg(asm.R0, asm.R1),
	)
	g.b.label(trimmed)
	g.b.emit(asm.StoreMem(asm.R10, rjTot, asm.R0, asm.DWord))
	g.rejectV6Skip()
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjIHL, asm.DWord),
		asm.LoadMem(asm.R1, asm.R10, rjTot, asm.DWord),
		asm.JGE.Reg(asm.R0, asm.R1, labelDrop),
		asm.LoadMem(asm.R0, asm.R10, rjFragOff, asm.DWord),
		asm.And.Imm(asm.R0, ^7),
		asm.JNE.Imm(asm.R0, 0, labelDrop),
		// nf_reject_verify_csum.
		asm.LoadMem(asm.R7, asm.R10, rjProto, asm.DWord),
	)
	g.rejectCsumSkip(sumOK, verify)
	g.b.label(verify)
	g.rejectV6Verify()
	g.b.label(sumOK)

	// The sum of the quoted bytes.
	g.sumQuote()

	const ip6, icmp = rjOut + 14, rjOut + 54
	g.rejectEthReply(ethPIPv6)
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, rjQLen, asm.DWord),
		asm.Add.Imm(asm.R0, 8),
		asm.StoreMem(asm.R10, rjTot, asm.R0, asm.DWord),
	)
	if err := g.rejectIPv6Header(ip6, rjTot, 58); err != nil {
		return err
	}
	g.b.emit(
		stImm32(asm.R10, icmp, int32(1|uint32(code)<<8)), // type, code, checksum 0
		stImm32(asm.R10, icmp+4, 0),
		// Pseudo header length and next header, added to the quote's sum.
		asm.LoadMem(asm.R0, asm.R10, rjTot, asm.DWord),
		asm.BSwap(asm.R0, asm.Word),
		asm.StoreMem(asm.R10, rjOff, asm.R0, asm.Word),
		stImm32(asm.R10, rjOff+4, 58<<24),
	)
	g.csumStack(rjOff, 8, rjSum)
	g.b.emit(asm.StoreMem(asm.R10, rjSum, asm.R0, asm.DWord))
	g.csumStack(ip6+8, 32, rjSum)
	g.b.emit(asm.StoreMem(asm.R10, rjSum, asm.R0, asm.DWord))
	g.csumStack(icmp, 8, rjSum)
	fold16(g.b, asm.R0)
	g.b.emit(
		asm.Xor.Imm(asm.R0, 0xffff),
		asm.StoreMem(asm.R10, icmp+2, asm.R0, asm.Half),
	)
	return g.rejectSendTCQuote(48, 62, rjQLen)
}

// rejectIPv6Header writes the reply's IPv6 header at off as
// nf_reject_ip6hdr_put does (traffic class and flow label 0, the hop
// limit of net.ipv6.conf.all.hop_limit, addresses swapped) with the
// payload length in stack slot plen.
func (g *gen) rejectIPv6Header(off, plen int16, nexthdr uint8) error {
	if err := g.loadHopLimit(asm.R0); err != nil {
		return err
	}
	g.b.emit(
		asm.LSh.Imm(asm.R0, 24),
		asm.Or.Imm(asm.R0, int32(nexthdr)<<16),
		asm.LoadMem(asm.R1, asm.R10, plen, asm.DWord),
		asm.BSwap(asm.R1, asm.Half),
		asm.Or.Reg(asm.R0, asm.R1),
		asm.StoreMem(asm.R10, off+4, asm.R0, asm.Word),
		stImm32(asm.R10, off, 0x60),
	)
	for i := int16(0); i < 16; i += 8 {
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, rjNet+24+i, asm.DWord),
			asm.StoreMem(asm.R10, off+8+i, asm.R0, asm.DWord),
			asm.LoadMem(asm.R0, asm.R10, rjNet+8+i, asm.DWord),
			asm.StoreMem(asm.R10, off+24+i, asm.R0, asm.DWord),
		)
	}
	return nil
}

// loadHopLimit loads net.ipv6.conf.all.hop_limit of the device's network
// namespace (skb->dev->nd_net.net->ipv6.devconf_all->hop_limit) into dst.
func (g *gen) loadHopLimit(dst asm.Register) error {
	dev, err := kernelMember("sk_buff", "dev")
	if err != nil {
		return err
	}
	ndNet, err := kernelMember("net_device", "nd_net")
	if err != nil {
		return err
	}
	ipv6, err := kernelMember("net", "ipv6")
	if err != nil {
		return err
	}
	all, err := kernelMember("netns_ipv6", "devconf_all")
	if err != nil {
		return err
	}
	hl, err := kernelMember("ipv6_devconf", "hop_limit")
	if err != nil {
		return err
	}
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, dev.Off, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, labelDrop),
		asm.LoadMem(asm.R1, asm.R1, ndNet.Off, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, labelDrop),
		asm.LoadMem(asm.R1, asm.R1, ipv6.Off+all.Off, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, labelDrop),
		asm.LoadMem(dst, asm.R1, hl.Off, asm.Word),
		asm.And.Imm(dst, 0xff),
	)
	return nil
}

package codegen

import (
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Offsets in the uapi contexts struct xdp_md and struct __sk_buff.
const (
	xdpIngressIfindex = 12

	skbLen       = 0
	skbPktType   = 4
	skbMark      = 8
	skbProtocol  = 16
	skbVlanPres  = 20
	skbVlanTCI   = 24
	skbVlanProto = 28
	skbIfindex   = 40
)

// Ethertypes and protocol numbers used by the prologue.
const (
	ethPIP    = 0x0800
	ethPIPv6  = 0x86dd
	ethP8021Q = 0x8100
	ethP8021A = 0x88a8
)

// prologue computes nft_pktinfo into the stack slots.
func (g *gen) prologue() error {
	g.b.emit(asm.Mov.Reg(asm.R6, asm.R1))
	for off := int16(slotLen); off >= slotT2; off -= 8 {
		g.b.emit(stImm64(asm.R10, off, 0))
	}
	g.b.emit(stImm64(asm.R10, slotLL, -1))
	var err error
	switch g.tgt.Type {
	case XDP:
		err = g.prologueXDP()
	case TC:
		err = g.prologueTC()
	case CgroupSKB:
		err = g.prologueCgroup()
	case Netfilter:
		err = g.prologueNF()
	}
	if err != nil {
		return err
	}
	g.b.label(labelPktOK)
	g.forgetPktinfo()
	return nil
}

// pktinfoSlots are the stack slots the prologue leaves for the rules.
var pktinfoSlots = []int16{slotLen, slotNH, slotTH, slotL4, slotTProt, slotFrag, slotProto, slotLL, slotBase, slotTotal, slotVlan, slotVTCI, slotVProto, slotPF}

// forgetPktinfo makes the verifier forget what it knows about the pktinfo
// slots, without changing them, so that it verifies the rules once rather
// than once per way through the prologue and once per outcome of every
// earlier test on them.
//
// The prologue's exits leave different constants in the slots (L4PROTO
// set or not, fragment offset 0, …); a rule that tests such a constant
// makes it precise, and states with different precise values cannot be
// pruned against each other, so the whole chain would be walked for every
// exit. Likewise, a slot spilled from a register keeps the register's ID,
// and a rule's "if l4 == 0 goto next" refines the slot itself on both
// branches, splitting the states of every later rule.
//
// A slot partly overwritten by a byte store becomes plain data
// (STACK_MISC) to the verifier, and every later load of it is a fresh
// unknown scalar. The byte written back is the slot's own top byte ORed
// with the top byte of slotTotal, which every prologue has spilled from a
// register by now: the verifier cannot tell its value from a narrow load
// at the end of a spill, so the result is unknown too (a known zero would
// make the byte STACK_ZERO instead); at run time it is 0, as packet
// lengths are far below 2^56, and the slot keeps its value.
func (g *gen) forgetPktinfo() {
	g.b.emit(asm.LoadMem(asm.R1, asm.R10, slotTotal+7, asm.Byte))
	for _, slot := range pktinfoSlots {
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, slot+7, asm.Byte),
			asm.Or.Reg(asm.R0, asm.R1),
			asm.StoreMem(asm.R10, slot+7, asm.R0, asm.Byte),
		)
	}
}

// castKernCtx stores the kernel struct sk_buff behind the context in slotSkb.
func (g *gen) castKernCtx() error {
	id, err := kfuncID("bpf_cast_to_kern_ctx")
	if err != nil {
		return err
	}
	g.b.emit(
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Instruction{OpCode: asm.OpCode(asm.JumpClass).SetJumpOp(asm.Call), Src: asm.PseudoKfuncCall, Constant: id},
		asm.StoreMem(asm.R10, slotSkb, asm.R0, asm.DWord),
	)
	return nil
}

// loadBE16 loads a big-endian u16 from the buffer at off into dst.
func (g *gen) loadBE16(dst asm.Register, off int32) {
	g.b.emit(
		asm.LoadMem(dst, asm.R10, int16(bufOff+off), asm.Half),
		asm.BSwap(dst, asm.Half),
	)
}

// prologueXDP emulates what the stack does before the netdev ingress hook:
// eth_type_trans, and skb_vlan_untag of an outer 802.1Q/802.1ad tag. The
// load origin is the start of the frame; nf_tables' skb->data is the
// network header behind the (stripped) tag.
func (g *gen) prologueXDP() error {
	tagged := g.b.newLabel("xdp_tagged")
	ethDone := g.b.newLabel("xdp_eth_done")
	proto8023 := g.b.newLabel("xdp_8023")
	protoDone := g.b.newLabel("xdp_proto_done")
	g.b.emit(
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnXdpGetBuffLen.Call(),
		asm.StoreMem(asm.R10, slotTotal, asm.R0, asm.DWord),
		// Frames shorter than an Ethernet header never reach nf_tables.
		asm.JLT.Imm(asm.R0, 14, labelAccept),
		stImm64(asm.R10, slotLL, 0),
		asm.Mov.Imm(asm.R2, 12),
	)
	g.loadBytes(bufOff, 2)
	g.b.emit(asm.JNE.Imm(asm.R0, 0, labelAccept))
	g.loadBE16(asm.R7, 0)
	g.b.emit(
		asm.Mov.Imm(asm.R8, 14),
		asm.JEq.Imm(asm.R7, ethP8021Q, tagged),
		asm.JEq.Imm(asm.R7, ethP8021A, tagged),
		asm.Ja.Label(ethDone),
	)
	g.b.label(tagged)
	// skb_vlan_untag needs the tag and two more bytes, else the frame is
	// dropped before any hook.
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, slotTotal, asm.DWord),
		asm.JLT.Imm(asm.R0, 20, labelAccept),
		asm.Mov.Imm(asm.R2, 16),
	)
	g.loadBytes(bufOff, 2)
	g.b.emit(asm.JNE.Imm(asm.R0, 0, labelAccept))
	g.loadBE16(asm.R7, 0)
	g.b.emit(asm.Mov.Imm(asm.R8, 18))
	g.b.label(ethDone)
	// Ethertypes below 0x600 are 802.3 lengths: ETH_P_802_3 if the
	// payload starts with 0xffff, else ETH_P_802_2.
	g.b.emit(
		asm.JGE.Imm(asm.R7, 0x600, protoDone),
		asm.Mov.Reg(asm.R2, asm.R8),
	)
	g.loadBytes(bufOff, 2)
	g.b.emit(
		asm.Mov.Imm(asm.R7, 4),
		asm.JNE.Imm(asm.R0, 0, protoDone),
		asm.LoadMem(asm.R0, asm.R10, bufOff, asm.Half),
		asm.JNE.Imm(asm.R0, 0xffff, protoDone),
	)
	g.b.label(proto8023)
	g.b.emit(asm.Mov.Imm(asm.R7, 1))
	g.b.label(protoDone)
	g.b.emit(
		asm.StoreMem(asm.R10, slotProto, asm.R7, asm.DWord),
		asm.StoreMem(asm.R10, slotNH, asm.R8, asm.DWord),
		asm.StoreMem(asm.R10, slotBase, asm.R8, asm.DWord),
		asm.LoadMem(asm.R0, asm.R10, slotTotal, asm.DWord),
		asm.Sub.Reg(asm.R0, asm.R8),
		asm.StoreMem(asm.R10, slotLen, asm.R0, asm.DWord),
		stImm64(asm.R10, slotPF, int64(ir.FamilyNetdev)),
	)
	return g.pktinfoNetdev()
}

// prologueTC reads the header offsets from the kernel sk_buff.
func (g *gen) prologueTC() error {
	if err := g.castKernCtx(); err != nil {
		return err
	}
	head, err := kernelMember("sk_buff", "head")
	if err != nil {
		return err
	}
	data, err := kernelMember("sk_buff", "data")
	if err != nil {
		return err
	}
	nh, err := kernelMember("sk_buff", "network_header")
	if err != nil {
		return err
	}
	mh, err := kernelMember("sk_buff", "mac_header")
	if err != nil {
		return err
	}
	noMac := g.b.newLabel("tc_nomac")
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
		asm.LoadMem(asm.R2, asm.R1, head.Off, asm.DWord),
		asm.LoadMem(asm.R3, asm.R1, data.Off, asm.DWord),
		asm.Sub.Reg(asm.R3, asm.R2), // data - head
		asm.LoadMem(asm.R4, asm.R1, nh.Off, asm.Half),
		asm.LoadMem(asm.R5, asm.R1, mh.Off, asm.Half),
		asm.Mov.Reg(asm.R7, asm.R4),
		asm.Sub.Reg(asm.R7, asm.R3), // network header from origin
		asm.StoreMem(asm.R10, slotNH, asm.R7, asm.DWord),
		asm.JEq.Imm(asm.R5, 0xffff, noMac),
		asm.JEq.Reg(asm.R5, asm.R4, noMac), // skb_mac_header_len == 0
		asm.Sub.Reg(asm.R5, asm.R3),
		asm.StoreMem(asm.R10, slotLL, asm.R5, asm.DWord),
	)
	g.b.label(noMac)
	if !g.tgt.Egress {
		// At ingress nf_tables runs with skb->data at the network header.
		g.b.emit(asm.StoreMem(asm.R10, slotBase, asm.R7, asm.DWord))
	} else {
		g.b.emit(asm.Mov.Imm(asm.R7, 0))
	}
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R6, skbLen, asm.Word),
		asm.StoreMem(asm.R10, slotTotal, asm.R0, asm.DWord),
		asm.Sub.Reg(asm.R0, asm.R7),
		asm.StoreMem(asm.R10, slotLen, asm.R0, asm.DWord),
		asm.LoadMem(asm.R0, asm.R6, skbProtocol, asm.Word),
		asm.BSwap(asm.R0, asm.Half),
		asm.StoreMem(asm.R10, slotProto, asm.R0, asm.DWord),
		asm.LoadMem(asm.R0, asm.R6, skbVlanPres, asm.Word),
		asm.StoreMem(asm.R10, slotVlan, asm.R0, asm.DWord),
		asm.LoadMem(asm.R0, asm.R6, skbVlanTCI, asm.Word),
		asm.StoreMem(asm.R10, slotVTCI, asm.R0, asm.DWord),
		asm.LoadMem(asm.R0, asm.R6, skbVlanProto, asm.Word),
		asm.BSwap(asm.R0, asm.Half),
		asm.StoreMem(asm.R10, slotVProto, asm.R0, asm.DWord),
		stImm64(asm.R10, slotPF, int64(ir.FamilyNetdev)),
	)
	return g.pktinfoNetdev()
}

// prologueCgroup: skb->data is the network header.
func (g *gen) prologueCgroup() error {
	if err := g.castKernCtx(); err != nil {
		return err
	}
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R6, skbLen, asm.Word),
		asm.StoreMem(asm.R10, slotTotal, asm.R0, asm.DWord),
		asm.StoreMem(asm.R10, slotLen, asm.R0, asm.DWord),
		asm.LoadMem(asm.R7, asm.R6, skbProtocol, asm.Word),
		asm.BSwap(asm.R7, asm.Half),
		asm.StoreMem(asm.R10, slotProto, asm.R7, asm.DWord),
	)
	return g.pktinfoIP(true)
}

// prologueNF: ctx is struct bpf_nf_ctx; packet bytes come from an skb dynptr.
func (g *gen) prologueNF() error {
	stateM, err := kernelMember("bpf_nf_ctx", "state")
	if err != nil {
		return err
	}
	skbM, err := kernelMember("bpf_nf_ctx", "skb")
	if err != nil {
		return err
	}
	lenM, err := kernelMember("sk_buff", "len")
	if err != nil {
		return err
	}
	protoM, err := kernelMember("sk_buff", "protocol")
	if err != nil {
		return err
	}
	fromSkb, err := kfuncID("bpf_dynptr_from_skb")
	if err != nil {
		return err
	}
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R6, stateM.Off, asm.DWord),
		asm.StoreMem(asm.R10, slotState, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, skbM.Off, asm.DWord),
		asm.StoreMem(asm.R10, slotSkb, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.R10),
		asm.Add.Imm(asm.R3, slotDyn),
		asm.Instruction{OpCode: asm.OpCode(asm.JumpClass).SetJumpOp(asm.Call), Src: asm.PseudoKfuncCall, Constant: fromSkb},
		asm.JNE.Imm(asm.R0, 0, labelAccept),
		asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
		asm.LoadMem(asm.R0, asm.R1, lenM.Off, asm.Word),
		asm.StoreMem(asm.R10, slotTotal, asm.R0, asm.DWord),
		asm.StoreMem(asm.R10, slotLen, asm.R0, asm.DWord),
		asm.LoadMem(asm.R7, asm.R1, protoM.Off, asm.Half),
		asm.BSwap(asm.R7, asm.Half),
		asm.StoreMem(asm.R10, slotProto, asm.R7, asm.DWord),
	)
	return g.pktinfoIP(false)
}

// pktinfoIP sets pktinfo the way nft_do_chain_ipv4/ipv6/inet do (no
// validation: the IP layer already did it). For cgroup_skb programs the
// family comes from skb->protocol (in R7); packets of a family the table
// does not serve never reach its chains and are accepted.
func (g *gen) pktinfoIP(fromProto bool) error {
	v4 := g.b.newLabel("pf_ipv4")
	v6 := g.b.newLabel("pf_ipv6")
	pf := g.tgt.ProtoFamily
	if fromProto {
		if pf == ir.FamilyIPv4 || pf == ir.FamilyInet {
			g.b.emit(asm.JEq.Imm(asm.R7, ethPIP, v4))
		}
		if pf == ir.FamilyIPv6 || pf == ir.FamilyInet {
			g.b.emit(asm.JEq.Imm(asm.R7, ethPIPv6, v6))
		}
		g.b.emit(asm.Ja.Label(labelAccept))
	}
	if pf == ir.FamilyIPv4 || pf == ir.FamilyInet {
		g.b.label(v4)
		g.b.emit(stImm64(asm.R10, slotPF, int64(ir.FamilyIPv4)))
		g.pktinfoIPv4(false)
	}
	if pf == ir.FamilyIPv6 || pf == ir.FamilyInet {
		g.b.label(v6)
		g.b.emit(stImm64(asm.R10, slotPF, int64(ir.FamilyIPv6)))
		g.pktinfoIPv6(false)
	}
	return nil
}

// pktinfoNetdev dispatches on skb->protocol as nft_do_chain_netdev does.
func (g *gen) pktinfoNetdev() error {
	v4 := g.b.newLabel("nd_ipv4")
	v6 := g.b.newLabel("nd_ipv6")
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, slotProto, asm.DWord),
		asm.JEq.Imm(asm.R0, ethPIP, v4),
		asm.JEq.Imm(asm.R0, ethPIPv6, v6),
		asm.Ja.Label(labelPktOK),
	)
	g.b.label(v4)
	g.pktinfoIPv4(true)
	g.b.label(v6)
	g.pktinfoIPv6(true)
	return nil
}

// pktinfoIPv4 follows nft_set_pktinfo_ipv4 and, with validate,
// __nft_set_pktinfo_ipv4_validate. It ends with a jump to labelPktOK.
func (g *gen) pktinfoIPv4(validate bool) {
	g.b.emit(asm.LoadMem(asm.R2, asm.R10, slotNH, asm.DWord))
	g.loadBytes(bufOff, 20)
	g.b.emit(
		asm.JNE.Imm(asm.R0, 0, labelPktOK),
		asm.LoadMem(asm.R1, asm.R10, bufOff, asm.Byte),
		asm.Mov.Reg(asm.R0, asm.R1),
		asm.And.Imm(asm.R1, 0xf), // ihl
		asm.RSh.Imm(asm.R0, 4),   // version
	)
	g.loadBE16(asm.R2, 2) // tot_len
	g.b.emit(
		asm.LSh.Imm(asm.R1, 2), // ihl * 4
	)
	if validate {
		g.b.emit(
			asm.JLT.Imm(asm.R1, 20, labelPktOK),
			asm.JNE.Imm(asm.R0, 4, labelPktOK),
			asm.LoadMem(asm.R3, asm.R10, slotTotal, asm.DWord),
			asm.LoadMem(asm.R4, asm.R10, slotNH, asm.DWord),
			asm.Sub.Reg(asm.R3, asm.R4), // skb->len - network offset
			asm.JLT.Reg(asm.R3, asm.R2, labelPktOK),
			asm.JLT.Reg(asm.R2, asm.R1, labelPktOK),
		)
	}
	g.b.emit(
		asm.LoadMem(asm.R4, asm.R10, slotNH, asm.DWord),
		asm.Add.Reg(asm.R4, asm.R1),
		asm.StoreMem(asm.R10, slotTH, asm.R4, asm.DWord),
		asm.LoadMem(asm.R0, asm.R10, bufOff+9, asm.Byte),
		asm.StoreMem(asm.R10, slotTProt, asm.R0, asm.DWord),
	)
	g.loadBE16(asm.R0, 6)
	g.b.emit(
		asm.And.Imm(asm.R0, 0x1fff),
		asm.StoreMem(asm.R10, slotFrag, asm.R0, asm.DWord),
		stImm64(asm.R10, slotL4, 1),
		asm.Ja.Label(labelPktOK),
	)
}

// pktinfoWalk is the walk of pktinfoIPv6: ipv6_find_hdr with target -1 and
// IP6_FH_F_AUTH. The protocol is the first header that is no extension
// header (NEXTHDR_NONE included), or AH; it ends at found with both in R7
// and R8, at later at a later fragment (its offset in R1), and leaves
// pktinfo without a transport header where ipv6_find_hdr fails.
func pktinfoWalk(found, later string) ipv6Walk {
	return ipv6Walk{
		proto: slotT1, off: slotT2, hdr: bufOff,
		end:       found,
		read:      []walkExit{{nextHdrAuth, found}},
		laterFrag: later,
		bad:       labelPktOK,
		exhausted: labelPktOK,
	}
}

// launder stores reg to slot through bpf_probe_read_kernel, so that the
// verifier forgets its bounds and the extension header loop converges.
func (g *gen) launder(reg asm.Register, slot int16) {
	g.b.emit(
		asm.StoreMem(asm.R10, slotKey, reg, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R10),
		asm.Add.Imm(asm.R1, int32(slot)),
		asm.Mov.Imm(asm.R2, 8),
		asm.Mov.Reg(asm.R3, asm.R10),
		asm.Add.Imm(asm.R3, slotKey),
		asm.FnProbeReadKernel.Call(),
	)
}

// pktinfoIPv6 follows nft_set_pktinfo_ipv6 and, with validate,
// __nft_set_pktinfo_ipv6_validate, including ipv6_find_hdr's walk over
// extension headers (target -1, IP6_FH_F_AUTH).
func (g *gen) pktinfoIPv6(validate bool) {
	found := g.b.newLabel("v6_found")
	fragLater := g.b.newLabel("v6_fraglater")

	g.b.emit(asm.LoadMem(asm.R2, asm.R10, slotNH, asm.DWord))
	g.loadBytes(bufOff, 40)
	g.b.emit(asm.JNE.Imm(asm.R0, 0, labelPktOK))
	if validate {
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, bufOff, asm.Byte),
			asm.RSh.Imm(asm.R0, 4),
			asm.JNE.Imm(asm.R0, 6, labelPktOK),
		)
		g.loadBE16(asm.R1, 4)
		g.b.emit(
			asm.Add.Imm(asm.R1, 40),
			asm.LoadMem(asm.R3, asm.R10, slotTotal, asm.DWord),
			asm.LoadMem(asm.R4, asm.R10, slotNH, asm.DWord),
			asm.Sub.Reg(asm.R3, asm.R4),
			asm.JGT.Reg(asm.R1, asm.R3, labelPktOK),
		)
	}
	g.b.emit(
		asm.LoadMem(asm.R7, asm.R10, bufOff+6, asm.Byte),
		asm.StoreMem(asm.R10, slotT1, asm.R7, asm.DWord),
		asm.LoadMem(asm.R8, asm.R10, slotNH, asm.DWord),
		asm.Add.Imm(asm.R8, 40),
	)
	g.launder(asm.R8, slotT2)
	g.ipv6ExtWalk(pktinfoWalk(found, fragLater))

	// Non-first fragment: the header after it is the protocol, unless it
	// is another extension header (then ipv6_find_hdr fails).
	g.b.label(fragLater)
	g.b.emit(asm.LoadMem(asm.R7, asm.R10, bufOff, asm.Byte))
	for _, p := range ipv6ExtHdrs {
		g.b.emit(asm.JEq.Imm(asm.R7, p, labelPktOK))
	}
	g.b.emit(
		asm.StoreMem(asm.R10, slotFrag, asm.R1, asm.DWord),
		asm.StoreMem(asm.R10, slotTProt, asm.R7, asm.DWord),
		asm.LoadMem(asm.R0, asm.R10, slotBase, asm.DWord), // thoff stays 0
		asm.StoreMem(asm.R10, slotTH, asm.R0, asm.DWord),
		stImm64(asm.R10, slotL4, 1),
		asm.Ja.Label(labelPktOK),
	)

	g.b.label(found)
	g.b.emit(
		asm.Mov.Reg(asm.R0, asm.R8),
		asm.LoadMem(asm.R1, asm.R10, slotBase, asm.DWord),
		asm.Sub.Reg(asm.R0, asm.R1),
		asm.JGT.Imm(asm.R0, 0xffff, labelPktOK),
		asm.StoreMem(asm.R10, slotTH, asm.R8, asm.DWord),
		asm.StoreMem(asm.R10, slotTProt, asm.R7, asm.DWord),
		stImm64(asm.R10, slotL4, 1),
		asm.Ja.Label(labelPktOK),
	)
}

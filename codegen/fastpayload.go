package codegen

import (
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// fastPayload says whether nf_tables evaluates f with nft_payload_fast_ops:
// nft_payload_select_ops picks them for network and transport header
// loads of 1, 2 or 4 bytes at an offset aligned to the length.
//
// nft_do_chain runs nft_payload_fast_eval for those inline. For the
// transport header it needs NFT_PKTINFO_L4PROTO but does not look at
// pkt->fragoff: when the bytes at skb->data + thoff + offset lie in the
// linear area (up to skb_tail_pointer), it reads them, also from a
// non-first fragment, whose "transport header" is fragment payload (or,
// for IPv6, the network header, as thoff stays 0). Only when they do not
// does it fall back to nft_payload_eval, which breaks on fragoff != 0.
// Network header loads read the same bytes on either path.
func fastPayload(f *ir.Field) bool {
	switch f.Len {
	case 1, 2, 4:
	default:
		return false
	}
	return f.Offset%f.Len == 0 && (f.Base == ir.BaseNetwork || f.Base == ir.BaseTransport)
}

// fragmentFastPath emits, for a fast transport load, the break of a
// non-first fragment whose bytes are not in the linear area.
func (g *gen) fragmentFastPath(f *ir.Field, fail string) error {
	whole := g.b.newLabel("th_unfragmented")
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, slotFrag, asm.DWord),
		asm.JEq.Imm(asm.R0, 0, whole),
		asm.LoadMem(asm.R2, asm.R10, slotTH, asm.DWord),
		asm.Add.Imm(asm.R2, int32(f.Offset+f.Len)), // end of the read, from the load origin
	)
	switch g.tgt.Type {
	case XDP:
		// The skb the stack would build later: modelled as linear as
		// the XDP buffer's linear part (data..data_end).
		g.b.emit(
			asm.JGT.Imm(asm.R2, 0xffff, fail),
			asm.LoadMem(asm.R3, asm.R6, 0, asm.Word), // xdp_md->data
			asm.LoadMem(asm.R4, asm.R6, 4, asm.Word), // xdp_md->data_end
			asm.Add.Reg(asm.R3, asm.R2),
			asm.JGT.Reg(asm.R3, asm.R4, fail),
		)
	default:
		// skb->data is the load origin of tc, cgroup_skb and netfilter
		// programs: the linear area ends skb_headlen bytes behind it.
		lenM, err := kernelMember("sk_buff", "len")
		if err != nil {
			return err
		}
		dataLenM, err := kernelMember("sk_buff", "data_len")
		if err != nil {
			return err
		}
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
			asm.LoadMem(asm.R3, asm.R1, lenM.Off, asm.Word),
			asm.LoadMem(asm.R4, asm.R1, dataLenM.Off, asm.Word),
			asm.Sub.Reg(asm.R3, asm.R4),
			asm.JSGT.Reg(asm.R2, asm.R3, fail),
		)
	}
	g.b.label(whole)
	g.b.emit(asm.Mov.Imm(asm.R0, 0)) // anchor for the label
	return nil
}

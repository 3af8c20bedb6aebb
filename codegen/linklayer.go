package codegen

import (
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Link-layer loads on programs that see the kernel's struct sk_buff with
// skb->data at the network header (netfilter and cgroup_skb).
//
// nft_payload_eval's NFT_PAYLOAD_LL_HEADER case breaks unless the mac
// header was set and is not empty (skb_mac_header_was_set,
// skb_mac_header_len); with a VLAN tag in skb metadata and a load past the
// MAC addresses it rebuilds the tag (nft_payload_copy_vlan); otherwise it
// copies with skb_copy_bits at skb_mac_header(skb) - skb->data + offset.
// skb_copy_bits fails when offset > skb->len - len; offsets below zero
// (the mac header sits in front of skb->data) read the linear area.
//
// The programs read the same state at run time: mac_header,
// network_header, head, data, len, data_len and vlan_all through BTF
// loads from the kernel sk_buff, bytes in front of skb->data (and any
// run lying wholly in the linear area) with bpf_probe_read_kernel from
// skb->data + offset, and bytes at or past skb->data from the paged
// area with the program type's packet read (bpf_dynptr_read,
// bpf_skb_load_bytes), whose offset 0 is skb->data.
//
// For cgroup_skb this is the state at socket receive (ingress) or in
// ip_finish_output (egress), where __cgroup_bpf_run_filter_skb has pushed
// skb->data back to the network header. Nothing between the nft input
// hook and the socket, or between the output hook and ip_finish_output,
// moves or rewrites the mac header or sets an unset one: the IP layer
// pulls skb->data only, and UDP GRO segmentation copies the mac header
// into every segment at the same distance from the network header.

// skbFields are the kernel sk_buff members a link-layer load reads.
type skbFields struct {
	head, data, len, dataLen, mac, network, vlanAll, vlanProto, vlanTCI, protocol member
}

func skbLLFields() (skbFields, error) {
	var f skbFields
	for _, m := range []struct {
		name string
		dst  *member
	}{
		{"head", &f.head}, {"data", &f.data}, {"len", &f.len}, {"data_len", &f.dataLen},
		{"mac_header", &f.mac}, {"network_header", &f.network},
		{"vlan_all", &f.vlanAll}, {"vlan_proto", &f.vlanProto}, {"vlan_tci", &f.vlanTCI},
		{"protocol", &f.protocol},
	} {
		var err error
		if *m.dst, err = kernelMember("sk_buff", m.name); err != nil {
			return f, err
		}
	}
	return f, nil
}

// llBytewise makes skbCopyBits always take its byte-by-byte path, which
// runs only for skbs with paged data. Tests set it to run that path on
// the linear skbs BPF_PROG_TEST_RUN builds.
var llBytewise = false

// vlanEthHlen is VLAN_ETH_HLEN, ethHlen ETH_HLEN.
const (
	ethHlen     = 14
	vlanEthHlen = 18
)

// loadLLSkb loads a link-layer field on netfilter and cgroup_skb programs.
func (g *gen) loadLLSkb(f *ir.Field, fail string) error {
	sf, err := skbLLFields()
	if err != nil {
		return err
	}
	off, n := f.Offset, f.Len
	plain := g.b.newLabel("ll_plain")
	done := g.b.newLabel("ll_done")
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
		asm.LoadMem(asm.R2, asm.R1, sf.mac.Off, asm.Half),
		asm.JEq.Imm(asm.R2, 0xffff, fail), // !skb_mac_header_was_set
		asm.LoadMem(asm.R3, asm.R1, sf.network.Off, asm.Half),
		asm.JEq.Reg(asm.R2, asm.R3, fail), // skb_mac_header_len == 0
		// R7 = skb_mac_header(skb) - skb->data
		asm.LoadMem(asm.R3, asm.R1, sf.head.Off, asm.DWord),
		asm.LoadMem(asm.R4, asm.R1, sf.data.Off, asm.DWord),
		asm.Sub.Reg(asm.R4, asm.R3),
		asm.Mov.Reg(asm.R7, asm.R2),
		asm.Sub.Reg(asm.R7, asm.R4),
	)
	if off+n > 12 { // nft_payload_need_vlan_adjust
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R1, sf.vlanAll.Off, asm.Word),
			asm.JEq.Imm(asm.R0, 0, plain),
		)
		if off < vlanEthHlen {
			// nft_payload_rebuild_vlan_hdr: 14 bytes of mac header,
			// then vlan_proto, htons(vlan_tci) and protocol.
			g.skbCopyBits(sf, vethBuf, ethHlen, fail)
			g.b.emit(
				asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
				asm.LoadMem(asm.R0, asm.R1, sf.vlanProto.Off, asm.Half),
				asm.StoreMem(asm.R10, vethBuf+12, asm.R0, asm.Half),
				asm.LoadMem(asm.R0, asm.R1, sf.vlanTCI.Off, asm.Half),
				asm.BSwap(asm.R0, asm.Half),
				asm.StoreMem(asm.R10, vethBuf+14, asm.R0, asm.Half),
				asm.LoadMem(asm.R0, asm.R1, sf.protocol.Off, asm.Half),
				asm.StoreMem(asm.R10, vethBuf+16, asm.R0, asm.Half),
			)
			ethlen := n
			if off+n > vlanEthHlen {
				ethlen = vlanEthHlen - off
			}
			for i := uint32(0); i < ethlen; i++ {
				g.b.emit(
					asm.LoadMem(asm.R0, asm.R10, int16(vethBuf+int32(off+i)), asm.Byte),
					asm.StoreMem(asm.R10, int16(bufOff+int32(i)), asm.R0, asm.Byte),
				)
			}
			if rest := n - ethlen; rest > 0 {
				g.b.emit(asm.Add.Imm(asm.R7, ethHlen))
				g.skbCopyBits(sf, bufOff+int32(ethlen), rest, fail)
			}
		} else {
			g.b.emit(asm.Add.Imm(asm.R7, int32(off)-4))
			g.skbCopyBits(sf, bufOff, n, fail)
		}
		g.b.emit(asm.Ja.Label(done))
	}
	g.b.label(plain)
	g.b.emit(asm.Add.Imm(asm.R7, int32(off)))
	g.skbCopyBits(sf, bufOff, n, fail)
	g.b.label(done)
	g.b.emit(asm.Mov.Imm(asm.R0, 0)) // anchor for the done label
	return nil
}

// skbCopyBits emits skb_copy_bits(skb, R7, stack+dst, n) relative to
// skb->data: it jumps to fail when R7 > skb->len - n. Runs lying wholly
// in the linear area are read with one bpf_probe_read_kernel; others byte
// by byte, bytes in front of skb->data from the linear area and the rest
// with the program's packet read. R7 is kept; R0-R5, R8 and R9 are
// clobbered.
func (g *gen) skbCopyBits(sf skbFields, dst int32, n uint32, fail string) {
	slow := g.b.newLabel("ll_slow")
	done := g.b.newLabel("ll_copied")
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
		asm.LoadMem(asm.R8, asm.R1, sf.len.Off, asm.Word),
		asm.LoadMem(asm.R9, asm.R1, sf.dataLen.Off, asm.Word),
		asm.Mov.Reg(asm.R3, asm.R8),
		asm.Sub.Imm(asm.R3, int32(n)),
		asm.JSGT.Reg(asm.R7, asm.R3, fail), // offset > skb->len - len
		asm.Sub.Reg(asm.R8, asm.R9),        // skb_headlen
		asm.Mov.Reg(asm.R3, asm.R7),
		asm.Add.Imm(asm.R3, int32(n)),
		asm.JSGT.Reg(asm.R3, asm.R8, slow),
	)
	if llBytewise {
		g.b.emit(asm.Ja.Label(slow))
	}
	g.probeRead(sf, dst, n, 0, fail)
	g.b.emit(asm.Ja.Label(done))
	g.b.label(slow)
	for i := uint32(0); i < n; i++ {
		paged := g.b.newLabel("ll_paged")
		next := g.b.newLabel("ll_next")
		g.b.emit(
			asm.Mov.Reg(asm.R2, asm.R7),
			asm.Add.Imm(asm.R2, int32(i)),
			asm.JSGE.Imm(asm.R2, 0, paged),
		)
		g.probeRead(sf, dst+int32(i), 1, int32(i), fail)
		g.b.emit(asm.Ja.Label(next))
		g.b.label(paged)
		g.loadBytes(dst+int32(i), 1)
		g.b.emit(asm.JNE.Imm(asm.R0, 0, fail))
		g.b.label(next)
	}
	g.b.label(done)
	g.b.emit(asm.Mov.Imm(asm.R0, 0)) // anchor for the done label
}

// probeRead copies n bytes at skb->data + R7 + delta to the stack at dst.
func (g *gen) probeRead(sf skbFields, dst int32, n uint32, delta int32, fail string) {
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
		asm.LoadMem(asm.R3, asm.R1, sf.data.Off, asm.DWord),
		asm.Add.Reg(asm.R3, asm.R7),
	)
	if delta != 0 {
		g.b.emit(asm.Add.Imm(asm.R3, delta))
	}
	g.b.emit(
		asm.Mov.Reg(asm.R1, asm.R10),
		asm.Add.Imm(asm.R1, dst),
		asm.Mov.Imm(asm.R2, int32(n)),
		asm.FnProbeReadKernel.Call(),
		asm.JNE.Imm(asm.R0, 0, fail),
	)
}

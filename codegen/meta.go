package codegen

import (
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Meta key lengths as nft_meta_get_init registers them.
var metaLen = map[ir.MetaKey]uint32{
	ir.MetaLen: 4, ir.MetaProtocol: 2, ir.MetaMark: 4, ir.MetaIif: 4, ir.MetaOif: 4,
	ir.MetaIifName: 16, ir.MetaOifName: 16, ir.MetaIifType: 2, ir.MetaOifType: 2,
	ir.MetaNFProto: 1, ir.MetaL4Proto: 1, ir.MetaPktType: 1,
}

// devKind says how a program finds the input or output device.
type devKind int

const (
	devAbsent devKind = iota // the hook has no such device: NULL in nft_pktinfo
	devXDP                   // XDP ingress: ifindex from xdp_md, the rest from Target.Device
	devSkbDev                // skb->dev through the kernel sk_buff
	devState                 // nf_hook_state->in / ->out
)

func (g *gen) device(in bool) devKind {
	switch g.tgt.Type {
	case XDP:
		if in {
			return devXDP
		}
		return devAbsent
	case TC, CgroupSKB:
		if in != g.tgt.Egress {
			return devSkbDev
		}
		return devAbsent
	case Netfilter:
		// nf_hook_state: in is set for prerouting, input, forward; out
		// for forward, output, postrouting.
		switch g.tgt.Hook {
		case ir.HookPrerouting, ir.HookInput:
			if !in {
				return devAbsent
			}
		case ir.HookOutput, ir.HookPostrouting:
			if in {
				return devAbsent
			}
		}
		return devState
	}
	return devAbsent
}

// loadDevPtr puts the device pointer (maybe NULL) into R1.
func (g *gen) loadDevPtr(k devKind, in bool) error {
	switch k {
	case devSkbDev:
		dev, err := kernelMember("sk_buff", "dev")
		if err != nil {
			return err
		}
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
			asm.LoadMem(asm.R1, asm.R1, dev.Off, asm.DWord),
		)
	case devState:
		name := "out"
		if in {
			name = "in"
		}
		m, err := kernelMember("nf_hook_state", name)
		if err != nil {
			return err
		}
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R10, slotState, asm.DWord),
			asm.LoadMem(asm.R1, asm.R1, m.Off, asm.DWord),
		)
	}
	return nil
}

// storeBuf32 stores R0 as the first register word.
func (g *gen) storeBuf32() {
	g.b.emit(asm.StoreMem(asm.R10, bufOff, asm.R0, asm.Word))
}

func (g *gen) loadMeta(f *ir.Field, fail string) error {
	want, known := metaLen[f.Meta]
	if !known {
		return g.unsupported("meta %s is not supported", metaNameOf(f.Meta))
	}
	if f.Len != want {
		return g.unsupported("meta load of %d bytes, the key has %d", f.Len, want)
	}
	done := g.b.newLabel("meta_done")
	switch f.Meta {
	case ir.MetaLen:
		g.b.emit(asm.LoadMem(asm.R0, asm.R10, slotLen, asm.DWord))
		g.storeBuf32()
	case ir.MetaProtocol:
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, slotProto, asm.DWord),
			asm.BSwap(asm.R0, asm.Half),
		)
		g.storeBuf32()
	case ir.MetaNFProto:
		g.b.emit(asm.LoadMem(asm.R0, asm.R10, slotPF, asm.DWord))
		g.storeBuf32()
	case ir.MetaL4Proto:
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, slotL4, asm.DWord),
			asm.JEq.Imm(asm.R0, 0, fail),
			asm.LoadMem(asm.R0, asm.R10, slotTProt, asm.DWord),
		)
		g.storeBuf32()
	case ir.MetaMark:
		switch g.tgt.Type {
		case XDP:
			return g.unsupported("meta mark is not available at XDP, there is no skb yet (use --hook-type tc)")
		case TC, CgroupSKB:
			g.b.emit(asm.LoadMem(asm.R0, asm.R6, skbMark, asm.Word))
		case Netfilter:
			m, err := kernelMember("sk_buff", "mark")
			if err != nil {
				return err
			}
			g.b.emit(
				asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
				asm.LoadMem(asm.R0, asm.R1, m.Off, asm.Word),
			)
		}
		g.storeBuf32()
	case ir.MetaIif, ir.MetaOif:
		in := f.Meta == ir.MetaIif
		switch k := g.device(in); k {
		case devAbsent:
			// nft_meta_store_ifindex: 0 without a device.
		case devXDP:
			g.b.emit(asm.LoadMem(asm.R0, asm.R6, xdpIngressIfindex, asm.Word))
			g.storeBuf32()
		default:
			ifindex, err := kernelMember("net_device", "ifindex")
			if err != nil {
				return err
			}
			if err := g.loadDevPtr(k, in); err != nil {
				return err
			}
			g.b.emit(
				asm.JEq.Imm(asm.R1, 0, done),
				asm.LoadMem(asm.R0, asm.R1, ifindex.Off, asm.Word),
			)
			g.storeBuf32()
		}
	case ir.MetaIifName, ir.MetaOifName:
		in := f.Meta == ir.MetaIifName
		switch k := g.device(in); k {
		case devAbsent:
			// strncpy of "": sixteen zero bytes.
		case devXDP:
			if g.tgt.Device == nil {
				return g.unsupported("meta iifname at XDP needs the device the program is attached to")
			}
			var name [16]byte
			copy(name[:15], g.tgt.Device.Name)
			for i := 0; i < 16; i += 8 {
				g.loadConst(asm.R0, leValue(name[i:i+8]))
				g.b.emit(asm.StoreMem(asm.R10, int16(bufOff+i), asm.R0, asm.DWord))
			}
		default:
			nm, err := kernelMember("net_device", "name")
			if err != nil {
				return err
			}
			if err := g.loadDevPtr(k, in); err != nil {
				return err
			}
			g.b.emit(asm.JEq.Imm(asm.R1, 0, done))
			// strncpy: bytes up to the first NUL; the rest stays zero.
			for i := int16(0); i < 16; i++ {
				g.b.emit(
					asm.LoadMem(asm.R0, asm.R1, nm.Off+i, asm.Byte),
					asm.JEq.Imm(asm.R0, 0, done),
					asm.StoreMem(asm.R10, bufOff+i, asm.R0, asm.Byte),
				)
			}
		}
	case ir.MetaIifType, ir.MetaOifType:
		in := f.Meta == ir.MetaIifType
		switch k := g.device(in); k {
		case devAbsent:
			g.b.emit(asm.Ja.Label(fail))
		case devXDP:
			if g.tgt.Device == nil {
				return g.unsupported("meta iiftype at XDP needs the device the program is attached to")
			}
			g.b.emit(asm.Mov.Imm(asm.R0, int32(g.tgt.Device.Type)))
			g.storeBuf32()
		default:
			typ, err := kernelMember("net_device", "type")
			if err != nil {
				return err
			}
			if err := g.loadDevPtr(k, in); err != nil {
				return err
			}
			g.b.emit(
				asm.JEq.Imm(asm.R1, 0, fail),
				asm.LoadMem(asm.R0, asm.R1, typ.Off, asm.Half),
			)
			g.storeBuf32()
		}
	case ir.MetaPktType:
		if err := g.pktType(fail); err != nil {
			return err
		}
	}
	g.b.label(done)
	g.b.emit(asm.Mov.Imm(asm.R0, 0)) // anchor for the done label
	return nil
}

// Packet types (PACKET_*).
const (
	packetHost      = 0
	packetBroadcast = 1
	packetMulticast = 2
	packetOtherhost = 3
	packetLoopback  = 5
)

func (g *gen) pktType(fail string) error {
	store := g.b.newLabel("pkttype_store")
	switch g.tgt.Type {
	case XDP:
		if g.tgt.Device == nil {
			return g.unsupported("meta pkttype at XDP needs the device's MAC address")
		}
		// eth_type_trans: the destination address against dev_addr.
		notHost := g.b.newLabel("pkt_nothost")
		mcast := g.b.newLabel("pkt_mcast")
		g.b.emit(asm.Mov.Imm(asm.R2, 0))
		g.loadBytes(bufOff, 6)
		g.b.emit(asm.JNE.Imm(asm.R0, 0, fail))
		mac := g.tgt.Device.MAC
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, bufOff, asm.Word),
			asm.LoadMem(asm.R1, asm.R10, bufOff+4, asm.Half),
			asm.LSh.Imm(asm.R1, 32),
			asm.Or.Reg(asm.R0, asm.R1),
			stImm64(asm.R10, bufOff, 0),
		)
		g.loadConst(asm.R1, leValue(mac[:]))
		g.b.emit(
			asm.JNE.Reg(asm.R0, asm.R1, notHost),
			asm.Mov.Imm(asm.R0, packetHost),
			asm.Ja.Label(store),
		)
		g.b.label(notHost)
		g.b.emit(
			asm.JSet.Imm(asm.R0, 1, mcast),
			asm.Mov.Imm(asm.R0, packetOtherhost),
			asm.Ja.Label(store),
		)
		g.b.label(mcast)
		g.loadConst(asm.R1, 0xffffffffffff)
		g.b.emit(
			asm.Mov.Reg(asm.R2, asm.R0),
			asm.Mov.Imm(asm.R0, packetBroadcast),
			asm.JEq.Reg(asm.R2, asm.R1, store),
			asm.Mov.Imm(asm.R0, packetMulticast),
			asm.Ja.Label(store),
		)
	case TC, CgroupSKB:
		g.b.emit(asm.LoadMem(asm.R0, asm.R6, skbPktType, asm.Word))
		g.pktTypeLoopback(store, fail)
	case Netfilter:
		m, err := kernelMember("sk_buff", "pkt_type")
		if err != nil {
			return err
		}
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
			asm.LoadMem(asm.R0, asm.R1, m.Off, asm.Byte),
		)
		if m.BitSize != 0 {
			g.b.emit(
				asm.RSh.Imm(asm.R0, int32(m.BitOff)),
				asm.And.Imm(asm.R0, int32(1)<<m.BitSize-1),
			)
		}
		g.pktTypeLoopback(store, fail)
	}
	g.b.label(store)
	g.storeBuf32()
	return nil
}

// pktTypeLoopback follows nft_meta_get_eval_pkttype_lo for a pkt_type in
// R0: PACKET_LOOPBACK is reported as multicast or broadcast.
func (g *gen) pktTypeLoopback(store, fail string) {
	lo := g.b.newLabel("pkt_lo")
	v4 := g.b.newLabel("pkt_lo_v4")
	v6 := g.b.newLabel("pkt_lo_v6")
	g.b.emit(
		asm.JNE.Imm(asm.R0, packetLoopback, store),
	)
	g.b.label(lo)
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, slotPF, asm.DWord),
		asm.JEq.Imm(asm.R1, int32(ir.FamilyIPv4), v4),
		asm.JEq.Imm(asm.R1, int32(ir.FamilyIPv6), v6),
		asm.JNE.Imm(asm.R1, int32(ir.FamilyNetdev), fail),
		asm.LoadMem(asm.R1, asm.R10, slotProto, asm.DWord),
		asm.JEq.Imm(asm.R1, ethPIPv6, v6),
		asm.JNE.Imm(asm.R1, ethPIP, fail),
	)
	g.b.label(v4)
	g.b.emit(asm.LoadMem(asm.R2, asm.R10, slotNH, asm.DWord))
	g.loadBytes(bufOff, 20)
	g.b.emit(
		asm.JNE.Imm(asm.R0, 0, fail),
		asm.LoadMem(asm.R1, asm.R10, bufOff+16, asm.Byte),
		stImm64(asm.R10, bufOff, 0),
		stImm64(asm.R10, bufOff+8, 0),
		stImm64(asm.R10, bufOff+16, 0),
		asm.And.Imm(asm.R1, 0xf0),
		asm.Mov.Imm(asm.R0, packetMulticast),
		asm.JEq.Imm(asm.R1, 0xe0, store),
		asm.Mov.Imm(asm.R0, packetBroadcast),
		asm.Ja.Label(store),
	)
	g.b.label(v6)
	g.b.emit(
		asm.Mov.Imm(asm.R0, packetMulticast),
		asm.Ja.Label(store),
	)
}

func metaNameOf(k ir.MetaKey) string { return ir.MetaName(k) }

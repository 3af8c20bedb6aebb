package codegen

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Conntrack keys are read from the packet's own conntrack entry, exactly
// where nft_ct_get_eval reads them: skb->_nfct holds the struct nf_conn
// pointer with the ctinfo (enum ip_conntrack_info) in its low three bits
// (nf_ct_get). Only netfilter programs can do this exactly: they run at
// the very hook and priority of the nft chain, so the skb carries the
// entry conntrack attached before that priority, no more and no less.
// The entry is a plain address to the verifier; bpf_rdonly_cast turns it
// into a read-only pointer to struct nf_conn whose members are read at
// their offsets in the running kernel's BTF (faulting reads give zero,
// but the entry of an skb is alive for as long as the skb holds it).
//
// Other program types are refused (see docs/ct.md): XDP runs before any
// skb or conntrack entry exists; tc programs serve netdev tables, whose ct
// expressions the kernel itself refuses; cgroup_skb programs run after the
// netfilter hooks, where TCP has already dropped the entry at ingress
// (nf_reset_ct before the socket filter) and confirmation or later chains
// may have changed the entry at egress.

// Conntrack constants (include/uapi/linux/netfilter/nf_conntrack_common.h).
const (
	nfctInfoMask     = 7 // NFCT_INFOMASK
	ctUntracked      = 7 // IP_CT_UNTRACKED
	ctIsReply        = 3 // IP_CT_IS_REPLY
	nfprotoIPv4      = 2
	nfprotoIPv6      = 10
	ctStateInvalid   = ir.CTStateInvalid
	ctStateUntracked = ir.CTStateUntracked
)

// ctRefusal says why the target cannot read conntrack keys, or "".
func ctRefusal(t ProgramType) string {
	switch t {
	case Netfilter:
		return ""
	case XDP:
		return "XDP runs before the stack builds an skb, so there is no conntrack entry to read"
	case TC:
		return "tc programs serve netdev tables, where the kernel refuses ct (no conntrack at netdev hooks)"
	case CgroupSKB:
		return "cgroup_skb programs run after the netfilter hooks: at ingress TCP has already released the entry (nf_reset_ct before the socket filter), at egress confirmation and later chains may have changed it; use the netfilter attachment"
	}
	return fmt.Sprintf("program type %s has no conntrack entry", t)
}

// loadCT places a ct key's register image in the buffer, or jumps to fail
// where nft_ct_get_eval breaks (no entry, or an address of the other
// family).
func (g *gen) loadCT(f *ir.Field, fail string) error {
	name := "ct " + ir.CTName(f.CT)
	if f.CTDir != ir.CTDirNone {
		name = "ct " + f.CTDir.String() + " " + ir.CTName(f.CT)
	}
	if why := ctRefusal(g.tgt.Type); why != "" {
		return g.unsupported("%s is not supported at %s: %s", name, g.tgt.Type, why)
	}
	want, ok := ir.CTLen(f.CT, g.t.Family)
	if !ok || f.Len != want {
		return g.unsupported("%s load of %d bytes, the key has %d", name, f.Len, want)
	}
	nfct, err := kernelMember("sk_buff", "_nfct")
	if err != nil {
		return err
	}
	// R0 = skb->_nfct; R2 = ctinfo; R0 = the entry (or 0).
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
		asm.LoadMem(asm.R0, asm.R1, nfct.Off, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.R0),
		asm.And.Imm(asm.R2, nfctInfoMask),
		asm.And.Imm(asm.R0, ^nfctInfoMask),
	)
	switch f.CT {
	case ir.CTState:
		noEntry := g.b.newLabel("ct_noentry")
		store := g.b.newLabel("ct_state_store")
		g.b.emit(
			asm.JEq.Imm(asm.R0, 0, noEntry),
			// NF_CT_STATE_BIT(ctinfo): 1 << (ctinfo % IP_CT_IS_REPLY + 1)
			asm.Mod.Imm(asm.R2, ctIsReply),
			asm.Add.Imm(asm.R2, 1),
			asm.Mov.Imm(asm.R0, 1),
			asm.LSh.Reg(asm.R0, asm.R2),
			asm.Ja.Label(store),
		)
		g.b.label(noEntry)
		g.b.emit(
			asm.Mov.Imm(asm.R0, ctStateInvalid),
			asm.JNE.Imm(asm.R2, ctUntracked, store),
			asm.Mov.Imm(asm.R0, ctStateUntracked),
		)
		g.b.label(store)
		g.b.emit(asm.StoreMem(asm.R10, bufOff, asm.R0, asm.Word))
		return nil
	}
	g.b.emit(asm.JEq.Imm(asm.R0, 0, fail))
	if f.CT == ir.CTDirection {
		// CTINFO2DIR: reply for ctinfo >= IP_CT_IS_REPLY.
		store := g.b.newLabel("ct_dir_store")
		g.b.emit(
			asm.Mov.Imm(asm.R0, 0),
			asm.JLT.Imm(asm.R2, ctIsReply, store),
			asm.Mov.Imm(asm.R0, 1),
		)
		g.b.label(store)
		g.b.emit(asm.StoreMem(asm.R10, bufOff, asm.R0, asm.Byte))
		return nil
	}
	if err := g.castConn(); err != nil {
		return err
	}
	// R0 is now a read-only struct nf_conn pointer.
	dirIdx := 0
	if f.CTDir == ir.CTDirReply {
		dirIdx = 1
	}
	tuple := fmt.Sprintf("tuplehash[%d].tuple.", dirIdx)
	l3num, err := connOffset("tuplehash[0].tuple.src.l3num")
	if err != nil {
		return err
	}
	copyMember := func(path string, n int) error {
		off, err := connOffset(path)
		if err != nil {
			return err
		}
		for _, c := range chunks(uint32(n)) {
			pos, sz := c[0], c[1]
			g.b.emit(
				asm.LoadMem(asm.R1, asm.R0, int16(off+int(pos)), asmSize(sz)),
				asm.StoreMem(asm.R10, int16(bufOff+int32(pos)), asm.R1, asmSize(sz)),
			)
		}
		return nil
	}
	switch f.CT {
	case ir.CTStatus:
		// *dest = ct->status: the low 32 bits of the unsigned long.
		off, err := connOffset("status")
		if err != nil {
			return err
		}
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R0, int16(off), asm.DWord),
			asm.StoreMem(asm.R10, bufOff, asm.R1, asm.Word),
		)
		return nil
	case ir.CTMark:
		return copyMember("mark", 4)
	case ir.CTL3Proto:
		// nft_reg_store8 of the u16 l3num.
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R0, int16(l3num), asm.Half),
			asm.StoreMem(asm.R10, bufOff, asm.R1, asm.Byte),
		)
		return nil
	case ir.CTProtocol:
		return copyMember("tuplehash[0].tuple.dst.protonum", 1)
	case ir.CTProtoSrc:
		return copyMember(tuple+"src.u.all", 2)
	case ir.CTProtoDst:
		return copyMember(tuple+"dst.u.all", 2)
	}
	side := "src"
	if f.CT == ir.CTDst || f.CT == ir.CTDstIP || f.CT == ir.CTDstIP6 {
		side = "dst"
	}
	addr := tuple + side + ".u3"
	g.b.emit(asm.LoadMem(asm.R2, asm.R0, int16(l3num), asm.Half))
	switch f.CT {
	case ir.CTSrcIP, ir.CTDstIP:
		g.b.emit(asm.JNE.Imm(asm.R2, nfprotoIPv4, fail))
		return copyMember(addr, 4)
	case ir.CTSrcIP6, ir.CTDstIP6:
		g.b.emit(asm.JNE.Imm(asm.R2, nfprotoIPv6, fail))
		return copyMember(addr, 16)
	case ir.CTSrc, ir.CTDst:
		// memcpy of 4 bytes for an IPv4 entry, 16 otherwise.
		long := g.b.newLabel("ct_addr16")
		done := g.b.newLabel("ct_addr_done")
		g.b.emit(asm.JNE.Imm(asm.R2, nfprotoIPv4, long))
		if err := copyMember(addr, 4); err != nil {
			return err
		}
		g.b.emit(asm.Ja.Label(done))
		g.b.label(long)
		if err := copyMember(addr, 16); err != nil {
			return err
		}
		g.b.label(done)
		g.b.emit(asm.Mov.Imm(asm.R0, 0)) // anchor for the done label
		return nil
	}
	return g.unsupported("%s is not supported", name)
}

// castConn turns the entry address in R0 into a read-only struct nf_conn
// pointer in R0 with the bpf_rdonly_cast kfunc. R1-R5 are clobbered.
func (g *gen) castConn() error {
	cast, err := kfuncID("bpf_rdonly_cast")
	if err != nil {
		return err
	}
	conn, err := kernelTypeID("nf_conn")
	if err != nil {
		return err
	}
	g.b.emit(
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Mov.Imm(asm.R2, int32(conn)),
		asm.Instruction{OpCode: asm.OpCode(asm.JumpClass).SetJumpOp(asm.Call), Src: asm.PseudoKfuncCall, Constant: cast},
	)
	return nil
}

// kernelTypeID returns the BTF id of struct name in the kernel's BTF.
func kernelTypeID(name string) (btf.TypeID, error) {
	spec, err := loadKernelBTF()
	if err != nil {
		return 0, err
	}
	var st *btf.Struct
	if err := spec.TypeByName(name, &st); err != nil {
		return 0, fmt.Errorf("kernel BTF: struct %s: %w", name, err)
	}
	id, err := spec.TypeID(st)
	if err != nil {
		return 0, fmt.Errorf("kernel BTF: struct %s: %w", name, err)
	}
	return id, nil
}

// connOffset returns the byte offset of a member of struct nf_conn.
func connOffset(path string) (int, error) {
	off, err := kernelOffset("nf_conn", path)
	if err != nil {
		return 0, err
	}
	if off > 0x7fff {
		return 0, fmt.Errorf("kernel BTF: nf_conn.%s at offset %d", path, off)
	}
	return off, nil
}

// kernelOffset returns the byte offset of a member path such as
// "tuplehash[1].tuple.dst.u3" within a kernel struct, following named
// members (also inside anonymous structs and unions) and array indexes.
func kernelOffset(structName, path string) (int, error) {
	spec, err := loadKernelBTF()
	if err != nil {
		return 0, err
	}
	var st *btf.Struct
	if err := spec.TypeByName(structName, &st); err != nil {
		return 0, fmt.Errorf("kernel BTF: struct %s: %w", structName, err)
	}
	var typ btf.Type = st
	off := 0
	for _, part := range strings.Split(path, ".") {
		name, index := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 && strings.HasSuffix(part, "]") {
			n, err := strconv.Atoi(part[i+1 : len(part)-1])
			if err != nil {
				return 0, fmt.Errorf("kernel BTF: %s.%s: bad index", structName, path)
			}
			name, index = part[:i], n
		}
		var members []btf.Member
		switch t := btf.UnderlyingType(typ).(type) {
		case *btf.Struct:
			members = t.Members
		case *btf.Union:
			members = t.Members
		default:
			return 0, fmt.Errorf("kernel BTF: %s.%s: %s is not in a struct or union", structName, path, name)
		}
		bits, m, ok := findMember(members, name, 0)
		if !ok {
			return 0, fmt.Errorf("kernel BTF: %s.%s: no member %s", structName, path, name)
		}
		if m.BitfieldSize != 0 || bits%8 != 0 {
			return 0, fmt.Errorf("kernel BTF: %s.%s: %s is a bitfield", structName, path, name)
		}
		off += int(bits / 8)
		typ = m.Type
		if index >= 0 {
			arr, ok := btf.UnderlyingType(typ).(*btf.Array)
			if !ok || uint32(index) >= arr.Nelems {
				return 0, fmt.Errorf("kernel BTF: %s.%s: %s has no element %d", structName, path, name, index)
			}
			sz, err := btf.Sizeof(arr.Type)
			if err != nil {
				return 0, fmt.Errorf("kernel BTF: %s.%s: %w", structName, path, err)
			}
			off += index * sz
			typ = arr.Type
		}
	}
	return off, nil
}

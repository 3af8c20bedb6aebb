package codegen

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Log statements write one LogEvent per packet to a BPF ring buffer
// (EventsMapSpec) shared by the programs of a namespace; `bpfilter-nft
// monitor` reads it and prints each event as the kernel's nf_log_syslog
// would (package nflog).

// eventsMapSymbol is the reference name of the ring buffer in instructions.
const eventsMapSymbol = "nft_events"

// EventsRingSize is the size of the log ring buffer.
const EventsRingSize = 1 << 20

// EventsMapSpec returns the spec of the log ring buffer.
func EventsMapSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{Name: "nft_events", Type: ebpf.RingBuf, MaxEntries: EventsRingSize}
}

// Layout of a log event in the ring buffer (host byte order).
const (
	EvMagic     = 0  // u32 LogEventMagic
	EvHook      = 4  // u8 ir.Hook
	EvPF        = 5  // u8 NFPROTO_* of the program (nft_pf)
	EvLevel     = 6  // u8 log level
	EvHasMark   = 7  // u8 1 if Mark was read
	EvIn        = 8  // u32 input ifindex or 0
	EvOut       = 12 // u32 output ifindex or 0
	EvLen       = 16 // u32 skb->len as nf_tables sees it
	EvMark      = 20 // u32 skb->mark
	EvFlags     = 24 // u32 NF_LOG_* flags
	EvMACLen    = 28 // u16 bytes of link-layer header in MAC (0: none)
	EvCapLen    = 30 // u16 bytes of packet from the network header in Data
	EvProto     = 32 // u16 skb->protocol, host order
	EvAvail     = 36 // u32 bytes from the network header to the packet end
	EvHandle    = 40 // u64 rule handle
	EvPrefix    = 48 // [LogPrefixLen]byte, NUL-padded
	EvMAC       = EvPrefix + LogPrefixLen
	EvData      = EvMAC + 16
	LogEventLen = EvData + LogCaptureLen

	// LogEventMagic marks a log event ("NFTL").
	LogEventMagic = 0x4c54464e
	// LogPrefixLen is the kernel's NF_LOG_PREFIXLEN.
	LogPrefixLen = 128
	// LogCaptureLen is how many bytes from the network header an event
	// carries: enough for every header nf_log_syslog prints (IPv4 with
	// options, an ICMP error quoting IPv4 and a TCP header with options,
	// IPv6 with extension headers).
	LogCaptureLen = 320
)

// slotEvent keeps the reserved ring buffer record while a log statement
// fills it.
const slotEvent = -264

// log emits a log statement: reserve an event, fill it, submit it. A full
// ring buffer loses the event (the kernel's printk ratelimits likewise);
// the packet's verdict is never affected.
func (g *gen) log(r *ir.Rule, l *ir.Log) error {
	if l.HasGroup {
		return g.unsupported("log group (nflog to userspace) is not supported; use log without group and bpfilter-nft monitor")
	}
	if l.Level == ir.LogAudit {
		return g.unsupported("log level audit (audit records) is not supported")
	}
	if l.Flags&ir.LogUID != 0 {
		return g.unsupported("log flags skuid is not supported")
	}
	g.events = true
	done := g.b.newLabel("log_done")
	g.b.emit(
		asm.LoadMapPtr(asm.R1, 0).WithReference(eventsMapSymbol),
		asm.Mov.Imm(asm.R2, LogEventLen),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, done),
		asm.StoreMem(asm.R10, slotEvent, asm.R0, asm.DWord),
		asm.StoreImm(asm.R0, EvMagic, LogEventMagic, asm.Word),
		asm.StoreImm(asm.R0, EvHook, int64(g.tgt.Hook), asm.Byte),
		asm.StoreImm(asm.R0, EvLevel, int64(l.Level), asm.Byte),
		asm.StoreImm(asm.R0, EvFlags, int64(l.Flags), asm.Word),
		asm.LoadMem(asm.R1, asm.R10, slotPF, asm.DWord),
		asm.StoreMem(asm.R0, EvPF, asm.R1, asm.Byte),
		asm.LoadMem(asm.R1, asm.R10, slotLen, asm.DWord),
		asm.StoreMem(asm.R0, EvLen, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R10, slotProto, asm.DWord),
		asm.StoreMem(asm.R0, EvProto, asm.R1, asm.Half),
	)
	if g.groupHandle {
		g.b.emit(asm.LoadMem(asm.R1, asm.R10, slotGroupHandle, asm.DWord))
	} else {
		g.loadConst(asm.R1, r.Handle)
	}
	g.b.emit(asm.StoreMem(asm.R0, EvHandle, asm.R1, asm.DWord))
	var prefix [LogPrefixLen]byte
	copy(prefix[:LogPrefixLen-1], l.Prefix)
	for i := 0; i < LogPrefixLen; i += 8 {
		v := leValue(prefix[i : i+8])
		if v == 0 {
			g.b.emit(stImm64(asm.R0, int16(EvPrefix+i), 0))
			continue
		}
		g.loadConst(asm.R1, v)
		g.b.emit(asm.StoreMem(asm.R0, int16(EvPrefix+i), asm.R1, asm.DWord))
	}

	// Interfaces and mark, read as meta iif/oif/mark read them.
	for _, k := range []struct {
		key ir.MetaKey
		off int16
	}{{ir.MetaIif, EvIn}, {ir.MetaOif, EvOut}, {ir.MetaMark, EvMark}} {
		if k.key == ir.MetaMark && g.tgt.Type == XDP {
			continue // no skb, no mark
		}
		skip := g.b.newLabel("log_meta")
		f := &ir.Field{Source: ir.SourceMeta, Meta: k.key, Len: 4}
		if err := g.loadField(f, 4, skip); err != nil {
			return err
		}
		g.b.emit(
			asm.LoadMem(asm.R0, asm.R10, slotEvent, asm.DWord),
			asm.LoadMem(asm.R1, asm.R10, bufOff, asm.Word),
			asm.StoreMem(asm.R0, k.off, asm.R1, asm.Word),
		)
		if k.key == ir.MetaMark {
			g.b.emit(asm.StoreImm(asm.R0, EvHasMark, 1, asm.Byte))
		}
		g.b.label(skip)
	}

	// The Ethernet header, where the packet has one (as payload ll reads
	// it; nf_log prints the mac header only for packets with an input
	// device).
	noMAC := g.b.newLabel("log_nomac")
	f := &ir.Field{Source: ir.SourcePayload, Base: ir.BaseLL, Offset: 0, Len: 14}
	if err := g.loadField(f, 16, noMAC); err != nil {
		return err
	}
	g.b.emit(asm.LoadMem(asm.R0, asm.R10, slotEvent, asm.DWord))
	for _, c := range chunks(14) {
		g.b.emit(
			asm.LoadMem(asm.R1, asm.R10, int16(bufOff+int32(c[0])), asmSize(c[1])),
			asm.StoreMem(asm.R0, int16(EvMAC+int32(c[0])), asm.R1, asmSize(c[1])),
		)
	}
	g.b.emit(asm.StoreImm(asm.R0, EvMACLen, 14, asm.Half))
	g.b.label(noMAC)

	// The packet from the network header: min(remaining, LogCaptureLen)
	// bytes.
	noData := g.b.newLabel("log_nodata")
	capped := g.b.newLabel("log_capped")
	g.b.emit(
		asm.LoadMem(asm.R4, asm.R10, slotTotal, asm.DWord),
		asm.LoadMem(asm.R2, asm.R10, slotNH, asm.DWord),
		asm.Sub.Reg(asm.R4, asm.R2),
		asm.LoadMem(asm.R3, asm.R10, slotEvent, asm.DWord),
		asm.StoreMem(asm.R3, EvAvail, asm.R4, asm.Word),
		asm.JSLE.Imm(asm.R4, 0, noData),
		asm.JLE.Imm(asm.R4, LogCaptureLen, capped),
		asm.Mov.Imm(asm.R4, LogCaptureLen),
	)
	g.b.label(capped)
	g.b.emit(
		asm.LoadMem(asm.R3, asm.R10, slotEvent, asm.DWord),
		asm.StoreMem(asm.R3, EvCapLen, asm.R4, asm.Half),
		asm.Add.Imm(asm.R3, EvData),
	)
	switch g.tgt.Type {
	case XDP:
		g.b.emit(asm.Mov.Reg(asm.R1, asm.R6), asm.FnXdpLoadBytes.Call())
	case TC, CgroupSKB:
		g.b.emit(asm.Mov.Reg(asm.R1, asm.R6), asm.FnSkbLoadBytes.Call())
	case Netfilter:
		// bpf_dynptr_read(dst, len, dynptr, offset, flags)
		g.b.emit(
			asm.Mov.Reg(asm.R1, asm.R3),
			asm.Mov.Reg(asm.R5, asm.R2),
			asm.Mov.Reg(asm.R2, asm.R4),
			asm.Mov.Reg(asm.R3, asm.R10),
			asm.Add.Imm(asm.R3, slotDyn),
			asm.Mov.Reg(asm.R4, asm.R5),
			asm.Mov.Imm(asm.R5, 0),
			asm.FnDynptrRead.Call(),
		)
	}
	g.b.emit(
		asm.JEq.Imm(asm.R0, 0, noData),
		// The copy failed: say so with no data rather than garbage.
		asm.LoadMem(asm.R3, asm.R10, slotEvent, asm.DWord),
		asm.StoreImm(asm.R3, EvCapLen, 0, asm.Half),
	)
	g.b.label(noData)
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, slotEvent, asm.DWord),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRingbufSubmit.Call(),
	)
	g.b.label(done)
	return nil
}

// associateEvents points the program's log statements at the ring buffer m.
func associateEvents(insns asm.Instructions, p *Program, m *ebpf.Map) error {
	if p.Events == nil {
		return nil
	}
	if m == nil || m.Type() != ebpf.RingBuf {
		return fmt.Errorf("the program logs but no ring buffer was given")
	}
	if err := insns.AssociateMap(eventsMapSymbol, m); err != nil && !errors.Is(err, asm.ErrUnreferencedSymbol) {
		return fmt.Errorf("associate log ring buffer: %w", err)
	}
	return nil
}

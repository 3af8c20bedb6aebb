package difftest

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pktgen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

// xdpMD is struct xdp_md, the context BPF_PROG_TEST_RUN takes for XDP.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// testRunVerdicts runs the XDP programs of res on every frame with
// BPF_PROG_TEST_RUN, as if received on the oracle's receiver device. XDP
// cannot be observed through the oracle: it would drop the oracle's
// sentinel frames along with everything else a drop policy drops.
func testRunVerdicts(o *oracle.Oracle, ns *nsctx.NetNS, res *pipeline.Result, hook ir.Hook, cases []pktgen.Case) ([]oracle.Result, error) {
	var progs []*ebpf.Program
	var loaded []*codegen.Loaded
	defer func() {
		for _, l := range loaded {
			l.Close()
		}
	}()
	for _, p := range res.Programs {
		if p.Chain.Base.Hook != hook {
			continue
		}
		l, err := p.Program.Load()
		if err != nil {
			return nil, fmt.Errorf("chain %s: load: %w", p.Chain.Name, err)
		}
		// The program array of a chain split into tail-called programs
		// must stay open: the kernel clears it with its last fd.
		loaded = append(loaded, l)
		progs = append(progs, l.Program)
	}
	out := make([]oracle.Result, len(cases))
	err := ns.Do(func() error {
		for i, c := range cases {
			out[i] = oracle.Accepted
			for _, prog := range progs {
				ctx := xdpMD{DataEnd: uint32(len(c.Frame)), IngressIfindex: uint32(o.ReceiverIfindex())}
				ret, err := prog.Run(&ebpf.RunOptions{Data: c.Frame, Context: ctx})
				if err != nil {
					return fmt.Errorf("%s: test run: %w", c.Name, err)
				}
				v, err := codegen.VerdictOf(codegen.XDP, ret)
				if err != nil {
					return err
				}
				if v == ir.VerdictDrop {
					out[i] = oracle.Dropped
					break
				}
			}
		}
		return nil
	})
	return out, err
}

// attachSentinelPass attaches, first on the device's tcx hook, a program
// that passes the oracle's sentinel frames (TCX_PASS) and hands every other
// frame on (TCX_NEXT).
func attachSentinelPass(ns *nsctx.NetNS, tgt codegen.Target) (func() error, error) {
	mac := oracle.SentinelMAC()
	hi := binary.LittleEndian.Uint32(mac[0:4])
	lo := binary.LittleEndian.Uint16(mac[4:6])
	const tcxNext, tcxPass = -1, 0
	insns := asm.Instructions{
		// r2 = skb->data, r3 = skb->data_end
		asm.LoadMem(asm.R2, asm.R1, 76, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, 80, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 12),
		asm.JGT.Reg(asm.R4, asm.R3, "next"),
		asm.LoadMem(asm.R5, asm.R2, 6, asm.Word),
		asm.JNE.Imm32(asm.R5, int32(hi), "next"),
		asm.LoadMem(asm.R5, asm.R2, 10, asm.Half),
		asm.JNE.Imm32(asm.R5, int32(lo), "next"),
		asm.Mov.Imm(asm.R0, tcxPass),
		asm.Return(),
		asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("next"),
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "sentinel_pass", Type: ebpf.SchedCLS, License: "GPL", Instructions: insns,
	})
	if err != nil {
		return nil, fmt.Errorf("sentinel-pass program: %w", err)
	}
	at := ebpf.AttachTCXIngress
	if tgt.Egress {
		at = ebpf.AttachTCXEgress
	}
	var lk link.Link
	err = ns.Do(func() error {
		var err error
		lk, err = link.AttachTCX(link.TCXOptions{Program: prog, Interface: int(tgt.Device.Index), Attach: at, Anchor: link.Head()})
		return err
	})
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("attach sentinel-pass program: %w", err)
	}
	return func() error { lk.Close(); return prog.Close() }, nil
}

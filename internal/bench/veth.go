package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Attach is what filters the receiving end of the veth pair.
type Attach string

// Attach kinds of the end-to-end measurement.
const (
	AttachNone Attach = "none" // nothing: the floor (the IP layer drops the frame)
	AttachXDP  Attach = "xdp"  // bpfilter-nft's XDP program
	AttachTCX  Attach = "tcx"  // bpfilter-nft's tcx ingress program
	AttachNFT  Attach = "nft"  // the kernel's nftables, netdev ingress
	// AttachXDPLinear and AttachTCXLinear are bpfilter-nft's programs
	// compiled as straight-line code (no rule groups).
	AttachXDPLinear Attach = "xdp-linear"
	AttachTCXLinear Attach = "tcx-linear"
)

// AllAttachs lists every attach kind.
var AllAttachs = []Attach{AttachNone, AttachXDP, AttachTCX, AttachNFT, AttachXDPLinear, AttachTCXLinear}

// VethResult is the packet rate at the receiving end of a veth pair.
type VethResult struct {
	Attach Attach
	Rules  int
	// PPS is frames per second the receiver processed while one sender
	// core flooded it.
	PPS float64
	// Frames is how many the receiver processed during the measurement.
	Frames uint64
	// Refused is why bpfilter-nft could not compile or load the ruleset.
	Refused string
}

// VethConfig says what the end-to-end measurement runs.
type VethConfig struct {
	Sizes   []int
	Attachs []Attach
	Kind    Kind
	// Time is the length of each measurement (default 1s).
	Time time.Duration
	// Sender is how frames are sent (default SenderXDP).
	Sender Sender
}

// Sender is a way to flood the veth pair.
type Sender string

// Senders.
const (
	// SenderXDP transmits frames from an XDP program run in live-frame
	// mode (XDP_TX on the sending veth): the receiver gets XDP frames,
	// which XDP programs take without building an skb.
	SenderXDP Sender = "xdp"
	// SenderPacket sends skbs from an AF_PACKET socket with
	// PACKET_QDISC_BYPASS and sendmmsg, as a local stack or container
	// would send them: XDP on the receiving veth must convert each.
	SenderPacket Sender = "packet"
)

var vethSeq atomic.Uint32

// vethRounds is the number of measurements of each attach kind and size.
const vethRounds = 3

// Veth measures, for every size and attach kind, how many frames per
// second the receiving end of a veth pair processes while the sending end
// is flooded from one CPU with a frame that no rule matches (the chain's
// policy drops it): the best of three floods of a third of cfg.Time,
// taken in three rounds over the attach kinds. The sender is BPF_PROG_TEST_RUN in live-frame mode
// (BPF_F_TEST_XDP_LIVE_FRAMES) with a program that sends every frame out
// of the sending veth (XDP_TX); the receiving veth has NAPI (GRO) enabled
// so that it takes such frames. Both ends live in scratch network
// namespaces that are deleted afterwards.
func Veth(cfg VethConfig, progress func(VethResult)) ([]VethResult, error) {
	if cfg.Time <= 0 {
		cfg.Time = time.Second
	}
	if cfg.Kind == "" {
		cfg.Kind = Uniform
	}
	p, err := newVethPair()
	if err != nil {
		return nil, err
	}
	defer p.close()
	var out []VethResult
	for _, n := range cfg.Sizes {
		// Three rounds over the attach kinds, each kind keeping its
		// best: other work on the machine only ever slows a
		// measurement down, and the rounds spread each kind's chances
		// over time.
		best := map[Attach]*VethResult{}
		for round := 0; round < vethRounds; round++ {
			for _, a := range cfg.Attachs {
				if a == AttachNone && n != cfg.Sizes[0] {
					continue // the floor does not depend on the ruleset
				}
				if b := best[a]; b != nil && b.Refused != "" {
					continue
				}
				detach, err := p.attach(a, cfg.Kind, n)
				var ue *codegen.UnsupportedError
				if errors.As(err, &ue) {
					best[a] = &VethResult{Attach: a, Rules: n, Refused: ue.Reason}
					continue
				}
				if err != nil {
					return nil, fmt.Errorf("%s, %d rules: %w", a, n, err)
				}
				flood := p.flood
				if cfg.Sender == SenderPacket {
					flood = p.floodPacket
				}
				frames, d, err := flood(cfg.Time / vethRounds)
				detach()
				if err != nil {
					return nil, fmt.Errorf("%s, %d rules: %w", a, n, err)
				}
				pps := float64(frames) / d.Seconds()
				if b := best[a]; b == nil || pps > b.PPS {
					best[a] = &VethResult{Attach: a, Rules: n, Frames: frames, PPS: pps}
				}
			}
		}
		for _, a := range cfg.Attachs {
			r := best[a]
			if r == nil {
				continue
			}
			if a == AttachNone {
				r.Rules = 0
			}
			out = append(out, *r)
			if progress != nil {
				progress(*r)
			}
		}
	}
	return out, nil
}

// vethPair is a veth pair between two scratch namespaces.
type vethPair struct {
	tx, rx       *netnstest.NS
	txIdx, rxIdx int
	rxName       string
	sender       *ebpf.Program
}

func newVethPair() (_ *vethPair, err error) {
	p := &vethPair{}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if p.tx, err = netnstest.New(); err != nil {
		return nil, err
	}
	if p.rx, err = netnstest.New(); err != nil {
		return nil, err
	}
	n := vethSeq.Add(1)
	txName := fmt.Sprintf("bnt%d_%d", os.Getpid()%100000, n)
	p.rxName = fmt.Sprintf("bnr%d_%d", os.Getpid()%100000, n)
	if _, err := p.tx.RunFiles("", []*os.File{p.rx.File()}, "ip", "link", "add", txName, "address", SenderMAC.String(),
		"type", "veth", "peer", "name", p.rxName, "address", ReceiverMAC.String(), "netns", "/proc/self/fd/3"); err != nil {
		return nil, err
	}
	if _, err := p.tx.Run("", "ip", "link", "set", txName, "up"); err != nil {
		return nil, err
	}
	if _, err := p.rx.Run("", "ip", "link", "set", p.rxName, "up"); err != nil {
		return nil, err
	}
	if p.txIdx, err = ifindex(p.tx, txName); err != nil {
		return nil, err
	}
	if p.rxIdx, err = ifindex(p.rx, p.rxName); err != nil {
		return nil, err
	}
	// veth takes XDP frames from its peer only with NAPI, which GRO
	// turns on.
	if err := p.rx.Do(func() error { return setGRO(p.rxName, true) }); err != nil {
		return nil, err
	}
	p.sender, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "bench_xdp_tx", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 3 /* XDP_TX */), asm.Return()},
	})
	if err != nil {
		return nil, fmt.Errorf("sender program: %w", err)
	}
	return p, nil
}

func (p *vethPair) close() {
	if p.sender != nil {
		p.sender.Close()
	}
	// Deleting the namespaces deletes the pair.
	if p.tx != nil {
		p.tx.Close()
	}
	if p.rx != nil {
		p.rx.Close()
	}
}

func ifindex(ns *netnstest.NS, name string) (int, error) {
	var idx int
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		idx = ifi.Index
		return nil
	})
	return idx, err
}

// attach puts n rules of kind k on the receiver as a; the returned
// function undoes it.
func (p *vethPair) attach(a Attach, k Kind, n int) (func(), error) {
	rules := Generate(k, n, true)
	switch a {
	case AttachNone:
		return func() {}, nil
	case AttachNFT:
		text := strings.Replace(Ruleset(ir.FamilyNetdev, ir.HookIngress, p.rxName, rules), "policy accept", "policy drop", 1)
		if _, err := p.rx.Run(text, "nft", "-f", "-"); err != nil {
			return nil, err
		}
		return func() { p.rx.Run("", "nft", "flush", "ruleset") }, nil
	}
	typ := codegen.XDP
	if a == AttachTCX || a == AttachTCXLinear {
		typ = codegen.TC
	}
	linear := a == AttachXDPLinear || a == AttachTCXLinear
	tab, c := Table(ir.FamilyNetdev, ir.HookIngress, rules)
	c.Base.Policy = ir.VerdictDrop
	tgt := codegen.Target{Type: typ, Family: ir.FamilyNetdev, Hook: ir.HookIngress, ProtoFamily: ir.FamilyNetdev,
		Device: &codegen.Device{Index: uint32(p.rxIdx), Name: p.rxName, Type: unix.ARPHRD_ETHER, MAC: [6]byte(ReceiverMAC)}}
	prog, err := codegen.CompileWith(tab, c, tgt, codegen.Options{Linear: linear})
	if err != nil {
		return nil, err
	}
	l, err := prog.Load()
	if err != nil {
		return nil, err
	}
	var lk link.Link
	err = p.rx.Do(func() error {
		var err error
		if typ == codegen.XDP {
			lk, err = link.AttachXDP(link.XDPOptions{Program: l.Program, Interface: p.rxIdx})
		} else {
			lk, err = link.AttachTCX(link.TCXOptions{Program: l.Program, Interface: p.rxIdx, Attach: ebpf.AttachTCXIngress})
		}
		return err
	})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("attach: %w", err)
	}
	return func() { lk.Close(); l.Close() }, nil
}

// xdpMD is struct xdp_md, BPF_PROG_TEST_RUN's context for XDP.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// flood sends MissFrame from the sender for about d and returns how many
// frames the receiver processed and over how long.
func (p *vethPair) flood(d time.Duration) (uint64, time.Duration, error) {
	frame := MissFrame()
	before, err := p.rxPackets()
	if err != nil {
		return 0, 0, err
	}
	var elapsed time.Duration
	send := func(repeat uint32) error {
		return p.tx.Do(func() error {
			// One sender core: the thread stays on the CPU it runs on.
			var set unix.CPUSet
			set.Set(cpuOf())
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				return err
			}
			start := time.Now()
			_, err := p.sender.Run(&ebpf.RunOptions{
				Data:    frame,
				Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(p.txIdx)},
				Repeat:  repeat,
				Flags:   unix.BPF_F_TEST_XDP_LIVE_FRAMES,
			})
			elapsed += time.Since(start)
			var all unix.CPUSet
			for i := 0; i < runtime.NumCPU(); i++ {
				all.Set(i)
			}
			if err2 := unix.SchedSetaffinity(0, &all); err2 != nil && err == nil {
				err = err2
			}
			return err
		})
	}
	// Calibrate, then flood for about d.
	if err := send(20000); err != nil {
		return 0, 0, fmt.Errorf("live-frame sender: %w", err)
	}
	rate := 20000 / elapsed.Seconds()
	elapsed = 0
	mid, err := p.rxPackets()
	if err != nil {
		return 0, 0, err
	}
	if mid == before {
		return 0, 0, errors.New("the receiver got none of the calibration frames")
	}
	repeat := uint32(min(max(rate*d.Seconds(), 1000), 1<<30))
	if err := send(repeat); err != nil {
		return 0, 0, err
	}
	after, err := p.rxPackets()
	if err != nil {
		return 0, 0, err
	}
	return after - mid, elapsed, nil
}

// rxPackets reads the receiver's received-packet counter.
func (p *vethPair) rxPackets() (uint64, error) {
	out, err := p.rx.Run("", "ip", "-j", "-s", "link", "show", "dev", p.rxName)
	if err != nil {
		return 0, err
	}
	var links []struct {
		Stats64 struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return 0, fmt.Errorf("ip -j -s link show: %v (%q)", err, out)
	}
	return links[0].Stats64.RX.Packets, nil
}

// cpuOf returns the CPU the calling thread runs on.
func cpuOf() int {
	var cpu, node uint32
	if _, _, errno := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), uintptr(unsafe.Pointer(&node)), 0); errno != 0 {
		return 0
	}
	return int(cpu)
}

// setGRO turns generic receive offload of a device on or off with the
// ETHTOOL_SGRO ioctl.
func setGRO(name string, on bool) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	const ethtoolSGRO = 0x0000002c
	val := &struct{ Cmd, Data uint32 }{ethtoolSGRO, 0}
	if on {
		val.Data = 1
	}
	var ifr struct {
		Name [unix.IFNAMSIZ]byte
		Data uintptr
		_    [16]byte
	}
	copy(ifr.Name[:], name)
	ifr.Data = uintptr(unsafe.Pointer(val))
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return fmt.Errorf("ETHTOOL_SGRO %s: %w", name, errno)
	}
	runtime.KeepAlive(val)
	return nil
}

// floodPacket sends MissFrame from an AF_PACKET socket on the sending
// veth for about d and returns how many frames the receiver processed and
// over how long.
func (p *vethPair) floodPacket(d time.Duration) (uint64, time.Duration, error) {
	frame := MissFrame()
	before, err := p.rxPackets()
	if err != nil {
		return 0, 0, err
	}
	var elapsed time.Duration
	err = p.tx.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return fmt.Errorf("PACKET_QDISC_BYPASS: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: p.txIdx}); err != nil {
			return err
		}
		const batch = 256
		hdrs := make([]mmsghdr, batch)
		iov := unix.Iovec{Base: &frame[0]}
		iov.SetLen(len(frame))
		for i := range hdrs {
			hdrs[i].hdr.Iov = &iov
			hdrs[i].hdr.SetIovlen(1)
		}
		var set unix.CPUSet
		set.Set(cpuOf())
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return err
		}
		defer func() {
			var all unix.CPUSet
			for i := 0; i < runtime.NumCPU(); i++ {
				all.Set(i)
			}
			unix.SchedSetaffinity(0, &all)
		}()
		start := time.Now()
		for time.Since(start) < d {
			for i := 0; i < 64; i++ {
				_, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), batch, 0, 0, 0)
				if errno != 0 && errno != unix.ENOBUFS && errno != unix.EAGAIN {
					return fmt.Errorf("sendmmsg: %w", errno)
				}
			}
		}
		elapsed = time.Since(start)
		runtime.KeepAlive(frame)
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	after, err := p.rxPackets()
	if err != nil {
		return 0, 0, err
	}
	return after - before, elapsed, nil
}

// mmsghdr is struct mmsghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

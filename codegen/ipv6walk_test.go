package codegen

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/internal/pktgen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// walkOutcome is where an IPv6 extension header walk ended: the exit, the
// header's protocol number and offset from the network header (for a
// later fragment: its fragment offset).
type walkOutcome struct {
	exit  string // "found", "later", "missing", "bad"
	proto uint8
	val   uint16
}

func (o walkOutcome) String() string {
	switch o.exit {
	case "found":
		return fmt.Sprintf("found %d at %d", o.proto, o.val)
	case "later":
		return fmt.Sprintf("later fragment (offset %d)", o.val)
	}
	return o.exit
}

// walkExits are the exits of walkOutcome, in the order of their codes.
var walkExits = []string{"found", "later", "missing", "bad"}

// walkModel is what the kernel does, in the terms of walkOutcome, for an
// IPv6 packet p (from its network header) of which the caller sees limit
// bytes.
type walkModel func(p []byte, limit int) walkOutcome

// modelFragOff reads the fragment offset (flags masked) of the fragment
// header at start; ok is false where limit cuts it.
func modelFragOff(p []byte, start, limit int) (off uint16, ok bool) {
	if start+4 > limit {
		return 0, false
	}
	return binary.BigEndian.Uint16(p[start+2:]) &^ 7, true
}

// modelHdrLen is the length of the extension header at start: 8 for a
// (first) fragment header, ipv6_authlen for AH, else ipv6_optlen.
func modelHdrLen(p []byte, start, nexthdr int) int {
	switch nexthdr {
	case nextHdrFragment:
		return 8
	case nextHdrAuth:
		return (int(p[start+1]) + 2) << 2
	}
	return (int(p[start+1]) + 1) << 3
}

// modelFindHdr is ipv6_find_hdr (net/ipv6/exthdrs_core.c) with target
// (negative: the last header) and, with auth, IP6_FH_F_AUTH. Where
// target < 0 a later fragment is reported as such (the caller looks at its
// next header). The fragment header is found in a later fragment when it
// is the target, as the running kernel does (difftest's "frag" ruleset
// checks that against it).
func modelFindHdr(target int, auth bool) walkModel {
	return func(p []byte, limit int) walkOutcome {
		start, nexthdr := 40, int(p[6])
		for {
			found := nexthdr == target
			if !isIPv6ExtHdr(int32(nexthdr)) {
				if target < 0 || found {
					return walkOutcome{"found", uint8(nexthdr), uint16(start)}
				}
				return walkOutcome{exit: "missing"}
			}
			if start+2 > limit || nexthdr == nextHdrRouting && start+4 > limit {
				return walkOutcome{exit: "bad"}
			}
			if nexthdr == nextHdrFragment {
				off, ok := modelFragOff(p, start, limit)
				switch {
				case !ok:
					return walkOutcome{exit: "bad"}
				case off != 0 && target < 0:
					return walkOutcome{"later", nextHdrFragment, off}
				case off != 0 && !found:
					return walkOutcome{exit: "missing"}
				}
			}
			if found || nexthdr == nextHdrAuth && auth && target < 0 {
				return walkOutcome{"found", uint8(nexthdr), uint16(start)}
			}
			nexthdr, start = int(p[start]), start+modelHdrLen(p, start, nexthdr)
		}
	}
}

// modelSkipExthdr is ipv6_skip_exthdr from the end of the fixed header
// ("bad" is its -1; a later fragment stops it at the fragment header).
func modelSkipExthdr(p []byte, limit int) walkOutcome {
	start, nexthdr := 40, int(p[6])
	for isIPv6ExtHdr(int32(nexthdr)) || nexthdr == nextHdrNone {
		if nexthdr == nextHdrNone || start+2 > limit {
			return walkOutcome{exit: "bad"}
		}
		if nexthdr == nextHdrFragment {
			off, ok := modelFragOff(p, start, limit)
			if !ok {
				return walkOutcome{exit: "bad"}
			}
			if off != 0 {
				return walkOutcome{"later", nextHdrFragment, off}
			}
		}
		nexthdr, start = int(p[start]), start+modelHdrLen(p, start, nexthdr)
	}
	return walkOutcome{"found", uint8(nexthdr), uint16(start)}
}

// walkConfig is one caller's walk: its ipv6Walk, given labels for the
// exits, and the model it must follow.
type walkConfig struct {
	name  string
	walk  func(exit map[string]string) ipv6Walk
	model walkModel
	// relative: the walk's offsets are from the network header, and the
	// caller's length (rjTot) limits it.
	relative bool
}

var walkConfigs = []walkConfig{
	{"pktinfo", func(x map[string]string) ipv6Walk { return pktinfoWalk(x["found"], x["later"]) }, modelFindHdr(-1, true), false},
	{"reject", func(x map[string]string) ipv6Walk { return skipExthdrWalk(x["found"], x["later"]) }, modelSkipExthdr, true},
}

func init() {
	for _, target := range []int{0, 43, 44, 51, 60, 135, 17} {
		walkConfigs = append(walkConfigs, walkConfig{
			name: fmt.Sprintf("exthdr %d", target),
			walk: func(x map[string]string) ipv6Walk {
				return findHdrWalk(int32(target), x["found"], x["missing"], x["bad"])
			},
			model: modelFindHdr(target, false),
		})
	}
}

// loadWalk builds and loads a tc program that walks the frame's IPv6
// extension headers with c's walk and returns its outcome: the exit's
// index in walkExits << 24 | protocol << 16 | offset or fragment offset.
// A limit of trim bytes less than the packet is given to relative walks.
func loadWalk(t *testing.T, c walkConfig, trim int) func(frame []byte) walkOutcome {
	t.Helper()
	g, err := newGen(&ir.Table{Family: ir.FamilyNetdev}, Target{Type: TC, Family: ir.FamilyNetdev, Hook: ir.HookIngress})
	if err != nil {
		t.Fatal(err)
	}
	exit := map[string]string{}
	for _, e := range walkExits {
		exit[e] = "walk_" + e
	}
	w := c.walk(exit)
	g.b.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		stImm64(asm.R10, slotNH, 14),
		asm.LoadMem(asm.R9, asm.R1, 0, asm.Word), // __sk_buff.len
		asm.Mov.Imm(asm.R2, 14),
	)
	g.loadBytes(bufOff, 40)
	g.b.emit(asm.JNE.Imm(asm.R0, 0, exit["bad"]))
	start := int32(54)
	if c.relative {
		start = 40
		g.b.emit(
			asm.Sub.Imm(asm.R9, int32(14+trim)),
			asm.StoreMem(asm.R10, w.limit, asm.R9, asm.DWord),
		)
	}
	g.b.emit(
		asm.LoadMem(asm.R0, asm.R10, bufOff+6, asm.Byte),
		asm.StoreMem(asm.R10, w.proto, asm.R0, asm.DWord),
		asm.Mov.Imm(asm.R0, start),
	)
	g.launder(asm.R0, w.off)
	g.ipv6ExtWalk(w)
	// Only exits the walk takes may be emitted: the verifier refuses
	// unreachable code.
	used := map[string]bool{}
	for _, ins := range g.b.insns {
		used[ins.Reference()] = true
	}
	// The callers' own failure labels.
	g.b.label(labelPktOK)
	g.b.label(labelDrop)
	g.b.label(exit["bad"])
	g.b.emit(asm.Mov.Imm(asm.R0, 3<<24), asm.Return())
	if used[exit["missing"]] {
		g.b.label(exit["missing"])
		g.b.emit(asm.Mov.Imm(asm.R0, 2<<24), asm.Return())
	}
	if used[exit["later"]] {
		g.b.label(exit["later"])
		g.b.emit(
			asm.Mov.Reg(asm.R0, asm.R1),
			asm.Or.Imm(asm.R0, 1<<24|nextHdrFragment<<16),
			asm.Return(),
		)
	}
	g.b.label(exit["found"])
	g.b.emit(asm.Mov.Reg(asm.R0, asm.R8))
	if !c.relative {
		g.b.emit(asm.Sub.Imm(asm.R0, 14))
	}
	g.b.emit(
		asm.And.Imm(asm.R0, 0xffff),
		asm.And.Imm(asm.R7, 0xff),
		asm.LSh.Imm(asm.R7, 16),
		asm.Or.Reg(asm.R0, asm.R7),
		asm.Return(),
	)
	insns, err := g.b.finish()
	if err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, Instructions: insns, License: "GPL"})
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	t.Cleanup(func() { prog.Close() })
	return func(frame []byte) walkOutcome {
		ret, err := prog.Run(&ebpf.RunOptions{Data: frame, Repeat: 1})
		if err != nil {
			t.Fatal(err)
		}
		o := walkOutcome{exit: walkExits[ret>>24&3], proto: uint8(ret >> 16), val: uint16(ret)}
		if o.exit == "missing" || o.exit == "bad" {
			o.proto, o.val = 0, 0
		}
		return o
	}
}

// TestIPv6ExtWalk runs the walk of each caller (the pktinfo prologue,
// exthdr with each target, reject's ipv6_skip_exthdr) on chains of
// extension headers and compares where it ends with a model of the
// kernel function it follows.
func TestIPv6ExtWalk(t *testing.T) {
	privileged(t)
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	src, dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	udp := []byte{0x0f, 0xa0, 0, 9, 0, 12, 0, 0, 'd', 'a', 't', 'a'}
	opt := func(proto, words uint8) pktgen.ExtHdr {
		b := make([]byte, 8+8*int(words))
		b[1] = words
		return pktgen.ExtHdr{Proto: proto, Bytes: b}
	}
	rt := pktgen.ExtHdr{Proto: 43, Bytes: []byte{0, 0, 0, 1, 0, 0, 0, 0}}
	frag := func(off uint16, more bool) pktgen.ExtHdr {
		fo := off << 3
		if more {
			fo |= 1
		}
		return pktgen.ExtHdr{Proto: 44, Bytes: []byte{0, 0, byte(fo >> 8), byte(fo), 0, 0, 0, 7}}
	}
	ah := func(words uint8) pktgen.ExtHdr { // hdrlen in 4-byte units, minus 2
		b := make([]byte, (int(words)+2)*4)
		b[1] = words
		return pktgen.ExtHdr{Proto: 51, Bytes: b}
	}
	frames := []struct {
		name  string
		hdrs  []pktgen.ExtHdr
		proto uint8
		pay   []byte
	}{
		{"udp", nil, 17, udp},
		{"no next header", nil, 59, nil},
		{"esp", nil, 50, udp},
		{"mobility header", nil, 135, udp},
		{"hop-by-hop", []pktgen.ExtHdr{opt(0, 0)}, 17, udp},
		{"hop-by-hop of 24 bytes, routing, destination", []pktgen.ExtHdr{opt(0, 2), rt, opt(60, 1)}, 6, udp},
		{"routing", []pktgen.ExtHdr{rt}, 17, udp},
		{"destination, no next header", []pktgen.ExtHdr{opt(60, 0)}, 59, nil},
		{"first fragment", []pktgen.ExtHdr{frag(0, true)}, 17, udp},
		{"later fragment", []pktgen.ExtHdr{frag(1, false)}, 17, udp},
		{"later fragment, routing behind", []pktgen.ExtHdr{frag(3, true), rt}, 17, udp},
		{"later fragment, no next header", []pktgen.ExtHdr{frag(2, false)}, 59, nil},
		{"routing, later fragment", []pktgen.ExtHdr{rt, frag(5, false)}, 17, udp},
		{"first fragment, routing", []pktgen.ExtHdr{frag(0, true), rt}, 17, udp},
		{"ah of 12 bytes", []pktgen.ExtHdr{ah(1)}, 17, udp},
		{"ah of 24 bytes, destination", []pktgen.ExtHdr{ah(4), opt(60, 0)}, 6, udp},
		{"hop-by-hop, ah, routing", []pktgen.ExtHdr{opt(0, 0), ah(1), rt}, 17, udp},
		{"hop-by-hop cut to 1 byte", []pktgen.ExtHdr{{Proto: 0, Bytes: []byte{0}}}, 0, nil},
		{"hop-by-hop cut to 2 bytes", []pktgen.ExtHdr{{Proto: 0, Bytes: []byte{0, 0}}}, 0, nil},
		{"routing cut to 3 bytes", []pktgen.ExtHdr{{Proto: 43, Bytes: []byte{0, 0, 0}}}, 0, nil},
		{"fragment cut to 3 bytes", []pktgen.ExtHdr{{Proto: 44, Bytes: []byte{0, 0, 0}}}, 0, nil},
		{"hop-by-hop longer than the packet", []pktgen.ExtHdr{{Proto: 0, Bytes: []byte{0, 3, 0, 0, 0, 0, 0, 0}}}, 17, nil},
		{"header beyond the packet", []pktgen.ExtHdr{opt(0, 0)}, 60, nil},
		{"eight hop-by-hop headers", []pktgen.ExtHdr{opt(0, 0), opt(0, 0), opt(0, 0), opt(0, 0), opt(0, 0), opt(0, 0), opt(0, 0), opt(0, 0)}, 17, udp},
	}
	for _, c := range walkConfigs {
		t.Run(c.name, func(t *testing.T) {
			trims := []int{0}
			if c.relative {
				trims = append(trims, 1, 4, 12) // a trimmed skb
			}
			for _, trim := range trims {
				walk := loadWalk(t, c, trim)
				for _, f := range frames {
					frame := pktgen.IPv6Frame(mac, mac, src, dst, f.hdrs, f.proto, f.pay)
					p := frame[14:]
					want := c.model(p, len(p)-trim)
					if got := walk(frame); got != want {
						t.Errorf("%s (trimmed by %d): walk ends %v, the kernel %v", f.name, trim, got, want)
					}
				}
			}
		})
	}
}

package codegen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// shiftWords shifts reg (a multiple of 4 bytes) as host-order u32 words,
// as nft_bitwise_eval_lshift/_rshift do. With inPlace the carry is read
// back from the word just written, as kernels before the overlap fix did
// when the source and destination register were the same.
func shiftWords(reg []byte, left bool, s uint32, inPlace bool) []byte {
	n := len(reg) / 4
	src := make([]uint32, n)
	for i := range src {
		src[i] = binary.NativeEndian.Uint32(reg[4*i:])
	}
	dst := append([]uint32(nil), src...)
	word := func(i int) uint32 {
		if inPlace {
			return dst[i]
		}
		return src[i]
	}
	var carry uint32
	for k := 0; k < n; k++ {
		if left {
			i := n - 1 - k
			dst[i] = src[i]<<s | carry
			carry = word(i) >> (32 - s)
		} else {
			i := k
			dst[i] = carry | src[i]>>s
			carry = word(i) << (32 - s)
		}
	}
	out := make([]byte, len(reg))
	for i, w := range dst {
		binary.NativeEndian.PutUint32(out[4*i:], w)
	}
	return out
}

// shiftProbe is one rule of the kernel comparison: UDP packets to dport
// have payload as their data; the rule loads n bytes of it, shifts them
// and compares the whole register image (rounded up to words) with want.
type shiftProbe struct {
	dport uint16
	left  bool
	shift uint32
	n     uint32
	want  []byte
	what  string
}

// TestShiftMatchesKernel loads the same shift rules into the kernel's
// nf_tables (output hook of a scratch namespace, over raw netlink: nft
// itself cannot write a multi-word shift) and into BPF programs, sends one
// UDP datagram per rule and compares: a datagram nf_tables drops fails
// with EPERM. Each rule compares against the value of one carry model
// (from the old word, as codegen does, or from the word just written), so
// the probes of the model that is wrong for this kernel miss: the
// comparison cannot pass by matching nothing.
func TestShiftMatchesKernel(t *testing.T) {
	privileged(t)
	rnd := rand.New(rand.NewSource(1))
	payload := make([]byte, 16)
	rnd.Read(payload)

	var probes []shiftProbe
	dport := uint16(20000)
	for _, left := range []bool{true, false} {
		// The kernel refuses shifts by 0 (and by 32 or more).
		for _, s := range []uint32{1, 4, 8, 15, 16, 17, 24, 31} {
			for _, n := range []uint32{1, 3, 4, 5, 8, 11, 16} {
				reg := make([]byte, round4(n))
				copy(reg, payload[:n])
				models := []struct {
					what  string
					value []byte
				}{
					{"from the old word", shiftWords(reg, left, s, false)},
					{"read back in place", shiftWords(reg, left, s, true)},
				}
				for i, m := range models {
					if i > 0 && string(m.value) == string(models[0].value) {
						continue
					}
					probes = append(probes, shiftProbe{dport: dport, left: left, shift: s, n: n, want: m.value, what: m.what})
					dport++
				}
			}
		}
	}

	kernel := kernelShiftVerdicts(t, probes, payload)

	var rules []*ir.Rule
	for _, p := range probes {
		kind := ir.TransformShiftRight
		if p.left {
			kind = ir.TransformShiftLeft
		}
		f := th(8, p.n, ir.Transform{Kind: kind, Len: p.n, Shift: p.shift})
		rules = append(rules, rule(eq(th(2, 2), u16(p.dport)), eq(f, p.want), drop))
	}
	drops := map[string]int{}
	for i, p := range probes {
		if kernel[i] == ir.VerdictDrop {
			drops[p.what]++
		}
		name := fmt.Sprintf("shift %v by %d over %d bytes, carry %s", map[bool]string{true: "left", false: "right"}[p.left], p.shift, p.n, p.what)
		if p.what == "from the old word" && kernel[i] != ir.VerdictDrop {
			t.Errorf("kernel: %s: the kernel computes something else", name)
		}
	}
	t.Logf("%d probes; the kernel dropped %v", len(probes), drops)
	if len(probes) == drops["from the old word"] {
		t.Errorf("the two carry models never differ: the probes test nothing")
	}
	for _, fl := range allFlavours(ir.FamilyIPv4) {
		t.Run(fl.name, func(t *testing.T) {
			tab, c := table(fl.fam, fl.hook, ir.VerdictAccept, rules)
			l := loadFlavour(t, fl, tab, c)
			for i, p := range probes {
				frame := eth(0x0800, v4{proto: protoUDP}.build(udp(40000, p.dport, payload)))
				if got := run(t, fl, l, frame); got != kernel[i] {
					t.Errorf("dport %d (left %v, shift %d, %d bytes, %s): got %s, kernel %s", p.dport, p.left, p.shift, p.n, p.what, vname(got), vname(kernel[i]))
				}
			}
		})
	}
}

const (
	shiftTable = "bpfnft_shift"
	shiftChain = "out"
	// nfRegData0 is NFT_REG32_00, the first 32-bit data register.
	nfRegData0 = 8
)

// kernelShiftVerdicts installs one nf_tables rule per probe in a scratch
// namespace and returns the verdict on each probe's datagram.
func kernelShiftVerdicts(t *testing.T, probes []shiftProbe, payload []byte) []ir.VerdictKind {
	t.Helper()
	ns, err := netnstest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", "192.0.2.1/24", "dev", "lo"},
	} {
		if _, err := ns.Run("", "ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	policy := uint32(1)
	rs := &nlmsg.Ruleset{
		Tables: []*nlmsg.Table{{Family: nlmsg.FamilyIPv4, Name: shiftTable}},
		Chains: []*nlmsg.Chain{{
			Family: nlmsg.FamilyIPv4, Table: shiftTable, Name: shiftChain, Type: "filter",
			Hook: &nlmsg.ChainHook{Num: unix.NF_INET_LOCAL_OUT}, Policy: &policy,
		}},
	}
	for _, p := range probes {
		op := uint32(2) // NFT_BITWISE_RSHIFT
		if p.left {
			op = 1 // NFT_BITWISE_LSHIFT
		}
		rs.Rules = append(rs.Rules, &nlmsg.Rule{
			Family: nlmsg.FamilyIPv4, Table: shiftTable, Chain: shiftChain,
			Exprs: []nlmsg.Expr{
				&nlmsg.Payload{Base: unix.NFT_PAYLOAD_TRANSPORT_HEADER, Offset: 2, Len: 2, DReg: unix.NFT_REG_1},
				&nlmsg.Cmp{Op: unix.NFT_CMP_EQ, SReg: unix.NFT_REG_1, Data: u16(p.dport)},
				&nlmsg.Payload{Base: unix.NFT_PAYLOAD_TRANSPORT_HEADER, Offset: 8, Len: p.n, DReg: nfRegData0},
				&nlmsg.Bitwise{SReg: nfRegData0, DReg: nfRegData0, Len: p.n, Op: op, Data: binary.NativeEndian.AppendUint32(nil, p.shift)},
				&nlmsg.Cmp{Op: unix.NFT_CMP_EQ, SReg: nfRegData0, Data: p.want},
				&nlmsg.Immediate{DReg: unix.NFT_REG_VERDICT, Verdict: &nlmsg.Verdict{Code: nlmsg.VerdictDrop}},
			},
		})
	}
	verdicts := make([]ir.VerdictKind, len(probes))
	err = ns.Do(func() error {
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := sendBatch(c, nlmsg.Encode(rs)); err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for i, p := range probes {
			to := &unix.SockaddrInet4{Port: int(p.dport), Addr: [4]byte{192, 0, 2, 1}}
			switch err := unix.Sendto(fd, payload, 0, to); {
			case err == nil:
				verdicts[i] = ir.VerdictAccept
			case errors.Is(err, unix.EPERM):
				verdicts[i] = ir.VerdictDrop
			default:
				return fmt.Errorf("sendto port %d: %w", p.dport, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return verdicts
}

// sendBatch sends msgs as one nfnetlink batch and waits for every
// acknowledgement.
func sendBatch(c *netlink.Conn, msgs []netlink.Message) error {
	res := binary.BigEndian.AppendUint16(nil, unix.NFNL_SUBSYS_NFTABLES)
	hdr := append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0}, res...)
	batch := []netlink.Message{{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request}, Data: hdr}}
	for _, m := range msgs {
		m.Header.Flags |= netlink.Acknowledge | netlink.Create
		batch = append(batch, m)
	}
	batch = append(batch, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request}, Data: hdr})
	if _, err := c.SendMessages(batch); err != nil {
		return fmt.Errorf("send batch: %w", err)
	}
	for acked := 0; acked < len(msgs); {
		replies, err := c.Receive()
		if err != nil {
			return fmt.Errorf("batch message %d: %w", acked+1, err)
		}
		acked += len(replies)
	}
	return nil
}

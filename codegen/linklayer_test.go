package codegen

import (
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// linkLayerCases are link-layer loads on every flavour. The netfilter and
// cgroup_skb test runs give the mac header eth_type_trans set (14 bytes in
// front of skb->data), except the netfilter LOCAL_OUT run, whose skb has
// no mac header: there nft_payload_eval breaks and no rule with a
// link-layer load matches, whatever its operator.
func linkLayerCases() []verdictCase {
	noMac := map[string]ir.VerdictKind{"nf-output": A}
	other := []byte{0x02, 0, 0, 0, 0, 0x99}
	// tcp4 frames are 54 bytes: 14 of Ethernet, 20 of IPv4, 20 of TCP.
	long := eth(0x0800, v4{proto: protoTCP}.build(append(tcp(1, 2, 2), 0, 0, 0, 0, 0, 0, 0, 0)))
	return []verdictCase{
		{name: "ether saddr", rules: []*ir.Rule{rule(eq(ll(6, 6), macSrc), drop)}, pkts: []pkt{
			{name: "hit", frame: tcp4(1), want: D, wantFor: noMac},
			{name: "miss", frame: append(append(append([]byte{}, macDst...), other...), tcp4(1)[12:]...), want: A},
		}},
		{name: "ether daddr", rules: []*ir.Rule{rule(eq(ll(0, 6), macDst), drop)}, pkts: []pkt{
			{name: "hit", frame: tcp4(1), want: D, wantFor: noMac},
			{name: "miss", frame: append(append([]byte{}, other...), tcp4(1)[6:]...), want: A},
		}},
		{name: "ether saddr neq", rules: []*ir.Rule{rule(cmp(ll(6, 6), ir.OpNeq, other), drop)}, pkts: []pkt{
			{name: "differs", frame: tcp4(1), want: D, wantFor: noMac},
		}},
		{name: "ether saddr set", rules: []*ir.Rule{rule(inSet(ll(6, 6), true, 6, el(other)), drop)}, pkts: []pkt{
			{name: "not in set", frame: tcp4(1), want: D, wantFor: noMac},
		}},
		{name: "ether type", rules: []*ir.Rule{rule(eq(ll(12, 2), u16(0x0800)), drop)}, pkts: []pkt{
			{name: "ipv4", frame: tcp4(1), want: D, wantFor: noMac},
		}},
		{name: "ether type v6", pf: ir.FamilyIPv6, rules: []*ir.Rule{rule(eq(ll(12, 2), u16(0x86dd)), drop)}, pkts: []pkt{
			{name: "ipv6", frame: tcp6(1), want: D, wantFor: noMac},
		}},
		{name: "ether type miss", rules: []*ir.Rule{rule(eq(ll(12, 2), u16(0x86dd)), drop)}, pkts: []pkt{
			{name: "ipv4", frame: tcp4(1), want: A},
		}},
		{name: "ll into ip header", rules: []*ir.Rule{rule(eq(ll(26, 4), srcV4), drop)}, pkts: []pkt{
			{name: "saddr", frame: tcp4(1), want: D, wantFor: noMac},
			{name: "other saddr", frame: eth(0x0800, v4{proto: protoTCP, src: ip4(203, 0, 113, 9)}.build(tcp(1, 2, 2))), want: A},
		}},
		{name: "ll across mac and ip header", rules: []*ir.Rule{rule(eq(ll(10, 6), b(0, 1, 0x08, 0, 0x45, 0)), drop)}, pkts: []pkt{
			{name: "hit", frame: tcp4(1), want: D, wantFor: noMac},
		}},
		{name: "ll ending at the packet end", rules: []*ir.Rule{rule(eq(ll(50, 4), make([]byte, 4)), drop)}, pkts: []pkt{
			{name: "last bytes", frame: tcp4(1), want: D, wantFor: noMac},
		}},
		{name: "ll past the packet end", rules: []*ir.Rule{rule(cmp(ll(50, 5), ir.OpNeq, b(1, 2, 3, 4, 5)), drop)}, pkts: []pkt{
			{name: "one byte short", frame: tcp4(1), want: A},
			{name: "long enough", frame: long, want: D, wantFor: noMac},
		}},
		{name: "ll at offset 255", rules: []*ir.Rule{rule(cmp(ll(255, 1), ir.OpNeq, b(1)), drop)}, pkts: []pkt{
			{name: "short", frame: tcp4(1), want: A},
			{name: "long", frame: eth(0x0800, v4{proto: protoUDP}.build(udp(1, 2, make([]byte, 300)))), want: D, wantFor: noMac},
		}},
		{name: "ll then transport", rules: []*ir.Rule{
			rule(eq(ll(6, 6), macSrc), eq(meta(ir.MetaL4Proto), b(protoTCP)), eq(th(2, 2), u16(22)), drop),
		}, pkts: []pkt{
			{name: "hit", frame: tcp4(22), want: D, wantFor: noMac},
			{name: "other port", frame: tcp4(23), want: A},
		}},
	}
}

func TestLinkLayerVerdicts(t *testing.T) {
	runVerdictCases(t, linkLayerCases())
}

// TestLinkLayerBytewise runs the same cases through skbCopyBits'
// byte-by-byte path (taken for skbs with paged data), which reads bytes
// in front of skb->data with bpf_probe_read_kernel and the others with
// the packet read.
func TestLinkLayerBytewise(t *testing.T) {
	llBytewise = true
	t.Cleanup(func() { llBytewise = false })
	var cases []verdictCase
	for _, c := range linkLayerCases() {
		c.only = []string{"nf", "cgroup"}
		cases = append(cases, c)
	}
	runVerdictCases(t, cases)
}

// TestLinkLayerVLANPathLoads checks that the VLAN reconstruction paths of
// every kind (inside the rebuilt header, across its end, behind it) pass
// the verifier on netfilter and cgroup_skb, and that untagged packets take
// the plain path through them. BPF_PROG_TEST_RUN cannot put a tag into
// skb metadata for these program types.
func TestLinkLayerVLANPathLoads(t *testing.T) {
	cases := []verdictCase{{
		name: "vlan adjust", only: []string{"nf", "cgroup"},
		rules: []*ir.Rule{
			rule(eq(ll(12, 2), u16(0x0800)), counter, contin),
			rule(eq(ll(14, 8), b(0x45, 0, 0, 40, 0, 0, 0, 0)), counter, contin),
			rule(eq(ll(20, 2), b(0, 0)), counter, contin),
			rule(eq(ll(6, 6), macSrc), eq(ll(12, 4), b(0x08, 0, 0x45, 0)), drop),
		},
		pkts: []pkt{{name: "untagged", frame: tcp4(1), want: D, wantFor: map[string]ir.VerdictKind{"nf-output": A}}},
	}}
	runVerdictCases(t, cases)
}

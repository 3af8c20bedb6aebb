package pktgen

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

func TestAddInt(t *testing.T) {
	tests := []struct {
		in    []byte
		delta int
		want  []byte
	}{
		{[]byte{0x00, 0xff}, 1, []byte{0x01, 0x00}},
		{[]byte{0x01, 0x00}, -1, []byte{0x00, 0xff}},
		{[]byte{0x00, 0x00}, -1, []byte{0xff, 0xff}},
		{[]byte{0xff, 0xff}, 1, []byte{0x00, 0x00}},
		{[]byte{0xc0, 0x00, 0x02, 0x01}, 1, []byte{0xc0, 0x00, 0x02, 0x02}},
	}
	for _, tt := range tests {
		if got := addInt(tt.in, tt.delta); !bytes.Equal(got, tt.want) {
			t.Errorf("addInt(%x, %d) = %x, want %x", tt.in, tt.delta, got, tt.want)
		}
	}
}

func TestInvert(t *testing.T) {
	tests := []struct {
		name            string
		field           ir.Field
		want            []byte
		wantRaw, wantCa []byte
	}{
		{"plain", ir.Field{Len: 2}, []byte{1, 2}, []byte{1, 2}, []byte{0xff, 0xff}},
		{"prefix", ir.Field{Len: 4}, []byte{10, 0}, []byte{10, 0, 0, 0}, []byte{0xff, 0xff, 0, 0}},
		{"dscp mask", ir.Field{Len: 1, Transforms: []ir.Transform{{Kind: ir.TransformMaskXor, Len: 1, Mask: []byte{0xfc}, Xor: []byte{0}}}},
			[]byte{0x28}, []byte{0x28}, []byte{0xfc}},
		{"mask and xor", ir.Field{Len: 1, Transforms: []ir.Transform{{Kind: ir.TransformMaskXor, Len: 1, Mask: []byte{0x0f}, Xor: []byte{0x03}}}},
			[]byte{0x05}, []byte{0x06}, []byte{0x0f}},
		{"ntoh 2", ir.Field{Len: 2, Transforms: []ir.Transform{{Kind: ir.TransformNtoh, Len: 2, Size: 2}}},
			[]byte{0x16, 0x00}, []byte{0x00, 0x16}, []byte{0xff, 0xff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, care := invert(tt.field, tt.want)
			if !bytes.Equal(raw, tt.wantRaw) || !bytes.Equal(care, tt.wantCa) {
				t.Errorf("invert = %x/%x, want %x/%x", raw, care, tt.wantRaw, tt.wantCa)
			}
		})
	}
	// A right shift by 4 of a host-endian word: the register holds
	// raw>>4, so raw must be value<<4.
	f := ir.Field{Len: 4, Transforms: []ir.Transform{{Kind: ir.TransformShiftRight, Len: 4, Shift: 4}}}
	want := binary.NativeEndian.AppendUint32(nil, 0x0abc)
	raw, care := invert(f, want)
	if got := binary.NativeEndian.Uint32(raw); got != 0xabc0 {
		t.Errorf("shift: raw %#x, want 0xabc0", got)
	}
	if got := binary.NativeEndian.Uint32(care); got != 0xfffffff0 {
		t.Errorf("shift: care %#x, want 0xfffffff0", got)
	}
}

// dropSSHFrom is "ip saddr 192.0.2.1 ip protocol tcp tcp dport 22 drop" in
// an ip table, as nft emits it.
func dropSSHFrom() (*ir.Table, *ir.Chain) {
	set := &ir.Set{Name: "__set0", Flags: ir.SetAnonymous | ir.SetConstant, KeyLen: 2,
		Elements: []ir.SetElement{{Low: []byte{0, 22}, High: []byte{0, 22}}, {Low: []byte{0x1f, 0x90}, High: []byte{0x1f, 0x9a}}}}
	c := &ir.Chain{Name: "c", Base: &ir.BaseChain{Type: "filter", Hook: ir.HookPrerouting, Policy: ir.VerdictAccept},
		Rules: []*ir.Rule{
			{Handle: 2, Stmts: []ir.Stmt{
				&ir.Match{Field: ir.Field{Source: ir.SourcePayload, Base: ir.BaseNetwork, Offset: 12, Len: 4}, Op: ir.OpEq, Value: []byte{192, 0, 2, 1}},
				&ir.Match{Field: ir.Field{Source: ir.SourcePayload, Base: ir.BaseNetwork, Offset: 9, Len: 1}, Op: ir.OpEq, Value: []byte{6}},
				&ir.Match{Field: ir.Field{Source: ir.SourcePayload, Base: ir.BaseTransport, Offset: 2, Len: 2}, Op: ir.OpInSet, Set: set},
				&ir.Verdict{Kind: ir.VerdictJump, Chain: "u"},
			}},
		}}
	u := &ir.Chain{Name: "u", Rules: []*ir.Rule{{Handle: 3, Stmts: []ir.Stmt{
		&ir.Match{Field: ir.Field{Source: ir.SourcePayload, Base: ir.BaseNetwork, Offset: 8, Len: 1}, Op: ir.OpInRange, Value: []byte{10}, High: []byte{64}},
		&ir.Verdict{Kind: ir.VerdictDrop},
	}}}}
	return &ir.Table{Family: ir.FamilyIPv4, Name: "t", Chains: []*ir.Chain{c, u}, Sets: []*ir.Set{set}}, c
}

const dropSSHFromNft = `table ip t {
	chain c {
		type filter hook prerouting priority 0; policy accept;
		ip saddr 192.0.2.1 ip protocol tcp tcp dport { 22, 8080-8090 } jump u
	}
	chain u {
		ip ttl 10-64 drop
	}
}`

// wouldDrop evaluates dropSSHFrom on a frame by hand.
func wouldDrop(f []byte) bool {
	info, err := packet.Parse(f)
	if err != nil || info.EtherType != packet.EtherTypeIPv4 || info.TransportOffset < 0 || info.TransportOffset+4 > len(f) {
		return false
	}
	port := binary.BigEndian.Uint16(f[info.TransportOffset+2:])
	ttl := f[info.NetworkOffset+8]
	return info.Src == netip.MustParseAddr("192.0.2.1") && info.Proto == packet.ProtoTCP &&
		(port == 22 || port >= 8080 && port <= 8090) && ttl >= 10 && ttl <= 64
}

func TestGenerateProbes(t *testing.T) {
	tab, c := dropSSHFrom()
	cases := Generate(tab, c, Options{Seed: 1, Kind: KindIPHook})
	var names []string
	seen := map[string]bool{}
	var hits, ports []uint16
	for _, cs := range cases {
		if seen[string(cs.Frame)] {
			t.Errorf("duplicate frame %q", cs.Name)
		}
		seen[string(cs.Frame)] = true
		names = append(names, cs.Name)
		info, err := packet.Parse(cs.Frame)
		if err != nil {
			t.Fatalf("%s: %v", cs.Name, err)
		}
		if !bytes.Equal(cs.Frame[:6], []byte{0x02, 0xb0, 0, 0, 0, 2}) {
			t.Errorf("%s: dst MAC %x", cs.Name, cs.Frame[:6])
		}
		if strings.Contains(cs.Name, "match 2") && (info.Src != netip.MustParseAddr("192.0.2.1") || info.Proto != packet.ProtoTCP) {
			t.Errorf("%s: earlier matches not satisfied: src %v proto %d", cs.Name, info.Src, info.Proto)
		}
		if info.Src == netip.MustParseAddr("192.0.2.1") && info.Proto == packet.ProtoTCP {
			ports = append(ports, binary.BigEndian.Uint16(cs.Frame[info.TransportOffset+2:]))
		}
		if wouldDrop(cs.Frame) {
			hits = append(hits, 1)
		}
	}
	for _, p := range []uint16{21, 22, 23, 8079, 8080, 8090, 8091} {
		found := false
		for _, q := range ports {
			found = found || p == q
		}
		if !found {
			t.Errorf("no probe with tcp dport %d (have %v)", p, ports)
		}
	}
	if len(hits) == 0 {
		t.Error("no generated frame reaches the drop in chain u")
	}
	joined := strings.Join(names, "\n")
	for _, want := range []string{"chain c rule 0 match 0 (payload nh+12/4): value+1", "chain u rule 0 match 0 (payload nh+8/1): high+1"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no case named %q in\n%s", want, joined)
		}
	}
}

func TestGenerateDeterministic(t *testing.T) {
	tab, c := dropSSHFrom()
	a := Generate(tab, c, Options{Seed: 7, Count: 50})
	b := Generate(tab, c, Options{Seed: 7, Count: 50})
	d := Generate(tab, c, Options{Seed: 8, Count: 50})
	if len(a) != len(b) {
		t.Fatalf("same seed, %d and %d cases", len(a), len(b))
	}
	for i := range a {
		if a[i].Name != b[i].Name || !bytes.Equal(a[i].Frame, b[i].Frame) {
			t.Fatalf("same seed, case %d differs", i)
		}
	}
	same := len(a) == len(d)
	for i := 0; same && i < len(a); i++ {
		same = bytes.Equal(a[i].Frame, d[i].Frame)
	}
	if same {
		t.Error("different seeds gave the same frames")
	}
}

func TestGenerateRandomShapes(t *testing.T) {
	c := &ir.Chain{Name: "c", Base: &ir.BaseChain{Hook: ir.HookIngress}}
	tab := &ir.Table{Family: ir.FamilyNetdev, Chains: []*ir.Chain{c}}
	cases := Generate(tab, c, Options{Seed: 3, Count: 400, Kind: KindAnyFrame})
	shapes := map[string]int{}
	for _, cs := range cases {
		info, _ := packet.Parse(cs.Frame)
		switch {
		case len(info.Tags) == 2:
			shapes["qinq"]++
		case len(info.Tags) == 1:
			shapes["vlan"]++
		case info.EtherType == packet.EtherTypeIPv4:
			shapes["ipv4"]++
			if info.NetworkOffset >= 0 && cs.Frame[info.NetworkOffset]&0xf > 5 {
				shapes["ipv4 options"]++
			}
		case info.EtherType == packet.EtherTypeIPv6:
			shapes["ipv6"]++
		default:
			shapes["other"]++
		}
		if info.Fragmented {
			shapes["fragment"]++
		}
		if strings.Contains(cs.Name, "truncated") {
			shapes["truncated"]++
		}
		if info.TransportOffset >= 0 {
			shapes["l4 "+string(rune('0'+info.Proto%10))]++
		}
	}
	for _, s := range []string{"qinq", "vlan", "ipv4", "ipv4 options", "ipv6", "other", "fragment", "truncated"} {
		if shapes[s] == 0 {
			t.Errorf("no %s frame among %d random frames: %v", s, len(cases), shapes)
		}
	}
}

// TestGenerateAgainstKernel sends the generated frames through the
// kernel's nftables and checks each verdict against a hand evaluation of
// the ruleset.
func TestGenerateAgainstKernel(t *testing.T) {
	privtest.Require(t)
	o, err := oracle.New(oracle.Config{Hook: ir.HookPrerouting})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	if err := o.Load(dropSSHFromNft); err != nil {
		t.Fatal(err)
	}
	tab, c := dropSSHFrom()
	cases := Generate(tab, c, Options{Seed: 11, Count: 200, Kind: KindIPHook, SrcMAC: o.SenderMAC(), DstMAC: o.ReceiverMAC()})
	counts := map[oracle.Result]int{}
	for _, cs := range cases {
		got, err := o.Verdict(cs.Frame)
		if err != nil {
			t.Fatalf("%s: %v", cs.Name, err)
		}
		counts[got]++
		if got == oracle.NotReached {
			continue
		}
		if want := wouldDrop(cs.Frame); (got == oracle.Dropped) != want {
			t.Errorf("%s: kernel %v, hand evaluation drop=%v\n%x", cs.Name, got, want, cs.Frame)
		}
	}
	t.Logf("%d frames: %v", len(cases), counts)
	if counts[oracle.Dropped] == 0 || counts[oracle.Accepted] == 0 {
		t.Errorf("verdicts %v: want both drops and accepts", counts)
	}
}

package pipeline

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

func TestChooseNetdevBackend(t *testing.T) {
	basic := nsctx.XDPActBasic | nsctx.XDPActRedirect
	for _, c := range []struct {
		name string
		dev  DeviceTraits
		want codegen.ProgramType
	}{
		// veth advertises native XDP, but frames a local stack sends
		// reach it as skbs.
		{"veth", DeviceTraits{Kind: "veth", XDPFeatures: basic | 1<<5, FeaturesKnown: true}, codegen.TC},
		{"veth, features unknown", DeviceTraits{Kind: "veth"}, codegen.TC},
		{"physical NIC with native XDP (virtio_net, mlx5, ...)", DeviceTraits{XDPFeatures: 0x2b, FeaturesKnown: true}, codegen.XDP},
		{"NIC with basic XDP only", DeviceTraits{XDPFeatures: nsctx.XDPActBasic, FeaturesKnown: true}, codegen.XDP},
		{"tap with native XDP", DeviceTraits{Kind: "tun", XDPFeatures: 0x7, FeaturesKnown: true}, codegen.XDP},
		{"tun (L3), no XDP", DeviceTraits{Kind: "tun", FeaturesKnown: true}, codegen.TC},
		{"loopback", DeviceTraits{FeaturesKnown: true}, codegen.TC},
		{"bridge", DeviceTraits{Kind: "bridge", FeaturesKnown: true}, codegen.TC},
		{"redirect target only (ndo_xmit, no basic)", DeviceTraits{Kind: "ifb", XDPFeatures: nsctx.XDPActNdoXmit, FeaturesKnown: true}, codegen.TC},
		{"NIC, kernel without xdp features", DeviceTraits{}, codegen.TC},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ChooseNetdevBackend(c.dev)
			if got.Type != c.want {
				t.Errorf("ChooseNetdevBackend(%+v) = %s (%s), want %s", c.dev, got.Type, got.Reason, c.want)
			}
			if !strings.HasPrefix(got.Reason, "auto: ") {
				t.Errorf("reason %q does not say it is the automatic choice", got.Reason)
			}
		})
	}
}

// TestNetdevBackendPerDevice: a netdev ingress chain on a veth, a tap
// (native XDP), a tun (no XDP) and loopback gets, with the automatic
// backend, tcx, XDP, tcx and tcx programs, one per device; explicit
// backends put every device on their type; egress chains are always tcx.
func TestNetdevBackendPerDevice(t *testing.T) {
	privtest.Require(t)
	tns, err := netnstest.New()
	if err != nil {
		t.Skipf("privileged: new network namespace: %v", err)
	}
	t.Cleanup(func() { tns.Close() })
	for _, cmd := range [][]string{
		{"link", "add", "bv0", "type", "veth", "peer", "name", "bv1"},
		{"tuntap", "add", "dev", "bt0", "mode", "tap"},
		{"tuntap", "add", "dev", "bu0", "mode", "tun"},
	} {
		if _, err := tns.Run("", "ip", cmd...); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := nsctx.OpenNetNS(fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), tns.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	const ruleset = `table netdev t {
	chain in {
		type filter hook ingress devices = { bv0, bt0, bu0, lo } priority 0; policy accept;
		ip saddr 192.0.2.1 drop
	}
	chain out {
		type filter hook egress devices = { bv0, bt0 } priority 0; policy accept;
		ip daddr 192.0.2.1 drop
	}
}
`
	xdp, tc := codegen.XDP, codegen.TC
	for _, c := range []struct {
		name    string
		backend *codegen.ProgramType
		want    map[string]codegen.ProgramType // ingress device → type
		why     string
	}{
		{"auto", nil, map[string]codegen.ProgramType{"bv0": tc, "bt0": xdp, "bu0": tc, "lo": tc}, "auto: "},
		{"xdp", &xdp, map[string]codegen.ProgramType{"bv0": xdp, "bt0": xdp, "bu0": xdp, "lo": xdp}, "--netdev-backend xdp"},
		{"tc", &tc, map[string]codegen.ProgramType{"bv0": tc, "bt0": tc, "bu0": tc, "lo": tc}, "--netdev-backend tc"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := TranslateReader("backend.nft", strings.NewReader(ruleset), Options{NetNS: ns, NetdevBackend: c.backend})
			if err != nil {
				t.Fatal(err)
			}
			if err := res.Err(); err != nil {
				t.Fatal(err)
			}
			got := map[string]codegen.ProgramType{}
			egress := 0
			for _, p := range res.Programs {
				if p.Target.Device == nil {
					t.Fatalf("chain %s: program without a device", p.Chain.Name)
				}
				dev := p.Target.Device.Name
				if p.Chain.Name == "out" {
					egress++
					if p.Target.Type != codegen.TC || !p.Target.Egress || p.Backend != "" {
						t.Errorf("egress on %s: type %s egress %v backend %q, want tc egress", dev, p.Target.Type, p.Target.Egress, p.Backend)
					}
					continue
				}
				got[dev] = p.Target.Type
				if p.Target.Egress {
					t.Errorf("ingress on %s: egress program", dev)
				}
				if !strings.HasPrefix(p.Backend, c.why) {
					t.Errorf("ingress on %s: backend reason %q, want %q…", dev, p.Backend, c.why)
				}
				if p.Program.Spec.Type.String() != map[codegen.ProgramType]string{xdp: "XDP", tc: "SchedCLS"}[p.Target.Type] {
					t.Errorf("ingress on %s: %s target compiled to a %s program", dev, p.Target.Type, p.Program.Spec.Type)
				}
			}
			if egress != 2 {
				t.Errorf("%d egress programs, want 2", egress)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("ingress program types %v, want %v", got, c.want)
			}
		})
	}
}

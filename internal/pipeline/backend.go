package pipeline

import (
	"fmt"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

// DeviceTraits is what the automatic netdev backend choice looks at.
type DeviceTraits struct {
	// Kind is the rtnetlink link kind (IFLA_INFO_KIND), "" for devices
	// without one (physical NICs, loopback).
	Kind string
	// XDPFeatures are the driver's advertised XDP features
	// (nsctx.XDPAct* bits); FeaturesKnown is false when the kernel could
	// not tell.
	XDPFeatures   uint64
	FeaturesKnown bool
}

// Choice is the program type chosen for one netdev ingress device, and
// why.
type Choice struct {
	Type   codegen.ProgramType
	Reason string
}

// ChooseNetdevBackend picks the program type of a netdev ingress chain's
// program on a device with traits d (the --netdev-backend auto rule):
//
//   - veth: tcx. Frames reach a veth as skbs whenever a local stack or a
//     container sends them; XDP on veth must turn every skb into an XDP
//     buffer first and was measured at 0.85–0.96× the kernel's nftables on
//     small chains, tcx at 1.15–1.24× (BENCHMARKS.md, AF_PACKET sender).
//   - a driver with native XDP (XDPActBasic): XDP, which runs before any
//     skb exists (2–3× tcx on XDP frames).
//   - anything else: tcx. Without native XDP the kernel runs XDP in
//     generic mode, after it has built the skb, which costs more than tcx.
func ChooseNetdevBackend(d DeviceTraits) Choice {
	switch {
	case d.Kind == "veth":
		return Choice{codegen.TC, "auto: veth (frames arrive as skbs; XDP would convert each one)"}
	case !d.FeaturesKnown:
		return Choice{codegen.TC, "auto: the kernel does not report the driver's XDP features"}
	case d.XDPFeatures&nsctx.XDPActBasic != 0:
		return Choice{codegen.XDP, "auto: " + kindName(d.Kind) + " with native XDP"}
	default:
		return Choice{codegen.TC, "auto: " + kindName(d.Kind) + " without native XDP (generic XDP builds an skb first)"}
	}
}

func kindName(kind string) string {
	if kind == "" {
		return "device"
	}
	return kind
}

// probeDevice reads the traits of device ifi in ns.
func probeDevice(ns *nsctx.NetNS, ifi *nsctx.Interface) DeviceTraits {
	d := DeviceTraits{Kind: ifi.Kind}
	if f, err := nsctx.XDPFeatures(ns, ifi.Index); err == nil {
		d.XDPFeatures, d.FeaturesKnown = f, true
	}
	return d
}

// explicitChoice is the Choice an explicit --netdev-backend makes.
func explicitChoice(t codegen.ProgramType) Choice {
	return Choice{t, fmt.Sprintf("--netdev-backend %s", t)}
}

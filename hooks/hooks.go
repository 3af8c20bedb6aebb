// Package hooks attaches compiled chain programs to the kernel hook that
// matches their base chain: XDP or tcx on a device, a BPF netfilter link at
// the chain's hook and priority, or cgroup_skb on a cgroup — always inside
// the requester's network namespace.
package hooks

import (
	"fmt"
	"math"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

// Point says where one program is attached.
type Point struct {
	Target codegen.Target
	// Priority is the base chain's priority (netfilter links).
	Priority int32
	// CgroupPath is the cgroup directory for cgroup_skb programs, as seen
	// from the requester's mount namespace (resolve it with /proc/PID/root).
	CgroupPath string
}

// Attach attaches prog at p inside network namespace ns (nil: the caller's
// own) and returns the link.
func Attach(ns *nsctx.NetNS, prog *ebpf.Program, p Point) (link.Link, error) {
	var l link.Link
	attach := func() error {
		var err error
		l, err = attach(prog, p)
		return err
	}
	var err error
	if ns == nil {
		err = attach()
	} else {
		err = ns.Do(attach)
	}
	if err != nil {
		return nil, fmt.Errorf("attach %s program: %w", p.Target.Type, err)
	}
	return l, nil
}

func attach(prog *ebpf.Program, p Point) (link.Link, error) {
	t := p.Target
	switch t.Type {
	case codegen.XDP:
		if t.Device == nil {
			return nil, fmt.Errorf("no device to attach XDP to")
		}
		return link.AttachXDP(link.XDPOptions{Program: prog, Interface: int(t.Device.Index)})
	case codegen.TC:
		if t.Device == nil {
			return nil, fmt.Errorf("no device to attach tcx to")
		}
		at := ebpf.AttachTCXIngress
		if t.Egress {
			at = ebpf.AttachTCXEgress
		}
		return link.AttachTCX(link.TCXOptions{Program: prog, Interface: int(t.Device.Index), Attach: at})
	case codegen.Netfilter:
		hook, err := netfilterHook(t.Hook)
		if err != nil {
			return nil, err
		}
		pf := link.NetfilterProtoIPv4
		if t.ProtoFamily == ir.FamilyIPv6 {
			pf = link.NetfilterProtoIPv6
		}
		// The kernel reserves the outermost priorities for its own hooks.
		if p.Priority == math.MinInt32 || p.Priority == math.MaxInt32 {
			return nil, fmt.Errorf("priority %d is reserved; netfilter links take %d…%d", p.Priority, math.MinInt32+1, math.MaxInt32-1)
		}
		return link.AttachNetfilter(link.NetfilterOptions{
			Program: prog, ProtocolFamily: pf, Hook: hook, Priority: p.Priority,
		})
	case codegen.CgroupSKB:
		if p.CgroupPath == "" {
			return nil, fmt.Errorf("cgroup_skb needs a cgroup path")
		}
		at := ebpf.AttachCGroupInetIngress
		if t.Egress {
			at = ebpf.AttachCGroupInetEgress
		}
		return link.AttachCgroup(link.CgroupOptions{Path: p.CgroupPath, Attach: at, Program: prog})
	}
	return nil, fmt.Errorf("program type %v cannot be attached", t.Type)
}

func netfilterHook(h ir.Hook) (link.NetfilterInetHook, error) {
	switch h {
	case ir.HookPrerouting:
		return link.NetfilterInetPreRouting, nil
	case ir.HookInput:
		return link.NetfilterInetLocalIn, nil
	case ir.HookForward:
		return link.NetfilterInetForward, nil
	case ir.HookOutput:
		return link.NetfilterInetLocalOut, nil
	case ir.HookPostrouting:
		return link.NetfilterInetPostRouting, nil
	}
	return 0, fmt.Errorf("hook %s has no netfilter link", h)
}

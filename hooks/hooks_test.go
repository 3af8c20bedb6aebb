package hooks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

// scratchNS returns a new network namespace with a dummy-like device to
// attach to (an ifb device: this kernel may lack the dummy driver).
func scratchNS(t *testing.T) (*nsctx.NetNS, *codegen.Device) {
	t.Helper()
	done := make(chan error, 1)
	var ns *nsctx.NetNS
	go func() {
		// The thread enters the new namespace and dies with the goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		var err error
		ns, err = nsctx.Current()
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	lo, err := nsctx.InterfaceByName(ns, "lo")
	if err != nil {
		t.Fatal(err)
	}
	return ns, &codegen.Device{Index: lo.Index, Name: lo.Name, Type: lo.Type}
}

func dropChain(fam ir.Family, hook ir.Hook) (*ir.Table, *ir.Chain) {
	c := &ir.Chain{Name: "c", Base: &ir.BaseChain{Type: "filter", Hook: hook, Policy: ir.VerdictDrop, Priority: 10}}
	return &ir.Table{Family: fam, Name: "t", Chains: []*ir.Chain{c}}, c
}

// TestAttach attaches one program of every kind inside a scratch namespace
// and checks the kernel reports the link with the right type.
func TestAttach(t *testing.T) {
	privtest.Require(t)
	ns, lo := scratchNS(t)
	cgroup := scratchCgroup(t)
	tests := []struct {
		name     string
		fam      ir.Family
		hook     ir.Hook
		tgt      codegen.Target
		cgroup   string
		linkType link.Type
	}{
		{"xdp", ir.FamilyNetdev, ir.HookIngress, codegen.Target{Type: codegen.XDP, Device: lo}, "", link.XDPType},
		{"tcx ingress", ir.FamilyNetdev, ir.HookIngress, codegen.Target{Type: codegen.TC, Device: lo}, "", link.TCXType},
		{"tcx egress", ir.FamilyNetdev, ir.HookEgress, codegen.Target{Type: codegen.TC, Device: lo, Egress: true}, "", link.TCXType},
		{"netfilter ipv4 input", ir.FamilyIPv4, ir.HookInput, codegen.Target{Type: codegen.Netfilter, ProtoFamily: ir.FamilyIPv4}, "", link.NetfilterType},
		{"netfilter ipv6 prerouting", ir.FamilyIPv6, ir.HookPrerouting, codegen.Target{Type: codegen.Netfilter, ProtoFamily: ir.FamilyIPv6}, "", link.NetfilterType},
		{"cgroup ingress", ir.FamilyIPv4, ir.HookInput, codegen.Target{Type: codegen.CgroupSKB, ProtoFamily: ir.FamilyIPv4}, cgroup, link.CgroupType},
		{"cgroup egress", ir.FamilyIPv4, ir.HookOutput, codegen.Target{Type: codegen.CgroupSKB, ProtoFamily: ir.FamilyIPv4, Egress: true}, cgroup, link.CgroupType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.linkType == link.CgroupType && tt.cgroup == "" {
				t.Skip("privileged: no cgroup v2 hierarchy mounted")
			}
			tab, c := dropChain(tt.fam, tt.hook)
			tgt := tt.tgt
			tgt.Family, tgt.Hook = tt.fam, tt.hook
			if tgt.ProtoFamily == 0 {
				tgt.ProtoFamily = tt.fam
			}
			p, err := codegen.Compile(tab, c, tgt)
			if err != nil {
				t.Fatal(err)
			}
			l, err := p.Load()
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			lk, err := Attach(ns, l.Program, Point{Target: tgt, Priority: c.Base.Priority, CgroupPath: tt.cgroup})
			if err != nil {
				t.Fatal(err)
			}
			info, err := lk.Info()
			if err != nil {
				t.Fatal(err)
			}
			if info.Type != tt.linkType {
				t.Errorf("link type %v, want %v", info.Type, tt.linkType)
			}
			if err := lk.Close(); err != nil {
				t.Errorf("detach: %v", err)
			}
		})
	}
}

func TestAttachRefusals(t *testing.T) {
	privtest.Require(t)
	tab, c := dropChain(ir.FamilyIPv4, ir.HookInput)
	tgt := codegen.Target{Type: codegen.Netfilter, Family: ir.FamilyIPv4, Hook: ir.HookInput, ProtoFamily: ir.FamilyIPv4}
	p, err := codegen.Compile(tab, c, tgt)
	if err != nil {
		t.Fatal(err)
	}
	l, err := p.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ns, _ := scratchNS(t)
	for _, pt := range []Point{
		{Target: tgt, Priority: -1 << 31},
		{Target: codegen.Target{Type: codegen.XDP}},
		{Target: codegen.Target{Type: codegen.CgroupSKB}},
	} {
		if lk, err := Attach(ns, l.Program, pt); err == nil {
			lk.Close()
			t.Errorf("Attach(%+v) succeeded", pt)
		}
	}
}

// scratchCgroup makes an empty child cgroup under the cgroup v2 hierarchy
// (wherever /proc/self/mounts says it is mounted), or returns "" where there
// is none.
func scratchCgroup(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return ""
	}
	root := ""
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
			root = f[1]
			break
		}
	}
	if root == "" {
		return ""
	}
	dir := filepath.Join(root, fmt.Sprintf("bpfnft-hooks-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	return dir
}

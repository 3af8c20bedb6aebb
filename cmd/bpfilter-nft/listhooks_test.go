package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/bpfilter-nft/bpfilter-nft/internal/bpffstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
)

// TestListHooksAutoBackend loads a netdev ingress chain on a veth and on a
// tap device (whose driver has native XDP) with the default backend,
// directly and through a daemon: the veth gets a tcx program and the tap a
// native XDP one, as the kernel's own listing (bpftool net) confirms, and
// list hooks says so and why.
func TestListHooksAutoBackend(t *testing.T) {
	privtest.Require(t)
	ns, err := netnstest.New()
	if err != nil {
		t.Skipf("privileged: new network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	for _, cmd := range [][]string{
		{"link", "add", "hv0", "type", "veth", "peer", "name", "hv1"},
		{"tuntap", "add", "dev", "ht0", "mode", "tap"},
	} {
		if _, err := ns.Run("", "ip", cmd...); err != nil {
			t.Fatal(err)
		}
	}
	nsPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), ns.File().Fd())
	file := filepath.Join(t.TempDir(), "hooks.nft")
	writeFile(t, file, `table netdev t {
	chain in {
		type filter hook ingress devices = { hv0, ht0 } priority 0; policy accept;
		ip saddr 192.0.2.1 drop
	}
}
`)
	sock, daemonRoot := startDaemonBackend(t, nil)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"direct", []string{"--socket", sock + "-none", "--state", filepath.Join(bpffstest.Mount(t), "state"), "--no-daemon"}},
		{"daemon", []string{"--socket", sock, "--state", daemonRoot}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cli := func(args ...string) (string, string, int) {
				return runCLI(append(append(append([]string{}, c.args...), "--netns", nsPath), args...)...)
			}
			if out, errOut, code := cli("list", "hooks"); code != 0 || !strings.Contains(out, "no programs attached") {
				t.Fatalf("list hooks before loading: exit %d: %s%s", code, out, errOut)
			}
			if _, errOut, code := cli("-f", file); code != 0 {
				t.Fatalf("-f: exit %d: %s", code, errOut)
			}
			t.Cleanup(func() { cli("flush", "ruleset") })
			out, errOut, code := cli("list", "hooks")
			if code != 0 {
				t.Fatalf("list hooks: exit %d: %s", code, errOut)
			}
			for _, want := range []*regexp.Regexp{
				regexp.MustCompile(`(?m)^tcx-ingress +hv0 +0 +netdev t in +auto: veth`),
				regexp.MustCompile(`(?m)^xdp +ht0 +0 +netdev t in +auto: tun with native XDP`),
			} {
				if !want.MatchString(out) {
					t.Errorf("list hooks lacks %s:\n%s", want, out)
				}
			}
			netShow, err := ns.Run("", "bpftool", "net", "show")
			if err != nil {
				t.Fatal(err)
			}
			var tcx *link.QueryResult
			if err := ns.Do(func() error {
				ifi, err := net.InterfaceByName("hv0")
				if err != nil {
					return err
				}
				tcx, err = link.QueryPrograms(link.QueryOptions{Target: ifi.Index, Attach: ebpf.AttachTCXIngress})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if len(tcx.Programs) != 1 {
				t.Errorf("hv0 runs %d tcx ingress programs, want 1", len(tcx.Programs))
			}
			if !regexp.MustCompile(`(?m)^ht0\(\d+\) driver id`).MatchString(netShow) {
				t.Errorf("bpftool net: no native (driver) XDP program on ht0:\n%s", netShow)
			}
			if regexp.MustCompile(`(?m)^hv0\(\d+\) (driver|generic)`).MatchString(netShow) {
				t.Errorf("bpftool net: XDP program on the veth:\n%s", netShow)
			}
			if _, errOut, code := cli("flush", "ruleset"); code != 0 {
				t.Fatalf("flush: exit %d: %s", code, errOut)
			}
		})
	}
}

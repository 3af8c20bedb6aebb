package iptables

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/difftest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pktgen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// TestRTOptions checks how -m rt options are parsed and what is refused.
func TestRTOptions(t *testing.T) {
	for _, tc := range []struct {
		rule string
		want string // printed rule, or the error's text
		fail bool
	}{
		{"-m rt --rt-type 0 -j DROP", "rt type 0 counter drop", false},
		{"-m rt ! --rt-type 2 -j DROP", "rt type != 2 counter drop", false},
		{"-m rt --rt-segsleft 2:5 -j DROP", "rt seg-left 2-5 counter drop", false},
		{"-m rt ! --rt-segsleft 3 -j DROP", "rt seg-left != 3 counter drop", false},
		{"-m rt --rt-segsleft 7: -j DROP", "rt seg-left 7-255 counter drop", false},
		{"-m rt --rt-segsleft 300 -j DROP", "rt seg-left != 0-255 counter drop", false},
		{"-m rt --rt-len 24 -j DROP", "rt hdrlength 2 counter drop", false},
		{"-m rt ! --rt-len 22 -j DROP", "rt hdrlength 0-255 counter drop", false},
		{"-m rt --rt-len 22 -j DROP", "rt hdrlength != 0-255 counter drop", false},
		{"-m rt -j DROP", "rt seg-left 0-255 counter drop", false},
		{"-m rt --rt-type 0 --rt-0-res -j DROP", "rt type 0 exthdr rt @32,32 0 counter drop", false},
		{"-m rt --rt-0-res -j DROP", "`--rt-type 0' required before `--rt-0-res'", true},
		{"-m rt --rt-type 2 --rt-0-res -j DROP", "`--rt-type 0' required before `--rt-0-res'", true},
		{"-m rt --rt-type 0 --rt-0-addrs 2001:db8::1 -j DROP", "--rt-0-addrs (routing header addresses) is not supported", true},
		{"-m rt --rt-0-not-strict -j DROP", "required before `--rt-0-not-strict'", true},
		{"-m rt --rt-type 0 --rt-type 0 -j DROP", "can only be used once", true},
		{"-m rt --rt-type x -j DROP", "bad value", true},
		{"-m rt ! --rt-0-res -j DROP", "cannot be inverted", true},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			script := "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT " + tc.rule + "\nCOMMIT\n"
			rs, err := Restore(strings.NewReader(script), Options{Family: nlmsg.FamilyIPv6})
			if tc.fail {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := printedRules(t, rs)
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("rules %q, want [%q]", got, tc.want)
			}
		})
	}
	if _, err := Restore(strings.NewReader("*filter\n-A INPUT -m rt --rt-type 0 -j DROP\nCOMMIT\n"), Options{Family: nlmsg.FamilyIPv4}); err == nil {
		t.Error("-m rt accepted by iptables (IPv4)")
	}
}

// rtScripts are ip6tables scripts for TestRTDifferential: each rule's
// outcome (match, no match, hotdrop) shows in the verdict.
var rtScripts = []struct{ name, rules string }{
	{"ufw", ":INPUT ACCEPT [0:0]\n-A INPUT -m rt --rt-type 0 -j DROP"},
	// Policy accept and an accepting rule: only a hotdrop drops.
	{"hotdrop", ":INPUT ACCEPT [0:0]\n-A INPUT -m rt --rt-type 0 -j ACCEPT\n-A INPUT -p udp -j ACCEPT"},
	{"segsleft", ":INPUT ACCEPT [0:0]\n-A INPUT -m rt ! --rt-segsleft 1:4 -j DROP"},
	{"len-type", ":INPUT ACCEPT [0:0]\n-A INPUT -m rt --rt-len 24 ! --rt-type 2 -j DROP"},
	{"res", ":INPUT ACCEPT [0:0]\n-A INPUT -m rt --rt-type 0 --rt-0-res --rt-segsleft 0:1 -j DROP\n-A INPUT -m rt --rt-segsleft 5 -j DROP"},
	{"bare", ":INPUT DROP [0:0]\n-A INPUT -p udp -m rt -j ACCEPT\n-A INPUT -m rt ! --rt-len 5 -j ACCEPT"},
}

// TestRTDifferential loads -m rt rules with ip6tables-nft-restore (the
// kernel runs ip6t_rt through nft_compat) and through this package into
// BPF, and compares verdicts on crafted frames with routing headers.
func TestRTDifferential(t *testing.T) {
	privtest.Require(t)
	const tool = "ip6tables-nft-restore"
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("privileged: %s not installed", tool)
	}
	for _, sc := range rtScripts {
		t.Run(sc.name, func(t *testing.T) {
			text := "*filter\n" + sc.rules + "\nCOMMIT\n"
			rs, err := Restore(strings.NewReader(text), Options{Family: nlmsg.FamilyIPv6})
			if err != nil {
				t.Fatal(err)
			}
			o, err := oracle.New(oracle.Config{Hook: ir.HookInput})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { o.Close() })
			load := func(o *oracle.Oracle) error {
				if err := o.Load(""); err != nil {
					return err
				}
				ns, err := nsctx.OpenNetNS(fmt.Sprintf("/proc/self/fd/%d", o.ReceiverNetNS().Fd()))
				if err != nil {
					return err
				}
				defer ns.Close()
				return ns.Do(func() error {
					cmd := exec.Command(tool)
					cmd.Stdin = strings.NewReader(text)
					if out, err := cmd.CombinedOutput(); err != nil {
						return fmt.Errorf("%s: %v: %s", tool, err, out)
					}
					return nil
				})
			}
			frames := pktgen.IPv6ExtHdrCases(o.SenderMAC(), o.ReceiverMAC(),
				netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"))
			rep, err := difftest.Check(o, ir.HookInput, "", difftest.Options{BPFObjects: rs, LoadKernel: load, Count: 20, Seed: 1, Frames: frames})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range rep.Mismatches {
				t.Errorf("mismatch: %s", m)
			}
			if rep.Kernel[oracle.Accepted] == 0 || rep.Kernel[oracle.Dropped] == 0 {
				t.Errorf("kernel verdicts %v: want both accepted and dropped frames", rep.Kernel)
			}
			t.Logf("%d frames, %d comparisons, kernel %v, %d mismatches", rep.Frames, rep.Compared, rep.Kernel, len(rep.Mismatches))
		})
	}
}

// printedRules lifts rs and prints the rules of its INPUT chains.
func printedRules(t *testing.T, rs *nlmsg.Ruleset) []string {
	t.Helper()
	res, err := translate.Lift(rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tb := range res.Ruleset.Tables {
		if c := tb.Chain("INPUT"); c != nil {
			for _, r := range c.Rules {
				out = append(out, ir.FormatRule(tb.Family, r))
			}
		}
	}
	return out
}

package iptables

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/difftest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// diffScripts are restore scripts for the differential test. The oracle's
// sender is 192.0.2.1 / 2001:db8::1, its receiver (interface "orx")
// 192.0.2.2 / 2001:db8::2; rules use other values too so that the
// generated frames miss and hit.
var diffScripts = []struct {
	name string
	fam  nlmsg.Family
	tool string
	text string
}{
	{"ip-basic", nlmsg.FamilyIPv4, "iptables-nft-restore", `*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:svc - [0:0]
:mon - [0:0]
-A INPUT -s 198.51.100.0/24 -j DROP
-A INPUT ! -i orx -j DROP
-A INPUT -i or+ -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p tcp -m tcp --tcp-flags SYN,ACK SYN --sport 1024:65535 -j svc
-A INPUT -p udp -m udp --sport 4000 --dport 53 -j ACCEPT
-A INPUT -p udp -m udp ! --dport 100:200 -g mon
-A INPUT -s 192.0.2.0/255.255.255.252 -p icmp -j ACCEPT
-A INPUT -f -j DROP
-A INPUT -m mark --mark 0x0/0xffff -p 47 -j ACCEPT
-A svc -d 192.0.2.2 -p tcp --dport 80 -j ACCEPT
-A svc -j RETURN
-A mon -p udp --sport 7 -j DROP
-A mon -j ACCEPT
COMMIT
`},
	{"ip-xt-matches", nlmsg.FamilyIPv4, "iptables-nft-restore", `*filter
:INPUT ACCEPT [0:0]
-A INPUT -p udp -m multiport --dports 53,1000:2000,9 -j DROP
-A INPUT -p tcp -m multiport ! --sports 1:1023 -j DROP
-A INPUT -m iprange --src-range 192.0.2.0-192.0.2.1 -p udp -m udp --dport 7 -j DROP
-A INPUT -m iprange ! --dst-range 192.0.2.2-192.0.2.3 -j DROP
-A INPUT -m length --length 0:60 -p udp -j DROP
-A INPUT -m length ! --length 40:1400 -j DROP
-A INPUT -m ttl --ttl-lt 2 -j DROP
-A INPUT -m ttl ! --ttl-eq 64 -p tcp -j DROP
-A INPUT -m pkttype --pkt-type broadcast -j DROP
-A INPUT -m pkttype ! --pkt-type host -p udp -j DROP
-A INPUT -m mac --mac-source 02:b0:00:00:00:05 -j DROP
-A INPUT -p icmp -m icmp --icmp-type echo-request -j DROP
-A INPUT -p icmp -m icmp --icmp-type port-unreachable -j DROP
-A INPUT -p icmp -m icmp ! --icmp-type 3/1:2 -j ACCEPT
-A INPUT -p icmp -m comment --comment "the rest" -j DROP
COMMIT
`},
	{"ip-conntrack", nlmsg.FamilyIPv4, "iptables-nft-restore", `*filter
:INPUT DROP [0:0]
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT
-A INPUT -m conntrack --ctstate NEW --ctproto udp --ctorigdstport 53 -j ACCEPT
-A INPUT -p icmp -m conntrack --ctorigsrc 192.0.2.0/255.255.255.0 --ctdir ORIGINAL -j ACCEPT
-A INPUT -m conntrack --ctreplsrc 192.0.2.2 --ctreplsrcport 1000:2000 -j ACCEPT
-A INPUT -p tcp --dport 80 -m conntrack ! --ctstatus SEEN_REPLY --ctproto tcp -j DROP
-A INPUT -p udp -m conntrack --ctorigdst 192.0.2.2 ! --ctorigsrcport 4000 -j ACCEPT
-A INPUT -m conntrack --ctstate DNAT -j DROP
-A INPUT -p tcp -m conntrack ! --ctstate NEW,INVALID -j ACCEPT
-A INPUT -p udp -m state ! --state NEW -j ACCEPT
-A INPUT -m conntrack --ctstatus CONFIRMED -p udp --dport 7 -j ACCEPT
-A INPUT -p udp --dport 8 -m connmark --mark 0 -j ACCEPT
-A INPUT -p udp --dport 9 -m connmark ! --mark 0x10/0xf0 -j ACCEPT
-A INPUT -p udp --dport 10 -m connmark --mark 0x1/0x0 -j ACCEPT
COMMIT
`},
	{"ip6-state", nlmsg.FamilyIPv6, "ip6tables-nft-restore", `*filter
:INPUT DROP [0:0]
-A INPUT -m state --state INVALID -j DROP
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p ipv6-icmp -m conntrack --ctstate NEW --ctorigdst 2001:db8::2 -j ACCEPT
-A INPUT -p tcp -m conntrack --ctrepldst 2001:db8::/64 --ctrepldstport 1024:65535 -j ACCEPT
-A INPUT -p udp -m conntrack --ctstate NEW,UNTRACKED -j ACCEPT
COMMIT
`},
	{"ip6-basic", nlmsg.FamilyIPv6, "ip6tables-nft-restore", `*filter
:INPUT DROP [0:0]
:u - [0:0]
-A INPUT -s 2001:db8:1::/48 -j DROP
-A INPUT -s 2001:db8::/ffff:ffff:0:0:0:0:0:fffe -p tcp -m tcp ! --syn -j ACCEPT
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type echo-request -j ACCEPT
-A INPUT -p ipv6-icmp -m hl --hl-gt 200 -j u
-A INPUT -p udp -m multiport --sports 4000:4001 -j u
-A INPUT -m length --length 100:65535 -j ACCEPT
-A u -p udp --dport 9 -j DROP
-A u -j ACCEPT
COMMIT
`},
}

// TestDifferentialIptablesNft loads each script into the kernel with the
// system's iptables-nft-restore and, through this package and the
// pipeline, into BPF programs at the same hook; generated frames must get
// the same verdicts.
func TestDifferentialIptablesNft(t *testing.T) {
	privtest.Require(t)
	for _, sc := range diffScripts {
		t.Run(sc.name, func(t *testing.T) {
			if _, err := exec.LookPath(sc.tool); err != nil {
				t.Skipf("privileged: %s not installed", sc.tool)
			}
			rs, err := Restore(strings.NewReader(sc.text), Options{Family: sc.fam})
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
					cmd := exec.Command(sc.tool)
					cmd.Stdin = strings.NewReader(sc.text)
					if out, err := cmd.CombinedOutput(); err != nil {
						return fmt.Errorf("%s: %v: %s", sc.tool, err, out)
					}
					return nil
				})
			}
			rep, err := difftest.Check(o, ir.HookInput, "", difftest.Options{BPFObjects: rs, LoadKernel: load, Count: 300, Seed: 1})
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

// TestDifferentialFindsDifferences: with one port changed on the BPF side
// only, the harness reports mismatches.
func TestDifferentialFindsDifferences(t *testing.T) {
	privtest.Require(t)
	sc := diffScripts[0]
	if _, err := exec.LookPath(sc.tool); err != nil {
		t.Skipf("privileged: %s not installed", sc.tool)
	}
	changed := strings.Replace(sc.text, "--dport 22", "--dport 23", 1)
	rs, err := Restore(strings.NewReader(changed), Options{Family: sc.fam})
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
			cmd := exec.Command(sc.tool)
			cmd.Stdin = strings.NewReader(sc.text)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %v: %s", sc.tool, err, out)
			}
			return nil
		})
	}
	rep, err := difftest.Check(o, ir.HookInput, "", difftest.Options{BPFObjects: rs, LoadKernel: load, Count: 300, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Mismatches) == 0 {
		t.Errorf("no mismatch found for a changed port (%d comparisons)", rep.Compared)
	}
}

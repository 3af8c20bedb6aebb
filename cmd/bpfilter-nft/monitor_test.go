package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/bpffstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/packet"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// TestMonitor loads rulesets with log statements through the CLI, runs the
// monitor's code path, sends real frames from the oracle's sender, and
// checks the lines: the prefix and every packet field, in the format of
// the kernel's nf_log_syslog. (The kernel's own line cannot be read here:
// nf_log only writes from other namespaces than the initial one with
// net.netfilter.nf_log_all_netns=1, a host setting tests do not change.)
func TestMonitor(t *testing.T) {
	privtest.Require(t)
	type sent struct {
		frame []byte
		want  string // "" for a packet nothing logs
	}
	cases := []struct {
		name    string
		hook    ir.Hook
		backend string
		ruleset func(o *oracle.Oracle) string
		sends   func(o *oracle.Oracle) []sent
	}{
		{
			name: "netfilter input", hook: ir.HookInput, backend: "tc",
			ruleset: func(o *oracle.Oracle) string {
				return `table ip f {
	chain in {
		type filter hook input priority 0; policy accept;
		tcp dport 22 log prefix "ssh: " flags tcp sequence
		udp dport 53 log level info flags ip options
		tcp dport 23 log flags tcp sequence,options flags ether drop
	}
}
`
			},
			sends: func(o *oracle.Oracle) []sent {
				mac := o.ReceiverMAC().String() + ":" + o.SenderMAC().String() + ":08:00"
				in := "IN=" + o.ReceiverIfname() + " OUT= "
				eth := &packet.Ethernet{Dst: o.ReceiverMAC(), Src: o.SenderMAC()}
				v4 := func(id uint16, flags uint8) *packet.IPv4 {
					return &packet.IPv4{Src: oracle.SenderIPv4, Dst: oracle.ReceiverIPv4, ID: id, Flags: flags}
				}
				return []sent{
					{packet.MustBuild(eth, v4(7, packet.IPv4DontFragment), &packet.TCP{SrcPort: 40000, DstPort: 22, Seq: 1000, Flags: packet.TCPSyn, Window: 64240}),
						"ssh: " + in + "MAC=" + mac + " SRC=192.0.2.1 DST=192.0.2.2 LEN=40 TOS=0x00 PREC=0x00 TTL=64 ID=7 DF PROTO=TCP SPT=40000 DPT=22 SEQ=1000 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 "},
					{packet.MustBuild(eth, v4(8, 0), &packet.UDP{SrcPort: 4000, DstPort: 80}), ""},
					{packet.MustBuild(eth, &packet.IPv4{Src: oracle.SenderIPv4, Dst: oracle.ReceiverIPv4, ID: 9, TOS: 0xb8, Options: []byte{1, 1, 1, 0}}, &packet.UDP{SrcPort: 4000, DstPort: 53}, packet.Payload("hello")),
						in + "MAC=" + mac + " SRC=192.0.2.1 DST=192.0.2.2 LEN=37 TOS=0x18 PREC=0xA0 TTL=64 ID=9 OPT (01010100) PROTO=UDP SPT=4000 DPT=53 LEN=13 "},
					{packet.MustBuild(eth, v4(10, 0), &packet.TCP{SrcPort: 40001, DstPort: 23, Seq: 5, Ack: 6, Flags: packet.TCPAck | packet.TCPFin, Window: 9, Options: []byte{2, 4, 5, 0xb4}}),
						in + "MACSRC=" + o.SenderMAC().String() + " MACDST=" + o.ReceiverMAC().String() + " MACPROTO=0800 SRC=192.0.2.1 DST=192.0.2.2 LEN=44 TOS=0x00 PREC=0x00 TTL=64 ID=10 PROTO=TCP SPT=40001 DPT=23 SEQ=5 ACK=6 WINDOW=9 RES=0x00 ACK FIN URGP=0 OPT (020405B4) "},
				}
			},
		},
		{
			name: "netdev ingress xdp", hook: ir.HookIngress, backend: "xdp",
			ruleset: func(o *oracle.Oracle) string {
				return `table netdev f {
	chain ing {
		type filter hook ingress device "` + o.ReceiverIfname() + `" priority 0; policy accept;
		icmpv6 type echo-request log prefix "ping6 "
		ip protocol icmp log prefix "ping "
	}
}
`
			},
			sends: func(o *oracle.Oracle) []sent {
				mac6 := o.ReceiverMAC().String() + ":" + o.SenderMAC().String() + ":86:dd"
				mac4 := o.ReceiverMAC().String() + ":" + o.SenderMAC().String() + ":08:00"
				in := "IN=" + o.ReceiverIfname() + " OUT= "
				eth := &packet.Ethernet{Dst: o.ReceiverMAC(), Src: o.SenderMAC()}
				return []sent{
					{packet.MustBuild(eth, &packet.IPv6{Src: oracle.SenderIPv6, Dst: oracle.ReceiverIPv6}, &packet.ICMPv6{Type: 128, ID: 3, Seq: 4}),
						"ping6 " + in + "MAC=" + mac6 + " SRC=2001:db8::1 DST=2001:db8::2 LEN=48 TC=0 HOPLIMIT=64 FLOWLBL=0 PROTO=ICMPv6 TYPE=128 CODE=0 ID=3 SEQ=4 "},
					{packet.MustBuild(eth, &packet.IPv4{Src: oracle.SenderIPv4, Dst: oracle.ReceiverIPv4, ID: 1}, &packet.ICMP{Type: 3, Code: 3},
						&packet.IPv4{Src: oracle.ReceiverIPv4, Dst: oracle.SenderIPv4, ID: 2}, &packet.UDP{SrcPort: 53, DstPort: 4000}),
						"ping " + in + "MAC=" + mac4 + " SRC=192.0.2.1 DST=192.0.2.2 LEN=56 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=ICMP TYPE=3 CODE=3 [SRC=192.0.2.2 DST=192.0.2.1 LEN=28 TOS=0x00 PREC=0x00 TTL=64 ID=2 PROTO=UDP SPT=53 DPT=4000 LEN=8 ] "},
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := oracle.New(oracle.Config{Hook: c.hook})
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			if err := o.Load(""); err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(bpffstest.Mount(t), "state")
			nsPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), o.ReceiverNetNS().Fd())
			file := filepath.Join(t.TempDir(), "rules.nft")
			writeFile(t, file, c.ruleset(o))
			if out, errOut, code := runCLI("--socket", root+"-no-daemon.sock", "--state", root, "--netns", nsPath, "--netdev-backend", c.backend, "-f", file); code != 0 {
				t.Fatalf("load: exit %d: %s %s", code, out, errOut)
			}
			sends := c.sends(o)
			var want []string
			for _, s := range sends {
				if s.want != "" {
					want = append(want, s.want)
				}
			}
			tg, err := openTarget(rulesetFlags{netns: nsPath, stateRoot: root})
			if err != nil {
				t.Fatal(err)
			}
			defer tg.close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out bytes.Buffer
			var wg sync.WaitGroup
			var merr error
			wg.Add(1)
			go func() {
				defer wg.Done()
				merr = monitor(ctx, tg.ns, tg.st, &out, monitorOptions{count: len(want)})
			}()
			for _, s := range sends {
				if _, err := o.Verdict(s.frame); err != nil {
					t.Fatal(err)
				}
			}
			wg.Wait()
			if merr != nil {
				t.Fatal(merr)
			}
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(got) != len(want) {
				t.Fatalf("monitor printed %d lines, want %d:\n%s", len(got), len(want), out.String())
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("line %d:\n got %q\nwant %q", i+1, got[i], want[i])
				}
			}
		})
	}
}

// TestListLiveQuota checks that list ruleset shows a quota's live "used"
// value, as nft does, on the direct path and through a daemon.
func TestListLiveQuota(t *testing.T) {
	privtest.Require(t)
	for _, viaDaemon := range []bool{false, true} {
		t.Run(map[bool]string{false: "direct", true: "daemon"}[viaDaemon], func(t *testing.T) {
			o, err := oracle.New(oracle.Config{Hook: ir.HookInput})
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			if err := o.Load(""); err != nil {
				t.Fatal(err)
			}
			cli := receiverCLI(t, o)
			if viaDaemon {
				sock, _ := startDaemon(t, codegen.TC)
				nsPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), o.ReceiverNetNS().Fd())
				cli = func(args ...string) (string, string, int) {
					return runCLI(append([]string{"--socket", sock, "--netns", nsPath}, args...)...)
				}
			}
			checkLiveQuota(t, o, cli)
		})
	}
}

func checkLiveQuota(t *testing.T, o *oracle.Oracle, cli func(args ...string) (string, string, int)) {
	file := filepath.Join(t.TempDir(), "rules.nft")
	writeFile(t, file, `table ip f {
	chain in {
		type filter hook input priority 0; policy accept;
		udp dport 9 quota 2000 bytes used 1000 bytes counter
		udp dport 9 limit rate 1/minute quota over 1 kbytes drop
	}
}
`)
	if out, errOut, code := cli("-f", file); code != 0 {
		t.Fatalf("load: exit %d: %s %s", code, out, errOut)
	}
	for i := 0; i < 3; i++ {
		if _, err := o.Verdict(udpFrame(o, false, 9)); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := cli("list", "ruleset")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"udp dport 9 quota 2000 bytes used 1084 bytes counter packets 3 bytes 84",
		// The limit's burst (5) let the three datagrams on to the quota.
		"udp dport 9 limit rate 1/minute quota over 1 kbytes used 84 bytes drop",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
}

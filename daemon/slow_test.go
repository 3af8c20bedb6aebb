package daemon

import (
	"net"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/daemon/client"
)

// TestSlowClientsDoNotBlockOthers keeps misbehaving clients around — one
// connected and silent, one sending requests in the same namespace and never
// reading the replies, one vanishing in the middle of a request — while a
// well-behaved google/nftables client loads and reads back rulesets; its
// requests must complete promptly.
func TestSlowClientsDoNotBlockOthers(t *testing.T) {
	s := startServer(t, Limits{})
	ns := scratchNetNS(t)

	// Silent: connected, never sends.
	silent, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: s.Addr(), Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	// Deaf: asks for dumps of the same namespace and never reads.
	deaf, err := client.Dial(s.Addr(), client.WithNetNS(ns.File()))
	if err != nil {
		t.Fatal(err)
	}
	defer deaf.Close()
	dump := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETTABLE), Flags: netlink.Request | netlink.Dump},
		Data:   []byte{unix.NFPROTO_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}
	for i := 0; i < 3; i++ {
		if _, err := deaf.Send(dump); err != nil {
			t.Fatal(err)
		}
	}

	// Vanishing: sends a request and closes at once.
	gone, err := client.Dial(s.Addr(), client.WithNetNS(ns.File()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gone.Send(dump); err != nil {
		t.Fatal(err)
	}
	gone.Close()

	for round := 0; round < 3; round++ {
		start := time.Now()
		conn, closer, err := client.Nftables(s.Addr(), client.WithNetNS(ns.File()))
		if err != nil {
			t.Fatal(err)
		}
		conn.FlushRuleset()
		tab := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"})
		policy := nftables.ChainPolicyAccept
		ch := conn.AddChain(&nftables.Chain{
			Name: "input", Table: tab, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy,
		})
		conn.AddRule(&nftables.Rule{Table: tab, Chain: ch, Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 9, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(17 + round)}},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
		if err := conn.Flush(); err != nil {
			t.Fatalf("round %d: Flush: %v", round, err)
		}
		tables, err := conn.ListTables()
		if err != nil || len(tables) != 1 {
			t.Fatalf("round %d: tables %v, %v", round, tables, err)
		}
		closer.Close()
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("round %d took %v with misbehaving clients connected", round, d)
		}
	}
}

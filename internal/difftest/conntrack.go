package difftest

import (
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

// Rules reading conntrack keys see the history of the connections their
// frames belong to: a frame's entry is "new" the first time, "established"
// once the receiver has answered. The kernel's run and each BPF run must
// therefore start from an empty conntrack table, so that the same frames
// in the same order build the same entries in each.

// ctnetlink message type of a conntrack flush: IPCTNL_MSG_CT_DELETE in
// subsystem NFNL_SUBSYS_CTNETLINK, without a tuple.
const (
	nfnlSubsysCTNetlink = 1
	ipctnlMsgCTDelete   = 2
)

// flushConntrack deletes every conntrack entry of the oracle's receiver
// namespace.
func flushConntrack(o *oracle.Oracle) error {
	ns, err := receiverNS(o)
	if err != nil {
		return err
	}
	defer ns.Close()
	return flushConntrackIn(ns)
}

func flushConntrackIn(ns *nsctx.NetNS) error {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(ns.File().Fd())})
	if err != nil {
		return fmt.Errorf("ctnetlink: %w", err)
	}
	defer c.Close()
	// struct nfgenmsg: family AF_UNSPEC (every family), version, res_id.
	msg := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(nfnlSubsysCTNetlink<<8 | ipctnlMsgCTDelete),
			Flags: netlink.Request | netlink.Acknowledge,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}
	if _, err := c.Execute(msg); err != nil {
		return fmt.Errorf("flush conntrack entries: %w", err)
	}
	return nil
}

package nftfile

import (
	"fmt"
	"os"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// DumpNetNS dumps and decodes the nf_tables ruleset of network namespace ns
// (nil = the caller's): tables, chains, sets, the elements of every set
// (anonymous ones included), named stateful objects and rules, in that
// order. Flowtables are not supported yet: if the namespace has any,
// DumpNetNS returns an error naming them.
func DumpNetNS(ns *os.File) (*nlmsg.Ruleset, error) {
	msgs, err := DumpMessages(ns)
	if err != nil {
		return nil, err
	}
	rs, err := nlmsg.Decode(msgs)
	if err != nil {
		return nil, fmt.Errorf("decode dump: %w", err)
	}
	return rs, nil
}

// DumpMessages is DumpNetNS without the decoding: it returns the raw
// NFT_MSG_NEW* messages of the dump, in the order DumpNetNS decodes them.
func DumpMessages(ns *os.File) ([]netlink.Message, error) {
	cfg := &netlink.Config{}
	if ns != nil {
		cfg.NetNS = int(ns.Fd())
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("dial nfnetlink: %w", err)
	}
	defer c.Close()

	var msgs []netlink.Message
	for _, t := range []uint16{unix.NFT_MSG_GETTABLE, unix.NFT_MSG_GETCHAIN, unix.NFT_MSG_GETSET} {
		m, err := dumpReq(c, t, unix.NFPROTO_UNSPEC, nil)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m...)
	}
	// The sets must be known before their elements can be asked for.
	sets, err := nlmsg.Decode(msgs)
	if err != nil {
		return nil, fmt.Errorf("decode dump: %w", err)
	}
	for _, s := range sets.Sets {
		ae := netlink.NewAttributeEncoder()
		ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, s.Table)
		ae.String(unix.NFTA_SET_ELEM_LIST_SET, s.Name)
		attrs, err := ae.Encode()
		if err != nil {
			return nil, err
		}
		m, err := dumpReq(c, unix.NFT_MSG_GETSETELEM, uint8(s.Family), attrs)
		if err != nil {
			return nil, fmt.Errorf("table %s %s, set %s: %w", s.Family, s.Table, s.Name, err)
		}
		for _, x := range m {
			// The kernel ends an element dump with a message whose
			// element list is empty; it says nothing.
			if !emptyElemList(x) {
				msgs = append(msgs, x)
			}
		}
	}
	// Named stateful objects come before the rules that refer to them.
	for _, t := range []uint16{unix.NFT_MSG_GETOBJ, unix.NFT_MSG_GETRULE} {
		m, err := dumpReq(c, t, unix.NFPROTO_UNSPEC, nil)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m...)
	}

	m, err := dumpReq(c, unix.NFT_MSG_GETFLOWTABLE, unix.NFPROTO_UNSPEC, nil)
	if err != nil {
		return nil, err
	}
	if names := objectNames(m); len(names) > 0 {
		return nil, fmt.Errorf("flowtables are not supported: %v", names)
	}

	return msgs, nil
}

// dumpReq sends an NLM_F_DUMP request of nf_tables message type msg and
// returns the replies, without the final NLMSG_DONE.
func dumpReq(c *netlink.Conn, msg uint16, family uint8, attrs []byte) ([]netlink.Message, error) {
	data := append([]byte{family, unix.NFNETLINK_V0, 0, 0}, attrs...)
	res, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: nlmsg.MsgType(msg), Flags: netlink.Request | netlink.Dump},
		Data:   data,
	})
	if err != nil {
		return nil, fmt.Errorf("dump %s: %w", nlmsg.TypeName(nlmsg.MsgType(msg)), err)
	}
	out := res[:0]
	for _, m := range res {
		if m.Header.Type != netlink.Done {
			out = append(out, m)
		}
	}
	return out, nil
}

// emptyElemList reports whether m is an NFT_MSG_NEWSETELEM without elements.
func emptyElemList(m netlink.Message) bool {
	if m.Header.Type != nlmsg.MsgType(unix.NFT_MSG_NEWSETELEM) {
		return false
	}
	se, err := nlmsg.DecodeSetElems(m)
	return err == nil && len(se.Elems) == 0
}

// objectNames returns "family table name" for each NEWFLOWTABLE message
// (it carries table and name as attributes 1 and 2, as NEWOBJ does).
func objectNames(msgs []netlink.Message) []string {
	var names []string
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		var table, name string
		if ad, err := netlink.NewAttributeDecoder(m.Data[4:]); err == nil {
			for ad.Next() {
				switch ad.Type() {
				case unix.NFTA_OBJ_TABLE:
					table = ad.String()
				case unix.NFTA_OBJ_NAME:
					name = ad.String()
				}
			}
		}
		names = append(names, fmt.Sprintf("%s %s %s", nlmsg.Family(m.Data[0]), table, name))
	}
	return names
}

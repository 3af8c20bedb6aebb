package nsctx

import (
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// XDP feature bits a driver advertises (enum netdev_xdp_act in
// include/uapi/linux/netdev.h).
const (
	// XDPActBasic: the driver runs XDP programs natively (XDP_PASS,
	// XDP_DROP, XDP_ABORTED, XDP_TX) on frames before it builds an skb.
	XDPActBasic uint64 = 1 << 0
	// XDPActRedirect: the driver supports XDP_REDIRECT.
	XDPActRedirect uint64 = 1 << 1
	// XDPActNdoXmit: the driver accepts redirected XDP frames.
	XDPActNdoXmit uint64 = 1 << 2
)

// The "netdev" generic netlink family (include/uapi/linux/netdev.h).
const (
	netdevFamilyName     = "netdev"
	netdevCmdDevGet      = 1
	netdevAttrIfindex    = 1
	netdevAttrXDPFeature = 3
	genlHeaderLen        = 4
)

// ErrNoXDPFeatures is returned by XDPFeatures when the kernel has no
// "netdev" generic netlink family (before Linux 6.3), so a driver's XDP
// support cannot be asked.
var ErrNoXDPFeatures = errors.New("kernel does not report XDP features (no netdev generic netlink family)")

// XDPFeatures returns the XDP features (XDPAct* bits) the driver of the
// device with index ifindex in n (nil: the caller's own namespace)
// advertises, as `ynl --family netdev --do dev-get` prints them. A device
// whose driver has no native XDP reports 0: an XDP program attached to it
// runs in generic mode, after the kernel has built an skb.
func XDPFeatures(n *NetNS, ifindex uint32) (uint64, error) {
	cfg := &netlink.Config{Strict: true}
	if n != nil {
		cfg.NetNS = int(n.f.Fd())
	}
	c, err := netlink.Dial(unix.NETLINK_GENERIC, cfg)
	if err != nil {
		return 0, fmt.Errorf("generic netlink: %w", err)
	}
	defer c.Close()
	family, err := genlFamilyID(c, netdevFamilyName)
	if err != nil {
		return 0, err
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(netdevAttrIfindex, ifindex)
	attrs, err := ae.Encode()
	if err != nil {
		return 0, err
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(family), Flags: netlink.Request},
		Data:   append([]byte{netdevCmdDevGet, 1, 0, 0}, attrs...),
	})
	if err != nil {
		return 0, fmt.Errorf("netdev dev-get ifindex %d: %w", ifindex, err)
	}
	for _, m := range msgs {
		if len(m.Data) < genlHeaderLen {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[genlHeaderLen:])
		if err != nil {
			return 0, err
		}
		var feats uint64
		found := false
		for ad.Next() {
			if ad.Type() == netdevAttrXDPFeature {
				feats, found = ad.Uint64(), true
			}
		}
		if err := ad.Err(); err != nil {
			return 0, fmt.Errorf("netdev dev-get ifindex %d: %w", ifindex, err)
		}
		if found {
			return feats, nil
		}
	}
	return 0, fmt.Errorf("netdev dev-get ifindex %d: no XDP features in the reply", ifindex)
}

// genlFamilyID resolves a generic netlink family name to its message type.
func genlFamilyID(c *netlink.Conn, name string) (uint16, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.CTRL_ATTR_FAMILY_NAME, name)
	attrs, err := ae.Encode()
	if err != nil {
		return 0, err
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.GENL_ID_CTRL, Flags: netlink.Request},
		Data:   append([]byte{unix.CTRL_CMD_GETFAMILY, 1, 0, 0}, attrs...),
	})
	if errors.Is(err, unix.ENOENT) {
		return 0, ErrNoXDPFeatures
	}
	if err != nil {
		return 0, fmt.Errorf("generic netlink family %q: %w", name, err)
	}
	for _, m := range msgs {
		if len(m.Data) < genlHeaderLen {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[genlHeaderLen:])
		if err != nil {
			return 0, err
		}
		for ad.Next() {
			if ad.Type() == unix.CTRL_ATTR_FAMILY_ID {
				return ad.Uint16(), nil
			}
		}
	}
	return 0, fmt.Errorf("generic netlink family %q: no id in the reply", name)
}

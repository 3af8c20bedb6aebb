package nftfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// link is a network interface: its name and ifindex.
type link struct {
	Index int32
	Name  string
}

func dialRoute(ns *os.File) (*netlink.Conn, error) {
	cfg := &netlink.Config{}
	if ns != nil {
		cfg.NetNS = int(ns.Fd())
	}
	c, err := netlink.Dial(unix.NETLINK_ROUTE, cfg)
	if err != nil {
		return nil, fmt.Errorf("dial rtnetlink: %w", err)
	}
	return c, nil
}

// listLinks returns the interfaces of network namespace ns (nil = the
// caller's), lo excepted.
func listLinks(ns *os.File) ([]link, error) {
	c, err := dialRoute(ns)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETLINK, Flags: netlink.Request | netlink.Dump},
		Data:   make([]byte, unix.SizeofIfInfomsg),
	})
	if err != nil {
		return nil, fmt.Errorf("RTM_GETLINK: %w", err)
	}
	var links []link
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK {
			continue
		}
		if len(m.Data) < unix.SizeofIfInfomsg {
			return nil, fmt.Errorf("RTM_NEWLINK: %d bytes, too short", len(m.Data))
		}
		l := link{Index: int32(binary.NativeEndian.Uint32(m.Data[4:8]))}
		ad, err := netlink.NewAttributeDecoder(m.Data[unix.SizeofIfInfomsg:])
		if err != nil {
			return nil, fmt.Errorf("RTM_NEWLINK index %d: %w", l.Index, err)
		}
		for ad.Next() {
			if ad.Type() == unix.IFLA_IFNAME {
				l.Name = ad.String()
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("RTM_NEWLINK index %d: %w", l.Index, err)
		}
		if l.Name == "lo" || l.Index == 1 {
			continue
		}
		links = append(links, l)
	}
	return links, nil
}

// mirrorKinds are the link kinds tried, in order, for the stand-in devices:
// the first one the kernel knows is used. Only name and ifindex matter.
var mirrorKinds = []string{"dummy", "ifb", "bridge"}

// mirrorLinks creates in network namespace ns one stand-in device per link,
// with the same name and ifindex.
func mirrorLinks(ns *os.File, links []link) error {
	if len(links) == 0 {
		return nil
	}
	c, err := dialRoute(ns)
	if err != nil {
		return err
	}
	defer c.Close()
	kinds := mirrorKinds
	for _, l := range links {
		for {
			err = newLink(c, l, kinds[0])
			if errors.Is(err, unix.EOPNOTSUPP) && len(kinds) > 1 {
				// The kernel lacks this link kind; try the next.
				kinds = kinds[1:]
				continue
			}
			break
		}
		if err != nil {
			return fmt.Errorf("create stand-in for interface %s (index %d): %w", l.Name, l.Index, err)
		}
	}
	return nil
}

func newLink(c *netlink.Conn, l link, kind string) error {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, l.Name)
	ae.Nested(unix.IFLA_LINKINFO, func(nae *netlink.AttributeEncoder) error {
		nae.String(unix.IFLA_INFO_KIND, kind)
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	hdr := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(hdr[4:8], uint32(l.Index))
	_, err = c.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  unix.RTM_NEWLINK,
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl,
		},
		Data: append(hdr, attrs...),
	})
	return err
}

// MirrorInterfaces creates in network namespace to one stand-in device for
// every interface of network namespace from (nil = the caller's), lo
// excepted, with the same name and ifindex, so that nft resolves interface
// names in to as it would in from.
func MirrorInterfaces(from, to *os.File) error {
	links, err := listLinks(from)
	if err != nil {
		return fmt.Errorf("interfaces to mirror: %w", err)
	}
	return mirrorLinks(to, links)
}

package daemon

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// A session is a private, throw-away network namespace holding a copy of a
// requester's stored ruleset in the kernel's own nf_tables, and an
// nfnetlink socket into it. Client requests are sent there unchanged, so
// that the kernel validates them and produces the ACKs, errors and dumps a
// client would get from it; the result is dumped and compiled for the
// requester's namespace. Every interface of the requester's namespace is
// mirrored (same name and ifindex) so that device names resolve as there.
type session struct {
	ns *nsctx.NetNS
	fd int
}

// openSession prepares a session for target with the stored ruleset text
// (nft syntax, "" for none) loaded by the real nft.
func openSession(target *nsctx.NetNS, stored, nft string) (*session, error) {
	links, err := listLinks(target)
	if err != nil {
		return nil, fmt.Errorf("interfaces of the requester's network namespace: %w", err)
	}
	ns, err := nsctx.New()
	if err != nil {
		return nil, err
	}
	s := &session{ns: ns, fd: -1}
	err = ns.Do(func() error {
		if err := mirrorLinks(ns, links); err != nil {
			return err
		}
		if strings.TrimSpace(stored) != "" {
			if err := runNft(nft, stored); err != nil {
				return fmt.Errorf("replay stored ruleset: %w", err)
			}
		}
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("nfnetlink socket: %w", err)
		}
		s.fd = fd
		// Room for the ACK of every message of a large batch.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
		return unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	})
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *session) close() {
	if s.fd >= 0 {
		unix.Close(s.fd)
	}
	s.ns.Close()
}

// exchange sends one request datagram to the session's nf_tables and
// returns the reply datagrams. The kernel handles a request inside
// sendmsg, and produces each further part of a dump inside the recvmsg
// that consumed the previous one, so everything is there once a
// non-blocking receive finds the queue empty.
func (s *session) exchange(req []byte) ([][]byte, error) {
	if err := unix.Sendto(s.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send to nf_tables: %w", err)
	}
	var out [][]byte
	buf := make([]byte, 1<<20)
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return out, nil
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receive from nf_tables: %w", err)
		}
		out = append(out, append([]byte(nil), buf[:n]...))
	}
}

// dump returns the session's ruleset, decoded.
func (s *session) dump() (*nlmsg.Ruleset, error) {
	return nftfile.DumpNetNS(s.ns.File())
}

// runNft loads text with nft on the calling thread's network namespace.
func runNft(nft, text string) error {
	cmd := exec.Command(nft, "-f", "-")
	cmd.Stdin = strings.NewReader(text)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", nft, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// link is a network interface: its name and ifindex.
type link struct {
	index int32
	name  string
}

func dialRoute(ns *nsctx.NetNS) (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: int(ns.File().Fd())})
	if err != nil {
		return nil, fmt.Errorf("rtnetlink: %w", err)
	}
	return c, nil
}

// listLinks returns the interfaces of ns, lo excepted.
func listLinks(ns *nsctx.NetNS) ([]link, error) {
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
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		l := link{index: int32(binary.NativeEndian.Uint32(m.Data[4:8]))}
		ad, err := netlink.NewAttributeDecoder(m.Data[unix.SizeofIfInfomsg:])
		if err != nil {
			return nil, err
		}
		for ad.Next() {
			if ad.Type() == unix.IFLA_IFNAME {
				l.name = ad.String()
			}
		}
		if err := ad.Err(); err != nil {
			return nil, err
		}
		if l.index != 1 && l.name != "lo" {
			links = append(links, l)
		}
	}
	return links, nil
}

// mirrorLinks creates a dummy device per link in ns, same name and ifindex.
func mirrorLinks(ns *nsctx.NetNS, links []link) error {
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
				kinds = kinds[1:] // the kernel lacks this link kind
				continue
			}
			break
		}
		if err != nil {
			return fmt.Errorf("stand-in for interface %s (index %d): %w", l.name, l.index, err)
		}
	}
	return nil
}

// mirrorKinds are the link kinds tried for stand-in devices, in order; only
// name and ifindex matter.
var mirrorKinds = []string{"dummy", "ifb", "bridge"}

func newLink(c *netlink.Conn, l link, kind string) error {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, l.name)
	ae.Nested(unix.IFLA_LINKINFO, func(n *netlink.AttributeEncoder) error {
		n.String(unix.IFLA_INFO_KIND, kind)
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	hdr := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(hdr[4:8], uint32(l.index))
	_, err = c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWLINK, Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl},
		Data:   append(hdr, attrs...),
	})
	return err
}

package oracle

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
)

// counts are the observer counters' packet counts; a negative value means
// the counter was not found.
type counts struct {
	arrived, sentinel, passed int64
}

func (c counts) complete() bool { return c.arrived >= 0 && c.sentinel >= 0 && c.passed >= 0 }

// counterReader reads the observers' named counters with one
// NFT_MSG_GETOBJ dump over a netlink socket in the receiver namespace. It
// uses blocking system calls rather than the Go netpoller: a read costs two
// system calls and no goroutine switch.
type counterReader struct {
	fd      int
	request []byte
	buf     []byte
	seq     uint32
}

func newCounterReader(ns *netnstest.NS) (*counterReader, error) {
	r := &counterReader{fd: -1, buf: make([]byte, 1<<16)}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("netlink socket: %w", err)
		}
		r.fd = fd
		// A lost answer must not hang the caller forever.
		tv := unix.Timeval{Sec: 5}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return fmt.Errorf("SO_RCVTIMEO: %w", err)
		}
		return unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	})
	if err != nil {
		r.close()
		return nil, err
	}
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Uint32(unix.NFTA_OBJ_TYPE, unix.NFT_OBJECT_COUNTER)
	attrs, err := ae.Encode()
	if err != nil {
		r.close()
		return nil, err
	}
	// nfgenmsg: family NFPROTO_UNSPEC (all tables), version 0, res_id 0.
	data := append([]byte{unix.NFPROTO_UNSPEC, unix.NFNETLINK_V0, 0, 0}, attrs...)
	msg := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETOBJ),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: data,
	}
	msg.Header.Length = uint32(unix.NLMSG_HDRLEN + len(data))
	if r.request, err = msg.MarshalBinary(); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *counterReader) close() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

func (r *counterReader) read() (counts, error) {
	c := counts{-1, -1, -1}
	r.seq++
	binary.NativeEndian.PutUint32(r.request[8:], r.seq)
	if err := unix.Sendto(r.fd, r.request, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return c, fmt.Errorf("reading counters: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(r.fd, r.buf, 0)
		if err != nil {
			return c, fmt.Errorf("reading counters: %w", err)
		}
		msgs, err := parseMessages(r.buf[:n])
		if err != nil {
			return c, fmt.Errorf("reading counters: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Sequence != r.seq {
				continue // a late answer to an earlier request
			}
			switch m.Header.Type {
			case netlink.Done:
				return c, nil
			case netlink.Error:
				if len(m.Data) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return c, fmt.Errorf("reading counters: %w", unix.Errno(-errno))
					}
				}
				return c, nil
			}
			if err := c.add(m.Data); err != nil {
				return c, fmt.Errorf("reading counters: %w", err)
			}
		}
	}
}

func parseMessages(b []byte) ([]netlink.Message, error) {
	var msgs []netlink.Message
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return nil, errors.New("malformed netlink message")
		}
		var m netlink.Message
		if err := m.UnmarshalBinary(b[:l]); err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
		b = b[min((l+3)&^3, len(b)):]
	}
	return msgs, nil
}

// add records the counter an NFT_MSG_NEWOBJ message describes, if it is one
// of the observers'.
func (c *counts) add(data []byte) error {
	if len(data) < 4 {
		return nil
	}
	var table, name string
	var packets int64 = -1
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_OBJ_TABLE:
			table = ad.String()
		case unix.NFTA_OBJ_NAME:
			name = ad.String()
		case unix.NFTA_OBJ_DATA:
			ad.Nested(func(nd *netlink.AttributeDecoder) error {
				for nd.Next() {
					if nd.Type() == unix.NFTA_COUNTER_PACKETS {
						packets = int64(nd.Uint64())
					}
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		return err
	}
	switch {
	case table == firstTable && name == "arrived":
		c.arrived = packets
	case table == firstTable && name == "sentinel":
		c.sentinel = packets
	case table == lastTable && name == "passed":
		c.passed = packets
	}
	return nil
}

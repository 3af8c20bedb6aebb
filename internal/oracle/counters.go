package oracle

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// counts are the observer counters' packet counts; a negative value means
// the counter was not found.
type counts struct {
	arrived, sentinel, passed int64
}

func (c counts) complete() bool { return c.arrived >= 0 && c.sentinel >= 0 && c.passed >= 0 }

// counterReader reads the observers' named counters with one
// NFT_MSG_GETOBJ dump over a netlink socket in the receiver namespace.
type counterReader struct {
	conn    *netlink.Conn
	request netlink.Message
}

func newCounterReader(ns *os.File) (*counterReader, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(ns.Fd())})
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Uint32(unix.NFTA_OBJ_TYPE, unix.NFT_OBJECT_COUNTER)
	attrs, err := ae.Encode()
	if err != nil {
		conn.Close()
		return nil, err
	}
	// nfgenmsg: family NFPROTO_UNSPEC (all tables), version 0, res_id 0.
	data := append([]byte{unix.NFPROTO_UNSPEC, unix.NFNETLINK_V0, 0, 0}, attrs...)
	return &counterReader{
		conn: conn,
		request: netlink.Message{
			Header: netlink.Header{
				Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETOBJ),
				Flags: netlink.Request | netlink.Dump,
			},
			Data: data,
		},
	}, nil
}

func (r *counterReader) close() error { return r.conn.Close() }

func (r *counterReader) read() (counts, error) {
	c := counts{-1, -1, -1}
	msgs, err := r.conn.Execute(r.request)
	if err != nil {
		return c, fmt.Errorf("reading counters: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		var table, name string
		var packets int64 = -1
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return c, err
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
			return c, err
		}
		switch {
		case table == firstTable && name == "arrived":
			c.arrived = packets
		case table == firstTable && name == "sentinel":
			c.sentinel = packets
		case table == lastTable && name == "passed":
			c.passed = packets
		}
	}
	return c, nil
}

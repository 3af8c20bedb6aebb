package daemon

import (
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The wire format is netlink's: every datagram on the daemon's
// SOCK_SEQPACKET socket carries what one netlink sendmsg/recvmsg would —
// one or more netlink messages, each with its nlmsghdr, padded to four
// bytes. Requests are what a client would send the kernel's nf_tables;
// replies are what the kernel would answer, one datagram per kernel
// datagram (an ACK or error per datagram, dump parts as the kernel
// splits them).

const nlmsgHdrLen = 16

// parseDatagram splits a datagram into its netlink messages.
func parseDatagram(b []byte) ([]netlink.Message, error) {
	var msgs []netlink.Message
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return nil, fmt.Errorf("netlink message: %d trailing bytes, shorter than a header", len(b))
		}
		l := int(binary.NativeEndian.Uint32(b[:4]))
		if l < nlmsgHdrLen || l > len(b) {
			return nil, fmt.Errorf("netlink message: length %d out of range (%d bytes left)", l, len(b))
		}
		var m netlink.Message
		if err := m.UnmarshalBinary(b[:l]); err != nil {
			return nil, fmt.Errorf("netlink message: %w", err)
		}
		// UnmarshalBinary aliases b; requests are kept beyond the
		// read buffer's reuse.
		m.Data = append([]byte(nil), m.Data...)
		msgs = append(msgs, m)
		al := (l + 3) &^ 3
		if al > len(b) {
			al = len(b)
		}
		b = b[al:]
	}
	return msgs, nil
}

// marshalDatagram concatenates msgs into one datagram, fixing lengths.
func marshalDatagram(msgs []netlink.Message) ([]byte, error) {
	var out []byte
	for _, m := range msgs {
		m.Header.Length = uint32(nlmsgHdrLen + len(m.Data))
		b, err := m.MarshalBinary()
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// errorMessage builds the NLMSG_ERROR reply to req with errno (0: an ACK)
// as the kernel does: the errno, then req's header and payload. A non-empty
// text is added as an extended-ACK message attribute (NLMSGERR_ATTR_MSG),
// which netlink libraries report with the error.
func errorMessage(req netlink.Message, errno unix.Errno, text string) netlink.Message {
	data := binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno)))
	req.Header.Length = uint32(nlmsgHdrLen + len(req.Data))
	hdr, _ := req.MarshalBinary()
	data = append(data, hdr...)
	flags := netlink.HeaderFlags(0)
	if errno == 0 {
		flags |= netlink.Capped // like the kernel's ACK: header only
		data = data[:4+nlmsgHdrLen]
	}
	if text != "" {
		ae := netlink.NewAttributeEncoder()
		ae.String(unix.NLMSGERR_ATTR_MSG, text)
		if b, err := ae.Encode(); err == nil {
			data = append(data, b...)
			flags |= netlink.AcknowledgeTLVs
		}
	}
	return netlink.Message{
		Header: netlink.Header{
			Type:     netlink.Error,
			Flags:    flags,
			Sequence: req.Header.Sequence,
			PID:      req.Header.PID,
		},
		Data: data,
	}
}

// replyErrno returns the errno of an NLMSG_ERROR message and whether m is
// one.
func replyErrno(m netlink.Message) (unix.Errno, bool) {
	if m.Header.Type != netlink.Error || len(m.Data) < 4 {
		return 0, false
	}
	return unix.Errno(-int32(binary.NativeEndian.Uint32(m.Data[:4]))), true
}

// Message types of the nfnetlink batch envelope and nf_tables.
func subsys(t netlink.HeaderType) uint16  { return uint16(t) >> 8 }
func msgType(t netlink.HeaderType) uint16 { return uint16(t) & 0xff }

func isBatchBegin(m netlink.Message) bool {
	return uint16(m.Header.Type) == unix.NFNL_MSG_BATCH_BEGIN
}

// isNftables reports whether m is an nf_tables message.
func isNftables(m netlink.Message) bool {
	return subsys(m.Header.Type) == unix.NFNL_SUBSYS_NFTABLES
}

// changes reports whether an nf_tables message type changes the ruleset.
func changes(t uint16) bool {
	switch t {
	case unix.NFT_MSG_GETTABLE, unix.NFT_MSG_GETCHAIN, unix.NFT_MSG_GETRULE,
		unix.NFT_MSG_GETSET, unix.NFT_MSG_GETSETELEM, unix.NFT_MSG_GETGEN,
		unix.NFT_MSG_GETOBJ, unix.NFT_MSG_GETFLOWTABLE, unix.NFT_MSG_GETOBJ_RESET,
		unix.NFT_MSG_GETRULE_RESET:
		return false
	}
	return true
}

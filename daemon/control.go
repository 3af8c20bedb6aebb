package daemon

import (
	"encoding/json"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The daemon's own requests use nfnetlink subsystem ControlSubsys, which
// the kernel does not use. A request is a bare nfgenmsg (4 bytes); the
// reply is one message of the same type and sequence number whose payload
// is an nfgenmsg followed by the attribute ControlAttrJSON, a JSON
// document; errors are NLMSG_ERROR as usual.
const (
	ControlSubsys = 0xf0

	// ControlListObjects lists the objects the requester sees, with the
	// IDs of its level: a JSON array of ObjectInfo.
	ControlListObjects = 1
	// ControlListNamespaces returns the namespace tree (NamespaceInfo);
	// only for requesters in the initial user namespace with
	// CAP_NET_ADMIN.
	ControlListNamespaces = 2

	// ControlAttrJSON is the attribute carrying a reply's JSON document.
	ControlAttrJSON = 1
)

// ControlType is the netlink message type of control request cmd.
func ControlType(cmd uint8) netlink.HeaderType {
	return netlink.HeaderType(ControlSubsys<<8 | uint16(cmd))
}

func (s *Server) control(cn *conn, req netlink.Message) ([][]byte, error) {
	path, err := peerPath(cn.peer)
	if err != nil {
		return nil, err
	}
	var doc any
	switch msgType(req.Header.Type) {
	case ControlListObjects:
		objs := s.reg.Visible(path)
		if objs == nil {
			objs = []ObjectInfo{}
		}
		doc = objs
	case ControlListNamespaces:
		if len(path) != 1 || cn.peer.CapEff&(1<<unix.CAP_NET_ADMIN) == 0 {
			s.logf("audit: denied: pid=%d uid=%d userns=%d op=list-namespaces: host only", cn.peer.PID, cn.peer.UID, cn.peer.User.Inode())
			return nil, &requestError{errno: unix.EPERM, msg: "listing namespaces is for the host (initial user namespace, CAP_NET_ADMIN) only"}
		}
		doc = s.reg.Tree()
	default:
		return nil, &requestError{errno: unix.EOPNOTSUPP, msg: fmt.Sprintf("unknown control request %d", msgType(req.Header.Type))}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(ControlAttrJSON, b)
	attrs, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	reply := netlink.Message{
		Header: netlink.Header{Type: req.Header.Type, Sequence: req.Header.Sequence, PID: req.Header.PID},
		Data:   append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, attrs...),
	}
	return [][]byte{mustMarshal(reply)}, nil
}

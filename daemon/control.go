package daemon

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/state"
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
	// ControlGetRuleset returns the stored ruleset of the requester's
	// network namespace (or the one it passed) with its live counters:
	// a RulesetInfo. It needs CAP_NET_ADMIN over that namespace, as a
	// nf_tables dump does.
	ControlGetRuleset = 3

	// ControlAttrJSON is the attribute carrying a reply's JSON document.
	ControlAttrJSON = 1

	// BatchAttrRulesetID is the daemon's own attribute of an
	// NFNL_MSG_BATCH_BEGIN message (a u32, big-endian): the
	// RulesetInfo.ID of the stored ruleset a client computed the batch
	// from. If the stored ruleset has changed since, the batch is
	// refused with ERESTART, as the kernel refuses a batch with a stale
	// NFNL_BATCH_GENID, and nothing changes; the client fetches the
	// ruleset again and retries. The attribute is removed before the
	// batch reaches nf_tables.
	BatchAttrRulesetID = 0xf0
)

// RulesetInfo is the reply to ControlGetRuleset.
type RulesetInfo struct {
	// Ruleset is the stored ruleset in nft syntax ("" when none).
	Ruleset string `json:"ruleset"`
	// ID identifies Ruleset (see BatchAttrRulesetID).
	ID uint32 `json:"id"`
	// Rules lists the rules with counters, in ruleset order, as the
	// loader records them; Counters holds the live values of each one's
	// counter statements.
	Rules    []state.Rule             `json:"rules,omitempty"`
	Counters [][]codegen.CounterValue `json:"counters,omitempty"`
	// States holds the live state of each rule's limit and quota
	// statements.
	States [][]codegen.StateValue `json:"states,omitempty"`
	// Objects holds the live state of each named object, by
	// loader.ObjectStateID.
	Objects map[string]codegen.StateValue `json:"objects,omitempty"`
	// Points are the attach points the ruleset runs at (program kind,
	// device, and why a netdev chain got its kind).
	Points []state.Point `json:"points,omitempty"`
}

// RulesetID is the RulesetInfo.ID of a stored ruleset text: a hash of
// it, never 0. Equal texts have equal IDs, so a batch computed from a
// ruleset that was changed and changed back still applies as computed.
func RulesetID(text string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(text))
	if id := h.Sum32(); id != 0 {
		return id
	}
	return 1
}

// getRuleset serves ControlGetRuleset.
func (s *Server) getRuleset(cn *conn) (*RulesetInfo, error) {
	_, st, release, err := s.openState(cn, "read")
	if err != nil {
		return nil, err
	}
	defer release()
	snap, err := loader.Load(st)
	if err != nil {
		return nil, err
	}
	if len(snap.Manifest.Points) == 0 && snap.Manifest.Ruleset == "" {
		// Nothing stored: do not leave an empty directory behind.
		if names, err := st.Entries(); err == nil && len(names) == 0 {
			st.Delete()
		}
	}
	return &RulesetInfo{Ruleset: snap.Manifest.Ruleset, ID: RulesetID(snap.Manifest.Ruleset),
		Rules: snap.Manifest.Rules, Counters: snap.Counters, States: snap.States, Objects: snap.Objects, Points: snap.Manifest.Points}, nil
}

// batchRulesetID removes BatchAttrRulesetID from a batch's
// NFNL_MSG_BATCH_BEGIN and returns its value (0 when absent), and the
// datagram without it.
func batchRulesetID(msgs []netlink.Message, dgram []byte) (uint32, []byte, error) {
	if len(msgs) == 0 || !isBatchBegin(msgs[0]) || len(msgs[0].Data) <= 4 {
		return 0, dgram, nil
	}
	ad, err := netlink.NewAttributeDecoder(msgs[0].Data[4:])
	if err != nil {
		return 0, nil, fmt.Errorf("batch begin: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	var id uint32
	for ad.Next() {
		if ad.Type() == BatchAttrRulesetID {
			id = ad.Uint32()
		}
	}
	if err := ad.Err(); err != nil {
		return 0, nil, fmt.Errorf("batch begin: %w", err)
	}
	if id == 0 {
		return 0, dgram, nil
	}
	msgs[0].Data = msgs[0].Data[:4]
	b, err := marshalDatagram(msgs)
	if err != nil {
		return 0, nil, err
	}
	return id, b, nil
}

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
	case ControlGetRuleset:
		info, err := s.getRuleset(cn)
		if err != nil {
			return nil, err
		}
		doc = info
	case ControlEditRule:
		res, err := s.editRule(cn, req)
		if err != nil {
			return nil, err
		}
		doc = res
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

package client

import (
	"encoding/json"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Control requests of the daemon (see package daemon, control.go).
const (
	controlSubsys         = 0xf0
	controlListObjects    = 1
	controlListNamespaces = 2
	controlGetRuleset     = 3
	controlEditRule       = 4
	controlAttrJSON       = 1
)

// ListObjects asks the daemon for the objects the caller sees (its own
// user namespace's and its descendants', with its own level's IDs) and
// decodes the JSON reply into v (e.g. *[]daemon.ObjectInfo or
// *[]map[string]any).
func ListObjects(c *netlink.Conn, v any) error { return control(c, controlListObjects, v) }

// ListNamespaces asks the daemon for the namespace tree (host only).
func ListNamespaces(c *netlink.Conn, v any) error { return control(c, controlListNamespaces, v) }

// GetRuleset asks the daemon for the stored ruleset of the connection's
// network namespace with its live counters and decodes the JSON reply
// into v (e.g. *daemon.RulesetInfo).
func GetRuleset(c *netlink.Conn, v any) error { return control(c, controlGetRuleset, v) }

// EditRule asks the daemon to apply one rule edit of the nft command line
// (verb "add", "insert", "replace" or "delete", then the arguments, e.g.
// "rule", "inet", "filter", "input", "handle", "7") through the decoded
// running ruleset it keeps. An error matching unix.EAGAIN says the daemon
// cannot apply this edit by itself and changed nothing: send it as a
// batch instead.
func EditRule(c *netlink.Conn, verb string, args []string) error {
	doc, err := json.Marshal(struct {
		Verb string   `json:"verb"`
		Args []string `json:"args"`
	}{verb, args})
	if err != nil {
		return err
	}
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(controlAttrJSON, doc)
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	var reply struct{}
	return controlWith(c, controlEditRule, attrs, &reply)
}

func control(c *netlink.Conn, cmd uint16, v any) error { return controlWith(c, cmd, nil, v) }

func controlWith(c *netlink.Conn, cmd uint16, attrs []byte, v any) error {
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(controlSubsys<<8 | cmd), Flags: netlink.Request},
		Data:   append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return err
		}
		for ad.Next() {
			if ad.Type() == controlAttrJSON {
				return json.Unmarshal(ad.Bytes(), v)
			}
		}
	}
	return fmt.Errorf("bpfilter-nft daemon: reply without a document")
}

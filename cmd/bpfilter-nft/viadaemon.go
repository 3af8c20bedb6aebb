package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/daemon"
	"github.com/bpfilter-nft/bpfilter-nft/daemon/client"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// When a daemon is reachable, the ruleset commands go through it: the
// daemon owns the pinned state and acts in the CLI's network namespace
// (or the one --netns/--pid names, passed to it as an open file). A change
// is computed here as the direct path computes it — nft parses the change
// on top of the running ruleset, fetched from the daemon, in a private
// network namespace, so that its errors name file:line — and sent as one
// nf_tables batch replacing the ruleset (nft's "flush ruleset", then every
// table, chain, set and rule). The batch carries the ID of the ruleset it
// was computed from (daemon.BatchAttrRulesetID): if another writer changed
// the ruleset meanwhile the daemon refuses it with ERESTART and the change
// is computed again. Translation refusals come back in the daemon's
// extended ACK, naming the rule and the expression.

// maxRestarts bounds how often a change is computed again because the
// ruleset changed under it.
const maxRestarts = 20

// daemonTarget is a connection to a running daemon acting on one network
// namespace.
type daemonTarget struct {
	path string
	sock *client.Socket
	conn *netlink.Conn
	ns   *nsctx.NetNS // the target, whose interfaces nft's private namespace mirrors
	seq  uint32
}

// openNetNS opens the network namespace g names (--netns, --pid, else the
// calling thread's).
func openNetNS(g rulesetFlags) (*nsctx.NetNS, error) {
	switch {
	case g.netns != "" && g.pid != 0:
		return nil, fmt.Errorf("--netns and --pid are exclusive")
	case g.netns != "":
		return nsctx.OpenNetNS(g.netns)
	case g.pid != 0:
		return nsctx.OpenNetNS(fmt.Sprintf("/proc/%d/ns/net", g.pid))
	}
	return nsctx.Current()
}

// dialDaemon connects to the daemon unless g forces the direct path
// (--no-daemon) or no daemon is reachable: nothing listens at the socket
// path. It returns nil, nil then.
func dialDaemon(g rulesetFlags) (*daemonTarget, error) {
	if g.noDaemon {
		return nil, nil
	}
	path := daemon.SocketPath(g.socket)
	if fi, err := os.Stat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil, nil
	}
	ns, err := openNetNS(g)
	if err != nil {
		return nil, err
	}
	var opts []client.Option
	if g.netns != "" || g.pid != 0 {
		opts = append(opts, client.WithNetNS(ns.File()))
	}
	sock, err := client.DialSocket(path, opts...)
	if err != nil {
		// A socket file nothing accepts on: a daemon that is gone.
		ns.Close()
		return nil, nil
	}
	d := &daemonTarget{path: path, sock: sock, conn: netlink.NewConn(sock, 0), ns: ns}
	if g.cgroup != "" {
		d.close()
		return nil, fmt.Errorf("--cgroup: not available through the daemon at %s (use --no-daemon)", path)
	}
	return d, nil
}

func (d *daemonTarget) close() {
	d.conn.Close()
	d.ns.Close()
}

// withRuleset runs direct on the target g names, or via on the daemon when
// one is reachable.
func withRuleset(g rulesetFlags, direct func(*target) error, via func(*daemonTarget) error) error {
	d, err := dialDaemon(g)
	if err != nil {
		return err
	}
	if d == nil {
		return withTarget(g, direct)
	}
	defer d.close()
	return via(d)
}

// fetch returns the running ruleset with its live counters.
func (d *daemonTarget) fetch() (*daemon.RulesetInfo, error) {
	var info daemon.RulesetInfo
	if err := client.GetRuleset(d.conn, &info); err != nil {
		return nil, fmt.Errorf("bpfilter-nft daemon at %s: running ruleset: %w", d.path, err)
	}
	return &info, nil
}

// update computes the new ruleset from the running one with next and
// makes the daemon apply it (with check, only translates it here). It
// starts again when the ruleset changed in between.
func (d *daemonTarget) update(stdout io.Writer, g rulesetFlags, name string, next func(current string) (*nlmsg.Ruleset, error)) error {
	for attempt := 0; ; attempt++ {
		info, err := d.fetch()
		if err != nil {
			return err
		}
		rs, err := next(info.Ruleset)
		if err != nil {
			return err
		}
		if g.check {
			return checkRuleset(stdout, g, d.ns, name, rs)
		}
		err = d.send(replaceBatch(rs, info.ID))
		if errors.Is(err, unix.ERESTART) && attempt < maxRestarts {
			continue
		}
		return err
	}
}

// change applies an nft change (file include or command) through the
// daemon.
func (d *daemonTarget) change(stdout io.Writer, g rulesetFlags, name, change string) error {
	return d.update(stdout, g, name, func(current string) (*nlmsg.Ruleset, error) {
		return nftfile.Parse(name, strings.NewReader(current+"\n"+change), nftfile.Options{TargetNetNS: d.ns.File()})
	})
}

// editRule applies one rule edit (add, insert, replace or delete rule):
// the daemon applies it by itself through the decoded running ruleset it
// keeps (nft parses only the new rule); where it cannot (EAGAIN), or in
// check mode, the change is computed here and sent as a batch.
func (d *daemonTarget) editRule(stdout io.Writer, g rulesetFlags, verb string, args []string, change string) error {
	if !g.check {
		err := client.EditRule(d.conn, verb, args)
		if !errors.Is(err, unix.EAGAIN) {
			if err != nil {
				return fmt.Errorf("bpfilter-nft daemon at %s: %w", d.path, err)
			}
			return nil
		}
	}
	return d.change(stdout, g, "<cmdline>", change)
}

// replace applies input that starts with "flush ruleset" without parsing
// the running ruleset again.
func (d *daemonTarget) replace(stdout io.Writer, g rulesetFlags, name, input string) error {
	return d.update(stdout, g, name, func(string) (*nlmsg.Ruleset, error) {
		return nftfile.Parse(name, strings.NewReader(input), nftfile.Options{TargetNetNS: d.ns.File()})
	})
}

// flush removes the ruleset: nft's "flush ruleset".
func (d *daemonTarget) flush() error { return d.send(replaceBatch(nil, 0)) }

// live returns the running ruleset with its live counters, as the daemon
// serves it.
func (d *daemonTarget) live() (*liveRuleset, error) {
	info, err := d.fetch()
	if err != nil {
		return nil, err
	}
	l, err := newLiveRuleset(info.Ruleset, info.Rules, info.Counters, info.States, d.ns.File())
	if err != nil {
		return nil, err
	}
	l.objects = info.Objects
	return l, nil
}

// replaceBatch is the nf_tables batch that makes rs (nil: nothing) the
// ruleset: nft's "flush ruleset" (NFT_MSG_DELTABLE of no table in no
// family), then rs's objects created without their handles, every
// message asking for an ACK. A non-zero id is the ID of the ruleset rs was
// computed from.
func replaceBatch(rs *nlmsg.Ruleset, id uint32) []netlink.Message {
	nfgen := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0}
	subsys := binary.BigEndian.AppendUint16(append([]byte(nil), nfgen...), unix.NFNL_SUBSYS_NFTABLES)
	begin := append([]byte(nil), subsys...)
	if id != 0 {
		ae := netlink.NewAttributeEncoder()
		ae.ByteOrder = binary.BigEndian
		ae.Uint32(daemon.BatchAttrRulesetID, id)
		if b, err := ae.Encode(); err == nil {
			begin = append(begin, b...)
		}
	}
	msgs := []netlink.Message{
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request}, Data: begin},
		{Header: netlink.Header{Type: nlmsg.MsgType(unix.NFT_MSG_DELTABLE), Flags: netlink.Request | netlink.Acknowledge}, Data: append(append([]byte(nil), nfgen...), 0, 0)},
	}
	if rs != nil {
		for _, m := range nlmsg.Encode(withoutHandles(rs)) {
			m.Header.Flags |= netlink.Acknowledge | netlink.Create
			if m.Header.Type == nlmsg.MsgType(unix.NFT_MSG_NEWRULE) {
				m.Header.Flags |= netlink.Append // in order, as nft adds rules
			}
			msgs = append(msgs, m)
		}
	}
	return append(msgs, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request}, Data: subsys})
}

// withoutHandles returns rs with the kernel-assigned handles of its
// objects removed (a NEWRULE naming a handle would refer to an existing
// rule) and with the transaction IDs a dump lacks but a batch needs.
func withoutHandles(rs *nlmsg.Ruleset) *nlmsg.Ruleset {
	out := &nlmsg.Ruleset{Elems: rs.Elems}
	for _, t := range rs.Tables {
		c := *t
		c.Handle = 0
		out.Tables = append(out.Tables, &c)
	}
	for _, ch := range rs.Chains {
		c := *ch
		c.Handle = 0
		out.Chains = append(out.Chains, &c)
	}
	for _, o := range rs.Objs {
		c := *o
		c.Handle = 0
		out.Objs = append(out.Objs, &c)
	}
	for i, s := range rs.Sets {
		c := *s
		c.Handle = 0
		if c.ID == 0 {
			c.ID = uint32(i + 1) // NEWSET requires a transaction ID
		}
		out.Sets = append(out.Sets, &c)
	}
	for _, r := range rs.Rules {
		c := *r
		c.Handle, c.Position = 0, 0
		out.Rules = append(out.Rules, &c)
	}
	return out
}

// batchError is the daemon's (or the kernel's) refusal of one message of
// a batch.
type batchError struct {
	errno unix.Errno
	text  string // the extended ACK's message, if any
	req   netlink.Message
}

func (e *batchError) Error() string {
	if e.text != "" {
		return e.text
	}
	return fmt.Sprintf("%s: %v", describeMessage(e.req), e.errno)
}

func (e *batchError) Unwrap() error { return e.errno }

// send sends a batch and waits for the reply to every message asking for
// one; a refusal of the whole batch (an error for its first message) ends
// the wait.
func (d *daemonTarget) send(msgs []netlink.Message) error {
	want := map[uint32]netlink.Message{}
	for i := range msgs {
		d.seq++
		msgs[i].Header.Sequence = d.seq
		if msgs[i].Header.Flags&netlink.Acknowledge != 0 {
			want[d.seq] = msgs[i]
		}
	}
	begin := msgs[0]
	if err := d.sock.SendMessages(msgs); err != nil {
		return fmt.Errorf("bpfilter-nft daemon at %s: %w", d.path, err)
	}
	var errs []error
	for len(want) > 0 {
		reply, err := d.sock.Receive()
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("bpfilter-nft daemon at %s: %w", d.path, err))...)
		}
		for _, m := range reply {
			errno, text, ok := parseAck(m)
			if !ok {
				continue
			}
			req, known := want[m.Header.Sequence]
			delete(want, m.Header.Sequence)
			if m.Header.Sequence == begin.Header.Sequence {
				req, known = begin, true
			}
			if errno != 0 && known {
				errs = append(errs, &batchError{errno: errno, text: text, req: req})
			}
			if errno != 0 && m.Header.Sequence == begin.Header.Sequence {
				return errors.Join(errs...)
			}
		}
	}
	return errors.Join(errs...)
}

// parseAck returns the errno (0: an ACK) and the extended-ACK message of an
// NLMSG_ERROR message, and whether m is one.
func parseAck(m netlink.Message) (unix.Errno, string, bool) {
	if m.Header.Type != netlink.Error || len(m.Data) < 4 {
		return 0, "", false
	}
	errno := unix.Errno(-int32(binary.NativeEndian.Uint32(m.Data[:4])))
	if m.Header.Flags&netlink.AcknowledgeTLVs == 0 {
		return errno, "", true
	}
	off := 4 + 16 // the request's header
	if m.Header.Flags&netlink.Capped == 0 && len(m.Data) >= 8 {
		off = 4 + (int(binary.NativeEndian.Uint32(m.Data[4:8]))+3)&^3
	}
	if off > len(m.Data) {
		return errno, "", true
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[off:])
	if err != nil {
		return errno, "", true
	}
	var text string
	for ad.Next() {
		if ad.Type() == unix.NLMSGERR_ATTR_MSG {
			text = ad.String()
		}
	}
	return errno, text, true
}

// describeMessage names a batch message for an error without a text.
func describeMessage(m netlink.Message) string {
	names := map[uint16]string{
		unix.NFT_MSG_NEWTABLE: "table", unix.NFT_MSG_DELTABLE: "flush ruleset",
		unix.NFT_MSG_NEWCHAIN: "chain", unix.NFT_MSG_NEWSET: "set",
		unix.NFT_MSG_NEWSETELEM: "set elements", unix.NFT_MSG_NEWRULE: "rule",
	}
	if uint16(m.Header.Type)>>8 != unix.NFNL_SUBSYS_NFTABLES {
		return "batch"
	}
	typ := uint16(m.Header.Type) & 0xff
	if typ == unix.NFT_MSG_NEWRULE {
		if r, err := nlmsg.DecodeRule(m); err == nil {
			return fmt.Sprintf("rule in %s %s chain %s", r.Family, r.Table, r.Chain)
		}
	}
	if n, ok := names[typ]; ok {
		return n
	}
	return fmt.Sprintf("nf_tables message %d", typ)
}

package daemon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

// A watcher reports network namespaces that disappear, without holding
// them alive (an open namespace file or a socket inside would).
//
// It owns a private network namespace in which it gives every watched
// namespace a namespace ID (RTM_NEWNSID with NETNSA_FD). The kernel keeps
// such IDs without a reference, and when a namespace is destroyed it
// removes its IDs from every other namespace and announces each removal
// with RTM_DELNSID to the RTNLGRP_NSID group of that namespace, where the
// watcher listens. Nothing is changed in the host's namespace.
type watcher struct {
	ns   *nsctx.NetNS
	conn *netlink.Conn // route socket in ns, member of RTNLGRP_NSID
	req  *netlink.Conn // route socket in ns for requests

	mu    sync.Mutex
	ids   map[int32]uint64 // nsid → netns inode
	byIno map[uint64]int32
	next  int32
}

func newWatcher() (*watcher, error) {
	ns, err := nsctx.New()
	if err != nil {
		return nil, err
	}
	w := &watcher{ns: ns, ids: map[int32]uint64{}, byIno: map[uint64]int32{}}
	cfg := &netlink.Config{NetNS: int(ns.File().Fd()), Groups: 0}
	if w.conn, err = netlink.Dial(unix.NETLINK_ROUTE, cfg); err != nil {
		ns.Close()
		return nil, fmt.Errorf("watcher: %w", err)
	}
	if err := w.conn.JoinGroup(unix.RTNLGRP_NSID); err != nil {
		w.close()
		return nil, fmt.Errorf("watcher: join RTNLGRP_NSID: %w", err)
	}
	if w.req, err = netlink.Dial(unix.NETLINK_ROUTE, cfg); err != nil {
		w.close()
		return nil, fmt.Errorf("watcher: %w", err)
	}
	return w, nil
}

func (w *watcher) close() {
	if w.conn != nil {
		w.conn.Close()
	}
	if w.req != nil {
		w.req.Close()
	}
	w.ns.Close()
}

// watch starts watching target (idempotent).
func (w *watcher) watch(target *nsctx.NetNS) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.byIno[target.Inode()]; ok {
		return nil
	}
	w.next++
	id := w.next
	ae := netlink.NewAttributeEncoder()
	ae.Int32(unix.NETNSA_NSID, id)
	ae.Uint32(unix.NETNSA_FD, uint32(target.File().Fd()))
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	_, err = w.req.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWNSID, Flags: netlink.Request | netlink.Acknowledge},
		Data:   append([]byte{unix.AF_UNSPEC, 0, 0, 0}, attrs...),
	})
	if err != nil {
		return fmt.Errorf("watch network namespace %d: RTM_NEWNSID: %w", target.Inode(), err)
	}
	w.ids[id] = target.Inode()
	w.byIno[target.Inode()] = id
	return nil
}

// run calls gone with the inode of every watched namespace destroyed,
// until the watcher is closed.
func (w *watcher) run(gone func(inode uint64)) {
	for {
		msgs, err := w.conn.Receive()
		if err != nil {
			var oe *netlink.OpError
			if errors.As(err, &oe) && errors.Is(oe.Err, unix.ENOBUFS) {
				// Lost notifications: the server re-checks all.
				gone(0)
				continue
			}
			return
		}
		for _, m := range msgs {
			if m.Header.Type != unix.RTM_DELNSID || len(m.Data) < 4 {
				continue
			}
			ad, err := netlink.NewAttributeDecoder(m.Data[4:])
			if err != nil {
				continue
			}
			id := int32(-1)
			for ad.Next() {
				if ad.Type() == unix.NETNSA_NSID {
					id = int32(binary.NativeEndian.Uint32(ad.Bytes()))
				}
			}
			w.mu.Lock()
			ino, ok := w.ids[id]
			if ok {
				delete(w.ids, id)
				delete(w.byIno, ino)
			}
			w.mu.Unlock()
			if ok {
				gone(ino)
			}
		}
	}
}

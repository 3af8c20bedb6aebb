// Package nsctx runs work inside another process's network namespace.
//
// setns(CLONE_NEWNET) changes only the calling OS thread, so every switch
// happens on a goroutine locked to its thread. The thread is switched back
// before it is unlocked; if switching back fails, the goroutine ends still
// locked and the Go runtime destroys the thread instead of reusing it in a
// foreign namespace.
package nsctx

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NetNS is a reference to a network namespace, held by an open file.
type NetNS struct {
	f     *os.File
	inode uint64
}

// OpenNetNS opens the network namespace at path (/proc/PID/ns/net,
// /run/netns/NAME, …).
func OpenNetNS(path string) (*NetNS, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	return FromFile(f)
}

// FromFile wraps an already open namespace file; NetNS takes ownership.
func FromFile(f *os.File) (*NetNS, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil || fs.Type != unix.NSFS_MAGIC {
		f.Close()
		return nil, fmt.Errorf("%s is not a namespace file", f.Name())
	}
	return &NetNS{f: f, inode: st.Ino}, nil
}

// New creates a new network namespace holding only a loopback device (down).
// It lives as long as the returned NetNS, or anything inside it, holds it.
func New() (*NetNS, error) {
	var ns *NetNS
	var err error
	onDiscardedThread(func() {
		if err = unix.Unshare(unix.CLONE_NEWNET); err != nil {
			err = fmt.Errorf("create network namespace: %w", err)
			return
		}
		ns, err = Current()
	})
	return ns, err
}

// onDiscardedThread runs fn on a locked OS thread that the Go runtime ends
// afterwards, so that fn may change the thread's namespaces for good. It
// never uses the process's main thread: the runtime cannot end that one, it
// would stay in whatever state fn left, and /proc/self/ns/* would then
// describe that state.
func onDiscardedThread(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// No UnlockOSThread: the thread ends with this goroutine.
		if unix.Gettid() == unix.Getpid() {
			// The main thread: keep it busy while another goroutine,
			// which must then get another thread, does the work.
			onDiscardedThread(fn)
			runtime.UnlockOSThread()
			return
		}
		fn()
	}()
	<-done
}

// Current returns the calling thread's network namespace.
func Current() (*NetNS, error) {
	return OpenNetNS(fmt.Sprintf("/proc/%d/task/%d/ns/net", unix.Getpid(), unix.Gettid()))
}

// File returns the namespace file; it stays owned by n.
func (n *NetNS) File() *os.File { return n.f }

// Inode returns the namespace's inode number, its identity.
func (n *NetNS) Inode() uint64 { return n.inode }

// Close releases the reference.
func (n *NetNS) Close() error { return n.f.Close() }

// Do runs fn on a locked OS thread inside namespace n and waits for it.
func (n *NetNS) Do(fn func() error) error {
	res := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self := fmt.Sprintf("/proc/%d/task/%d/ns/net", unix.Getpid(), unix.Gettid())
		orig, err := os.Open(self)
		if err != nil {
			runtime.UnlockOSThread()
			res <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(n.f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			res <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: the runtime kills this thread when the
			// goroutine returns (on the main thread it would wedge it;
			// a setns back into a namespace we came from does not
			// fail in practice).
			res <- fmt.Errorf("leave network namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		res <- ferr
	}()
	return <-res
}

// Interface is what codegen needs to know of a network device.
type Interface struct {
	Index uint32
	Name  string
	Type  uint16 // ARPHRD_*
	MAC   [6]byte
	// Kind is the device's rtnetlink link kind (IFLA_INFO_KIND: "veth",
	// "bridge", "dummy", …); empty for devices without one, such as
	// physical NICs and loopback.
	Kind string
}

// InterfaceByName looks a device up inside n (nil n: the caller's own
// namespace) with an RTM_GETLINK request on a route socket opened there.
func InterfaceByName(n *NetNS, name string) (*Interface, error) {
	cfg := &netlink.Config{Strict: true}
	if n != nil {
		cfg.NetNS = int(n.f.Fd())
	}
	c, err := netlink.Dial(unix.NETLINK_ROUTE, cfg)
	if err != nil {
		return nil, fmt.Errorf("route netlink: %w", err)
	}
	defer c.Close()
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, name)
	attrs, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	req := netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETLINK, Flags: netlink.Request},
		Data:   append(make([]byte, unix.SizeofIfInfomsg), attrs...),
	}
	msgs, err := c.Execute(req)
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", name, err)
	}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		ifi := &Interface{
			Type:  binary.NativeEndian.Uint16(m.Data[2:4]),
			Index: binary.NativeEndian.Uint32(m.Data[4:8]),
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[unix.SizeofIfInfomsg:])
		if err != nil {
			return nil, err
		}
		for ad.Next() {
			switch ad.Type() {
			case unix.IFLA_IFNAME:
				ifi.Name = ad.String()
			case unix.IFLA_ADDRESS:
				copy(ifi.MAC[:], ad.Bytes())
			case unix.IFLA_LINKINFO:
				ad.Nested(func(nad *netlink.AttributeDecoder) error {
					for nad.Next() {
						if nad.Type() == unix.IFLA_INFO_KIND {
							ifi.Kind = nad.String()
						}
					}
					return nil
				})
			}
		}
		if err := ad.Err(); err != nil {
			return nil, err
		}
		return ifi, nil
	}
	return nil, fmt.Errorf("interface %q: no such device", name)
}

package nsctx

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Peer is the process at the other end of a Unix socket, with references
// to its namespaces taken so that they stay valid while the peer is served,
// whatever the peer does meanwhile (exits, moves, its pid gets reused).
type Peer struct {
	// PID, UID and GID are the peer's credentials at connect time
	// (SO_PEERCRED), as seen from this process's namespaces.
	PID int
	UID uint32
	GID uint32

	// CapEff is the peer's effective capability set (in its own user
	// namespace), read from /proc/PID/status.
	CapEff uint64

	// Net, Mnt and User are the peer's network, mount and user
	// namespaces.
	Net  *NetNS
	Mnt  *os.File
	User *UserNS

	pidfd int
}

// IdentifyPeer identifies the process connected to c: its credentials
// (SO_PEERCRED) and its namespaces. The pid read from SO_PEERCRED could
// name another process by the time /proc/PID/ns/* are opened (the peer
// exited and its pid was reused), so a pidfd is opened first and checked to
// be still alive after everything was read: a pidfd refers to one process
// for good, so while it is alive the pid cannot have been reused.
func IdentifyPeer(c *net.UnixConn) (*Peer, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var serr error
	if err := rc.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("peer credentials (SO_PEERCRED): %w", serr)
	}
	if cred.Pid <= 0 {
		return nil, fmt.Errorf("peer credentials: no pid (the peer lives in a pid namespace this process cannot see)")
	}
	p, err := OpenPeer(int(cred.Pid))
	if err != nil {
		return nil, err
	}
	p.UID, p.GID = cred.Uid, cred.Gid
	return p, nil
}

// OpenPeer takes references to the namespaces of process pid, with the
// pid-reuse race closed as IdentifyPeer describes. UID and GID are the
// process's effective ids from /proc/PID/status.
func OpenPeer(pid int) (p *Peer, err error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd of peer %d: %w", pid, err)
	}
	p = &Peer{PID: pid, pidfd: pidfd}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	proc := fmt.Sprintf("/proc/%d", pid)
	if p.Net, err = OpenNetNS(proc + "/ns/net"); err != nil {
		return nil, fmt.Errorf("peer %d: %w", pid, err)
	}
	if p.Mnt, err = os.Open(proc + "/ns/mnt"); err != nil {
		return nil, fmt.Errorf("peer %d: mount namespace: %w", pid, err)
	}
	uf, err := os.Open(proc + "/ns/user")
	if err != nil {
		return nil, fmt.Errorf("peer %d: user namespace: %w", pid, err)
	}
	if p.User, err = userNSFromFile(uf); err != nil {
		return nil, fmt.Errorf("peer %d: %w", pid, err)
	}
	st, err := readStatus(proc + "/status")
	if err != nil {
		return nil, fmt.Errorf("peer %d: %w", pid, err)
	}
	p.CapEff, p.UID, p.GID = st.capEff, st.euid, st.egid
	// Everything above was read through the pid; it described the peer
	// only if the peer still exists now.
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		return nil, fmt.Errorf("peer %d exited while being identified: %w", pid, err)
	}
	return p, nil
}

// Alive reports whether the peer process still exists.
func (p *Peer) Alive() bool {
	return unix.PidfdSendSignal(p.pidfd, 0, nil, 0) == nil
}

// Root returns the path under which the peer's file system (its mount
// namespace and root directory) is reachable from this process: cgroup and
// other paths the peer names are resolved below it.
func (p *Peer) Root() string { return fmt.Sprintf("/proc/%d/root", p.PID) }

// Close releases the peer's namespace references.
func (p *Peer) Close() error {
	if p.Net != nil {
		p.Net.Close()
	}
	if p.Mnt != nil {
		p.Mnt.Close()
	}
	if p.User != nil {
		p.User.Close()
	}
	if p.pidfd > 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
	return nil
}

type procStatus struct {
	capEff     uint64
	euid, egid uint32
}

func readStatus(path string) (*procStatus, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read status: %w", err)
	}
	defer f.Close()
	var st procStatus
	var seen int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		switch k {
		case "CapEff":
			if len(fields) != 1 {
				return nil, fmt.Errorf("%s: bad CapEff line %q", path, sc.Text())
			}
			if st.capEff, err = strconv.ParseUint(fields[0], 16, 64); err != nil {
				return nil, fmt.Errorf("%s: CapEff: %w", path, err)
			}
			seen++
		case "Uid", "Gid":
			// real, effective, saved, fs
			if len(fields) < 2 {
				return nil, fmt.Errorf("%s: bad %s line %q", path, k, sc.Text())
			}
			id, err := strconv.ParseUint(fields[1], 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, k, err)
			}
			if k == "Uid" {
				st.euid = uint32(id)
			} else {
				st.egid = uint32(id)
			}
			seen++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if seen != 3 {
		return nil, fmt.Errorf("%s: CapEff, Uid or Gid missing", path)
	}
	return &st, nil
}

// UserNS is a reference to a user namespace, held by an open file.
type UserNS struct {
	f   *os.File
	dev uint64
	ino uint64
}

func userNSFromFile(f *os.File) (*UserNS, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || t != unix.CLONE_NEWUSER {
		f.Close()
		return nil, fmt.Errorf("%s is not a user namespace", f.Name())
	}
	return &UserNS{f: f, dev: st.Dev, ino: st.Ino}, nil
}

// OpenUserNS opens the user namespace at path (/proc/PID/ns/user).
func OpenUserNS(path string) (*UserNS, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open user namespace: %w", err)
	}
	return userNSFromFile(f)
}

// Inode returns the namespace's inode number, its identity.
func (u *UserNS) Inode() uint64 { return u.ino }

// File returns the namespace file; it stays owned by u.
func (u *UserNS) File() *os.File { return u.f }

// Close releases the reference.
func (u *UserNS) Close() error { return u.f.Close() }

// Same reports whether u and o are the same namespace.
func (u *UserNS) Same(o *UserNS) bool { return u.dev == o.dev && u.ino == o.ino }

// OwnerUID returns the uid (in this process's user namespace) of the
// process that created u (NS_GET_OWNER_UID).
func (u *UserNS) OwnerUID() (uint32, error) {
	var uid uint32
	_, _, e := unix.Syscall(unix.SYS_IOCTL, u.f.Fd(), uintptr(unix.NS_GET_OWNER_UID), uintptr(unsafe.Pointer(&uid)))
	if e != 0 {
		return 0, fmt.Errorf("NS_GET_OWNER_UID: %w", e)
	}
	return uid, nil
}

// Parent returns the parent of u (NS_GET_PARENT), or nil for the initial
// user namespace and for namespaces whose parent lies outside this
// process's user namespace.
func (u *UserNS) Parent() (*UserNS, error) {
	fd, err := unix.IoctlRetInt(int(u.f.Fd()), unix.NS_GET_PARENT)
	if errors.Is(err, unix.EPERM) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("NS_GET_PARENT: %w", err)
	}
	return userNSFromFile(os.NewFile(uintptr(fd), "user namespace"))
}

// Ancestry returns u's chain of user namespaces from the root this process
// can see (the initial user namespace for a daemon on the host) down to u
// itself, which is the last element (a new reference; u stays open). The
// level of u is len(chain)-1. The caller closes every element.
func (u *UserNS) Ancestry() ([]*UserNS, error) {
	f, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", u.f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("reopen user namespace: %w", err)
	}
	cur, err := userNSFromFile(f)
	if err != nil {
		return nil, err
	}
	chain := []*UserNS{cur}
	for {
		p, err := cur.Parent()
		if err != nil {
			for _, c := range chain {
				c.Close()
			}
			return nil, err
		}
		if p == nil {
			break
		}
		chain = append(chain, p)
		cur = p
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain, nil
}

// OwningUserNS returns the user namespace that owns network namespace n
// (NS_GET_USERNS).
func (n *NetNS) OwningUserNS() (*UserNS, error) {
	fd, err := unix.IoctlRetInt(int(n.f.Fd()), unix.NS_GET_USERNS)
	if err != nil {
		return nil, fmt.Errorf("NS_GET_USERNS: %w", err)
	}
	return userNSFromFile(os.NewFile(uintptr(fd), "user namespace"))
}

// Cookie returns the network namespace's cookie (SO_NETNS_COOKIE of a
// socket made inside it): unlike the inode number, it is never reused.
func (n *NetNS) Cookie() (uint64, error) {
	var cookie uint64
	err := n.Do(func() error {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
		cookie = v
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	return cookie, nil
}

// Dup returns a second, independent reference to n.
func (n *NetNS) Dup() (*NetNS, error) {
	return OpenNetNS(fmt.Sprintf("/proc/self/fd/%d", n.f.Fd()))
}

// capNetAdmin is CAP_NET_ADMIN's bit in a capability set.
const capNetAdmin = 1 << unix.CAP_NET_ADMIN

// HasNetAdminOver reports whether p holds CAP_NET_ADMIN in user namespace
// target, by the kernel's rule (cap_capable): a process has a capability in
// its own user namespace when it is in its effective set, and every
// capability in the namespaces below its own; the owner of a user
// namespace (same effective uid) has every capability in it if it lives in
// that namespace's parent. Anything else — a sibling or an ancestor of the
// peer's namespace — gives nothing.
func (p *Peer) HasNetAdminOver(target *UserNS) (bool, error) {
	chain, err := target.Ancestry()
	if err != nil {
		return false, err
	}
	defer func() {
		for _, c := range chain {
			c.Close()
		}
	}()
	for i := len(chain) - 1; i >= 0; i-- {
		ns := chain[i]
		if ns.Same(p.User) {
			return p.CapEff&capNetAdmin != 0, nil
		}
		if i > 0 && chain[i-1].Same(p.User) {
			owner, err := ns.OwnerUID()
			if err != nil {
				return false, err
			}
			// The owner rule compares kuids; both are as seen from
			// this process.
			if owner == p.UID {
				return true, nil
			}
		}
	}
	return false, nil
}

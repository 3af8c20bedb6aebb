package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/internal/settimeouts"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// A session is a private, throw-away network namespace holding a copy of a
// requester's stored ruleset in the kernel's own nf_tables, and an
// nfnetlink socket into it. Client requests are sent there unchanged, so
// that the kernel validates them and produces the ACKs, errors and dumps a
// client would get from it; the result is dumped and compiled for the
// requester's namespace. Every interface of the requester's namespace is
// mirrored (same name and ifindex) so that device names resolve as there.
type session struct {
	ns *nsctx.NetNS
	fd int
	// timeouts keeps the deadlines of the elements of sets with
	// timeouts that the client's batch leaves alone.
	timeouts *settimeouts.Sync
}

// openSession prepares a session for target with the stored ruleset text
// (nft syntax, "" for none) loaded by the real nft.
func openSession(target *nsctx.NetNS, stored, nft string) (*session, error) {
	ns, err := nsctx.New()
	if err != nil {
		return nil, err
	}
	s := &session{ns: ns, fd: -1}
	err = ns.Do(func() error {
		if err := nftfile.MirrorInterfaces(target.File(), ns.File()); err != nil {
			return fmt.Errorf("interfaces of the requester's network namespace: %w", err)
		}
		if strings.TrimSpace(stored) != "" {
			if err := runNft(nft, stored); err != nil {
				return fmt.Errorf("replay stored ruleset: %w", err)
			}
		}
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("nfnetlink socket: %w", err)
		}
		s.fd = fd
		// Room for the ACK of every message of a large batch, and for
		// the batch itself (one message: 4 MiB for 10,000 rules).
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 64<<20)
		return unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	})
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *session) close() {
	if s.fd >= 0 {
		unix.Close(s.fd)
	}
	s.ns.Close()
}

// exchange sends one request datagram to the session's nf_tables and
// returns the reply datagrams. The kernel handles a request inside
// sendmsg, and produces each further part of a dump inside the recvmsg
// that consumed the previous one, so everything is there once a
// non-blocking receive finds the queue empty.
func (s *session) exchange(req []byte) ([][]byte, error) {
	if err := unix.Sendto(s.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send to nf_tables: %w", err)
	}
	var out [][]byte
	buf := make([]byte, 1<<20)
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return out, nil
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receive from nf_tables: %w", err)
		}
		out = append(out, append([]byte(nil), buf[:n]...))
	}
}

// dump returns the session's ruleset, decoded.
func (s *session) dump() (*nlmsg.Ruleset, error) {
	return nftfile.DumpNetNS(s.ns.File())
}

// runNft loads text with nft on the calling thread's network namespace.
func runNft(nft, text string) error {
	cmd := exec.Command(nft, "-f", "-")
	cmd.Stdin = strings.NewReader(text)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", nft, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

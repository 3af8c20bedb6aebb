// Package client connects netlink users to the bpfilter-nft daemon.
//
// The daemon speaks nf_tables' netlink wire format over a SOCK_SEQPACKET
// Unix socket, one netlink datagram per packet. A google/nftables program
// needs one change — how its Conn dials:
//
//	conn, closer, err := client.Nftables(client.SocketPath(""))
//	if err != nil { ... }
//	defer closer.Close()
//	// conn is a *nftables.Conn: AddTable, AddChain, AddRule, AddSet,
//	// Flush, ListTables, GetRules … work unchanged.
//
// Nftables plugs a Socket into the Conn through its WithTestDial option,
// the one way google/nftables v0.3.0 accepts a transport other than a
// kernel netlink socket. Dial returns a mdlayher/netlink Conn for code that
// builds its own messages.
//
// A Conn made this way must not be used by several goroutines at once
// (requests and replies share one stream); make one per goroutine.
package client

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"os"
	"sync"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// DefaultSocket and SocketEnv are the daemon's defaults (package daemon
// has the same constants).
const (
	DefaultSocket = "/run/bpfilter-nft.sock"
	SocketEnv     = "BPFILTER_NFT_SOCKET"
)

// SocketPath returns path if set, else $BPFILTER_NFT_SOCKET, else
// DefaultSocket.
func SocketPath(path string) string {
	if path != "" {
		return path
	}
	if env := os.Getenv(SocketEnv); env != "" {
		return env
	}
	return DefaultSocket
}

// Option configures a connection.
type Option func(*Socket)

// WithNetNS makes the connection act on the network namespace of f (an
// open /proc/PID/ns/net or /run/netns/NAME) instead of the caller's. The
// daemon still requires CAP_NET_ADMIN over that namespace's owning user
// namespace. f is sent with the first request and may be closed after it.
func WithNetNS(f *os.File) Option {
	return func(s *Socket) { s.netns = f }
}

// Socket is a netlink socket whose far end is the daemon. It implements
// the mdlayher/netlink Socket interface.
type Socket struct {
	c     *net.UnixConn
	netns *os.File

	mu   sync.Mutex
	sent bool
	buf  []byte
}

// maxBatch is the send buffer the client asks for: a batch of 10,000
// rules is about 4 MiB.
const maxBatch = 64 << 20

// DialSocket connects to the daemon at path.
func DialSocket(path string, opts ...Option) (*Socket, error) {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("bpfilter-nft daemon: %w", err)
	}
	// A batch travels as one datagram, which must fit the socket's send
	// buffer: room for large rulesets (the kernel's own limit still
	// applies; without CAP_NET_ADMIN the default stays).
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, maxBatch)
		})
	}
	s := &Socket{c: c, buf: make([]byte, 1<<20)}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Dial connects to the daemon at path and returns a netlink Conn on it.
func Dial(path string, opts ...Option) (*netlink.Conn, error) {
	s, err := DialSocket(path, opts...)
	if err != nil {
		return nil, err
	}
	return netlink.NewConn(s, 0), nil
}

// Nftables connects to the daemon at path and returns a google/nftables
// Conn whose every request goes there. Close the returned Closer when
// done.
func Nftables(path string, opts ...Option) (*nftables.Conn, io.Closer, error) {
	s, err := DialSocket(path, opts...)
	if err != nil {
		return nil, nil, err
	}
	c, err := nftables.New(nftables.WithTestDial(s.Func()))
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return c, s, nil
}

// Func adapts s to an nltest.Func, as google/nftables' WithTestDial
// takes: requests are sent as one datagram, and each receive returns the
// next reply datagram, blocking like a netlink socket.
func (s *Socket) Func() nltest.Func {
	return func(req []netlink.Message) ([]netlink.Message, error) {
		if len(req) > 0 {
			return nil, s.SendMessages(req)
		}
		return s.Receive()
	}
}

// Close closes the connection.
func (s *Socket) Close() error { return s.c.Close() }

// Send sends one message.
func (s *Socket) Send(m netlink.Message) error { return s.SendMessages([]netlink.Message{m}) }

// SendMessages sends msgs as one datagram, as one sendmsg on a netlink
// socket would.
func (s *Socket) SendMessages(msgs []netlink.Message) error {
	var b []byte
	for _, m := range msgs {
		m.Header.Length = uint32(16 + len(m.Data))
		mb, err := m.MarshalBinary()
		if err != nil {
			return err
		}
		b = append(b, mb...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var oob []byte
	if !s.sent && s.netns != nil {
		oob = unix.UnixRights(int(s.netns.Fd()))
	}
	if _, _, err := s.c.WriteMsgUnix(b, oob, nil); err != nil {
		return err
	}
	s.sent = true
	return nil
}

// Receive returns the messages of the next reply datagram.
func (s *Socket) Receive() ([]netlink.Message, error) {
	var out []netlink.Message
	for m, err := range s.ReceiveIter() {
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// ReceiveIter iterates over the messages of the next reply datagram.
func (s *Socket) ReceiveIter() iter.Seq2[netlink.Message, error] {
	return func(yield func(netlink.Message, error) bool) {
		n, _, flags, _, err := s.c.ReadMsgUnix(s.buf, nil)
		if err != nil {
			yield(netlink.Message{}, err)
			return
		}
		if n == 0 {
			yield(netlink.Message{}, io.EOF)
			return
		}
		if flags&unix.MSG_TRUNC != 0 {
			yield(netlink.Message{}, errors.New("bpfilter-nft daemon: reply larger than the receive buffer"))
			return
		}
		b := append([]byte(nil), s.buf[:n]...)
		for len(b) >= 16 {
			var m netlink.Message
			l := int(nativeUint32(b[:4]))
			if l < 16 || l > len(b) {
				yield(netlink.Message{}, fmt.Errorf("bpfilter-nft daemon: malformed reply (message length %d)", l))
				return
			}
			if err := m.UnmarshalBinary(b[:l]); err != nil {
				yield(netlink.Message{}, err)
				return
			}
			if !yield(m, nil) {
				return
			}
			al := (l + 3) &^ 3
			if al > len(b) {
				al = len(b)
			}
			b = b[al:]
		}
	}
}

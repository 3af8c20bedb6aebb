// Package daemon is bpfilter-nft's daemon: a Unix socket server that speaks
// the nftables netlink wire format and enforces what its clients send with
// eBPF, inside each client's own namespaces.
//
// # Protocol
//
// The socket is SOCK_SEQPACKET; each datagram carries exactly what one
// netlink sendmsg to the kernel's nf_tables, or one recvmsg from it,
// would: a client sends batches (NFNL_MSG_BATCH_BEGIN, NFT_MSG_NEW*/DEL*,
// NFNL_MSG_BATCH_END) and GET/dump requests, and receives the ACKs,
// errors (errno and the failing message's sequence number) and dump parts
// the kernel would send. Package daemon/client makes a google/nftables
// Conn or a mdlayher/netlink Conn talk to it.
//
// A client acts on the network namespace it lived in when it connected;
// it may name another by passing an open namespace file (SCM_RIGHTS) with
// a request. Requests of subsystem ControlSubsys are the daemon's own
// (object and namespace listings, see control.go).
//
// # How a request is served
//
// The requester is identified (nsctx.IdentifyPeer: SO_PEERCRED, a pidfd,
// its network, mount and user namespaces) and must hold CAP_NET_ADMIN over
// the user namespace owning the target network namespace; otherwise the
// request gets EPERM and an audit line is logged. Requests for one network
// namespace are served one at a time, others in parallel. The stored
// ruleset of the target (package state) is replayed by the real nft into
// a private, throw-away network namespace; the client's datagram is sent
// there unchanged over a real nfnetlink socket, so the kernel's own
// nf_tables validates it and produces the replies. After a batch the
// kernel accepted, the private ruleset is dumped, translated, compiled and
// applied (loader.Apply) into the target namespace; a rule that cannot be
// translated exactly fails the batch with EOPNOTSUPP on the message that
// added it, and nothing changes. Replies are sent only then.
//
// # Scoping and lifecycle
//
// See scope.go (IDs per user-namespace level, quotas), reap.go and
// watch.go (namespaces that disappear or that nothing can reach any more). On start the daemon rebuilds its registry
// from the pinned state (restore.go).
package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/fastedit"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/internal/settimeouts"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/state"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// DefaultSocket is where the daemon listens unless configured otherwise.
const DefaultSocket = "/run/bpfilter-nft.sock"

// SocketEnv names the environment variable that overrides DefaultSocket,
// for the daemon and its clients alike.
const SocketEnv = "BPFILTER_NFT_SOCKET"

// SocketPath returns the socket path: flag if set, else $BPFILTER_NFT_SOCKET,
// else DefaultSocket.
func SocketPath(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv(SocketEnv); env != "" {
		return env
	}
	return DefaultSocket
}

// Config configures a Server.
type Config struct {
	// Socket is the path to listen on (DefaultSocket if empty).
	Socket string
	// StateRoot is the bpffs directory of the pinned state
	// (state.DefaultRoot if empty).
	StateRoot string
	// Nft is the nft binary ("nft" in PATH if empty).
	Nft string
	// NetdevBackend is the program type of netdev ingress chains
	// (codegen.XDP or codegen.TC); nil chooses per device (see
	// pipeline.ChooseNetdevBackend).
	NetdevBackend *codegen.ProgramType
	// Limits are the per-user quotas.
	Limits Limits
	// WriteTimeout bounds sending a reply to a client that does not
	// read; the client is disconnected after it (default 5s).
	WriteTimeout time.Duration
	// Log receives operational and audit lines (default: stderr).
	Log *log.Logger
	// ReapInterval is how often namespaces are checked for being gone
	// (default 5s; see reap.go).
	ReapInterval time.Duration
}

// Server is a running daemon.
type Server struct {
	cfg  Config
	ln   *net.UnixListener
	reg  *Registry
	w    *watcher
	nft  string
	logf func(format string, args ...any)

	// decoded holds the decoded running ruleset of each namespace for
	// rule edits (see edit.go).
	decoded decodedCache
	// compiled serves the compiled programs of unchanged base chains
	// across loads.
	compiled *pipeline.CompileCache

	mu    sync.Mutex
	locks map[uint64]*nsLock // per target network namespace
	conns map[*net.UnixConn]struct{}
	wg    sync.WaitGroup
	done  chan struct{}
	once  sync.Once
}

// compileCacheSize bounds the programs the daemon keeps compiled: a few
// base chains per namespace for a few dozen namespaces.
const compileCacheSize = 256

type nsLock struct {
	mu   sync.Mutex
	refs int
}

// Listen rebuilds the daemon's state from its pins and starts listening;
// Serve then accepts clients.
func Listen(cfg Config) (*Server, error) {
	cfg.Socket = SocketPath(cfg.Socket)
	if cfg.StateRoot == "" {
		cfg.StateRoot = state.DefaultRoot
	}
	if cfg.ReapInterval == 0 {
		cfg.ReapInterval = 5 * time.Second
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = log.New(os.Stderr, "bpfilter-nft daemon: ", log.LstdFlags)
	}
	nft := cfg.Nft
	if nft == "" {
		nft = "nft"
	}
	s := &Server{cfg: cfg, reg: NewRegistry(cfg.Limits), nft: nft, logf: cfg.Log.Printf, compiled: pipeline.NewCompileCache(compileCacheSize),
		locks: map[uint64]*nsLock{}, conns: map[*net.UnixConn]struct{}{}, done: make(chan struct{})}
	w, err := newWatcher()
	if err != nil {
		return nil, err
	}
	s.w = w
	if err := s.restore(); err != nil {
		w.close()
		return nil, fmt.Errorf("rebuild state from %s: %w", cfg.StateRoot, err)
	}
	if fi, err := os.Lstat(cfg.Socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
		// A stale socket of a previous run; a live daemon answers.
		if c, err := net.Dial("unixpacket", cfg.Socket); err == nil {
			c.Close()
			w.close()
			return nil, fmt.Errorf("%s: another daemon is listening", cfg.Socket)
		}
		os.Remove(cfg.Socket)
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: cfg.Socket, Net: "unixpacket"})
	if err != nil {
		w.close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	// Anyone may connect, as anyone may open a netlink socket: every
	// request is authorised by the requester's capabilities.
	if err := os.Chmod(cfg.Socket, 0o666); err != nil {
		ln.Close()
		w.close()
		return nil, err
	}
	s.ln = ln
	go s.w.run(s.namespaceGone)
	go s.reap(cfg.ReapInterval)
	return s, nil
}

// Addr returns the socket path.
func (s *Server) Addr() string { return s.cfg.Socket }

// Registry returns the server's object registry.
func (s *Server) Registry() *Registry { return s.reg }

// Serve accepts clients until Close.
func (s *Server) Serve() error {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return err
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting, disconnects every client, waits for requests in
// progress and releases the watcher. Loaded rulesets stay.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() { err = s.close() })
	return err
}

func (s *Server) close() error {
	close(s.done)
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.w.close()
	return err
}

// conn is one client connection.
type conn struct {
	c      *net.UnixConn
	peer   *nsctx.Peer
	target *nsctx.NetNS // the peer's netns, or one it passed
}

func (s *Server) serveConn(c *net.UnixConn) {
	defer c.Close()
	peer, err := nsctx.IdentifyPeer(c)
	if err != nil {
		s.logf("client refused: %v", err)
		return
	}
	defer peer.Close()
	cn := &conn{c: c, peer: peer, target: peer.Net}
	defer func() {
		if cn.target != peer.Net {
			cn.target.Close()
		}
	}()
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		size, err := nextSize(c)
		if err != nil {
			return
		}
		buf := make([]byte, size)
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			return
		}
		if oobn > 0 {
			if err := cn.takeNetNS(oob[:oobn]); err != nil {
				s.logf("pid %d: %v", peer.PID, err)
				return
			}
		}
		replies := s.handle(cn, buf[:n])
		c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		for _, r := range replies {
			if _, err := c.Write(r); err != nil {
				s.logf("pid %d: reply not delivered, client disconnected: %v", peer.PID, err)
				return
			}
		}
	}
}

// nextSize waits for the next datagram and returns its size.
func nextSize(c *net.UnixConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), nil, unix.MSG_PEEK|unix.MSG_TRUNC|unix.MSG_DONTWAIT)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 {
		return 0, errors.New("connection closed")
	}
	return n, nil
}

// takeNetNS makes a network namespace file passed with SCM_RIGHTS the
// connection's target.
func (cn *conn) takeNetNS(oob []byte) error {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("control message: %w", err)
	}
	var fds []int
	for _, cm := range cmsgs {
		f, err := unix.ParseUnixRights(&cm)
		if err == nil {
			fds = append(fds, f...)
		}
	}
	if len(fds) == 0 {
		return nil
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	ns, err := nsctx.FromFile(os.NewFile(uintptr(fds[0]), "passed namespace"))
	if err != nil {
		return err
	}
	if t, err := unix.IoctlRetInt(int(ns.File().Fd()), unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNET {
		ns.Close()
		return fmt.Errorf("passed file is not a network namespace")
	}
	if cn.target != cn.peer.Net {
		cn.target.Close()
	}
	cn.target = ns
	return nil
}

// requestError is a refusal to relay as an NLMSG_ERROR.
type requestError struct {
	errno unix.Errno
	msg   string
}

func (e *requestError) Error() string { return e.msg }

// handle serves one request datagram and returns the reply datagrams.
func (s *Server) handle(cn *conn, dgram []byte) [][]byte {
	msgs, err := parseDatagram(dgram)
	if err != nil || len(msgs) == 0 {
		s.logf("pid %d: malformed request: %v", cn.peer.PID, err)
		return nil
	}
	replies, err := s.serve(cn, msgs, dgram)
	if err != nil {
		s.logf("pid %d: request refused: %v", cn.peer.PID, err)
		replies = errorReplies(msgs, err)
	}
	return rewritePID(replies, msgs[0].Header.PID)
}

func errnoOf(err error) unix.Errno {
	var re *requestError
	if errors.As(err, &re) {
		return re.errno
	}
	var se *ScopeError
	if errors.As(err, &se) {
		return se.Errno()
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return unix.EIO
}

func mustMarshal(m ...netlink.Message) []byte {
	b, err := marshalDatagram(m)
	if err != nil {
		panic(err)
	}
	return b
}

// rewritePID sets the port ID of every reply to the client's, as the
// kernel addresses replies to the requesting socket.
func rewritePID(dgrams [][]byte, pid uint32) [][]byte {
	for i, d := range dgrams {
		msgs, err := parseDatagram(d)
		if err != nil {
			continue
		}
		for j := range msgs {
			msgs[j].Header.PID = pid
		}
		if b, err := marshalDatagram(msgs); err == nil {
			dgrams[i] = b
		}
	}
	return dgrams
}

// target describes the network namespace a request acts on.
type target struct {
	ns     *nsctx.NetNS
	path   []uint64 // owning user namespace chain, root first
	cookie uint64
}

// authorise checks that the peer may act on the network namespace ns:
// CAP_NET_ADMIN over its owning user namespace, and a nesting level
// within MaxLevel.
func (s *Server) authorise(cn *conn, op string) (*target, error) {
	owner, err := cn.target.OwningUserNS()
	if err != nil {
		return nil, err
	}
	defer owner.Close()
	ok, err := cn.peer.HasNetAdminOver(owner)
	if err != nil {
		return nil, err
	}
	if !ok {
		s.logf("audit: denied: pid=%d uid=%d userns=%d op=%s netns=%d: no CAP_NET_ADMIN over its owning user namespace %d",
			cn.peer.PID, cn.peer.UID, cn.peer.User.Inode(), op, cn.target.Inode(), owner.Inode())
		return nil, &requestError{errno: unix.EPERM, msg: fmt.Sprintf("network namespace %d: CAP_NET_ADMIN over its owning user namespace is required", cn.target.Inode())}
	}
	chain, err := owner.Ancestry()
	if err != nil {
		return nil, err
	}
	t := &target{ns: cn.target}
	for _, u := range chain {
		t.path = append(t.path, u.Inode())
		u.Close()
	}
	if err := CheckLevel(t.path); err != nil {
		s.logf("audit: refused: pid=%d uid=%d op=%s netns=%d: %v", cn.peer.PID, cn.peer.UID, op, cn.target.Inode(), err)
		return nil, err
	}
	return t, nil
}

// peerPath is the peer's own user namespace chain.
func peerPath(p *nsctx.Peer) ([]uint64, error) {
	chain, err := p.User.Ancestry()
	if err != nil {
		return nil, err
	}
	var path []uint64
	for _, u := range chain {
		path = append(path, u.Inode())
		u.Close()
	}
	return path, nil
}

// openState authorises cn for op and opens the state directory of its
// namespace, holding the daemon's lock of the namespace and the state
// directory's lock until release is called.
func (s *Server) openState(cn *conn, op string) (t *target, st *state.Dir, release func(), err error) {
	t, err = s.authorise(cn, op)
	if err != nil {
		return nil, nil, nil, err
	}
	unlock := s.lockNS(t.ns.Inode())
	st, err = state.Open(t.ns, state.Options{Root: s.cfg.StateRoot})
	if err != nil {
		unlock()
		return nil, nil, nil, err
	}
	unlockState, err := st.Lock()
	if err != nil {
		unlock()
		return nil, nil, nil, err
	}
	return t, st, func() { unlockState(); unlock() }, nil
}

func (s *Server) lockNS(ino uint64) func() {
	s.mu.Lock()
	l := s.locks[ino]
	if l == nil {
		l = &nsLock{}
		s.locks[ino] = l
	}
	l.refs++
	s.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(s.locks, ino)
		}
		s.mu.Unlock()
	}
}

// serve dispatches a request.
func (s *Server) serve(cn *conn, msgs []netlink.Message, dgram []byte) ([][]byte, error) {
	if subsys(msgs[0].Header.Type) == ControlSubsys {
		return s.control(cn, msgs[0])
	}
	batch, change := false, false
	for _, m := range msgs {
		if isBatchBegin(m) {
			batch = true
		}
		if isNftables(m) && changes(msgType(m.Header.Type)) {
			change = true
		}
	}
	op := "read"
	if batch && change {
		op = "change"
	}
	wantID, dgram, err := batchRulesetID(msgs, dgram)
	if err != nil {
		return nil, &requestError{errno: unix.EINVAL, msg: err.Error()}
	}
	// The state lock is held from reading the stored ruleset to the
	// end of the change: a direct CLI writer of the same namespace in
	// between would otherwise be overwritten.
	t, st, release, err := s.openState(cn, op)
	if err != nil {
		return nil, err
	}
	defer release()
	snap, err := loader.Load(st)
	if err != nil {
		return nil, err
	}
	if wantID != 0 && wantID != RulesetID(snap.Manifest.Ruleset) {
		return nil, &requestError{errno: unix.ERESTART, msg: "the stored ruleset changed since the batch was computed; fetch it again and retry"}
	}
	// Sets with timeouts: replay the elements as their maps hold them.
	stored, keep, err := settimeouts.Stored(st, snap.Manifest.Ruleset, t.ns.File())
	if err != nil {
		return nil, err
	}
	sess, err := openSession(t.ns, stored, s.nft)
	if err != nil {
		return nil, err
	}
	defer sess.close()
	sess.timeouts = keep
	replies, err := sess.exchange(dgram)
	if err != nil {
		return nil, err
	}
	if !batch || !change {
		if len(snap.Manifest.Points) == 0 && snap.Manifest.Ruleset == "" {
			// Nothing stored: do not leave an empty directory behind.
			if names, err := st.Entries(); err == nil && len(names) == 0 {
				st.Delete()
			}
		}
		return replies, nil
	}
	for _, r := range replies {
		rm, _ := parseDatagram(r)
		for _, m := range rm {
			if e, ok := replyErrno(m); ok && e != 0 {
				return replies, nil // the kernel refused: nothing changes
			}
		}
	}
	if err := s.commit(cn, t, st, sess, msgs); err != nil {
		return refuse(msgs, replies, err), nil
	}
	return replies, nil
}

// commit translates the session's ruleset and applies it to the target.
func (s *Server) commit(cn *conn, t *target, st *state.Dir, sess *session, msgs []netlink.Message) error {
	rs, err := sess.dump()
	if err != nil {
		return &requestError{errno: unix.EOPNOTSUPP, msg: err.Error()}
	}
	if len(rs.Tables) == 0 {
		if err := loader.FlushLocked(st); err != nil {
			return err
		}
		if err := loader.ReleaseConntrack(t.ns); err != nil {
			return err
		}
		s.reg.Drop(t.ns.Inode())
		s.decoded.drop(t.ns.Inode())
		s.logf("pid %d: netns %d: ruleset flushed", cn.peer.PID, t.ns.Inode())
		return nil
	}
	return s.applyDecoded(cn, t, st, rs, sess.timeouts)
}

// applyDecoded translates decoded nf_tables objects and applies them to
// the target; keep, when not nil, keeps element deadlines of sets with
// timeouts. The caller holds the namespace's and the state's locks.
func (s *Server) applyDecoded(cn *conn, t *target, st *state.Dir, rs *nlmsg.Ruleset, keep *settimeouts.Sync) error {
	return s.applyDecodedWith(cn, t, st, rs, keep, func(stored string) {
		s.decoded.save(st, t.ns.Inode(), stored, rs, s.logf)
	})
}

// applyDecodedWith is applyDecoded that records the decoded ruleset with
// record once it is applied (stored is its text).
func (s *Server) applyDecodedWith(cn *conn, t *target, st *state.Dir, rs *nlmsg.Ruleset, keep *settimeouts.Sync, record func(stored string)) error {
	res, err := pipeline.Translate(rs, pipeline.Options{NetNS: t.ns, NetdevBackend: s.cfg.NetdevBackend, Cache: s.compiled})
	if err != nil {
		return &requestError{errno: unix.EOPNOTSUPP, msg: err.Error()}
	}
	keep.Keep(res.Ruleset)
	if err := res.Err(); err != nil {
		return &refusal{rule: firstRefused(res), msg: "nothing applied; these rules cannot be translated exactly: " + err.Error()}
	}
	if err := s.reg.Reserve(t.path, t.ns.Inode(), cn.peer.UID, estimate(res)); err != nil {
		s.logf("audit: refused: pid=%d uid=%d netns=%d: %v", cn.peer.PID, cn.peer.UID, t.ns.Inode(), err)
		return err
	}
	var stored string
	var man *state.Manifest
	if err := loader.Apply(t.ns, st, res, loader.Options{Locked: true, Stored: &stored, Keep: fastedit.Entries, Committed: &man}); err != nil {
		s.decoded.drop(t.ns.Inode())
		return err
	}
	record(stored)
	if t.cookie == 0 {
		t.cookie, _ = t.ns.Cookie()
	}
	s.reg.Set(t.path, t.ns.Inode(), t.cookie, cn.peer.UID, man, nil)
	if err := s.saveRecord(st, t); err != nil {
		s.logf("netns %d: %v", t.ns.Inode(), err)
	}
	if err := s.w.watch(t.ns); err != nil {
		s.logf("%v", err)
	}
	return nil
}

// errorReplies answers a request the daemon refuses before or instead of
// the kernel as the kernel answers a failing request: a lone request gets
// one error; in a batch, as nfnetlink_rcv_batch does, the message at fault
// gets the error and every other message asking for one gets its ACK — a
// client waits for exactly those. EPERM and ERESTART are the exceptions:
// the kernel checks CAP_NET_ADMIN and the generation ID once per batch and
// answers with a single error.
func errorReplies(msgs []netlink.Message, err error) [][]byte {
	var re *requestError
	batch := isBatchBegin(msgs[0])
	if !batch || (errors.As(err, &re) && (re.errno == unix.EPERM || re.errno == unix.ERESTART)) {
		return [][]byte{mustMarshal(errorMessage(msgs[0], errnoOf(err), err.Error()))}
	}
	return refuse(msgs, batchAcks(msgs), err)
}

// batchAcks returns the ACKs the kernel sends for a batch it accepted.
func batchAcks(msgs []netlink.Message) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		if isNftables(m) && m.Header.Flags&netlink.Acknowledge != 0 {
			out = append(out, mustMarshal(errorMessage(m, 0, "")))
		}
	}
	return out
}

// refusal is a translation refusal, attributed to the message that added
// the first refused rule.
type refusal struct {
	rule *pipeline.RuleReport
	msg  string
}

func (r *refusal) Error() string { return r.msg }

func firstRefused(res *pipeline.Result) *pipeline.RuleReport {
	for i := range res.Rules {
		if res.Rules[i].Status == pipeline.StatusUnsupported {
			return &res.Rules[i]
		}
	}
	return nil
}

// refuse turns the kernel's replies to an accepted batch into the replies
// to a refused one: the message responsible (the last NEWRULE of the
// refused rule's chain, or else the batch's last change) gets the error
// instead of its ACK.
func refuse(msgs []netlink.Message, replies [][]byte, err error) [][]byte {
	errno, text := errnoOf(err), err.Error()
	var culprit *netlink.Message
	var rf *refusal
	if errors.As(err, &rf) {
		errno = unix.EOPNOTSUPP
		for i := range msgs {
			m := &msgs[i]
			if !isNftables(*m) || msgType(m.Header.Type) != unix.NFT_MSG_NEWRULE || rf.rule == nil {
				continue
			}
			r, derr := nlmsg.DecodeRule(*m)
			if derr == nil && r.Table == rf.rule.Table && r.Chain == rf.rule.Chain && r.Family.String() == rf.rule.Family.String() {
				culprit = m
			}
		}
	}
	var re *requestError
	if errors.As(err, &re) {
		errno = re.errno
	}
	if culprit == nil {
		for i := range msgs {
			if isNftables(msgs[i]) && changes(msgType(msgs[i].Header.Type)) {
				culprit = &msgs[i]
			}
		}
	}
	if culprit == nil {
		culprit = &msgs[0]
	}
	errMsg := mustMarshal(errorMessage(*culprit, errno, text))
	out := make([][]byte, 0, len(replies)+1)
	replaced := false
	for _, r := range replies {
		rm, _ := parseDatagram(r)
		if len(rm) == 1 && rm[0].Header.Type == netlink.Error && rm[0].Header.Sequence == culprit.Header.Sequence {
			out = append(out, errMsg)
			replaced = true
			continue
		}
		out = append(out, r)
	}
	if !replaced {
		out = append(out, errMsg)
	}
	return out
}

// record is what the daemon keeps next to a namespace's pins (entry
// RecordName) to rebuild its registry after a restart.
type record struct {
	NetNS  uint64              `json:"netns"`
	Cookie uint64              `json:"cookie"`
	UID    uint32              `json:"uid"`
	UserNS []uint64            `json:"userns"`
	IDs    map[string][]uint32 `json:"ids"`
}

// RecordName is the state entry holding the daemon's record.
const RecordName = "daemon"

func (s *Server) saveRecord(st *state.Dir, t *target) error {
	r := record{NetNS: t.ns.Inode(), Cookie: t.cookie, UserNS: t.path, IDs: s.reg.IDs(t.ns.Inode())}
	s.reg.mu.Lock()
	if e := s.reg.nets[t.ns.Inode()]; e != nil {
		r.UID = e.uid
	}
	s.reg.mu.Unlock()
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return st.WriteBlob(RecordName, b)
}

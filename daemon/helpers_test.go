package daemon

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/internal/bpffstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

var testCounter atomic.Uint64

// syncBuffer collects log lines from concurrent goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testServer struct {
	*Server
	root string
	log  *syncBuffer
}

// startServer runs a daemon on a socket and bpffs of the test's own.
func startServer(t *testing.T, limits Limits) *testServer {
	t.Helper()
	privtest.Require(t)
	root := bpffstest.Mount(t)
	return startServerAt(t, root, limits)
}

func startServerAt(t *testing.T, root string, limits Limits) *testServer {
	t.Helper()
	sock := filepath.Join(os.TempDir(), fmt.Sprintf("bpfnft-test-%d-%d.sock", os.Getpid(), testCounter.Add(1)))
	buf := &syncBuffer{}
	var w io.Writer = buf
	if os.Getenv("BPFNFT_DAEMON_LOG") != "" {
		w = io.MultiWriter(buf, os.Stderr)
	}
	s, err := Listen(Config{Socket: sock, StateRoot: filepath.Join(root, "state"), Limits: limits, Log: log.New(w, "", 0), ReapInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve()
	}()
	ts := &testServer{Server: s, root: root, log: buf}
	t.Cleanup(func() {
		s.Close()
		<-done
		os.Remove(sock)
		if t.Failed() {
			t.Logf("daemon log:\n%s", buf.String())
		}
	})
	return ts
}

// scratchNetNS makes an empty network namespace for the test.
func scratchNetNS(t *testing.T) *nsctx.NetNS {
	t.Helper()
	ns, err := nsctx.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

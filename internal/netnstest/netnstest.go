// Package netnstest creates scratch network namespaces for tests.
//
// A namespace is unnamed: it lives as long as its file (and anything inside
// it, such as a process or a socket) holds it, so nothing is left in
// /run/netns when a test dies. Code runs inside a namespace on a locked OS
// thread that is switched back afterwards, or, when switching back fails,
// is left locked so that the Go runtime kills it instead of reusing it.
package netnstest

import (
	"bytes"
	"fmt"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"os"
	"os/exec"
	"strings"
)

// NS is a network namespace held open by a file descriptor.
type NS struct {
	ns *nsctx.NetNS
}

// New creates a new, empty network namespace (it holds only a loopback
// device, which is down).
func New() (*NS, error) {
	ns, err := nsctx.New()
	if err != nil {
		return nil, err
	}
	return &NS{ns: ns}, nil
}

// File returns the namespace's file (for netlink.Config.NetNS, setns or
// IFLA_NET_NS_FD). It stays owned by n.
func (n *NS) File() *os.File { return n.ns.File() }

// Close releases n's reference to the namespace. The namespace itself goes
// away once nothing else refers to it.
func (n *NS) Close() error { return n.ns.Close() }

// Do runs fn on an OS thread switched into n. Processes that fn starts
// (os/exec) inherit the namespace; sockets it opens belong to it for their
// whole life, whichever thread uses them later.
func (n *NS) Do(fn func() error) error { return n.ns.Do(fn) }

// Run runs a command inside n with stdin as its input and returns its
// standard output. The error names the command and carries its standard
// error.
func (n *NS) Run(stdin string, name string, args ...string) (string, error) {
	return n.RunFiles(stdin, nil, name, args...)
}

// RunFiles is Run with extra open files for the command: files[i] becomes
// its descriptor 3+i (for example to name another namespace as
// /proc/self/fd/3).
func (n *NS) RunFiles(stdin string, files []*os.File, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	err := n.Do(func() error {
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.ExtraFiles = files
		return cmd.Run()
	})
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Sysctl writes value to the sysctl key (dotted, as in sysctl(8)) inside n.
func (n *NS) Sysctl(key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	return n.Do(func() error {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
		}
		return nil
	})
}

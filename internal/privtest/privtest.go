// Package privtest marks tests that need root and a BPF-capable kernel.
//
// Require skips the test, with a reason that starts with "privileged:",
// when the process cannot run it. When it can, and the environment
// variable BPFNFT_PRIV_LOG names a file, the test's name is appended to that
// file: CI counts the lines to prove the privileged tests really ran.
package privtest

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// LogEnv is the environment variable naming the file privileged tests are
// recorded in.
const LogEnv = "BPFNFT_PRIV_LOG"

var logMu sync.Mutex

// Require skips t unless the process is root and the kernel has BPF
// (/sys/kernel/btf/vmlinux is present); otherwise it records t as run.
func Require(t testing.TB) {
	t.Helper()
	if reason := Missing(); reason != "" {
		t.Skip("privileged: " + reason)
	}
	record(t.Name())
}

// Missing returns why privileged tests cannot run here, or "".
func Missing() string {
	if os.Geteuid() != 0 {
		return "needs root"
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return "kernel has no BTF at /sys/kernel/btf/vmlinux"
	}
	return ""
}

func record(name string) {
	path := os.Getenv(LogEnv)
	if path == "" {
		return
	}
	logMu.Lock()
	defer logMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "privtest: %v\n", err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, name)
}

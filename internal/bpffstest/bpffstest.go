// Package bpffstest gives tests a bpffs of their own.
package bpffstest

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

var counter atomic.Uint64

// Mount mounts a fresh bpffs instance on a new directory named after the
// process and a counter (bpfnft-test-<pid>-<n> in the temporary directory)
// and returns its path. The mount, and every pin in it, is removed when the
// test ends.
func Mount(t testing.TB) string {
	t.Helper()
	dir := Dir(t)
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Dir creates an empty directory named like Mount's and removes it when
// the test ends.
func Dir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("bpfnft-test-%d-%d", os.Getpid(), counter.Add(1)))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

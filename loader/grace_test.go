package loader

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestDropsProgramArrays(t *testing.T) {
	names := []string{"state", "link-3-x", "prog-3-x", "array-3-x", "tail-3-x", "set-a"}
	for _, tc := range []struct {
		name string
		keep []string
		want bool
	}{
		{"all kept", []string{"state", "link-3-x", "prog-3-x", "array-3-x", "tail-3-x", "set-a"}, false},
		{"dispatcher array goes", []string{"state", "link-3-x", "prog-3-x", "tail-3-x", "set-a"}, true},
		{"parts array goes", []string{"state", "link-3-x", "prog-3-x", "array-3-x", "set-a"}, true},
		{"only programs and sets go", []string{"state", "link-3-x", "array-3-x", "tail-3-x"}, false},
	} {
		keep := map[string]bool{}
		for _, n := range tc.keep {
			keep[n] = true
		}
		if got := dropsProgramArrays(names, keep); got != tc.want {
			t.Errorf("%s: dropsProgramArrays = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestMembarrierGlobal checks that the kernel answers the grace-period wait
// itself rather than leaving it to the fallback sleep.
func TestMembarrierGlobal(t *testing.T) {
	const queryCmd = 0 // MEMBARRIER_CMD_QUERY: the supported commands
	r, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, queryCmd, 0, 0)
	if errno != 0 {
		t.Skipf("membarrier: %v", errno)
	}
	if r&1 == 0 {
		t.Skipf("membarrier: MEMBARRIER_CMD_GLOBAL not supported (commands %#x)", r)
	}
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, 1, 0, 0); errno != 0 {
		t.Fatalf("membarrier(MEMBARRIER_CMD_GLOBAL): %v", errno)
	}
}

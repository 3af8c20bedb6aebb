package loader

import (
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Program arrays and running programs.
//
// The kernel empties a program array as soon as the last pin or file
// descriptor of it goes, even while a program that tail-calls through it
// still runs: the netfilter dispatchers' arrays ("array-…") and the arrays
// of chains split into parts ("tail-…"). A reload switches every attach
// point first and unpins the previous generation's arrays afterwards; a
// packet that entered an old program just before the switch may still be
// on its way through it, and its tail call would find an empty slot and
// drop the packet. Programs at every hook run inside an RCU read-side
// critical section, so once a grace period has passed after the switch no
// packet is left in an old program, and its arrays can go.

// dropsProgramArrays reports whether removing the entries of names that
// keep does not name removes a program array.
func dropsProgramArrays(names []string, keep map[string]bool) bool {
	for _, n := range names {
		if !keep[n] && (strings.HasPrefix(n, "array-") || strings.HasPrefix(n, "tail-")) {
			return true
		}
	}
	return false
}

// waitForRunningPrograms returns once every program invocation that began
// before the call has ended: membarrier(MEMBARRIER_CMD_GLOBAL) waits for an
// RCU grace period (synchronize_rcu). Where the kernel refuses that command
// (nohz_full CPUs), it waits 100 ms instead, far longer than a packet
// spends in a filter program.
func waitForRunningPrograms() {
	const membarrierCmdGlobal = 1 // MEMBARRIER_CMD_GLOBAL
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); errno != 0 {
		time.Sleep(100 * time.Millisecond)
	}
}

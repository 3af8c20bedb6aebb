package codegen

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// Sets with timeouts. The map of a set whose elements can expire (see
// ir.Set.HasTimeouts) holds, per key, a TimeoutValue: the element's
// deadline on the CLOCK_MONOTONIC clock, which bpf_ktime_get_ns reads,
// and its timeout as nft lists it. The kernel's nf_tables keeps the
// deadline in jiffies (get_jiffies_64() + timeout), which advance with the
// monotonic clock and, like it, stop while the machine is suspended
// (jiffies are brought forward from the monotonic clock after a resume,
// not from the boot-time clock); bpf_ktime_get_boot_ns, which counts
// suspended time, would expire elements the kernel still holds. A lookup
// whose element's deadline has passed (now >= deadline, as
// nft_set_elem_expired compares) does not match; a deadline of 0 never
// passes.

// timeoutValueSize is the size of a TimeoutValue in a set map.
const timeoutValueSize = 16

// TimeoutValue is the value of an element in the map of a set with
// timeouts: Deadline in nanoseconds of CLOCK_MONOTONIC (0: never
// expires) and Timeout in milliseconds (0: none), in host byte order.
type TimeoutValue struct {
	Deadline uint64
	Timeout  uint64
}

// MarshalBinary encodes v as the map stores it.
func (v TimeoutValue) MarshalBinary() ([]byte, error) { return v.bytes(), nil }

func (v TimeoutValue) bytes() []byte {
	b := make([]byte, timeoutValueSize)
	binary.NativeEndian.PutUint64(b, v.Deadline)
	binary.NativeEndian.PutUint64(b[8:], v.Timeout)
	return b
}

// ParseTimeoutValue decodes a value read from the map of a set with
// timeouts.
func ParseTimeoutValue(b []byte) (TimeoutValue, error) {
	if len(b) != timeoutValueSize {
		return TimeoutValue{}, fmt.Errorf("timeout value of %d bytes, want %d", len(b), timeoutValueSize)
	}
	return TimeoutValue{Deadline: binary.NativeEndian.Uint64(b), Timeout: binary.NativeEndian.Uint64(b[8:])}, nil
}

// Expired reports whether an element with value v has expired at now
// (nanoseconds of CLOCK_MONOTONIC).
func (v TimeoutValue) Expired(now uint64) bool { return v.Deadline != 0 && now >= v.Deadline }

// MonotonicNow returns the CLOCK_MONOTONIC time in nanoseconds, the clock
// of bpf_ktime_get_ns and of the deadlines in set maps.
func MonotonicNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err))
	}
	return uint64(ts.Sec)*1e9 + uint64(ts.Nsec)
}

// TimeoutOf returns the map value of element e of s written at now: the
// element's Deadline when it has one (a live element keeps its map's
// deadline), otherwise now plus the time it has left (Expires, or its
// timeout when the kernel reported no expiry).
func TimeoutOf(s *ir.Set, e ir.SetElement, now uint64) TimeoutValue {
	v := TimeoutValue{Timeout: s.ElementTimeout(e)}
	switch {
	case e.Deadline != 0:
		v.Deadline = e.Deadline
	case e.Expires != 0:
		v.Deadline = now + e.Expires*1e6
	case e.Timeout != 0:
		v.Deadline = now + e.Timeout*1e6
	}
	return v
}

func timeoutValue(s *ir.Set, e ir.SetElement, now uint64) []byte {
	return TimeoutOf(s, e, now).bytes()
}

// timeoutInMap reports whether set s, whose elements can expire, is
// backed by a map: named (or large anonymous) sets of exact keys, not
// maps, intervals or dynamic sets.
func timeoutInMap(s *ir.Set) bool {
	return s.Flags&(ir.SetMap|ir.SetObject|ir.SetEval|ir.SetInterval) == 0
}

// expiryCheck follows a successful lookup in the map of s (R0 points at
// the value): for a set with timeouts it jumps to miss when the element
// has expired. It clobbers R0 to R5.
func (g *gen) expiryCheck(s *ir.Set, miss string) {
	if !s.HasTimeouts() {
		return
	}
	live := g.b.newLabel("elem_live")
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, live),
		asm.StoreMem(asm.R10, slotKey, asm.R1, asm.DWord),
		asm.FnKtimeGetNs.Call(),
		asm.LoadMem(asm.R1, asm.R10, slotKey, asm.DWord),
		asm.JGE.Reg(asm.R0, asm.R1, miss),
	)
	g.b.label(live)
}

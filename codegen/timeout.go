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
// and its timeout as nft lists it; in a verdict or data map the element's
// verdict index or data follows it. Every prefix of a range in an
// interval set's LPM trie carries its element's value. The kernel's nf_tables keeps the
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

// TimeoutPart returns the TimeoutValue bytes at the start of the value b
// of an element of a set with timeouts (a map's element data follows
// them), or b itself when it is shorter.
func TimeoutPart(b []byte) []byte {
	if len(b) > timeoutValueSize {
		return b[:timeoutValueSize]
	}
	return b
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
// backed by a map: a hash map or LPM trie whose values start with a
// TimeoutValue — sets, verdict maps and data maps of exact keys or (one
// field) intervals (range tables, for concatenated intervals, hold it
// after each element's bounds and data: see RangeTimeout). Not object
// maps or dynamic sets.
func timeoutInMap(s *ir.Set) bool {
	if s.Flags&(ir.SetObject|ir.SetEval) != 0 {
		return false
	}
	return s.Flags&ir.SetMap == 0 || s.IsVerdictMap() || isDataMap(s)
}

// slotSetValue holds the pointer to a set element's value while its
// deadline is checked (below slotSetMap).
const slotSetValue = -432

// expiryCheck follows a successful lookup in the map of s (R0 points at
// the value): for a set with timeouts it jumps to miss when the element
// has expired, and otherwise falls through with R0 still pointing at the
// value. It clobbers R1 to R5.
func (g *gen) expiryCheck(s *ir.Set, miss string) {
	if !s.HasTimeouts() {
		return
	}
	live := g.b.newLabel("elem_live")
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, live),
		asm.StoreMem(asm.R10, slotSetValue, asm.R0, asm.DWord),
		asm.FnKtimeGetNs.Call(),
		asm.LoadMem(asm.R1, asm.R10, slotSetValue, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, 0, asm.DWord),
		asm.JGE.Reg(asm.R0, asm.R1, miss),
		asm.LoadMem(asm.R0, asm.R10, slotSetValue, asm.DWord),
	)
	g.b.label(live)
}

package translate

import "github.com/bpfilter-nft/bpfilter-nft/ir"

// timeoutSupported reports why set s cannot have expiring elements, or nil
// when it can (or has no timeouts). Expiring elements are supported in
// named sets, verdict maps and data maps of exact keys (one field or a
// concatenation) and of intervals: hash maps, LPM tries and range tables
// whose values hold each element's deadline.
func timeoutSupported(s *ir.Set) error {
	if !s.HasTimeouts() {
		return nil
	}
	switch {
	case s.Anonymous():
		// nft 1.0.6 sends them; the kernel refuses an element timeout
		// in a set without the timeout flag, which anonymous sets
		// never have.
		return unsupported("anonymous sets with timeouts (%s) are not supported: the kernel refuses element timeouts in anonymous sets (EINVAL)", setRef(s))
	case s.Flags&ir.SetObject != 0:
		return unsupported("timeouts in object maps (%s) are not supported", setRef(s))
	case s.Flags&ir.SetEval != 0:
		return unsupported("dynamic sets (%s, updated from the packet path) are not supported", setRef(s))
	}
	return nil
}

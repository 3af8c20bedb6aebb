package translate

import "github.com/bpfilter-nft/bpfilter-nft/ir"

// timeoutSupported reports why set s cannot have expiring elements, or nil
// when it can (or has no timeouts). Expiring elements are supported in
// named sets of exact keys (one field or a concatenation), which are hash
// maps whose values hold each element's deadline.
func timeoutSupported(s *ir.Set) error {
	if !s.HasTimeouts() {
		return nil
	}
	switch {
	case s.Anonymous():
		return unsupported("anonymous sets with timeouts (%s) are not supported", setRef(s))
	case s.Flags&ir.SetInterval != 0:
		return unsupported("timeouts in interval sets (%s: LPM tries and range tables hold no per-element deadline) are not supported", setRef(s))
	case s.Flags&(ir.SetMap|ir.SetObject) != 0:
		return unsupported("timeouts in maps (%s) are not supported, only in sets", setRef(s))
	case s.Flags&ir.SetEval != 0:
		return unsupported("dynamic sets (%s, updated from the packet path) are not supported", setRef(s))
	}
	return nil
}

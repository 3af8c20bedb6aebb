package ir

import (
	"fmt"
	"strings"
)

// HasTimeouts reports whether the elements of s can expire: the set has
// the timeout flag (nft sets it for "flags timeout" and for a default
// "timeout").
func (s *Set) HasTimeouts() bool { return s.Flags&SetTimeout != 0 || s.Timeout != 0 }

// ElementTimeout returns the timeout of element e of s in milliseconds
// as nft lists it: the element's own, or the set's default for an element
// that expires but reported none (the kernel omits a timeout equal to the
// set's); 0 for an element that never expires.
func (s *Set) ElementTimeout(e SetElement) uint64 {
	if e.Timeout != 0 {
		return e.Timeout
	}
	if e.Expires != 0 || e.Deadline != 0 {
		return s.Timeout
	}
	return 0
}

// FormatMillis formats a time in milliseconds as nft prints timeouts and
// expiry times: days, hours, minutes, seconds and milliseconds, each only
// when not zero ("1h2m3s", "1s540ms", "1d"); "0s" for zero.
func FormatMillis(ms uint64) string {
	if ms == 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		n    uint64
		name string
	}{{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}} {
		if v := ms / u.n; v > 0 {
			fmt.Fprintf(&b, "%d%s", v, u.name)
			ms -= v * u.n
		}
	}
	return b.String()
}

// elementTimeouts prints an element's " timeout T expires E" as nft
// lists it: the timeout when the kernel reported one (it differs from the
// set's default), the time left when the element expires.
func elementTimeouts(e SetElement) string {
	out := ""
	if e.Timeout != 0 {
		out += " timeout " + FormatMillis(e.Timeout)
	}
	if e.Expires != 0 {
		out += " expires " + FormatMillis(e.Expires)
	}
	return out
}

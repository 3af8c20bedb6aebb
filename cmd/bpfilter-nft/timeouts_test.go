package main

import (
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
)

// TestSetTimeouts runs a ruleset with sets with timeouts in the kernel's
// nftables and in bpfilter-nft side by side (twin namespaces, element
// commands given to both), and compares verdicts and listings before and
// after elements expire: elements with their own timeout and the set's
// default, one added by add element, one re-added while live (its timer
// does not restart, as in nft), one re-added with a shorter timeout (the
// kernel updates it), and a reload (add rule) after expiry,
// which must not bring expired elements back.
func TestSetTimeouts(t *testing.T) {
	privtest.Require(t)
	w := newTimeoutTwin(t)
	rules := `table netdev f {
	set t {
		type inet_service
		flags timeout
		elements = { 9, 10 timeout 4s, 11 timeout 12s }
	}
	set d {
		type inet_service
		timeout 4s
		elements = { 20 }
	}
	chain ing {
		type filter hook ingress device "` + w.ifname() + `" priority 0; policy accept;
		udp dport @t drop
		udp dport @d drop
	}
}
`
	w.load(rules)
	loaded, start := w.loading, w.start
	const acc, drp = oracle.Accepted, oracle.Dropped
	both, expect := w.both, w.expect
	listings := func(step, set, want string) {
		t.Helper()
		w.listing(step, "set", set, want)
	}

	// Deadlines are taken from when each command ran, so that a slow
	// machine only delays the checks: an element added at T with timeout
	// D is live in both rulesets until at least T+D (T taken before the
	// command) and gone from both by T'+D (T' taken after it). A check
	// that an element is still live is made only while that holds with a
	// margin; checks of expiry are always made.
	const margin = 700 * time.Millisecond
	liveUntil := map[uint16]time.Time{10: loaded.Add(4 * time.Second), 20: loaded.Add(4 * time.Second)}
	goneBy := map[uint16]time.Time{10: start.Add(4 * time.Second), 20: start.Add(4 * time.Second)}
	timed := func(port uint16, timeout time.Duration, args ...string) {
		t.Helper()
		before := time.Now()
		both(args...)
		liveUntil[port], goneBy[port] = before.Add(timeout), time.Now().Add(timeout)
	}
	// live keeps the ports of want whose elements are surely live now
	// (want: dropped) or surely gone (want: accepted) and logs the others.
	live := func(step string, want map[uint16]oracle.Result) map[uint16]oracle.Result {
		now := time.Now()
		out := map[uint16]oracle.Result{}
		for port, w := range want {
			if u, ok := liveUntil[port]; ok && w == drp && now.Add(margin).After(u) {
				t.Logf("%s: port %d: too late to check that it is live (machine slow)", step, port)
				continue
			}
			out[port] = w
		}
		return out
	}
	sleepUntilGone := func(ports ...uint16) {
		var last time.Time
		for _, p := range ports {
			if goneBy[p].After(last) {
				last = goneBy[p]
			}
		}
		time.Sleep(time.Until(last.Add(margin)))
	}

	expect("loaded", live("loaded", map[uint16]oracle.Result{9: drp, 10: drp, 11: drp, 20: drp, 12: acc}))
	listings("loaded", "t", "elements = { 9, 10 timeout 4s expires X, 11 timeout 12s expires X }")
	listings("loaded", "d", "elements = { 20 expires X }")
	timed(12, 3*time.Second, "add", "element", "netdev", "f", "t", "{", "12", "timeout", "3s", "}")
	timed(11, 12*time.Second, "add", "element", "netdev", "f", "t", "{", "11", "timeout", "12s", "}")
	expect("added", live("added", map[uint16]oracle.Result{12: drp, 11: drp}))
	if time.Now().Add(margin).Before(liveUntil[12]) {
		listings("added", "t", "12 timeout 3s expires X")
	}
	// Re-added with another timeout: the kernel (6.10+) updates it.
	both("add", "element", "netdev", "f", "t", "{", "13", "timeout", "8s", "}")
	timed(13, 500*time.Millisecond, "add", "element", "netdev", "f", "t", "{", "13", "timeout", "500ms", "}")

	sleepUntilGone(10, 12, 13, 20)
	expect("first expiry", live("first expiry", map[uint16]oracle.Result{9: drp, 10: acc, 11: drp, 12: acc, 13: acc, 20: acc}))
	if time.Now().Add(margin).Before(liveUntil[11]) {
		listings("first expiry", "t", "elements = { 9, 11 timeout 12s expires X }")
	}
	listings("first expiry", "d", "type inet_service\n\t\ttimeout 4s\n\t}")

	// A reload does not bring expired elements back nor restart 11.
	both("add", "rule", "netdev", "f", "ing", "udp", "dport", "99", "drop")
	expect("reloaded", live("reloaded", map[uint16]oracle.Result{10: acc, 11: drp, 20: acc, 99: drp}))
	sleepUntilGone(11)
	expect("second expiry", map[uint16]oracle.Result{9: drp, 11: acc, 10: acc})
	listings("second expiry", "t", "elements = { 9 }")
}

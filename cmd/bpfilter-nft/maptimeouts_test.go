package main

import (
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
)

// TestMapTimeouts runs, side by side with the kernel's nftables (twin
// namespaces, element commands given to both), an interval set, a verdict
// map, an interval verdict map, a data map (meta mark set), a set and a
// verdict map of concatenated ranges (range tables) whose
// elements expire — own timeouts, a set's default, elements that never
// expire, elements added by add element — and compares verdicts and
// listings (times left within 200 ms) while they are live, after some have
// expired, and after a reload.
func TestMapTimeouts(t *testing.T) {
	privtest.Require(t)
	w := newTimeoutTwin(t)
	rules := `table netdev f {
	set iv {
		type inet_service
		flags interval,timeout
		elements = { 30-39 timeout 4s, 40-49 timeout 30s, 50-59 }
	}
	map vm {
		type inet_service : verdict
		timeout 4s
		elements = { 60 : drop, 61 timeout 30s : drop }
	}
	map vmi {
		type inet_service : verdict
		flags interval,timeout
		elements = { 70-74 timeout 4s : drop, 75-79 : drop }
	}
	map dm {
		type inet_service : mark
		flags timeout
		elements = { 90 timeout 4s : 0x00000005, 91 : 0x00000005 }
	}
	set cr {
		type ipv4_addr . inet_service
		flags interval,timeout
		elements = { 192.0.2.0/24 . 110-119 timeout 4s, 192.0.2.0/24 . 130-139 }
	}
	map rvm {
		type ipv4_addr . inet_service : verdict
		flags interval
		timeout 30s
		elements = { 192.0.2.0/24 . 140-149 timeout 4s : drop, 192.0.2.0/24 . 150-159 : drop }
	}
	chain ing {
		type filter hook ingress device "` + w.ifname() + `" priority 0; policy accept;
		udp dport @iv drop
		udp dport vmap @vm
		udp dport vmap @vmi
		meta mark set udp dport map @dm
		meta mark 0x00000005 drop
		ip saddr . udp dport @cr drop
		ip saddr . udp dport vmap @rvm
	}
}
`
	w.load(rules)
	start := w.start
	const acc, drp = oracle.Accepted, oracle.Dropped
	both, expect, listings := w.both, w.expect, w.listing

	expect("loaded", map[uint16]oracle.Result{
		29: acc, 30: drp, 39: drp, 45: drp, 59: drp, 60: drp, 61: drp, 62: acc,
		70: drp, 79: drp, 80: acc, 90: drp, 91: drp, 92: acc,
		110: drp, 119: drp, 120: acc, 135: drp, 140: drp, 150: drp, 160: acc,
	})
	listings("loaded", "set", "iv", "elements = { 30-39 timeout 4s expires X, 40-49 timeout 30s expires X, 50-59 }")
	listings("loaded", "map", "vm", "elements = { 60 expires X : drop, 61 timeout 30s expires X : drop }")
	listings("loaded", "map", "vmi", "elements = { 70-74 timeout 4s expires X : drop, 75-79 : drop }")
	listings("loaded", "map", "dm", "elements = { 90 timeout 4s expires X : 0x00000005, 91 : 0x00000005 }")
	listings("loaded", "set", "cr", "192.0.2.0/24 . 110-119 timeout 4s expires X")
	listings("loaded", "map", "rvm", "192.0.2.0/24 . 140-149 timeout 4s expires X : drop")
	both("add", "element", "netdev", "f", "iv", "{", "100-109", "timeout", "5s", "}")
	both("add", "element", "netdev", "f", "vm", "{", "62", "timeout", "5s", ":", "drop", "}")
	both("add", "element", "netdev", "f", "cr", "{", "192.0.2.0/24", ".", "170-179", "timeout", "5s", "}")
	added := time.Now()
	expect("added", map[uint16]oracle.Result{100: drp, 109: drp, 62: drp, 170: drp, 180: acc})

	// Past the 4 s and the added 5 s timeouts, well before the 30 s ones.
	wake := start.Add(6500 * time.Millisecond)
	if w := added.Add(5600 * time.Millisecond); w.After(wake) {
		wake = w
	}
	time.Sleep(time.Until(wake))
	expect("expired", map[uint16]oracle.Result{
		30: acc, 39: acc, 45: drp, 59: drp, 60: acc, 61: drp, 62: acc,
		70: acc, 74: acc, 75: drp, 90: acc, 91: drp, 100: acc,
		110: acc, 135: drp, 140: acc, 150: drp, 170: acc,
	})
	listings("expired", "set", "iv", "elements = { 40-49 timeout 30s expires X, 50-59 }")
	listings("expired", "map", "vm", "elements = { 61 timeout 30s expires X : drop }")
	listings("expired", "map", "vmi", "elements = { 75-79 : drop }")
	listings("expired", "map", "dm", "elements = { 91 : 0x00000005 }")
	listings("expired", "set", "cr", "elements = { 192.0.2.0/24 . 130-139 }")
	listings("expired", "map", "rvm", "elements = { 192.0.2.0/24 . 150-159 expires X : drop }")

	// A reload brings no expired element back and restarts no timer.
	both("add", "rule", "netdev", "f", "ing", "udp", "dport", "99", "drop")
	expect("reloaded", map[uint16]oracle.Result{30: acc, 45: drp, 60: acc, 61: drp, 70: acc, 90: acc, 99: drp, 110: acc, 135: drp, 140: acc, 150: drp})
	listings("reloaded", "set", "iv", "elements = { 40-49 timeout 30s expires X, 50-59 }")
	listings("reloaded", "map", "vm", "elements = { 61 timeout 30s expires X : drop }")
}

// Package rejecte2e holds the end-to-end test of reject at the netdev
// ingress hook: the kernel's nftables and bpfilter-nft's programs answer
// the same frames over veth in twin namespace pairs, and the peers capture
// the replies.
package rejecte2e

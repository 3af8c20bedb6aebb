// Package ufwe2e holds the end-to-end test of a distribution-shipped
// firewall: ufw's rule files, assembled by ufw's own ufw-init in a scratch
// network namespace (with rules added by the ufw command), are saved with
// ip6tables-save/iptables-save, then loaded by the system's
// ip6tables-restore into one namespace and by bpfilter-nft (translate/iptables,
// the pipeline and the loader) into its twin; real packets sent over veth
// must be delivered or dropped alike in both.
package ufwe2e

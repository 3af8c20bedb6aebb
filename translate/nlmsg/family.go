package nlmsg

import "fmt"

// String returns the family's name in nft syntax: "ip", "ip6", "inet",
// "arp", "bridge" or "netdev".
func (f Family) String() string {
	switch f {
	case FamilyInet:
		return "inet"
	case FamilyIPv4:
		return "ip"
	case FamilyARP:
		return "arp"
	case FamilyNetdev:
		return "netdev"
	case FamilyBridge:
		return "bridge"
	case FamilyIPv6:
		return "ip6"
	}
	return fmt.Sprintf("family(%d)", uint8(f))
}

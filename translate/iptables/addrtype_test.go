package iptables

import (
	"errors"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// TestAddrtypeTranslations restores -m addrtype rules, lifts them and
// checks the nft text (what iptables-translate prints, libxt_addrtype.txlate).
func TestAddrtypeTranslations(t *testing.T) {
	for _, c := range []struct {
		spec string
		want string
	}{
		{"-m addrtype --src-type LOCAL", "fib saddr type local counter"},
		{"-m addrtype --dst-type LOCAL", "fib daddr type local counter"},
		{"-m addrtype ! --dst-type ANYCAST,LOCAL", "fib daddr type != { local, anycast } counter"},
		{"-m addrtype --limit-iface-in --dst-type ANYCAST,LOCAL", "fib daddr . iif type { local, anycast } counter"},
		{"-m addrtype --src-type LOCAL --limit-iface-in -j ACCEPT", "fib saddr . iif type local counter accept"},
		{"-m addrtype --src-type unicast ! --dst-type local,Broadcast,MULTICAST -j DROP",
			"fib saddr type unicast fib daddr type != { local, broadcast, multicast } counter drop"},
		{"-m addrtype --dst-type UNSPEC", "fib daddr type unspec counter"},
	} {
		t.Run(c.spec, func(t *testing.T) {
			rs, err := Restore(strings.NewReader("*filter\n-A INPUT "+c.spec+"\nCOMMIT\n"), Options{Family: nlmsg.FamilyIPv4})
			if err != nil {
				t.Fatal(err)
			}
			res, err := translate.Lift(rs)
			if err != nil {
				t.Fatal(err)
			}
			if err := res.Err(); err != nil {
				t.Fatal(err)
			}
			c4 := res.Ruleset.Tables[0].Chain("INPUT")
			if c4 == nil || len(c4.Rules) != 1 {
				t.Fatalf("no INPUT rule")
			}
			if got := ir.FormatRule(ir.FamilyIPv4, c4.Rules[0]); got != c.want {
				t.Errorf("translated to\n\t%s\nwant\n\t%s", got, c.want)
			}
		})
	}
}

// TestAddrtypeErrors: what libxt_addrtype refuses is refused, ip6tables'
// addrtype is unsupported.
func TestAddrtypeErrors(t *testing.T) {
	for _, c := range []struct {
		fam         nlmsg.Family
		spec        string
		err         string
		unsupported bool
	}{
		{nlmsg.FamilyIPv4, "-m addrtype", "--src-type or --dst-type", false},
		{nlmsg.FamilyIPv4, "-m addrtype --src-type wrong", "bad type", false},
		{nlmsg.FamilyIPv4, "-m addrtype --limit-iface-in", "--src-type or --dst-type", false},
		{nlmsg.FamilyIPv4, "-m addrtype --src-type LOCAL --limit-iface-in --limit-iface-out", "both", false},
		{nlmsg.FamilyIPv4, "-m addrtype --src-type LOCAL --src-type BROADCAST", "twice", false},
		{nlmsg.FamilyIPv6, "-m addrtype --dst-type LOCAL", "IPv6 address type", true},
	} {
		t.Run(c.spec, func(t *testing.T) {
			_, err := Restore(strings.NewReader("*filter\n-A INPUT "+c.spec+"\nCOMMIT\n"), Options{Family: c.fam})
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("error %v, want one saying %q", err, c.err)
			}
			if errors.Is(err, ErrUnsupported) != c.unsupported {
				t.Errorf("unsupported: %v, want %v", errors.Is(err, ErrUnsupported), c.unsupported)
			}
		})
	}
}

package iptables

import (
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// TestStatementTranslations restores -m limit, LOG, REJECT and MARK rules,
// lifts them and checks the nft text, which is what iptables-translate
// prints for them.
func TestStatementTranslations(t *testing.T) {
	for _, c := range []struct {
		fam  nlmsg.Family
		spec string
		want string
	}{
		{nlmsg.FamilyIPv4, "-m limit --limit 3/min --limit-burst 7 -j ACCEPT", "limit rate 3/minute burst 7 packets counter accept"},
		{nlmsg.FamilyIPv4, "-m limit -j DROP", "limit rate 3/hour counter drop"},
		{nlmsg.FamilyIPv4, "-m limit --limit 7/m", "limit rate 7/minute counter"},
		{nlmsg.FamilyIPv4, "-m limit --limit 1000/day", "limit rate 1000/day counter"},
		{nlmsg.FamilyIPv4, "-m limit --limit 3/second", "limit rate 3/second counter"},
		{nlmsg.FamilyIPv4, "-j LOG", "counter log"},
		{nlmsg.FamilyIPv4, "-j LOG --log-prefix \"in: \" --log-level info --log-tcp-options --log-macdecode", "counter log prefix \"in: \" level info flags tcp options flags ether"},
		{nlmsg.FamilyIPv4, "-j LOG --log-level 0 --log-tcp-sequence --log-tcp-options --log-ip-options --log-uid --log-macdecode", "counter log level emerg flags all"},
		{nlmsg.FamilyIPv4, "-j REJECT", "counter reject"},
		{nlmsg.FamilyIPv4, "-p tcp -j REJECT --reject-with tcp-reset", "meta l4proto tcp counter reject with tcp reset"},
		{nlmsg.FamilyIPv4, "-j REJECT --reject-with icmp-host-prohibited", "counter reject with icmp host-prohibited"},
		{nlmsg.FamilyIPv6, "-j REJECT", "counter reject"},
		{nlmsg.FamilyIPv6, "-j REJECT --reject-with adm-prohibited", "counter reject with icmpv6 admin-prohibited"},
		{nlmsg.FamilyIPv4, "-j MARK --set-mark 5", "counter meta mark set 0x00000005"},
		{nlmsg.FamilyIPv4, "-j MARK --set-xmark 0x10/0xffffffff", "counter meta mark set 0x00000010"},
	} {
		t.Run(c.spec, func(t *testing.T) {
			rs, err := Restore(strings.NewReader("*filter\n-A INPUT "+c.spec+"\nCOMMIT\n"), Options{Family: c.fam})
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
			var rules []*ir.Rule
			for _, tb := range res.Ruleset.Tables {
				if c := tb.Chain("INPUT"); c != nil {
					rules = append(rules, c.Rules...)
				}
			}
			if len(rules) != 1 {
				t.Fatalf("%d rules", len(rules))
			}
			if got := ir.FormatRule(ir.Family(c.fam), rules[0]); got != c.want {
				t.Errorf("translated to\n\t%s\nwant\n\t%s", got, c.want)
			}
		})
	}
}

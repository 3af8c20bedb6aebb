package iptables

import (
	"errors"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

func TestSplitLine(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{`-A INPUT -j ACCEPT`, []string{"-A", "INPUT", "-j", "ACCEPT"}},
		{"  -A\tINPUT  ", []string{"-A", "INPUT"}},
		{`--comment "a b"`, []string{"--comment", "a b"}},
		{`--comment "a \"b\" c"`, []string{"--comment", `a "b" c`}},
		{`--comment "a\\b"`, []string{"--comment", `a\b`}},
		{`--comment 'a b'`, []string{"--comment", "'a", "b'"}},
		{`--comment ""`, []string{"--comment", ""}},
	} {
		got, err := splitLine(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") || len(got) != len(c.want) {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSplitLineUnterminated(t *testing.T) {
	// A quote opened mid-argument runs to the end of the line.
	if got, err := splitLine(`--comment x\"y`); err == nil {
		t.Errorf("want an unterminated-quote error, got %q", got)
	}
}

func TestRestoreErrors(t *testing.T) {
	for _, c := range []struct {
		name, in    string
		line        int
		unsupported bool
		contains    string
	}{
		{"no commit", "*filter\n:INPUT DROP [0:0]\n", 3, false, "COMMIT expected"},
		{"no table", "-A INPUT -j ACCEPT\n", 1, false, "no table"},
		{"nat", "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", 1, true, "nat"},
		{"bad policy", "*filter\n:INPUT REJECT [0:0]\nCOMMIT\n", 2, false, "policy"},
		{"user policy", "*filter\n:foo ACCEPT [0:0]\nCOMMIT\n", 2, false, "policy"},
		{"unknown chain", "*filter\n-A nochain -j ACCEPT\nCOMMIT\n", 2, false, "does not exist"},
		{"unknown target", "*filter\n-A INPUT -j nochain\nCOMMIT\n", 2, false, "couldn't load target"},
		{"unknown match", "*filter\n-A INPUT -m foo -j ACCEPT\nCOMMIT\n", 2, false, "couldn't load match"},
		{"ctexpire", "*filter\n-A INPUT -m conntrack --ctexpire 5 -j ACCEPT\nCOMMIT\n", 2, true, "--ctexpire"},
		{"ctstate invalid with ctproto", "*filter\n-A INPUT -m conntrack --ctstate INVALID,NEW --ctproto tcp -j ACCEPT\nCOMMIT\n", 2, true, "without a conntrack entry"},
		{"inverted ctstate with ctdir", "*filter\n-A INPUT -m conntrack ! --ctstate NEW --ctdir REPLY -j ACCEPT\nCOMMIT\n", 2, true, "without a conntrack entry"},
		{"ctstate SNAT and NEW", "*filter\n-A INPUT -m conntrack --ctstate SNAT,NEW -j ACCEPT\nCOMMIT\n", 2, true, "SNAT/DNAT"},
		{"bad ctstate", "*filter\n-A INPUT -m conntrack --ctstate wrong -j ACCEPT\nCOMMIT\n", 2, false, "ctstate"},
		{"bad state", "*filter\n-A INPUT -m state --state SNAT -j ACCEPT\nCOMMIT\n", 2, false, "state"},
		{"state without --state", "*filter\n-A INPUT -m state -j ACCEPT\nCOMMIT\n", 2, false, "--state"},
		{"conntrack without options", "*filter\n-A INPUT -m conntrack -j ACCEPT\nCOMMIT\n", 2, false, "at least one option"},
		{"connmark without --mark", "*filter\n-A INPUT -m connmark -j ACCEPT\nCOMMIT\n", 2, false, "--mark is required"},
		{"bad connmark", "*filter\n-A INPUT -m connmark --mark 0xfffffffff -j ACCEPT\nCOMMIT\n", 2, false, "connmark"},
		{"ctproto 0", "*filter\n-A INPUT -m conntrack --ctproto 0 -j ACCEPT\nCOMMIT\n", 2, false, "--ctproto 0"},
		{"reversed ctorigsrcport", "*filter\n-A INPUT -m conntrack --ctorigsrcport 4:3 -j ACCEPT\nCOMMIT\n", 2, false, "port"},
		{"limit rate", "*filter\n-A INPUT -m limit --limit 3/fortnight -j ACCEPT\nCOMMIT\n", 2, false, "bad rate"},
		{"limit too fast", "*filter\n-A INPUT -m limit --limit 20000/s -j ACCEPT\nCOMMIT\n", 2, false, "rate too fast"},
		{"set", "*filter\n-A INPUT -m set --match-set x src -j DROP\nCOMMIT\n", 2, true, "-m set"},
		{"LOG prefix", "*filter\n-A INPUT -j LOG --log-prefix 012345678901234567890123456789\nCOMMIT\n", 2, false, "Maximum prefix length 29"},
		{"LOG level", "*filter\n-A INPUT -j LOG --log-level loud\nCOMMIT\n", 2, false, "log level `loud' unknown"},
		{"REJECT reset", "*filter\n-A INPUT -p udp -j REJECT --reject-with tcp-reset\nCOMMIT\n", 2, false, "TCP_RESET invalid"},
		{"REJECT type", "*filter\n-A INPUT -j REJECT --reject-with icmp6-no-route\nCOMMIT\n", 2, false, "unknown reject type"},
		{"MARK part", "*filter\n-A INPUT -j MARK --set-xmark 1/0xff\nCOMMIT\n", 2, true, "-j MARK --set-xmark"},
		{"MARK or", "*filter\n-A INPUT -j MARK --or-mark 1\nCOMMIT\n", 2, true, "-j MARK --or-mark"},
		{"dport without proto", "*filter\n-A INPUT --dport 22 -j ACCEPT\nCOMMIT\n", 2, false, "unknown option"},
		{"tcp without proto", "*filter\n-A INPUT -m tcp --dport 22 -j ACCEPT\nCOMMIT\n", 2, false, "only valid for protocol"},
		{"bad port", "*filter\n-A INPUT -p tcp --dport 65536 -j ACCEPT\nCOMMIT\n", 2, false, "65536"},
		{"reversed ports", "*filter\n-A INPUT -p tcp --dport 4:3 -j ACCEPT\nCOMMIT\n", 2, false, "start above end"},
		{"bad address", "*filter\n-A INPUT -s 192.0.2.300 -j ACCEPT\nCOMMIT\n", 2, false, "192.0.2.300"},
		{"bad mask", "*filter\n-A INPUT -s 192.0.2.0/33 -j ACCEPT\nCOMMIT\n", 2, false, "mask"},
		{"o in INPUT", "*filter\n-A INPUT -o eth0 -j ACCEPT\nCOMMIT\n", 2, false, "-o"},
		{"double bang", "*filter\n-A INPUT ! ! -s 192.0.2.1 -j ACCEPT\nCOMMIT\n", 2, false, "!"},
		{"loop", "*filter\n:a - [0:0]\n:b - [0:0]\n-A a -j b\n-A b -j a\nCOMMIT\n", 6, false, "loop"},
		{"long iface", "*filter\n-A INPUT -i abcdefghijklmnop -j ACCEPT\nCOMMIT\n", 2, false, "IFNAMSIZ"},
		{"unterminated quote", "*filter\n-A INPUT -m comment --comment \"x -j ACCEPT\nCOMMIT\n", 2, false, "quote"},
		{"multiport ports", "*filter\n-A INPUT -p tcp -m multiport --ports 1,2 -j ACCEPT\nCOMMIT\n", 2, true, "--ports"},
		{"inverted all-zero mask", "*filter\n-A INPUT ! -s 0.0.0.0/0 -j ACCEPT\nCOMMIT\n", 2, false, "never matches"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs, err := Restore(strings.NewReader(c.in), Options{Family: nlmsg.FamilyIPv4})
			if err == nil {
				t.Fatalf("no error; got %d rules", len(rs.Rules))
			}
			if rs != nil {
				t.Errorf("a ruleset came back with the error")
			}
			var le *Error
			if !errors.As(err, &le) || le.Line != c.line {
				t.Errorf("error %q: want line %d", err, c.line)
			}
			if errors.Is(err, ErrUnsupported) != c.unsupported {
				t.Errorf("error %q: unsupported = %v, want %v", err, errors.Is(err, ErrUnsupported), c.unsupported)
			}
			if !strings.Contains(err.Error(), c.contains) {
				t.Errorf("error %q does not mention %q", err, c.contains)
			}
		})
	}
}

func TestRestoreSemantics(t *testing.T) {
	cur, err := Restore(strings.NewReader("*filter\n:INPUT DROP [0:0]\n:keep - [0:0]\n-A INPUT -s 192.0.2.1 -j keep\n-A keep -j ACCEPT\nCOMMIT\n"), Options{Family: nlmsg.FamilyIPv4})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		in      string
		noflush bool
		// want lists chain:rule-count (policy for base chains).
		want string
	}{
		{"replace", "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n", false, "FORWARD/0:0"},
		{"noflush keeps", "*filter\n-A INPUT -p tcp -j DROP\nCOMMIT\n", true, "INPUT/0:2 keep:1"},
		{"noflush chain line flushes", "*filter\n:keep - [0:0]\nCOMMIT\n", true, "INPUT/0:1 keep:0"},
		{"noflush policy", "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", true, "INPUT/1:1 keep:1"},
		{"insert", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\n-I INPUT -p tcp -j ACCEPT\n-I INPUT 2 -p udp -j ACCEPT\nCOMMIT\n", false, "INPUT/1:3"},
		{"flush and delete", "*filter\n:a - [0:0]\n:b - [0:0]\n-A a -j ACCEPT\n-F a\n-X a\n-N c\n-P OUTPUT DROP\nCOMMIT\n", false, "OUTPUT/0:0 b:0 c:0"},
		{"other family untouched", "", false, "INPUT/0:1 keep:1"},
		{"two tables: last wins", "*filter\n:INPUT DROP [0:0]\nCOMMIT\n*filter\n:OUTPUT DROP [0:0]\nCOMMIT\n", false, "OUTPUT/0:0"},
		{"comments and counters", "# hi\n*filter\n:INPUT ACCEPT [5:100]\n[1:2] -A INPUT -j DROP\n\nCOMMIT\n# end\n", false, "INPUT/1:1"},
		{"other family rule skipped", "*filter\n-A INPUT -6 -j DROP\n-A INPUT -4 -j ACCEPT\nCOMMIT\n", false, "INPUT/1:1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs, err := Restore(strings.NewReader(c.in), Options{Family: nlmsg.FamilyIPv4, Noflush: c.noflush, Current: cur})
			if err != nil {
				t.Fatal(err)
			}
			var parts []string
			for _, ch := range rs.Chains {
				n := 0
				for _, r := range rs.Rules {
					if r.Chain == ch.Name {
						n++
					}
				}
				s := ch.Name
				if ch.Policy != nil {
					s += "/" + string('0'+byte(*ch.Policy))
				}
				parts = append(parts, s+":"+string('0'+byte(n)))
			}
			if got := strings.Join(parts, " "); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("*filter\n:INPUT DROP [0:0]\n-A INPUT -s 192.0.2.0/24 -p tcp --dport 22 -j ACCEPT\nCOMMIT\n", false)
	f.Add("*filter\n-A INPUT -m comment --comment \"a \\\"b\" -m multiport --dports 1,2:3 -p udp\nCOMMIT\n", true)
	f.Fuzz(func(t *testing.T, in string, v6 bool) {
		fam := nlmsg.FamilyIPv4
		if v6 {
			fam = nlmsg.FamilyIPv6
		}
		rs, err := Restore(strings.NewReader(in), Options{Family: fam})
		if err != nil {
			var le *Error
			if rs != nil || !errors.As(err, &le) || le.Line < 1 {
				t.Fatalf("error %v (ruleset %v): want a line error and no ruleset", err, rs != nil)
			}
			return
		}
		// Every rule ends in a counter and refers only to chains and sets
		// of the output.
		chains := map[string]bool{}
		for _, c := range rs.Chains {
			chains[c.Name] = true
		}
		sets := map[string]bool{}
		for _, s := range rs.Sets {
			sets[s.Name] = true
		}
		for _, r := range rs.Rules {
			if !chains[r.Chain] {
				t.Fatalf("rule in unknown chain %s", r.Chain)
			}
			for _, e := range r.Exprs {
				switch x := e.(type) {
				case *nlmsg.Immediate:
					if x.Verdict != nil && x.Verdict.Chain != "" && !chains[x.Verdict.Chain] {
						t.Fatalf("jump to unknown chain %s", x.Verdict.Chain)
					}
				case *nlmsg.Lookup:
					if !sets[x.Set] {
						t.Fatalf("lookup in unknown set %s", x.Set)
					}
				}
			}
		}
	})
}

package ufwe2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
)

// Where Debian's ufw package installs what the test runs.
const (
	ufwInit    = "/lib/ufw/ufw-init"
	ufwCommand = "/usr/sbin/ufw"
	ufwConf    = "/etc/ufw"
	ufwShare   = "/usr/share/ufw" // pristine copies of the rule files
	ufwDefault = "/etc/default/ufw"
)

// ufwRules are the ufw commands whose rules the assembled script holds.
var ufwRules = [][]string{
	{"allow", "22/tcp"},
	{"allow", "from", "198.51.100.0/24", "to", "any", "port", "80"},
	{"allow", "from", "2001:db8:1::/48", "to", "any", "port", "8080", "proto", "tcp"},
}

// needUFW skips the test unless ufw is installed.
func needUFW(t *testing.T) {
	t.Helper()
	for _, p := range []string{ufwInit, ufwCommand, ufwDefault, filepath.Join(ufwConf, "before6.rules"), filepath.Join(ufwShare, "user6.rules")} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("privileged: ufw is not installed (%v)", err)
		}
	}
}

// assemble builds ufw's ruleset the way ufw does when it starts, in a
// scratch namespace: a data directory holds copies of /etc/ufw (the user
// rules fresh from the package, then changed by the ufw command with
// ufwRules), ufw.conf and /etc/default/ufw with no sysctl
// file and no modules to load, so that nothing outside the namespace is
// touched; "ufw-init --datadir DIR start" loads it with iptables-restore
// and ip6tables-restore, and the namespace's ruleset is saved. It returns
// the iptables-save and ip6tables-save output.
func assemble(t *testing.T) (v4, v6 string) {
	t.Helper()
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc", "ufw")
	// applications.d stays empty: no rule names an application profile.
	for _, d := range []string{etc, filepath.Join(etc, "applications.d"), filepath.Join(dir, "etc", "default"), filepath.Join(dir, "lib", "ufw")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"before.rules", "before6.rules", "after.rules", "after6.rules"} {
		copyFile(filepath.Join(ufwConf, f), filepath.Join(etc, f))
	}
	for _, f := range []string{"user.rules", "user6.rules"} {
		copyFile(filepath.Join(ufwShare, f), filepath.Join(etc, f))
	}
	// Disabled while the ufw command adds rules (it then only writes
	// the rule files), enabled for ufw-init.
	conf := func(enabled string) {
		if err := os.WriteFile(filepath.Join(etc, "ufw.conf"), []byte("ENABLED="+enabled+"\nLOGLEVEL=low\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf("no")
	def, err := os.ReadFile(ufwDefault)
	if err != nil {
		t.Fatal(err)
	}
	text := string(def)
	for key, value := range map[string]string{"IPV6": "yes", "IPT_SYSCTL": "", "IPT_MODULES": `""`, "MANAGE_BUILTINS": "no"} {
		re := regexp.MustCompile(`(?m)^` + key + `=.*$`)
		line := key + "=" + value
		if re.MatchString(text) {
			text = re.ReplaceAllLiteralString(text, line)
		} else {
			text += line + "\n"
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "default", "ufw"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}

	ns, err := netnstest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	for _, r := range ufwRules {
		if _, err := ns.Run("", ufwCommand, append([]string{"--datadir=" + dir}, r...)...); err != nil {
			t.Fatal(err)
		}
	}
	conf("yes")
	out, err := ns.Run("", ufwInit, "--datadir", dir, "start")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if v4, err = ns.Run("", "iptables-save"); err != nil {
		t.Fatal(err)
	}
	if v6, err = ns.Run("", "ip6tables-save"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-A ufw6-user-input -p tcp -m tcp --dport 22 -j ACCEPT", "-m rt --rt-type 0 -j DROP"} {
		if !strings.Contains(v6, want) {
			t.Fatalf("ip6tables-save output lacks %q:\n%s", want, v6)
		}
	}
	return v4, v6
}

// TestAssemble checks that ufw's scripts are assembled as ufw loads them
// (the user rules of ufwRules, ufw's own chains and policies).
func TestAssemble(t *testing.T) {
	privtest.Require(t)
	needUFW(t)
	v4, v6 := assemble(t)
	for _, c := range []struct {
		text string
		want []string
	}{
		{v4, []string{":INPUT DROP", ":ufw-not-local - ", "-A ufw-user-input -s 198.51.100.0/24 -p udp -m udp --dport 80 -j ACCEPT",
			"-A ufw-not-local -m addrtype --dst-type BROADCAST -j RETURN"}},
		{v6, []string{":INPUT DROP", ":FORWARD DROP", "-A ufw6-user-input -s 2001:db8:1::/48 -p tcp -m tcp --dport 8080 -j ACCEPT",
			"-A ufw6-before-input -m rt --rt-type 0 -j DROP", "-A ufw6-skip-to-policy-input -j DROP"}},
	} {
		for _, w := range c.want {
			if !strings.Contains(c.text, w) {
				t.Errorf("assembled script lacks %q", w)
			}
		}
	}
	if n := strings.Count(v6, "\n-A "); n < 80 {
		t.Errorf("ip6tables script has %d rules, want ufw's 80 or more", n)
	}
}

package nftfile

import (
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files")

// requirePrivileged skips t unless the process can create network
// namespaces and run nft.
func requirePrivileged(t *testing.T) {
	t.Helper()
	privtest.Require(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("privileged: nft binary not found in PATH")
	}
}

var scratchCounter atomic.Int64

// scratchNetNS returns a new, unnamed network namespace, alive as long as the
// returned file is open (closed in t.Cleanup). Nothing is left behind: the
// namespace has no name in /run/netns and is freed with the file.
func scratchNetNS(t *testing.T) *os.File {
	t.Helper()
	ns, err := nsctx.New()
	if err != nil {
		t.Fatalf("scratch netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns.File()
}

// inNetNS runs a command inside netns ns with nsenter.
func inNetNS(t *testing.T, ns *os.File, stdin string, args ...string) {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=/proc/self/fd/3", "--"}, args...)...)
	cmd.ExtraFiles = []*os.File{ns}
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// uniqueName returns an interface name unique to this process and call.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d%d", prefix, os.Getpid()%100000, scratchCounter.Add(1))
}

func TestParseFileGolden(t *testing.T) {
	requirePrivileged(t)
	files, err := filepath.Glob("testdata/*.nft")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.nft: %v", err)
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".nft")
		t.Run(name, func(t *testing.T) {
			rs, err := ParseFile(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := nlmsg.Format(sortedElems(rs))
			golden := strings.TrimSuffix(path, ".nft") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("decoded ruleset differs from %s (run with -update to accept):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

// sortedElems returns rs with the elements of each set element message in
// key order: the kernel dumps hash sets in an order that depends on a random
// seed.
func sortedElems(rs *nlmsg.Ruleset) *nlmsg.Ruleset {
	for _, se := range rs.Elems {
		slices.SortStableFunc(se.Elems, func(a, b nlmsg.SetElem) int {
			if c := bytes.Compare(a.Key, b.Key); c != 0 {
				return c
			}
			return cmp.Compare(a.Flags, b.Flags)
		})
	}
	return rs
}

// kinds returns the expression kinds of a rule.
func kinds(r *nlmsg.Rule) string {
	var ks []string
	for _, e := range r.Exprs {
		ks = append(ks, e.Kind())
	}
	return strings.Join(ks, " ")
}

func rulesOf(rs *nlmsg.Ruleset, chain string) []*nlmsg.Rule {
	var out []*nlmsg.Rule
	for _, r := range rs.Rules {
		if r.Chain == chain {
			out = append(out, r)
		}
	}
	return out
}

func lastVerdict(r *nlmsg.Rule) *nlmsg.Verdict {
	for i := len(r.Exprs) - 1; i >= 0; i-- {
		if im, ok := r.Exprs[i].(*nlmsg.Immediate); ok && im.Verdict != nil {
			return im.Verdict
		}
	}
	return nil
}

func TestParseStructure(t *testing.T) {
	requirePrivileged(t)
	tests := []struct {
		name    string
		ruleset string
		check   func(t *testing.T, rs *nlmsg.Ruleset)
	}{
		{
			name: "base chain with policy and user chain",
			ruleset: `table ip t {
				chain c { type filter hook forward priority 5; policy drop; ip daddr 192.0.2.1 jump u; }
				chain u { counter goto v; }
				chain v { return; }
			}`,
			check: func(t *testing.T, rs *nlmsg.Ruleset) {
				if len(rs.Tables) != 1 || rs.Tables[0].Family != nlmsg.FamilyIPv4 || rs.Tables[0].Name != "t" {
					t.Fatalf("tables: %+v", rs.Tables)
				}
				if len(rs.Chains) != 3 {
					t.Fatalf("%d chains, want 3", len(rs.Chains))
				}
				c := rs.Chains[0]
				if c.Name != "c" || c.Hook == nil || c.Hook.Num != unix.NF_INET_FORWARD || c.Hook.Priority != 5 ||
					c.Policy == nil || *c.Policy != 0 || c.Type != "filter" {
					t.Errorf("chain c = %+v hook %+v", c, c.Hook)
				}
				if rs.Chains[1].Hook != nil || rs.Chains[1].Policy != nil {
					t.Errorf("user chain u has hook/policy: %+v", rs.Chains[1])
				}
				r := rulesOf(rs, "c")[0]
				if got, want := kinds(r), "payload cmp immediate"; got != want {
					t.Errorf("rule kinds %q, want %q", got, want)
				}
				if v := lastVerdict(r); v == nil || v.Code != nlmsg.VerdictJump || v.Chain != "u" {
					t.Errorf("verdict %v, want jump u", v)
				}
				cmp := r.Exprs[1].(*nlmsg.Cmp)
				if string(cmp.Data) != "\xc0\x00\x02\x01" {
					t.Errorf("cmp data %x, want c0000201", cmp.Data)
				}
				u := rulesOf(rs, "u")[0]
				if got, want := kinds(u), "counter immediate"; got != want {
					t.Errorf("rule kinds %q, want %q", got, want)
				}
				if v := lastVerdict(u); v == nil || v.Code != nlmsg.VerdictGoto || v.Chain != "v" {
					t.Errorf("verdict %v, want goto v", v)
				}
				if v := lastVerdict(rulesOf(rs, "v")[0]); v == nil || v.Code != nlmsg.VerdictReturn {
					t.Errorf("verdict %v, want return", v)
				}
			},
		},
		{
			name:    "anonymous interval set",
			ruleset: `table ip t { chain c { ip saddr { 192.0.2.0/24, 198.51.100.5 } accept; }; }`,
			check: func(t *testing.T, rs *nlmsg.Ruleset) {
				if len(rs.Sets) != 1 {
					t.Fatalf("%d sets, want 1", len(rs.Sets))
				}
				s := rs.Sets[0]
				const anonConstInterval = 0x1 | 0x2 | 0x4
				if s.Flags&anonConstInterval != anonConstInterval || s.KeyLen != 4 || !strings.HasPrefix(s.Name, "__set") {
					t.Errorf("set %+v", s)
				}
				if len(rs.Elems) != 1 || rs.Elems[0].Set != s.Name {
					t.Fatalf("elements: %+v", rs.Elems)
				}
				// Intervals: each range is a start key and an end key
				// (flags INTERVAL_END) one past the range.
				var starts, ends []string
				for _, e := range rs.Elems[0].Elems {
					if e.Flags&nlmsg.SetElemIntervalEnd != 0 {
						ends = append(ends, fmt.Sprintf("%x", e.Key))
					} else {
						starts = append(starts, fmt.Sprintf("%x", e.Key))
					}
				}
				for _, want := range []string{"c0000200", "c6336405"} {
					if !strings.Contains(strings.Join(starts, " "), want) {
						t.Errorf("start keys %v lack %s", starts, want)
					}
				}
				for _, want := range []string{"c0000300", "c6336406"} {
					if !strings.Contains(strings.Join(ends, " "), want) {
						t.Errorf("end keys %v lack %s", ends, want)
					}
				}
				lk, ok := rs.Rules[0].Exprs[1].(*nlmsg.Lookup)
				if !ok || lk.Set != s.Name || lk.HasDReg {
					t.Errorf("expression 1 = %#v, want lookup in %s", rs.Rules[0].Exprs[1], s.Name)
				}
			},
		},
		{
			name:    "verdict map",
			ruleset: `table ip t { chain a { }; chain c { ip protocol vmap { tcp : jump a, udp : drop }; }; }`,
			check: func(t *testing.T, rs *nlmsg.Ruleset) {
				if len(rs.Sets) != 1 || rs.Sets[0].DataType != 0xffffff00 {
					t.Fatalf("sets %+v, want one verdict map", rs.Sets)
				}
				got := map[string]string{}
				for _, e := range rs.Elems[0].Elems {
					if e.Verdict == nil {
						t.Fatalf("element %x without verdict", e.Key)
					}
					got[fmt.Sprintf("%x", e.Key)] = e.Verdict.String()
				}
				if got["06"] != "jump a" || got["11"] != "drop" || len(got) != 2 {
					t.Errorf("map elements %v", got)
				}
				lk := rs.Rules[0].Exprs[1].(*nlmsg.Lookup)
				if !lk.HasDReg || lk.DReg != 0 {
					t.Errorf("lookup %+v, want dreg 0 (verdict)", lk)
				}
			},
		},
		{
			name:    "log limit reject stay opaque",
			ruleset: `table inet t { chain c { type filter hook input priority 0; limit rate 5/minute log prefix "p" reject; }; }`,
			check: func(t *testing.T, rs *nlmsg.Ruleset) {
				r := rs.Rules[0]
				if got, want := kinds(r), "limit log reject"; got != want {
					t.Fatalf("kinds %q, want %q", got, want)
				}
				for _, e := range r.Exprs {
					if o, ok := e.(*nlmsg.Opaque); !ok || len(o.Data) == 0 {
						t.Errorf("%s: %#v, want *Opaque with data", e.Kind(), e)
					}
				}
			},
		},
		{
			name:    "comment in userdata",
			ruleset: `table ip t { chain c { accept comment "hello there"; }; }`,
			check: func(t *testing.T, rs *nlmsg.Ruleset) {
				if !strings.Contains(string(rs.Rules[0].Userdata), "hello there") {
					t.Errorf("userdata %q lacks the comment", rs.Rules[0].Userdata)
				}
			},
		},
		{
			name:    "netdev chain on lo",
			ruleset: `table netdev t { chain c { type filter hook ingress device "lo" priority -5; policy accept; }; }`,
			check: func(t *testing.T, rs *nlmsg.Ruleset) {
				c := rs.Chains[0]
				if c.Family != nlmsg.FamilyNetdev || c.Hook == nil || c.Hook.Num != 0 || c.Hook.Priority != -5 ||
					len(c.Hook.Devices) != 1 || c.Hook.Devices[0] != "lo" {
					t.Errorf("chain %+v hook %+v", c, c.Hook)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Parse(tt.name, strings.NewReader(tt.ruleset), Options{})
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, rs)
		})
	}
}

func TestParseInterfaceIndex(t *testing.T) {
	requirePrivileged(t)
	ns := scratchNetNS(t)
	dev, peer := uniqueName("bnv"), uniqueName("bnp")
	inNetNS(t, ns, "", "ip", "link", "add", dev, "index", "4242", "type", "veth", "peer", "name", peer, "index", "4243")

	ruleset := fmt.Sprintf(`table ip t { chain c { type filter hook input priority 0; iif %q accept; oif %q drop; }; }
table netdev n { chain c { type filter hook ingress device %q priority 0; }; }`, dev, peer, dev)
	rs, err := Parse("iface", strings.NewReader(ruleset), Options{TargetNetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rule  int
		index uint32
	}{{0, 4242}, {1, 4243}}
	for _, tt := range tests {
		cmp, ok := rs.Rules[tt.rule].Exprs[1].(*nlmsg.Cmp)
		if !ok {
			t.Fatalf("rule %d expression 1 = %#v, want cmp", tt.rule, rs.Rules[tt.rule].Exprs[1])
		}
		want := make([]byte, 4)
		*(*uint32)(unsafePointer(want)) = tt.index
		if string(cmp.Data) != string(want) {
			t.Errorf("rule %d: ifindex bytes %x, want %x (%d)", tt.rule, cmp.Data, want, tt.index)
		}
	}
	var found bool
	for _, c := range rs.Chains {
		if c.Family == nlmsg.FamilyNetdev && c.Hook != nil && len(c.Hook.Devices) == 1 && c.Hook.Devices[0] == dev {
			found = true
		}
	}
	if !found {
		t.Errorf("no netdev chain on %s in %+v", dev, rs.Chains)
	}

	// The same ruleset does not load where the interfaces do not exist.
	_, err = Parse("iface", strings.NewReader(ruleset), Options{TargetNetNS: scratchNetNS(t)})
	var nerr *NftError
	if !errors.As(err, &nerr) || !strings.Contains(err.Error(), "iface:1:") {
		t.Errorf("Parse in a netns without %s: %v, want an nft error naming iface:1:", dev, err)
	}
}

func TestParseErrors(t *testing.T) {
	requirePrivileged(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.nft")
	if err := os.WriteFile(bad, []byte("table ip t {\n\tchain c {\n\t\tip saddr 1.2.3 accept\n\t}\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	iface := uniqueName("nosuch")
	tests := []struct {
		name  string
		parse func() (*nlmsg.Ruleset, error)
		want  []string
		nft   bool // an *NftError
		// unsupported returns true when err says the kernel lacks the
		// feature under test.
		unsupported func(err error) bool
	}{
		{
			name:  "syntax error in file",
			parse: func() (*nlmsg.Ruleset, error) { return ParseFile(bad, Options{}) },
			want:  []string{bad + ":3:", "syntax error"},
			nft:   true,
		},
		{
			name: "syntax error from reader",
			parse: func() (*nlmsg.Ruleset, error) {
				return Parse("rules.nft", strings.NewReader("table ip t {\n chain c {\n  tcp dport foo-bar accept\n }\n}\n"), Options{})
			},
			want: []string{"rules.nft:3:"},
			nft:  true,
		},
		{
			name: "unknown interface",
			parse: func() (*nlmsg.Ruleset, error) {
				return Parse("-", strings.NewReader(fmt.Sprintf("table ip t { chain c { iif %q accept; }; }", iface)), Options{TargetNetNS: scratchNetNS(t)})
			},
			want: []string{"-:1:", "Interface does not exist"},
			nft:  true,
		},
		{
			name: "unknown chain in jump",
			parse: func() (*nlmsg.Ruleset, error) {
				return Parse("j.nft", strings.NewReader("table ip t { chain c { jump nowhere; }; }"), Options{})
			},
			want: []string{"j.nft:1:", "nowhere"},
			nft:  true,
		},
		{
			name:  "missing file",
			parse: func() (*nlmsg.Ruleset, error) { return ParseFile(filepath.Join(dir, "none.nft"), Options{}) },
			want:  []string{"none.nft", "no such file"},
		},
		{
			name: "missing nft binary",
			parse: func() (*nlmsg.Ruleset, error) {
				return Parse("x", strings.NewReader(""), Options{Nft: filepath.Join(dir, "nft-missing")})
			},
			want: []string{"nft-missing"},
		},
		{
			name: "flowtable",
			parse: func() (*nlmsg.Ruleset, error) {
				return Parse("f.nft", strings.NewReader(`table ip t { flowtable ft { hook ingress priority 0; devices = { lo }; }; }`), Options{})
			},
			want: []string{"flowtables are not supported", "ip t ft"},
			unsupported: func(err error) bool {
				var nerr *NftError
				return errors.As(err, &nerr) && strings.Contains(nerr.Stderr, "No such file or directory")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := tt.parse()
			if err == nil {
				t.Fatalf("no error; ruleset:\n%s", nlmsg.Format(rs))
			}
			if tt.unsupported != nil && tt.unsupported(err) {
				t.Skipf("privileged: the kernel lacks this feature: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			var nerr *NftError
			if errors.As(err, &nerr) != tt.nft {
				t.Errorf("error %q: *NftError = %v, want %v", err, errors.As(err, &nerr), tt.nft)
			}
			if tt.nft && nerr.Status == 0 {
				t.Errorf("nft exit status 0 in an error")
			}
		})
	}
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// foreignThreads counts the process's threads whose network namespace is
// not the process's own.
func foreignThreads(t *testing.T) int {
	t.Helper()
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		l, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns/net"))
		if err == nil && l != own {
			n++
		}
	}
	return n
}

func TestParseLeaksNothing(t *testing.T) {
	requirePrivileged(t)
	// Warm up: the first run may open long-lived descriptors (e.g. the
	// runtime's netpoller).
	if _, err := Parse("warm", strings.NewReader("table ip t { chain c { accept; }; }"), Options{}); err != nil {
		t.Fatal(err)
	}
	fds, foreign := openFDs(t), foreignThreads(t)
	for i := 0; i < 20; i++ {
		input := "table ip t { chain c { type filter hook input priority 0; ip saddr { 192.0.2.1, 192.0.2.2 } accept; }; }"
		if i%2 == 1 {
			input = "table ip t { chain c { bogus; }; }" // the error path
		}
		_, err := Parse("leak", strings.NewReader(input), Options{})
		if (err != nil) != (i%2 == 1) {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	if got := openFDs(t); got > fds {
		t.Errorf("open descriptors grew from %d to %d", fds, got)
	}
	if got := foreignThreads(t); got > foreign {
		t.Errorf("threads in a foreign network namespace grew from %d to %d", foreign, got)
	}
	// No nft child is left running or unreaped.
	ents, _ := os.ReadDir("/proc")
	self := fmt.Sprint(os.Getpid())
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == self {
			t.Errorf("child process %s left: %s", e.Name(), b)
		}
	}
}

func TestDumpNetNSMatchesParse(t *testing.T) {
	requirePrivileged(t)
	ns := scratchNetNS(t)
	ruleset, err := os.ReadFile("testdata/ip6_sets.nft")
	if err != nil {
		t.Fatal(err)
	}
	inNetNS(t, ns, string(ruleset), "nft", "-f", "-")
	dumped, err := DumpNetNS(ns)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseFile("testdata/ip6_sets.nft", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := nlmsg.Format(sortedElems(dumped)), nlmsg.Format(sortedElems(parsed)); got != want {
		t.Errorf("DumpNetNS of a netns loaded with nft differs from Parse:\n--- dump\n%s\n--- parse\n%s", got, want)
	}
	if len(dumped.Rules) == 0 {
		t.Errorf("dump has no rules")
	}
}

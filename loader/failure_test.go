package loader

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf/asm"

	"github.com/bpfilter-nft/bpfilter-nft/internal/netnstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// inetInput is an inet input chain (two netfilter points: IPv4 and IPv6)
// dropping the given ports.
var inetInput = attachCases[8]

// expectV1 checks the traffic verdicts of inetInput.ruleset(9): 9 dropped,
// 7 and 10 delivered.
func expectV1(t *testing.T, rc *receiver, snd *sender, what string) {
	t.Helper()
	rc.reset()
	for _, p := range []int{7, 9, 10} {
		snd.send(p, 10)
	}
	if got := rc.settleFor(map[int]int{7: 10, 10: 10}); got[7] != 10 || got[9] != 0 || got[10] != 10 {
		t.Errorf("%s: received %v, want 10 on 7 and 10, none on 9 (the previous ruleset)", what, got)
	}
}

// checkClean checks st holds exactly what its manifest names.
func checkClean(t *testing.T, st *state.Dir) {
	t.Helper()
	m, err := st.ReadManifest(state.StateName)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{state.StateName, m.Counters.Map}
	for _, p := range m.Points {
		want = append(want, p.Link, p.Program)
		if p.Array != "" {
			want = append(want, p.Array)
		}
		if p.Tail != "" {
			want = append(want, p.Tail)
		}
	}
	got, err := st.Entries()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(want)
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("state entries %v, want %v", got, want)
	}
}

// TestApplyFailures: a ruleset that cannot be applied leaves the previous
// one attached, working and recorded, with nothing left behind.
func TestApplyFailures(t *testing.T) {
	tp := newTopo(t)
	ns := netns(t, tp.b)
	st := stateDir(t, ns)
	rc := listen(t, tp.b, 7, 9, 10)
	snd := dial(t, tp.a)
	v1 := inetInput.ruleset(9)
	if err := Apply(ns, st, translate(t, ns, v1, nil), Options{}); err != nil {
		t.Fatal(err)
	}
	stored := func() string {
		s, err := Load(st)
		if err != nil {
			t.Fatal(err)
		}
		return s.Manifest.Ruleset
	}
	before := stored()
	expectV1(t, rc, snd, "before")

	tests := []struct {
		name string
		res  func(t *testing.T) *pipeline.Result
		want string
	}{
		{"unsupported rule", func(t *testing.T) *pipeline.Result {
			res, err := pipeline.TranslateReader("u.nft", strings.NewReader(strings.Replace(inetInput.ruleset(9, 10), "policy accept;", "policy accept;\n\t\tct expiration 5s accept", 1)), pipeline.Options{NetNS: ns})
			if err != nil || res.Err() == nil {
				t.Fatalf("premise: the ruleset must translate with a refused rule (%v)", err)
			}
			return res
		}, "ct expiration is not supported"},
		{"verifier", func(t *testing.T) *pipeline.Result {
			res := translate(t, ns, inetInput.ruleset(9, 10), nil)
			bad := *res.Programs[1].Program
			bad.Spec = bad.Spec.Copy()
			bad.Spec.Instructions = asm.Instructions{asm.Return()} // R0 never set
			res.Programs[1].Program = &bad
			return res
		}, "chain c (netfilter ip6)"},
		{"missing interface", func(t *testing.T) *pipeline.Result {
			if _, err := tp.b.Run("", "ip", "link", "add", "gone0", "type", "veth", "peer", "name", "gone1"); err != nil {
				t.Fatal(err)
			}
			res := translate(t, ns, inetInput.ruleset(9, 10)+`table netdev n {
	chain c { type filter hook ingress device "gone0" priority 0; policy drop; }
}
`, nil)
			if _, err := tp.b.Run("", "ip", "link", "del", "gone0"); err != nil {
				t.Fatal(err)
			}
			return res
		}, "gone0"},
		{"device unknown at translation", func(t *testing.T) *pipeline.Result {
			res := translate(t, ns, inetInput.ruleset(9, 10)+`table netdev n {
	chain c { type filter hook ingress device "b0" priority 0; policy drop; }
}
`, nil)
			res.Programs[len(res.Programs)-1].Target.Device = nil
			return res
		}, `device "b0" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Apply(ns, st, tt.res(t), Options{})
			if err == nil {
				t.Fatal("Apply succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
			t.Logf("refused: %v", err)
			if got := stored(); got != before {
				t.Errorf("stored ruleset changed:\n%s", got)
			}
			expectV1(t, rc, snd, "after the failed Apply")
			checkClean(t, st)
		})
	}
}

var errStop = errors.New("stopped by the test hook")

// TestInterruptedApply stops Apply at each step, as a crash would (only
// the file descriptors are closed), and checks that Load reads a state,
// that traffic dropped by both versions stays dropped, and that the next
// Apply repairs everything.
func TestInterruptedApply(t *testing.T) {
	for _, step := range []string{"built", "pinned-0", "next", "switched-0", "switched-1", "detached"} {
		t.Run(step, func(t *testing.T) {
			tp := newTopo(t)
			ns := netns(t, tp.b)
			st := stateDir(t, ns)
			rc := listen(t, tp.b, 7, 9, 10)
			snd := dial(t, tp.a)
			v1 := translate(t, ns, inetInput.ruleset(9), nil)
			v2 := translate(t, ns, inetInput.ruleset(9, 10), nil)
			if err := Apply(ns, st, v1, Options{}); err != nil {
				t.Fatal(err)
			}
			testHook = func(s string) error {
				if s == step {
					return errStop
				}
				return nil
			}
			err := Apply(ns, st, v2, Options{})
			testHook = nil
			if !errors.Is(err, errStop) {
				t.Fatalf("Apply returned %v, want the hook's stop", err)
			}
			checkInterrupted(t, st, rc, snd, step != "built" && step != "pinned-0")
			if err := Apply(ns, st, v2, Options{}); err != nil {
				t.Fatalf("repairing Apply: %v", err)
			}
			checkRepaired(t, st, rc, snd)
		})
	}
}

func checkInterrupted(t *testing.T, st *state.Dir, rc *receiver, snd *sender, interrupted bool) {
	t.Helper()
	snap, err := Load(st)
	if err != nil {
		t.Fatalf("Load after the interruption: %v", err)
	}
	if !strings.Contains(snap.Manifest.Ruleset, "dport 9") || strings.Contains(snap.Manifest.Ruleset, "dport 10") {
		t.Errorf("Load shows\n%s\nwant the previous ruleset", snap.Manifest.Ruleset)
	}
	if snap.Interrupted != interrupted {
		t.Errorf("Interrupted = %v, want %v", snap.Interrupted, interrupted)
	}
	rc.reset()
	snd.send(9, 10)
	snd.send(7, 10)
	if got := rc.settleFor(map[int]int{7: 10}); got[9] != 0 || got[7] != 10 {
		t.Errorf("after the interruption: received %v, want 10 on 7, none on 9", got)
	}
}

func checkRepaired(t *testing.T, st *state.Dir, rc *receiver, snd *sender) {
	t.Helper()
	snap, err := Load(st)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Interrupted || !strings.Contains(snap.Manifest.Ruleset, "dport 10") {
		t.Errorf("after repair: interrupted %v, ruleset\n%s", snap.Interrupted, snap.Manifest.Ruleset)
	}
	checkClean(t, st)
	rc.reset()
	for _, p := range []int{7, 9, 10} {
		snd.send(p, 10)
	}
	if got := rc.settleFor(map[int]int{7: 10}); got[7] != 10 || got[9] != 0 || got[10] != 0 {
		t.Errorf("after repair: received %v, want 10 on 7 only", got)
	}
}

const childEnv = "BPFNFT_LOADER_CHILD"

// runChild runs TestLoaderChild in a new process that applies ruleset to
// the namespace ns with state under root; with crashAt it SIGKILLs itself
// at that step of Apply.
func runChild(t *testing.T, ns *netnstest.NS, root, ruleset, crashAt string) error {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoaderChild$", "-test.v")
	cmd.ExtraFiles = []*os.File{ns.File()}
	cmd.Env = append(os.Environ(), childEnv+"=1", "BPFNFT_ROOT="+root, "BPFNFT_RULESET="+ruleset, "BPFNFT_CRASH="+crashAt)
	out, err := cmd.CombinedOutput()
	t.Logf("child: %v\n%s", err, out)
	return err
}

// TestLoaderChild is the child process of the persistence tests.
func TestLoaderChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("helper process of TestStateOutlivesProcess")
	}
	ns, err := nsctx.OpenNetNS("/proc/self/fd/3")
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(ns, state.Options{Root: os.Getenv("BPFNFT_ROOT")})
	if err != nil {
		t.Fatal(err)
	}
	if crash := os.Getenv("BPFNFT_CRASH"); crash != "" {
		testHook = func(step string) error {
			if step == crash {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
			return nil
		}
	}
	if err := Apply(ns, st, translate(t, ns, os.Getenv("BPFNFT_RULESET"), nil), Options{}); err != nil {
		t.Fatal(err)
	}
}

// TestStateOutlivesProcess applies a ruleset in a child process that then
// exits, finds it still attached and readable, lets a second child die by
// SIGKILL in the middle of a load, repairs that with a third load, and
// flushes.
func TestStateOutlivesProcess(t *testing.T) {
	tp := newTopo(t)
	ns := netns(t, tp.b)
	st := stateDir(t, ns)
	root := st.Root()
	rc := listen(t, tp.b, 7, 9, 10)
	snd := dial(t, tp.a)

	if err := runChild(t, tp.b, root, inetInput.ruleset(9), ""); err != nil {
		t.Fatal(err)
	}
	snap, err := Load(st)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Manifest.Points) != 2 || !strings.Contains(snap.Manifest.Ruleset, "dport 9") {
		t.Fatalf("after the child exited: %+v", snap.Manifest)
	}
	expectV1(t, rc, snd, "after the child exited")
	if c := counterOf(t, st, "dport 9"); c != 10 {
		t.Errorf("counter of the port-9 rule: %d, want 10", c)
	}

	err = runChild(t, tp.b, root, inetInput.ruleset(9, 10), "switched-0")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the crashing child ended with %v, want SIGKILL", err)
	}
	checkInterrupted(t, st, rc, snd, true)
	if err := runChild(t, tp.b, root, inetInput.ruleset(9, 10), ""); err != nil {
		t.Fatal(err)
	}
	checkRepaired(t, st, rc, snd)

	links := len(linkPins(t, st))
	if links != 2 {
		t.Errorf("%d link pins, want 2", links)
	}
	if err := Flush(st); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(st.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory after Flush: %v", err)
	}
	rc.reset()
	snd.send(9, 10)
	if got := rc.settleFor(map[int]int{9: 10}); got[9] != 10 {
		t.Errorf("after Flush: received %d of 10 on port 9", got[9])
	}
}

func linkPins(t *testing.T, st *state.Dir) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(st.Path(), "link-*"))
	return m
}

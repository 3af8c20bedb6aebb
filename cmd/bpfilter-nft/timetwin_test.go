package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/internal/oracle"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// expiresRE matches the time left of an element in a listing.
var expiresRE = regexp.MustCompile(`expires ([0-9dhms]+)`)

// parseNftTime parses nft's time format ("1s540ms", "2m3s").
func parseNftTime(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(strings.Replace(s, "d", "h", 1))
	if err != nil || strings.Contains(s, "d") {
		t.Fatalf("time %q: %v", s, err)
	}
	return d
}

// timeoutTwin is a netdev ingress ruleset with expiring elements in the
// kernel's nftables and in bpfilter-nft side by side (twin namespaces),
// for tests that give both the same commands and compare verdicts and
// listings as time passes.
type timeoutTwin struct {
	t          *testing.T
	nftO, bpfO *oracle.Oracle
	cli        func(args ...string) (stdout, stderr string, code int)
	nftNS      string
	// loading is when bpfilter-nft's load began, start when the kernel's
	// had ended: every element of the ruleset got its deadline between
	// the two, gap apart.
	loading, start time.Time
	gap            time.Duration
}

// newTimeoutTwin makes the twin namespaces; the caller loads a ruleset.
func newTimeoutTwin(t *testing.T) *timeoutTwin {
	nftO, err := oracle.New(oracle.Config{Hook: ir.HookIngress})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nftO.Close() })
	bpfO, err := oracle.New(oracle.Config{Hook: ir.HookIngress})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bpfO.Close() })
	if err := bpfO.Load(""); err != nil {
		t.Fatal(err)
	}
	cli, _ := receiverCLIRoot(t, bpfO)
	return &timeoutTwin{
		t: t, nftO: nftO, bpfO: bpfO, cli: cli,
		nftNS: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), nftO.ReceiverNetNS().Fd()),
	}
}

// ifname is the device the ingress chains must name (the same in both).
func (w *timeoutTwin) ifname() string { return w.bpfO.ReceiverIfname() }

// load loads rules with bpfilter-nft -f (after flush ruleset), then into
// the kernel.
func (w *timeoutTwin) load(rules string) {
	w.t.Helper()
	file := filepath.Join(w.t.TempDir(), "rules.nft")
	writeFile(w.t, file, "flush ruleset\n"+rules)
	w.loading = time.Now()
	if out, errOut, code := w.cli("-f", file); code != 0 {
		w.t.Fatalf("load: exit %d: %s %s", code, out, errOut)
	}
	if err := w.nftO.Load(rules); err != nil {
		w.t.Fatal(err)
	}
	w.start = time.Now()
	w.gap = w.start.Sub(w.loading)
}

// nft runs the system's nft in the kernel twin's namespace.
func (w *timeoutTwin) nft(args ...string) string {
	w.t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + w.nftNS, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		w.t.Fatalf("nft %v: %v: %s", args, err, out)
	}
	return string(out)
}

// both gives the command to bpfilter-nft, then to nft.
func (w *timeoutTwin) both(args ...string) {
	w.t.Helper()
	if out, errOut, code := w.cli(args...); code != 0 {
		w.t.Fatalf("%v: exit %d: %s %s", args, code, out, errOut)
	}
	w.nft(args...)
}

// expect sends a UDP datagram to each port of want on both sides and
// checks that each gets the wanted verdict.
func (w *timeoutTwin) expect(step string, want map[uint16]oracle.Result) {
	w.t.Helper()
	for port, res := range want {
		for _, o := range []*oracle.Oracle{w.nftO, w.bpfO} {
			r, err := o.Verdict(udpFrame(o, false, port))
			if err != nil {
				w.t.Fatal(err)
			}
			if r == oracle.NotReached {
				r = oracle.Dropped // tcx drops before the hook the oracle watches
			}
			who := "nft"
			if o == w.bpfO {
				who = "bpfilter-nft"
			}
			if r != res {
				w.t.Errorf("%s (%v after load): %s: udp dport %d: %s, want %s", step, time.Since(w.start).Round(time.Millisecond), who, port, r, res)
			}
		}
	}
}

// listing compares "list KIND netdev f NAME" with nft's: equal but for the
// times left, which must agree within 200 ms plus the gap between the two
// loads; and the listing must contain want.
func (w *timeoutTwin) listing(step, kind, name, want string) {
	w.t.Helper()
	args := []string{"list", kind, "netdev", "f", name}
	got, errOut, code := w.cli(args...)
	if code != 0 {
		w.t.Fatalf("%s: list: exit %d: %s", step, code, errOut)
	}
	ref := w.nft(args...)
	gotT, refT := expiresRE.FindAllStringSubmatch(got, -1), expiresRE.FindAllStringSubmatch(ref, -1)
	norm := func(s string) string { return expiresRE.ReplaceAllString(s, "expires X") }
	if norm(got) != norm(ref) || len(gotT) != len(refT) {
		w.t.Errorf("%s: listing\n%s\nnft lists\n%s", step, got, ref)
		return
	}
	for i := range gotT {
		a, b := parseNftTime(w.t, gotT[i][1]), parseNftTime(w.t, refT[i][1])
		if diff := a - b; diff > 200*time.Millisecond || diff < -200*time.Millisecond-w.gap {
			w.t.Errorf("%s: %s element %d expires in %v, nft says %v", step, name, i, a, b)
		}
	}
	if !strings.Contains(norm(got), want) {
		w.t.Errorf("%s: listing lacks %q:\n%s", step, want, got)
	}
}

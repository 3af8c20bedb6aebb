// Package nftfile is the nft front end: it has the real nft binary parse a
// ruleset inside a private, throw-away network namespace, dumps what nft
// loaded there back over netlink, and decodes the dump with package nlmsg.
//
// No nft grammar is reimplemented here; whatever nft accepts and the kernel
// loads is what the rest of bpfilter-nft sees. The caller's and the target's
// rulesets are never touched.
package nftfile

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/mdlayher/netlink"

	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// Options controls Parse and ParseFile.
type Options struct {
	// TargetNetNS is the network namespace whose interfaces names must
	// resolve in (e.g. an *os.File of /proc/PID/ns/net or /run/netns/NAME);
	// nil = the caller's current netns.
	TargetNetNS *os.File
	// Nft is the path of the nft binary; "" = look up "nft" in PATH.
	Nft string
}

// Parse runs the real nft on the ruleset read from r (name is used in error
// messages, e.g. the file path, or "-" for stdin) inside a private,
// throw-away network namespace, then dumps the result over netlink and
// decodes it with nlmsg. The caller's and the target's rulesets are never
// touched.
//
// Before nft runs, every interface of the target netns except lo is
// recreated in the private netns as a dummy device with the same name and
// ifindex, so that names in the ruleset (iif "eth0", device "eth0") resolve
// as they would in the target.
func Parse(name string, r io.Reader, opts Options) (*nlmsg.Ruleset, error) {
	if name == "" {
		name = "-"
	}
	return parse(name, opts, func(cmd *exec.Cmd) {
		cmd.Args = append(cmd.Args, "-f", "-")
		cmd.Stdin = r
	}, 1)
}

// ParseSteps is Parse for several inputs that nft loads one after the
// other into the same private namespace, each as its own transaction, as
// successive `nft -f` runs would (nft cannot, for example, delete an
// interval set element in the transaction that adds it). Errors name the
// step's input as name.
func ParseSteps(name string, opts Options, inputs ...string) (*nlmsg.Ruleset, error) {
	if name == "" {
		name = "-"
	}
	if len(inputs) == 0 {
		return &nlmsg.Ruleset{}, nil
	}
	i := 0
	return parse(name, opts, func(cmd *exec.Cmd) {
		cmd.Args = append(cmd.Args, "-f", "-")
		cmd.Stdin = strings.NewReader(inputs[i])
		i++
	}, len(inputs))
}

// ParseFile is Parse for the ruleset file at path. nft reads the file itself
// (nft -f path), so that its messages and include directives work as with a
// plain `nft -f path`.
func ParseFile(path string, opts Options) (*nlmsg.Ruleset, error) {
	// Open it here so that a missing file is reported as such, not as an
	// nft error.
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	f.Close()
	return parse(path, opts, func(cmd *exec.Cmd) {
		cmd.Args = append(cmd.Args, "-f", path)
	}, 1)
}

func parse(name string, opts Options, setInput func(*exec.Cmd), runs int) (*nlmsg.Ruleset, error) {
	msgs, err := parseMessages(name, opts, setInput, runs)
	if err != nil {
		return nil, err
	}
	rs, err := nlmsg.Decode(msgs)
	if err != nil {
		return nil, fmt.Errorf("%s: decode dump: %w", name, err)
	}
	return rs, nil
}

// parseMessages loads the ruleset with nft in a private network namespace
// and returns the raw messages of its dump (see DumpMessages). nft runs
// runs times, setInput preparing each run.
func parseMessages(name string, opts Options, setInput func(*exec.Cmd), runs int) ([]netlink.Message, error) {
	nft := opts.Nft
	if nft == "" {
		p, err := exec.LookPath("nft")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		nft = p
	}

	links, err := listLinks(opts.TargetNetNS)
	if err != nil {
		return nil, fmt.Errorf("%s: interfaces of the target network namespace: %w", name, err)
	}

	var msgs []netlink.Message
	err = inPrivateNetNS(func(ns *os.File) error {
		if err := mirrorLinks(ns, links); err != nil {
			return err
		}
		for i := 0; i < runs; i++ {
			if err := runNft(nft, name, setInput); err != nil {
				return err
			}
		}
		var err error
		msgs, err = DumpMessages(ns)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return msgs, nil
}

// Listing loads the ruleset read from r into a private network namespace,
// as Parse does, and returns what `nft args...` then prints there (for
// example "list ruleset", or "-j list ruleset").
func Listing(name string, r io.Reader, opts Options, args ...string) (string, error) {
	nft := opts.Nft
	if nft == "" {
		p, err := exec.LookPath("nft")
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		nft = p
	}
	links, err := listLinks(opts.TargetNetNS)
	if err != nil {
		return "", fmt.Errorf("%s: interfaces of the target network namespace: %w", name, err)
	}
	var out bytes.Buffer
	err = inPrivateNetNS(func(ns *os.File) error {
		if err := mirrorLinks(ns, links); err != nil {
			return err
		}
		if err := runNft(nft, name, func(cmd *exec.Cmd) {
			cmd.Args = append(cmd.Args, "-f", "-")
			cmd.Stdin = r
		}); err != nil {
			return err
		}
		return runNft(nft, name, func(cmd *exec.Cmd) {
			cmd.Args = append(cmd.Args, args...)
			cmd.Stdout = &out
		})
	})
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return out.String(), nil
}

// NftError is nft's refusal of a ruleset: its exit status and what it wrote
// to stderr (which names file:line:column of the offending text).
type NftError struct {
	Name   string // the ruleset's name, as given to Parse
	Status int    // nft's exit status
	Stderr string
}

func (e *NftError) Error() string {
	return fmt.Sprintf("nft exited with status %d: %s", e.Status, strings.TrimSpace(e.Stderr))
}

// runNft runs nft on the calling thread's network namespace. It must be
// called from the locked thread of inPrivateNetNS: the child inherits the
// network namespace of the thread that forks it.
func runNft(nft, name string, setInput func(*exec.Cmd)) error {
	cmd := exec.Command(nft)
	var stderr, stdout bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stdout
	setInput(cmd)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		msg := stderr.String()
		if name != "" {
			// nft names its standard input /dev/stdin.
			msg = strings.ReplaceAll(msg, "/dev/stdin:", name+":")
		}
		if strings.TrimSpace(msg) == "" {
			msg = stdout.String()
		}
		return &NftError{Name: name, Status: exit.ExitCode(), Stderr: msg}
	case err != nil:
		return fmt.Errorf("run %s: %w", nft, err)
	}
	return nil
}

// inPrivateNetNS runs fn on a locked OS thread inside a new network
// namespace; ns is that namespace. Processes fn starts inherit it. The
// namespace disappears once fn has returned and its sockets are closed.
func inPrivateNetNS(fn func(ns *os.File) error) error {
	ns, err := nsctx.New()
	if err != nil {
		return err
	}
	defer ns.Close()
	return ns.Do(func() error { return fn(ns.File()) })
}

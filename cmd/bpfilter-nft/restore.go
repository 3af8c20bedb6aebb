package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/iptables"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

func init() {
	register(&command{
		name:    "restore",
		args:    "[-4|-6] [-n|--noflush] [--test] [--translate] [FILE]",
		summary: "load an iptables-restore / ip6tables-restore script (filter table)",
		run:     runRestore,
	})
}

const restoreHelp = `Reads iptables-restore input (ip6tables-restore with -6) from FILE or
standard input and applies its filter table, translated into the native
nf_tables expressions iptables-nft would create, through the same translator
and loader as -f. Tables the input names are replaced unless --noflush.
The ruleset options (--state, --netns, --pid, --cgroup) may come first:
bpfilter-nft --netns /run/netns/x restore rules.v4

Errors name the line, as iptables-restore does ("line N failed: …"); exit
status 2 for input iptables-restore rejects too, 1 for anything else
(unsupported matches and targets, other tables, the kernel). Nothing is
applied unless the whole input translates.

--test parses, translates and compiles only. --translate prints the
equivalent nft ruleset (the migration tool) and applies nothing.`

func runRestore(stdout, stderr io.Writer, args []string) error {
	c := lookup("restore")
	fs := newFlagSet(c, stderr, restoreHelp)
	var v4, v6, noflush, test, toNft bool
	fs.BoolVar(&v4, "4", false, "iptables-restore input (the default)")
	fs.BoolVar(&v6, "6", false, "ip6tables-restore input")
	fs.BoolVar(&noflush, "n", false, "do not replace the tables the input names; change them")
	fs.BoolVar(&noflush, "noflush", false, "same as -n")
	fs.BoolVar(&test, "t", false, "same as --test")
	fs.BoolVar(&test, "test", false, "parse, translate and compile only; apply nothing")
	fs.BoolVar(&toNft, "translate", false, "print the equivalent nft ruleset; apply nothing")
	g := globals
	fs.StringVar(&g.stateRoot, "state", g.stateRoot, "bpffs `DIR` holding the pinned ruleset")
	fs.StringVar(&g.netns, "netns", g.netns, "act in the network namespace at `PATH`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if v4 && v6 {
		return &exitError{code: 2, err: errors.New("-4 and -6 are exclusive")}
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return errUsage
	}
	fam := nlmsg.FamilyIPv4
	if v6 {
		fam = nlmsg.FamilyIPv6
	}
	var input []byte
	var err error
	name := "-"
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		name = fs.Arg(0)
		input, err = os.ReadFile(name)
	} else {
		input, err = io.ReadAll(stdin)
	}
	if err != nil {
		return err
	}
	restore := func(cur *nlmsg.Ruleset) (*nlmsg.Ruleset, error) {
		rs, err := iptables.Restore(bytes.NewReader(input), iptables.Options{Family: fam, Noflush: noflush, Current: cur})
		return rs, restoreError(err)
	}
	switch {
	case toNft:
		rs, err := restore(nil)
		if err != nil {
			return err
		}
		lifted, err := translate.Lift(rs)
		if err != nil {
			return err
		}
		if len(lifted.Failed) > 0 {
			var errs []error
			for _, f := range lifted.Failed {
				errs = append(errs, fmt.Errorf("chain %s: %w", f.Chain, f.Err))
			}
			return fmt.Errorf("not translatable:\n%w", errors.Join(errs...))
		}
		return lifted.Ruleset.Print(stdout)
	case test:
		rs, err := restore(nil)
		if err != nil {
			return err
		}
		res, err := pipeline.Translate(rs, pipeline.Options{})
		if err != nil {
			return err
		}
		if err := res.Err(); err != nil {
			return fmt.Errorf("these rules cannot be translated exactly:\n%w", err)
		}
		fmt.Fprintf(stdout, "%s: %d rules in %d programs compiled; nothing applied (test mode)\n", name, len(res.Rules), len(res.Programs))
		return nil
	}
	current := func(text string, ns *os.File) (*nlmsg.Ruleset, error) {
		if strings.TrimSpace(text) == "" {
			return nil, nil
		}
		return nftfile.Parse("stored ruleset", strings.NewReader(text), nftfile.Options{TargetNetNS: ns})
	}
	return withRuleset(g,
		func(t *target) error {
			unlock, err := t.st.Lock()
			if err != nil {
				return err
			}
			defer unlock()
			text, err := t.storedText()
			if err != nil {
				return err
			}
			cur, err := current(text, t.ns.File())
			if err != nil {
				return err
			}
			rs, err := restore(cur)
			if err != nil {
				return err
			}
			return t.applyRuleset(stdout, g, name, rs)
		},
		func(d *daemonTarget) error {
			return d.update(stdout, g, name, func(text string) (*nlmsg.Ruleset, error) {
				cur, err := current(text, d.ns.File())
				if err != nil {
					return nil, err
				}
				return restore(cur)
			})
		})
}

// restoreError words a parse error as iptables-restore does, with its exit
// status: 2 for input iptables-restore rejects, 1 for the rest.
func restoreError(err error) error {
	var le *iptables.Error
	if err == nil || !errors.As(err, &le) {
		return err
	}
	code := 2
	if errors.Is(err, iptables.ErrUnsupported) || le.Err.Error() == "COMMIT expected" {
		code = 1
	}
	return &exitError{code: code, err: fmt.Errorf("line %d failed: %w", le.Line, le.Err)}
}

// Command bpfilter-nft enforces nftables rulesets with eBPF.
//
// Run `bpfilter-nft help` for the commands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one subcommand.
type command struct {
	name    string
	args    string // argument synopsis
	summary string
	run     func(stdout, stderr io.Writer, args []string) error
}

var commands []*command

func register(c *command) { commands = append(commands, c) }

// errUsage marks an error whose message already explains the usage.
var errUsage = errors.New("usage")

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(os.Stdout, os.Stderr, os.Args[1:]))
}

func run(stdout, stderr io.Writer, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c := lookup(args[1]); c != nil {
				return runCommand(c, stdout, stderr, []string{"-h"})
			}
		}
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if strings.HasPrefix(args[0], "-") {
		return runGlobal(stdout, stderr, args)
	}
	globals = rulesetFlags{}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "bpfilter-nft: unknown command %q (see bpfilter-nft help)\n", args[0])
		return 2
	}
	return runCommand(c, stdout, stderr, args[1:])
}

func runCommand(c *command, stdout, stderr io.Writer, args []string) int {
	err := c.run(stdout, stderr, args)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "bpfilter-nft %s: %v\n", c.name, err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprint(w, `bpfilter-nft enforces nftables rulesets with eBPF: nft's own parser reads the
ruleset, every rule is translated exactly (or refused, naming the rule and the
expression), and each base chain becomes one BPF program (XDP, tc, netfilter or
cgroup_skb, after the table's family and hook).

Usage: bpfilter-nft COMMAND [ARGS]

Commands:
`)
	sorted := append([]*command(nil), commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\n"+rulesetUsage)
	fmt.Fprint(w, "\nRun `bpfilter-nft help COMMAND` for a command's options, `bpfilter-nft -h` for the ruleset options.\n")
}

// newFlagSet returns a flag set whose -h prints the command's synopsis.
func newFlagSet(c *command, stderr io.Writer, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: bpfilter-nft %s %s\n\n%s\n", c.name, c.args, strings.TrimSpace(help))
		var hasFlags bool
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(stderr, "\nOptions:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args, mapping a bad flag to errUsage. Flags may come
// after positional arguments, as in `translate rules.nft -o json`; "--"
// ends the flags.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var flags, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && !isBoolFlag(f) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if err := fs.Parse(append(flags, append([]string{"--"}, positional...)...)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

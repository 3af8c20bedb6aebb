package fastedit

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// Op is the kind of a rule edit.
type Op int

// Rule edits.
const (
	// OpAdd appends the rule to the chain, or places it after the rule
	// Handle names (`add rule … position H` / `handle H`).
	OpAdd Op = iota
	// OpInsert prepends the rule, or places it before the rule Handle
	// names.
	OpInsert
	// OpReplace replaces the rule Handle names.
	OpReplace
	// OpDelete deletes the rule Handle names.
	OpDelete
)

// Command is one rule edit of the nft command line.
type Command struct {
	Op     Op
	Family nlmsg.Family
	Table  string
	Chain  string
	// Handle is the rule the edit refers to (0: none).
	Handle uint64
	// Rule is the rule's text (add, insert, replace).
	Rule string
}

var families = map[string]nlmsg.Family{
	"ip": nlmsg.FamilyIPv4, "ip6": nlmsg.FamilyIPv6, "inet": nlmsg.FamilyInet,
	"arp": nlmsg.FamilyARP, "bridge": nlmsg.FamilyBridge, "netdev": nlmsg.FamilyNetdev,
}

// ParseCommand recognises a rule edit among the arguments of an nft
// command (verb "add", "insert", "replace" or "delete", then args as the
// shell split them). ok is false for any other command, and for rule edits
// this package leaves to nft (index positions, several commands on one
// line, names that need quoting).
func ParseCommand(verb string, args []string) (cmd Command, ok bool) {
	switch verb {
	case "add":
		cmd.Op = OpAdd
	case "insert":
		cmd.Op = OpInsert
	case "replace":
		cmd.Op = OpReplace
	case "delete":
		cmd.Op = OpDelete
	default:
		return cmd, false
	}
	if len(args) < 3 || args[0] != "rule" {
		return cmd, false
	}
	args = args[1:]
	cmd.Family = nlmsg.FamilyIPv4 // nft's default family
	if f, known := families[args[0]]; known {
		cmd.Family = f
		args = args[1:]
	}
	if len(args) < 2 || !plainName(args[0]) || !plainName(args[1]) {
		return cmd, false
	}
	cmd.Table, cmd.Chain = args[0], args[1]
	args = args[2:]
	if len(args) >= 2 && (args[0] == "handle" || args[0] == "position") {
		h, err := strconv.ParseUint(args[1], 10, 64)
		if err != nil || h == 0 {
			return cmd, false
		}
		if args[0] == "position" && (cmd.Op == OpReplace || cmd.Op == OpDelete) {
			return cmd, false
		}
		cmd.Handle = h
		args = args[2:]
	}
	rule := strings.Join(args, " ")
	switch {
	case cmd.Op == OpDelete:
		// delete rule needs a handle and nothing after it.
		return cmd, cmd.Handle != 0 && len(args) == 0
	case cmd.Op == OpReplace && cmd.Handle == 0:
		return cmd, false
	case strings.TrimSpace(rule) == "":
		return cmd, false
	case strings.ContainsAny(rule, ";\n#") || len(args) > 0 && args[0] == "index":
		// Several commands, comments, or index positions: nft's.
		return cmd, false
	}
	cmd.Rule = rule
	return cmd, true
}

// plainName reports whether s is a table or chain name nft reads as it is.
func plainName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// String returns the command in nft syntax.
func (c Command) String() string {
	verb := [...]string{"add", "insert", "replace", "delete"}[c.Op]
	s := fmt.Sprintf("%s rule %s %s %s", verb, familyName(c.Family), c.Table, c.Chain)
	if c.Handle != 0 {
		s += fmt.Sprintf(" handle %d", c.Handle)
	}
	if c.Rule != "" {
		s += " " + c.Rule
	}
	return s
}

func familyName(f nlmsg.Family) string {
	for n, v := range families {
		if v == f {
			return n
		}
	}
	return fmt.Sprint(uint8(f))
}

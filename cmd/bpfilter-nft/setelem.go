package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/internal/settimeouts"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
)

// setRef names the set an element command changes.
type setRef struct {
	family, table, set string
}

var familyNames = map[string]bool{"ip": true, "ip6": true, "inet": true, "arp": true, "bridge": true, "netdev": true}

// elementCommand recognises the commands that change only a set's
// elements: add/create/delete element FAMILY TABLE SET { … } and flush
// set|map FAMILY TABLE SET (the family defaults to ip, as in nft).
func elementCommand(verb string, args []string) (setRef, bool) {
	var rest []string
	switch {
	case (verb == "add" || verb == "create" || verb == "delete") && len(args) > 0 && args[0] == "element":
		rest = args[1:]
	case verb == "flush" && len(args) > 0 && (args[0] == "set" || args[0] == "map"):
		rest = args[1:]
	default:
		return setRef{}, false
	}
	fam := "ip"
	if len(rest) > 0 && familyNames[rest[0]] {
		fam, rest = rest[0], rest[1:]
	}
	if len(rest) < 2 {
		return setRef{}, false
	}
	return setRef{family: fam, table: rest[0], set: rest[1]}, true
}

// changeSet applies an element command: nft loads the running ruleset,
// then cmd, and when the set is backed by a map of the running
// ruleset only that map and the stored text change (programs and links
// stay); otherwise the whole ruleset is reloaded as by change.
func (t *target) changeSet(stdout io.Writer, g rulesetFlags, name, cmd string, ref setRef) error {
	if g.check {
		return t.change(stdout, g, name, cmd)
	}
	unlock, err := t.st.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	current, err := t.storedText()
	if err != nil {
		return err
	}
	current, t.timeouts, err = settimeouts.Stored(t.st, current, t.ns.File())
	if err != nil {
		return err
	}
	// The command is its own transaction after the running ruleset's, as
	// with nft (which cannot delete an interval element in the
	// transaction that adds it).
	steps := []string{cmd}
	if strings.TrimSpace(current) != "" {
		steps = []string{current, cmd}
	}
	rs, err := nftfile.ParseSteps(name, nftfile.Options{TargetNetNS: t.ns.File()}, steps...)
	if err != nil {
		return err
	}
	lifted, err := translate.Lift(rs)
	if err != nil {
		return err
	}
	var tab *ir.Table
	for _, tb := range lifted.Ruleset.Tables {
		if tb.Family.String() == ref.family && tb.Name == ref.table {
			tab = tb
		}
	}
	var set *ir.Set
	if tab != nil {
		for _, s := range tab.Sets {
			if s.Name == ref.set {
				set = s
			}
		}
	}
	if set == nil || lifted.Err() != nil {
		return t.applyRuleset(stdout, g, name, rs)
	}
	t.timeouts.Keep(lifted.Ruleset)
	var text strings.Builder
	if err := lifted.Ruleset.Print(&text); err != nil {
		return err
	}
	err = loader.UpdateSet(t.st, tab.Family, tab.Name, set, text.String())
	if errors.Is(err, loader.ErrSetNotMapped) {
		return t.applyRuleset(stdout, g, name, rs)
	}
	if err != nil {
		return fmt.Errorf("set %s %s %s: %w", ref.family, ref.table, ref.set, err)
	}
	return nil
}

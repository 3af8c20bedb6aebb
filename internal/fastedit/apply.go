package fastedit

import (
	"errors"
	"fmt"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/translate"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// RuleParser has nft load skeleton and command (one `add rule`) into an
// empty namespace and returns the decoded result.
type RuleParser func(skeleton, command string) (*nlmsg.Ruleset, error)

// NftParser is the RuleParser that runs the real nft (nftfile.Parse) once
// on the skeleton followed by the command, in a private namespace
// mirroring the interfaces opts names. Its errors name the command as
// "<cmdline>" with the line numbers of the combined input: a caller
// reports nft's refusals from its own full parse instead.
func NftParser(opts nftfile.Options) RuleParser {
	return func(skeleton, command string) (*nlmsg.Ruleset, error) {
		return nftfile.Parse("<cmdline>", strings.NewReader(skeleton+"\n"+command), opts)
	}
}

// Skeleton returns the tables, chains (with their hooks and policies),
// named objects and named set declarations of rs in nft syntax, without
// rules or elements: enough for nft to parse any rule of rs's tables.
func Skeleton(rs *nlmsg.Ruleset) (string, error) {
	sk := &nlmsg.Ruleset{Tables: rs.Tables, Chains: rs.Chains, Objs: rs.Objs}
	for _, s := range rs.Sets {
		if s.Flags&nftSetAnonymous == 0 {
			sk.Sets = append(sk.Sets, s)
		}
	}
	lifted, err := translate.Lift(sk)
	if err != nil {
		return "", fmt.Errorf("skeleton: %w", err)
	}
	var b strings.Builder
	if err := lifted.Ruleset.Print(&b); err != nil {
		return "", fmt.Errorf("skeleton: %w", err)
	}
	return b.String(), nil
}

// Edit is a rule edit as applied: the command and what nft made of its
// rule (the rule, its anonymous sets and their elements; nil for a
// delete). Replaying it on the same ruleset needs no nft.
type Edit struct {
	Cmd    Command
	Parsed *nlmsg.Ruleset
}

// Apply returns the ruleset cur (canonical, see Canonical) after the rule
// edit cmd, in canonical form, and the edit as applied; cur is not
// changed. parse has nft parse a new rule against the skeleton of cur. A
// chain or rule handle cur lacks yields ErrNotCached: nft's own error
// message is the slow path's.
func Apply(cur *nlmsg.Ruleset, cmd Command, parse RuleParser) (*nlmsg.Ruleset, Edit, error) {
	e := Edit{Cmd: cmd}
	next, err := apply(cur, cmd, func() (*nlmsg.Ruleset, error) {
		skeleton, err := Skeleton(cur)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotCached, err)
		}
		add := Command{Op: OpAdd, Family: cmd.Family, Table: cmd.Table, Chain: cmd.Chain, Rule: cmd.Rule}
		prs, err := parse(skeleton, add.String()+"\n")
		if err != nil {
			return nil, err
		}
		e.Parsed = &nlmsg.Ruleset{Rules: prs.Rules}
		for _, s := range prs.Sets {
			if s.Flags&nftSetAnonymous != 0 {
				e.Parsed.Sets = append(e.Parsed.Sets, s)
			}
		}
		for _, el := range prs.Elems {
			for _, s := range e.Parsed.Sets {
				if el.Family == s.Family && el.Table == s.Table && el.Set == s.Name {
					e.Parsed.Elems = append(e.Parsed.Elems, el)
					break
				}
			}
		}
		return prs, nil
	})
	if err != nil {
		return nil, Edit{}, err
	}
	return next, e, nil
}

// replay applies a recorded edit again.
func replay(cur *nlmsg.Ruleset, e Edit) (*nlmsg.Ruleset, error) {
	return apply(cur, e.Cmd, func() (*nlmsg.Ruleset, error) {
		if e.Parsed == nil {
			return nil, errors.New("edit without its parsed rule")
		}
		return e.Parsed, nil
	})
}

func apply(cur *nlmsg.Ruleset, cmd Command, parsed func() (*nlmsg.Ruleset, error)) (*nlmsg.Ruleset, error) {
	found := false
	for _, ch := range cur.Chains {
		if ch.Family == cmd.Family && ch.Table == cmd.Table && ch.Name == cmd.Chain {
			found = true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: no chain %s %s %s", ErrNotCached, familyName(cmd.Family), cmd.Table, cmd.Chain)
	}
	inChain := func(r *nlmsg.Rule) bool {
		return r.Family == cmd.Family && r.Table == cmd.Table && r.Chain == cmd.Chain
	}
	at := -1 // index in cur.Rules of the rule cmd.Handle names
	first, last := -1, -1
	for i, r := range cur.Rules {
		if !inChain(r) {
			continue
		}
		if first < 0 {
			first = i
		}
		last = i
		if cmd.Handle != 0 && r.Handle == cmd.Handle {
			at = i
		}
	}
	if cmd.Handle != 0 && at < 0 {
		return nil, fmt.Errorf("%w: no rule handle %d in chain %s", ErrNotCached, cmd.Handle, cmd.Chain)
	}

	next := &nlmsg.Ruleset{Tables: cur.Tables, Chains: cur.Chains, Objs: cur.Objs}

	anonOfTable := func(s *nlmsg.Set) bool {
		return s.Flags&nftSetAnonymous != 0 && s.Family == cmd.Family && s.Table == cmd.Table
	}
	// The anonymous sets of a removed rule go with it, as in the kernel.
	refs := map[string]bool{}
	if cmd.Op == OpDelete || cmd.Op == OpReplace {
		for _, e := range cur.Rules[at].Exprs {
			if l, ok := e.(*nlmsg.Lookup); ok {
				refs[l.Set] = true
			}
		}
	}
	drop := map[string]bool{}
	maxAnon := map[string]int{}
	for _, s := range cur.Sets {
		if anonOfTable(s) {
			if refs[s.Name] {
				drop[s.Name] = true
				continue
			}
			if p, n, ok := anonPrefix(s.Name); ok && n+1 > maxAnon[p] {
				maxAnon[p] = n + 1
			}
		}
		next.Sets = append(next.Sets, s)
	}
	for _, e := range cur.Elems {
		if e.Family == cmd.Family && e.Table == cmd.Table && drop[e.Set] {
			continue
		}
		next.Elems = append(next.Elems, e)
	}

	var added []*nlmsg.Rule
	if cmd.Op != OpDelete {
		prs, err := parsed()
		if err != nil {
			return nil, err
		}
		r, sets, elems, err := newRule(prs, cmd, maxAnon)
		if err != nil {
			return nil, err
		}
		added = []*nlmsg.Rule{r}
		next.Sets = append(next.Sets, sets...)
		next.Elems = append(next.Elems, elems...)
	}

	// Where the rule goes, as the kernel places it.
	pos := len(cur.Rules) // insert before pos
	switch {
	case cmd.Op == OpDelete || cmd.Op == OpReplace:
		pos = at
	case cmd.Op == OpAdd && at >= 0:
		pos = at + 1
	case cmd.Op == OpAdd && last >= 0:
		pos = last + 1
	case cmd.Op == OpInsert && at >= 0:
		pos = at
	case cmd.Op == OpInsert && first >= 0:
		pos = first
	}
	skip := pos
	if cmd.Op == OpDelete || cmd.Op == OpReplace {
		skip = pos + 1
	}
	next.Rules = make([]*nlmsg.Rule, 0, len(cur.Rules)+1)
	next.Rules = append(next.Rules, cur.Rules[:pos]...)
	next.Rules = append(next.Rules, added...)
	next.Rules = append(next.Rules, cur.Rules[skip:]...)
	return Canonical(next)
}

// newRule picks cmd's rule out of nft's parse of it against the skeleton
// and returns the rule, its anonymous sets (named after the highest of
// the ruleset's, maxAnon, so that none clashes; Canonical renames them)
// and their elements.
func newRule(prs *nlmsg.Ruleset, cmd Command, maxAnon map[string]int) (*nlmsg.Rule, []*nlmsg.Set, []*nlmsg.SetElems, error) {
	if len(prs.Rules) != 1 {
		return nil, nil, nil, fmt.Errorf("%w: nft made %d rules of one", ErrNotCached, len(prs.Rules))
	}
	r := *prs.Rules[0]
	if r.Family != cmd.Family || r.Table != cmd.Table || r.Chain != cmd.Chain {
		return nil, nil, nil, fmt.Errorf("%w: nft put the rule in chain %s", ErrNotCached, r.Chain)
	}
	r.Exprs = append([]nlmsg.Expr(nil), r.Exprs...)
	rename := map[string]string{}
	var sets []*nlmsg.Set
	for _, s := range prs.Sets {
		if s.Flags&nftSetAnonymous == 0 || s.Family != cmd.Family || s.Table != cmd.Table {
			continue
		}
		p, _, ok := anonPrefix(s.Name)
		if !ok {
			return nil, nil, nil, fmt.Errorf("%w: anonymous set named %s", ErrNotCached, s.Name)
		}
		c := *s
		c.Name = fmt.Sprintf("%s%d", p, maxAnon[p])
		maxAnon[p]++
		rename[s.Name] = c.Name
		sets = append(sets, &c)
	}
	for i, e := range r.Exprs {
		if l, ok := e.(*nlmsg.Lookup); ok {
			if n, ok := rename[l.Set]; ok {
				c := *l
				c.Set, c.SetID = n, 0
				r.Exprs[i] = &c
			}
		}
	}
	var elems []*nlmsg.SetElems
	for _, e := range prs.Elems {
		if n, ok := rename[e.Set]; ok && e.Family == cmd.Family && e.Table == cmd.Table {
			c := *e
			c.Set, c.SetID = n, 0
			elems = append(elems, &c)
		}
	}
	return &r, sets, elems, nil
}

// Package fastedit applies one-rule edits (add, insert, replace and delete
// rule) to the running ruleset without having nft parse all of it again.
//
// The running ruleset is stored as nft text (state.Manifest.Ruleset); every
// edit used to have nft parse that text followed by the change, which for
// 10,000 rules takes seconds. Instead, the decoded nf_tables objects of the
// running ruleset are cached next to it (Save, Load), in canonical form:
// with the handles and anonymous-set names nft gives them when it loads the
// stored text into an empty namespace — the handles `list ruleset -a`
// shows and an edit refers to. An edit then needs nft only for the new
// rule, which it parses against a skeleton of the running ruleset (its
// tables, chains, objects and set declarations, without rules or
// elements); the rule is placed where nft would place it.
//
// Whatever the cache cannot represent exactly (sets with timeouts, set
// references other than lookups, a cache that does not belong to the
// stored text) is refused with ErrNotCached, and the caller takes the slow
// path, which is exact by construction.
package fastedit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/mdlayher/netlink"

	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// ErrNotCached says the fast path cannot serve an edit; the caller must
// have nft parse the whole ruleset.
var ErrNotCached = errors.New("fast edit not possible")

// nftSetAnonymous is NFT_SET_ANONYMOUS.
const nftSetAnonymous = 0x1

// Canonical returns a copy of rs with the handles and anonymous-set names
// nft and the kernel assign when the ruleset printed from rs is loaded into
// an empty namespace (`nft -f` of the stored text):
//
//   - tables are numbered 1, 2, … in order (a per-namespace counter);
//   - within a table one counter numbers, in nft's order of creation, its
//     chains, then its named objects, then its named sets, then for each
//     chain in order each rule's anonymous sets (in the order the rule
//     refers to them) followed by the rule itself;
//   - anonymous sets are named "__set%d" / "__map%d" by a per-prefix,
//     per-table counter from 0, in creation order.
//
// It fails (wrapping ErrNotCached) on what it cannot model: an anonymous
// set that is not referenced by exactly one lookup of one rule, or a rule
// whose other expressions may refer to a set by name.
func Canonical(rs *nlmsg.Ruleset) (*nlmsg.Ruleset, error) {
	out := &nlmsg.Ruleset{}
	type tkey struct {
		fam  nlmsg.Family
		name string
	}
	counter := map[tkey]uint64{}
	for i, t := range rs.Tables {
		c := *t
		c.Handle = uint64(i + 1)
		out.Tables = append(out.Tables, &c)
		counter[tkey{t.Family, t.Name}] = 0
	}
	next := func(fam nlmsg.Family, table string) (uint64, error) {
		k := tkey{fam, table}
		h, ok := counter[k]
		if !ok {
			return 0, fmt.Errorf("%w: object of unknown table %s", ErrNotCached, table)
		}
		counter[k] = h + 1
		return h + 1, nil
	}
	chainsOf := map[tkey][]*nlmsg.Chain{}
	for _, t := range rs.Tables {
		for _, ch := range rs.Chains {
			if ch.Family == t.Family && ch.Table == t.Name {
				c := *ch
				h, err := next(c.Family, c.Table)
				if err != nil {
					return nil, err
				}
				c.Handle = h
				out.Chains = append(out.Chains, &c)
				chainsOf[tkey{t.Family, t.Name}] = append(chainsOf[tkey{t.Family, t.Name}], &c)
			}
		}
	}
	if len(out.Chains) != len(rs.Chains) {
		return nil, fmt.Errorf("%w: chains of unknown tables", ErrNotCached)
	}
	for _, t := range rs.Tables {
		for _, o := range rs.Objs {
			if o.Family == t.Family && o.Table == t.Name {
				c := *o
				h, err := next(c.Family, c.Table)
				if err != nil {
					return nil, err
				}
				c.Handle = h
				out.Objs = append(out.Objs, &c)
			}
		}
	}
	if len(out.Objs) != len(rs.Objs) {
		return nil, fmt.Errorf("%w: objects of unknown tables", ErrNotCached)
	}
	type skey struct {
		fam         nlmsg.Family
		table, name string
	}
	anon := map[skey]*nlmsg.Set{}
	for _, t := range rs.Tables {
		for _, s := range rs.Sets {
			if s.Family != t.Family || s.Table != t.Name {
				continue
			}
			if s.Flags&nftSetAnonymous != 0 {
				anon[skey{s.Family, s.Table, s.Name}] = s
				continue
			}
			if _, _, ok := anonPrefix(s.Name); ok {
				// A named set that looks like an anonymous one
				// would take part in the kernel's numbering.
				return nil, fmt.Errorf("%w: named set %s has an anonymous set's name", ErrNotCached, s.Name)
			}
			c := *s
			h, err := next(c.Family, c.Table)
			if err != nil {
				return nil, err
			}
			c.Handle = h
			out.Sets = append(out.Sets, &c)
		}
	}
	elemsOf := map[skey][]*nlmsg.SetElems{}
	for _, e := range rs.Elems {
		k := skey{e.Family, e.Table, e.Set}
		if _, ok := anon[k]; ok {
			elemsOf[k] = append(elemsOf[k], e)
			continue
		}
		c := *e
		out.Elems = append(out.Elems, &c)
	}
	rulesOf := map[skey][]*nlmsg.Rule{}
	for _, r := range rs.Rules {
		k := skey{r.Family, r.Table, r.Chain}
		rulesOf[k] = append(rulesOf[k], r)
	}
	used := map[skey]bool{}
	nrules := 0
	for _, t := range rs.Tables {
		tk := tkey{t.Family, t.Name}
		names := map[string]int{} // next number per anonymous prefix
		for _, ch := range chainsOf[tk] {
			for _, r := range rulesOf[skey{ch.Family, ch.Table, ch.Name}] {
				c := *r
				c.Position, c.ID = 0, 0
				c.Exprs = append([]nlmsg.Expr(nil), r.Exprs...)
				for i, e := range c.Exprs {
					switch e := e.(type) {
					case *nlmsg.Lookup:
						k := skey{r.Family, r.Table, e.Set}
						s, ok := anon[k]
						if !ok {
							continue
						}
						if used[k] {
							return nil, fmt.Errorf("%w: anonymous set %s referenced twice", ErrNotCached, e.Set)
						}
						used[k] = true
						prefix, _, ok := anonPrefix(s.Name)
						if !ok {
							return nil, fmt.Errorf("%w: anonymous set named %s", ErrNotCached, s.Name)
						}
						ns := *s
						ns.Name = fmt.Sprintf("%s%d", prefix, names[prefix])
						ns.ID = 0
						names[prefix]++
						h, err := next(ns.Family, ns.Table)
						if err != nil {
							return nil, err
						}
						ns.Handle = h
						out.Sets = append(out.Sets, &ns)
						for _, el := range elemsOf[k] {
							ce := *el
							ce.Set, ce.SetID = ns.Name, 0
							out.Elems = append(out.Elems, &ce)
						}
						le := *e
						le.Set, le.SetID = ns.Name, 0
						c.Exprs[i] = &le
					case *nlmsg.Opaque:
						if name, ok := opaqueSetRef(e); ok {
							if _, isAnon := anon[skey{r.Family, r.Table, name}]; isAnon || name == "" {
								return nil, fmt.Errorf("%w: anonymous set %s referenced by a %s expression", ErrNotCached, name, e.Name)
							}
						}
					}
				}
				h, err := next(c.Family, c.Table)
				if err != nil {
					return nil, err
				}
				c.Handle = h
				out.Rules = append(out.Rules, &c)
				nrules++
			}
		}
	}
	if nrules != len(rs.Rules) {
		return nil, fmt.Errorf("%w: rules of unknown chains", ErrNotCached)
	}
	if len(used) != len(anon) {
		return nil, fmt.Errorf("%w: anonymous sets no rule refers to", ErrNotCached)
	}
	return out, nil
}

// anonPrefix splits an anonymous set's kernel-assigned name ("__set3",
// "__map0") into its prefix and number.
func anonPrefix(name string) (prefix string, n int, ok bool) {
	for _, p := range []string{"__set", "__map"} {
		if rest, found := strings.CutPrefix(name, p); found && rest != "" {
			if _, err := fmt.Sscanf(rest, "%d", &n); err == nil && fmt.Sprint(n) == rest {
				return p, n, true
			}
		}
	}
	return "", 0, false
}

// opaqueSetRef returns the set an undecoded expression names, if any
// (dynset, the set form of objref, an undecoded lookup). An expression
// whose attributes do not parse is taken to name one ("").
func opaqueSetRef(e *nlmsg.Opaque) (string, bool) {
	var attr uint16
	switch e.Name {
	case "dynset", "lookup":
		attr = 1 // NFTA_DYNSET_SET_NAME, NFTA_LOOKUP_SET
	case "objref":
		attr = 4 // NFTA_OBJREF_SET_NAME
	default:
		return "", false
	}
	ad, err := netlink.NewAttributeDecoder(e.Data)
	if err != nil {
		return "", true
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == attr {
			return ad.String(), true
		}
	}
	if ad.Err() != nil {
		return "", true
	}
	return "", false
}

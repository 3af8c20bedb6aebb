// Package translate lifts decoded nf_tables objects (package nlmsg) into the
// rule IR (package ir).
//
// Lifting follows the nf_tables register machine: a payload or meta load
// fills a register, bitwise and byteorder expressions transform it, and a
// cmp, range or lookup consumes it as one typed ir.Match. Every expression of
// every rule is accounted for: an expression that has no exact IR form is
// reported as a RuleError naming the table, chain, rule handle and
// expression, and the rule is left out of the IR.
package translate

import (
	"errors"
	"fmt"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// Result is the outcome of lifting a ruleset.
type Result struct {
	// Ruleset holds every table, chain and set, and every rule that was
	// lifted exactly.
	Ruleset *ir.Ruleset
	// Failed lists the rules that could not be lifted, in dump order.
	Failed []*RuleError
}

// Err returns nil when every rule was lifted and otherwise an error listing
// every failed rule.
func (r *Result) Err() error {
	if len(r.Failed) == 0 {
		return nil
	}
	errs := make([]error, len(r.Failed))
	for i, f := range r.Failed {
		errs[i] = f
	}
	return errors.Join(errs...)
}

// RuleError says why one rule could not be lifted.
type RuleError struct {
	Family ir.Family
	Table  string
	Chain  string
	Handle uint64
	// Expr is the index of the offending expression in the rule, or -1
	// when the problem is not one expression's.
	Expr int
	// Kind is the offending expression's kernel name ("log", "ct", …).
	Kind string
	// Exprs is the rule's expression list in nft --debug=netlink style.
	Exprs string
	Err   error
}

func (e *RuleError) Error() string {
	loc := fmt.Sprintf("table %s %s, chain %s, rule handle %d", FamilyName(e.Family), e.Table, e.Chain, e.Handle)
	if e.Expr >= 0 {
		return fmt.Sprintf("%s: expression %d (%s): %v", loc, e.Expr+1, e.Kind, e.Err)
	}
	return fmt.Sprintf("%s: %v", loc, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

// ErrUnsupported is wrapped by every error about something that is valid
// nf_tables but has no exact translation.
var ErrUnsupported = errors.New("unsupported")

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}

// FamilyName returns nft's name for a table family.
func FamilyName(f ir.Family) string { return f.String() }

// Lift turns a decoded ruleset into IR. It returns an error only for a
// ruleset that is inconsistent as a whole (a chain of an unknown table, a
// rule of an unknown chain, an element of an unknown set); problems of single
// rules are reported in Result.Failed.
func Lift(rs *nlmsg.Ruleset) (*Result, error) {
	res := &Result{Ruleset: &ir.Ruleset{}}
	type tkey struct {
		fam  nlmsg.Family
		name string
	}
	tables := map[tkey]*ir.Table{}
	chains := map[tkey]map[string]*ir.Chain{}
	sets := map[tkey]map[string]*pendingSet{}

	for _, t := range rs.Tables {
		k := tkey{t.Family, t.Name}
		if _, dup := tables[k]; dup {
			return nil, fmt.Errorf("table %s %s: listed twice", FamilyName(ir.Family(t.Family)), t.Name)
		}
		it := &ir.Table{Family: ir.Family(t.Family), Name: t.Name, Flags: t.Flags}
		tables[k] = it
		chains[k] = map[string]*ir.Chain{}
		sets[k] = map[string]*pendingSet{}
		res.Ruleset.Tables = append(res.Ruleset.Tables, it)
	}
	for _, c := range rs.Chains {
		k := tkey{c.Family, c.Table}
		it, ok := tables[k]
		if !ok {
			return nil, fmt.Errorf("chain %s: table %s %s not found", c.Name, FamilyName(ir.Family(c.Family)), c.Table)
		}
		ic, err := liftChain(it.Family, c)
		if err != nil {
			return nil, fmt.Errorf("table %s %s, chain %s: %w", FamilyName(it.Family), it.Name, c.Name, err)
		}
		chains[k][c.Name] = ic
		it.Chains = append(it.Chains, ic)
	}
	for _, s := range rs.Sets {
		k := tkey{s.Family, s.Table}
		it, ok := tables[k]
		if !ok {
			return nil, fmt.Errorf("set %s: table %s %s not found", s.Name, FamilyName(ir.Family(s.Family)), s.Table)
		}
		ps := &pendingSet{msg: s, set: &ir.Set{
			Name: s.Name, Flags: ir.SetFlags(s.Flags), KeyType: s.KeyType, KeyLen: s.KeyLen, Size: s.Size,
			DataType: s.DataType, DataLen: s.DataLen, Timeout: s.Timeout, Fields: concatFields(s),
		}}
		sets[k][s.Name] = ps
		it.Sets = append(it.Sets, ps.set)
	}
	for _, e := range rs.Elems {
		ps, ok := sets[tkey{e.Family, e.Table}][e.Set]
		if !ok {
			return nil, fmt.Errorf("elements of set %s: set not found in table %s %s", e.Set, FamilyName(ir.Family(e.Family)), e.Table)
		}
		ps.elems = append(ps.elems, e.Elems...)
	}
	for _, o := range rs.Objs {
		it, ok := tables[tkey{o.Family, o.Table}]
		if !ok {
			return nil, fmt.Errorf("object %s: table %s %s not found", o.Name, FamilyName(ir.Family(o.Family)), o.Table)
		}
		obj, err := liftObject(o)
		if err != nil {
			return nil, fmt.Errorf("table %s %s, object %s: %w", FamilyName(it.Family), it.Name, o.Name, err)
		}
		it.Objects = append(it.Objects, obj)
	}
	for k, byName := range sets {
		for _, ps := range byName {
			ps.finish(chains[k])
		}
	}
	for _, r := range rs.Rules {
		k := tkey{r.Family, r.Table}
		it, ok := tables[k]
		if !ok {
			return nil, fmt.Errorf("rule handle %d: table %s %s not found", r.Handle, FamilyName(ir.Family(r.Family)), r.Table)
		}
		ic, ok := chains[k][r.Chain]
		if !ok {
			return nil, fmt.Errorf("rule handle %d: chain %s not found in table %s %s", r.Handle, r.Chain, FamilyName(it.Family), it.Name)
		}
		lr := &ruleLifter{family: it.Family, sets: sets[k], chains: chains[k], table: it}
		rule, err := lr.lift(r)
		if err != nil {
			re := &RuleError{
				Family: it.Family, Table: it.Name, Chain: r.Chain, Handle: r.Handle,
				Expr: -1, Exprs: DescribeExprs(r.Exprs), Err: err,
			}
			var ee *exprError
			if errors.As(err, &ee) {
				re.Expr, re.Kind, re.Err = ee.index, ee.kind, ee.err
			}
			res.Failed = append(res.Failed, re)
			continue
		}
		ic.Rules = append(ic.Rules, rule)
	}
	return res, nil
}

// liftChain lifts a chain's own attributes (not its rules).
func liftChain(fam ir.Family, c *nlmsg.Chain) (*ir.Chain, error) {
	ic := &ir.Chain{Name: c.Name}
	if c.Hook == nil {
		return ic, nil
	}
	hook, err := hookOf(fam, c.Hook.Num)
	if err != nil {
		return nil, err
	}
	typ := c.Type
	if typ == "" {
		typ = "filter"
	}
	policy := ir.VerdictAccept
	if c.Policy != nil {
		switch int32(*c.Policy) {
		case nlmsg.VerdictAccept:
		case nlmsg.VerdictDrop:
			policy = ir.VerdictDrop
		default:
			return nil, fmt.Errorf("policy %d is neither accept nor drop", *c.Policy)
		}
	}
	ic.Base = &ir.BaseChain{
		Type: typ, Hook: hook, Priority: c.Hook.Priority, Policy: policy,
		Devices: append([]string(nil), c.Hook.Devices...),
	}
	return ic, nil
}

func hookOf(fam ir.Family, num uint32) (ir.Hook, error) {
	if fam == ir.FamilyNetdev {
		switch num {
		case 0:
			return ir.HookIngress, nil
		case 1:
			return ir.HookEgress, nil
		}
		return 0, fmt.Errorf("netdev hook %d unknown", num)
	}
	if num <= 5 {
		return ir.Hook(num), nil
	}
	return 0, fmt.Errorf("hook %d unknown", num)
}

// DescribeExprs renders an expression list one per line, close to
// nft --debug=netlink output, for reports on rules that failed to lift.
func DescribeExprs(exprs []nlmsg.Expr) string {
	var b strings.Builder
	for _, e := range exprs {
		fmt.Fprintf(&b, "[ %s ]\n", describeExpr(e))
	}
	return b.String()
}

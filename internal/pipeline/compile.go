package pipeline

import (
	"errors"
	"fmt"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

// Targets returns the programs a base chain needs: one per device for
// netdev chains, one per protocol family for inet chains on netfilter
// hooks, otherwise one.
func Targets(t *ir.Table, c *ir.Chain, opts Options) ([]codegen.Target, error) {
	cts, err := targets(t, c, opts)
	if err != nil {
		return nil, err
	}
	out := make([]codegen.Target, len(cts))
	for i, ct := range cts {
		out[i] = ct.Target
	}
	return out, nil
}

// chosenTarget is a target and, for netdev ingress programs, why it has
// its program type.
type chosenTarget struct {
	codegen.Target
	backend string
}

func targets(t *ir.Table, c *ir.Chain, opts Options) ([]chosenTarget, error) {
	base, err := codegen.DefaultTarget(t, c)
	if err != nil {
		return nil, err
	}
	override := opts.Type
	if override == nil && opts.Cgroup && t.Family != ir.FamilyNetdev && (c.Base.Hook == ir.HookInput || c.Base.Hook == ir.HookOutput) {
		cg := codegen.CgroupSKB
		override = &cg
	}
	if override != nil {
		base.Type = *override
		switch base.Type {
		case codegen.CgroupSKB:
			switch c.Base.Hook {
			case ir.HookInput:
			case ir.HookOutput:
				base.Egress = true
			default:
				return nil, fmt.Errorf("chain %s: cgroup_skb programs serve only input and output hooks, not %s", c.Name, c.Base.Hook)
			}
		case codegen.TC:
			base.Egress = c.Base.Hook == ir.HookEgress || c.Base.Hook == ir.HookOutput || c.Base.Hook == ir.HookPostrouting
		}
	}
	// The netdev backend (explicit or automatic) decides the program
	// type of netdev ingress chains; egress chains are always tcx.
	choose := opts.Type == nil && t.Family == ir.FamilyNetdev && c.Base.Hook == ir.HookIngress
	var out []chosenTarget
	switch {
	case t.Family == ir.FamilyNetdev:
		if len(c.Base.Devices) == 0 {
			return []chosenTarget{{Target: base}}, nil
		}
		for _, name := range c.Base.Devices {
			tgt := chosenTarget{Target: base}
			ifi, err := nsctx.InterfaceByName(opts.NetNS, name)
			if err == nil {
				tgt.Device = &codegen.Device{Index: ifi.Index, Name: ifi.Name, Type: ifi.Type, MAC: ifi.MAC}
			}
			if choose {
				var ch Choice
				switch {
				case opts.NetdevBackend != nil:
					ch = explicitChoice(*opts.NetdevBackend)
				case err != nil:
					// Not attachable anyway (the loader refuses a
					// missing device); the design's default stands.
					ch = Choice{codegen.XDP, "auto: device not found"}
				default:
					ch = ChooseNetdevBackend(probeDevice(opts.NetNS, ifi))
				}
				tgt.Type, tgt.Egress, tgt.backend = ch.Type, false, ch.Reason
			}
			out = append(out, tgt)
		}
	case t.Family == ir.FamilyInet && (base.Type == codegen.Netfilter || base.Type == codegen.CgroupSKB):
		for _, pf := range []ir.Family{ir.FamilyIPv4, ir.FamilyIPv6} {
			tgt := chosenTarget{Target: base}
			tgt.ProtoFamily = pf
			out = append(out, tgt)
		}
	default:
		out = append(out, chosenTarget{Target: base})
	}
	return out, nil
}

// compileChain compiles base chain c for each of its targets. A rule the
// code generator refuses is recorded in refused and left out, and the
// chain is compiled again, so that every refusal is found.
// With opts.Cache, a chain compiled before from the same inputs (and
// without refusals) is served from the cache. texts memoises the tables'
// texts that cache keys hash.
func compileChain(t *ir.Table, c *ir.Chain, opts Options, refused map[ruleKey]string, texts map[*ir.Table]string, rules map[*ir.Rule]string) ([]*ChainProgram, error) {
	targets, err := targets(t, c, opts)
	if err != nil {
		return nil, fmt.Errorf("table %s %s: %w", t.Family, t.Name, err)
	}
	var out []*ChainProgram
	for _, tgt := range targets {
		skip := map[ruleKey]bool{}
		for k := range refused {
			skip[k] = true
		}
		cgOpts := codegen.Options{Linear: opts.Linear}
		var key [32]byte
		cached := opts.Cache != nil && len(skip) == 0
		if cached {
			text, err := tableText(t, texts, rules)
			if err != nil {
				return nil, fmt.Errorf("table %s %s: %w", t.Family, t.Name, err)
			}
			key = cacheKey(text, t, c, tgt.Target, cgOpts)
			if prog := opts.Cache.get(key, t); prog != nil {
				out = append(out, &ChainProgram{Table: t, Chain: c, Target: tgt.Target, Backend: tgt.backend, Program: prog})
				continue
			}
		}
		for {
			view := withoutRules(t, skip)
			prog, err := codegen.CompileWith(view, view.Chain(c.Name), tgt.Target, cgOpts)
			var ue *codegen.UnsupportedError
			if errors.As(err, &ue) && ue.Handle != 0 {
				k := ruleKey{t.Family, t.Name, ue.Chain, ue.Handle}
				if skip[k] {
					return nil, fmt.Errorf("code generator refused rule handle %d twice: %w", ue.Handle, err)
				}
				skip[k] = true
				refused[k] = ue.Reason
				if ue.Stmt != "" {
					refused[k] = fmt.Sprintf("%q: %s", ue.Stmt, ue.Reason)
				}
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("table %s %s, chain %s (%s): %w", t.Family, t.Name, c.Name, tgt.Type, err)
			}
			if cached && len(skip) == 0 {
				opts.Cache.put(key, prog)
			}
			out = append(out, &ChainProgram{Table: t, Chain: c, Target: tgt.Target, Backend: tgt.backend, Program: prog})
			break
		}
	}
	return out, nil
}

// withoutRules returns a shallow copy of t whose chains lack the rules in
// skip.
func withoutRules(t *ir.Table, skip map[ruleKey]bool) *ir.Table {
	if len(skip) == 0 {
		return t
	}
	nt := *t
	nt.Chains = make([]*ir.Chain, len(t.Chains))
	for i, c := range t.Chains {
		nc := *c
		nc.Rules = nil
		for _, r := range c.Rules {
			if !skip[ruleKey{t.Family, t.Name, c.Name, r.Handle}] {
				nc.Rules = append(nc.Rules, r)
			}
		}
		nt.Chains[i] = &nc
	}
	return &nt
}

package loader

import (
	"fmt"
	"sort"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

// ConntrackTable is the name of the nftables table the loader keeps in a
// network namespace whose ruleset reads conntrack keys (ct state, ct mark,
// …), one per table family that does (ip, ip6, inet).
//
// Connection tracking runs in a namespace only while something holds a
// reference to it for the family (nf_ct_netns_get): the kernel's nftables
// takes one for every rule with a ct expression, even in a chain no
// packet reaches. A BPF program takes none, so without help the skb would
// carry no conntrack entry and every packet would be "ct state invalid".
// The holder table has no base chain, only a regular chain "hold" with one
// ct rule that never runs: it filters nothing and holds exactly the
// reference the original ruleset's ct rules would have held, for the same
// family (so IPv4/IPv6 conntrack and defragmentation are enabled exactly
// where the kernel's nftables would enable them). The loader adds it
// before it attaches programs that need it and deletes it once the
// running ruleset no longer does, and on flush (ReleaseConntrack). It is
// not part of the ruleset bpfilter-nft stores and lists; `nft list
// ruleset` in the namespace shows it, and deleting it there (nft flush
// ruleset) turns conntrack off for the BPF programs.
const ConntrackTable = "bpfilter_nft_conntrack"

const (
	conntrackChain   = "hold"
	conntrackComment = "bpfilter-nft: keeps connection tracking enabled for its BPF programs"
)

// ConntrackFamilies returns the families of the tables of rs whose rules
// read a conntrack key, in ascending order.
func ConntrackFamilies(rs *ir.Ruleset) []ir.Family {
	seen := map[ir.Family]bool{}
	for _, t := range rs.Tables {
		if tableReadsCT(t) {
			seen[t.Family] = true
		}
	}
	out := make([]ir.Family, 0, len(seen))
	for f := range seen {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func tableReadsCT(t *ir.Table) bool {
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			for _, s := range r.Stmts {
				for _, f := range ir.StmtFields(s) {
					if f.Source == ir.SourceCT {
						return true
					}
				}
			}
		}
	}
	return false
}

// nftConn opens an nftables connection in ns (nil: the calling thread's
// namespace, which the caller has locked).
func nftConn(ns *nsctx.NetNS) (*nftables.Conn, func(), error) {
	own := false
	if ns == nil {
		cur, err := nsctx.Current()
		if err != nil {
			return nil, nil, err
		}
		ns, own = cur, true
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.File().Fd())))
	closeAll := func() {
		if c != nil {
			c.CloseLasting()
		}
		if own {
			ns.Close()
		}
	}
	if err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("nftables connection: %w", err)
	}
	return c, closeAll, nil
}

// conntrackHolders returns the families that have a holder table in ns.
func conntrackHolders(c *nftables.Conn) (map[ir.Family]bool, error) {
	tables, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	out := map[ir.Family]bool{}
	for _, t := range tables {
		if t.Name == ConntrackTable {
			out[ir.Family(t.Family)] = true
		}
	}
	return out, nil
}

// EnableConntrack makes sure connection tracking runs in ns for each
// family of fams (see ConntrackTable), and returns the families whose
// holder table it added. Apply calls it; it is exported for harnesses
// that attach programs themselves.
func EnableConntrack(ns *nsctx.NetNS, fams []ir.Family) ([]ir.Family, error) {
	return holdConntrack(ns, fams)
}

// holdConntrack adds a holder table for every family of fams that has
// none in ns, and returns the families it added.
func holdConntrack(ns *nsctx.NetNS, fams []ir.Family) ([]ir.Family, error) {
	if len(fams) == 0 {
		return nil, nil
	}
	c, done, err := nftConn(ns)
	if err != nil {
		return nil, err
	}
	defer done()
	have, err := conntrackHolders(c)
	if err != nil {
		return nil, err
	}
	var added []ir.Family
	for _, f := range fams {
		if have[f] {
			continue
		}
		t := c.AddTable(&nftables.Table{Name: ConntrackTable, Family: nftables.TableFamily(f)})
		ch := c.AddChain(&nftables.Chain{Name: conntrackChain, Table: t})
		c.AddRule(&nftables.Rule{
			Table: t, Chain: ch,
			// ct state untracked: a ct load takes the reference; the
			// rule is never evaluated.
			Exprs: []expr.Any{
				&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: []byte{ir.CTStateUntracked, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
			},
			UserData: userdata.AppendString(nil, userdata.TypeComment, conntrackComment),
		})
		added = append(added, f)
	}
	if len(added) == 0 {
		return nil, nil
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("enable connection tracking (nftables table %s): %w", ConntrackTable, err)
	}
	return added, nil
}

// dropConntrack deletes the holder tables of ns whose family is not in
// keep (nil: all of them).
func dropConntrack(ns *nsctx.NetNS, keep []ir.Family) error {
	kept := map[ir.Family]bool{}
	for _, f := range keep {
		kept[f] = true
	}
	return removeHolders(ns, func(f ir.Family) bool { return !kept[f] })
}

// undoConntrack deletes the holder tables of the families in added.
func undoConntrack(ns *nsctx.NetNS, added []ir.Family) error {
	return removeHolders(ns, func(f ir.Family) bool {
		for _, a := range added {
			if a == f {
				return true
			}
		}
		return false
	})
}

func removeHolders(ns *nsctx.NetNS, remove func(ir.Family) bool) error {
	c, done, err := nftConn(ns)
	if err != nil {
		return err
	}
	defer done()
	have, err := conntrackHolders(c)
	if err != nil {
		return err
	}
	n := 0
	for f := range have {
		if !remove(f) {
			continue
		}
		c.DelTable(&nftables.Table{Name: ConntrackTable, Family: nftables.TableFamily(f)})
		n++
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("release connection tracking (nftables table %s): %w", ConntrackTable, err)
	}
	return nil
}

// ReleaseConntrack deletes every holder table (see ConntrackTable) from
// ns; call it with Flush. A namespace without one is left as it is.
func ReleaseConntrack(ns *nsctx.NetNS) error { return dropConntrack(ns, nil) }

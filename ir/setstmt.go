package ir

// Lookup is a set lookup of a key made of several fields, a concatenation
// ("ip saddr . tcp dport @s"). The key is the fields' register images one
// after the other, each padded with zeros to a multiple of 4 bytes, as
// nf_tables lays consecutive loads out in its 32-bit registers. A Lookup
// ends the rule unless the key is in Set (not in Set, if Negate). A lookup
// of a single field is a Match with OpInSet or OpNotInSet.
type Lookup struct {
	Key    []Field
	Set    *Set
	Negate bool
}

// VerdictMap is a verdict map lookup ("tcp dport vmap { 22 : accept }",
// "iifname vmap @m"): the element whose key matches Key (one field, or a
// concatenation laid out as in Lookup) gives the rule's verdict. When no
// element matches, the rule does not match and evaluation continues with
// the next rule (NFT_BREAK). A VerdictMap is the last statement of its rule.
type VerdictMap struct {
	Key []Field
	Set *Set // a map whose elements carry Verdicts
}

// MetaSetMap is "meta mark set KEY map @m": the value of the element of
// data map Map whose key matches Key (laid out as in Lookup) is written to
// the meta key. When no element matches, the rule ends there (NFT_BREAK
// at the lookup) and the meta key keeps its value.
type MetaSetMap struct {
	Meta MetaKey
	Key  []Field
	Map  *Set
}

func (*Lookup) isStmt()     {}
func (*VerdictMap) isStmt() {}
func (*MetaSetMap) isStmt() {}

// DataVerdict is NFT_DATA_VERDICT, the data type of a verdict map.
const DataVerdict = 0xffffff00

// IsVerdictMap reports whether s maps keys to verdicts.
func (s *Set) IsVerdictMap() bool { return s.Flags&SetMap != 0 && s.DataType == DataVerdict }

// KeyLayout returns the byte offset and length of each field of the set's
// key: one field for a plain key, one per concatenated field otherwise.
func (s *Set) KeyLayout() (offs, lens []uint32) {
	if len(s.Fields) <= 1 {
		return []uint32{0}, []uint32{s.KeyLen}
	}
	off := uint32(0)
	for _, n := range s.Fields {
		offs = append(offs, off)
		lens = append(lens, n)
		off += (n + 3) &^ 3
	}
	return offs, lens
}

// Concatenated reports whether the set's key is a concatenation of more
// than one field.
func (s *Set) Concatenated() bool { return len(s.Fields) > 1 }

// Verdicts returns the distinct verdicts of a verdict map's elements in a
// fixed order (accept, drop, continue, return, then jumps and gotos by
// chain name): the targets a program dispatches to, numbered by their
// index.
func (s *Set) Verdicts() []Verdict {
	seen := map[Verdict]bool{}
	var out []Verdict
	for _, e := range s.Elements {
		if e.Verdict != nil && !seen[*e.Verdict] {
			seen[*e.Verdict] = true
			out = append(out, *e.Verdict)
		}
	}
	rank := func(v Verdict) int {
		switch v.Kind {
		case VerdictAccept:
			return 0
		case VerdictDrop:
			return 1
		case VerdictContinue:
			return 2
		case VerdictReturn:
			return 3
		case VerdictJump:
			return 4
		}
		return 5
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0; j-- {
			a, b := out[j-1], out[j]
			if rank(a) < rank(b) || rank(a) == rank(b) && a.Chain <= b.Chain {
				break
			}
			out[j-1], out[j] = b, a
		}
	}
	return out
}

package ir

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// FormatStmt returns s in nft syntax, as it would appear in a rule of a
// table of family fam.
func FormatStmt(fam Family, s Stmt) string {
	switch s := s.(type) {
	case *Match:
		return formatMatch(fam, s)
	case *Counter:
		return "counter"
	case *Verdict:
		return s.String()
	}
	return fmt.Sprintf("%T", s)
}

// FormatRule returns the rule's statements in nft syntax.
func FormatRule(fam Family, r *Rule) string {
	parts := make([]string, 0, len(r.Stmts)+1)
	for _, s := range r.Stmts {
		parts = append(parts, FormatStmt(fam, s))
	}
	if r.Comment != "" {
		parts = append(parts, fmt.Sprintf("comment %q", r.Comment))
	}
	return strings.Join(parts, " ")
}

// String returns the verdict in nft syntax.
func (v *Verdict) String() string {
	switch v.Kind {
	case VerdictAccept:
		return "accept"
	case VerdictDrop:
		return "drop"
	case VerdictReturn:
		return "return"
	case VerdictJump:
		return "jump " + v.Chain
	case VerdictGoto:
		return "goto " + v.Chain
	}
	return "continue"
}

func formatMatch(fam Family, m *Match) string {
	lhs := formatField(fam, &m.Field)
	switch m.Op {
	case OpInRange:
		return fmt.Sprintf("%s 0x%s-0x%s", lhs, hex.EncodeToString(m.Value), hex.EncodeToString(m.High))
	case OpNotInRange:
		return fmt.Sprintf("%s != 0x%s-0x%s", lhs, hex.EncodeToString(m.Value), hex.EncodeToString(m.High))
	case OpInSet, OpNotInSet:
		neg := ""
		if m.Op == OpNotInSet {
			neg = "!= "
		}
		return fmt.Sprintf("%s %s%s", lhs, neg, formatSetRef(m.Set))
	}
	return fmt.Sprintf("%s %s0x%s", lhs, opText[m.Op], hex.EncodeToString(m.Value))
}

var opText = map[Op]string{OpEq: "", OpNeq: "!= ", OpLt: "< ", OpLte: "<= ", OpGt: "> ", OpGte: ">= "}

func formatSetRef(s *Set) string {
	if s == nil {
		return "@?"
	}
	if !s.Anonymous() {
		return "@" + s.Name
	}
	elems := make([]string, 0, len(s.Elements))
	for _, e := range s.Elements {
		if string(e.Low) == string(e.High) {
			elems = append(elems, "0x"+hex.EncodeToString(e.Low))
		} else {
			elems = append(elems, "0x"+hex.EncodeToString(e.Low)+"-0x"+hex.EncodeToString(e.High))
		}
	}
	return "{ " + strings.Join(elems, ", ") + " }"
}

func formatField(fam Family, f *Field) string {
	var b strings.Builder
	switch f.Source {
	case SourceMeta:
		fmt.Fprintf(&b, "meta %s", metaName(f.Meta))
	default:
		base := [...]string{"ll", "nh", "th", "ih"}[f.Base&3]
		fmt.Fprintf(&b, "@%s,%d,%d", base, f.Offset*8, f.Len*8)
	}
	for _, t := range f.Transforms {
		switch t.Kind {
		case TransformMaskXor:
			fmt.Fprintf(&b, " & 0x%s", hex.EncodeToString(t.Mask))
			if strings.Trim(hex.EncodeToString(t.Xor), "0") != "" {
				fmt.Fprintf(&b, " ^ 0x%s", hex.EncodeToString(t.Xor))
			}
		case TransformShiftLeft:
			fmt.Fprintf(&b, " << %d", t.Shift)
		case TransformShiftRight:
			fmt.Fprintf(&b, " >> %d", t.Shift)
		}
	}
	return b.String()
}

var metaNames = map[MetaKey]string{
	MetaLen: "length", MetaProtocol: "protocol", MetaPriority: "priority", MetaMark: "mark",
	MetaIif: "iif", MetaOif: "oif", MetaIifName: "iifname", MetaOifName: "oifname",
	MetaIifType: "iiftype", MetaOifType: "oiftype", MetaSkUID: "skuid", MetaSkGID: "skgid",
	MetaNFTrace: "nftrace", MetaRtClassid: "rtclassid", MetaSecmark: "secmark",
	MetaNFProto: "nfproto", MetaL4Proto: "l4proto", MetaBriIifName: "ibrname",
	MetaBriOifName: "obrname", MetaPktType: "pkttype", MetaCPU: "cpu",
	MetaIifGroup: "iifgroup", MetaOifGroup: "oifgroup", MetaCgroup: "cgroup", MetaPRandom: "random",
}

func metaName(k MetaKey) string {
	if n, ok := metaNames[k]; ok {
		return n
	}
	return fmt.Sprintf("key%d", uint32(k))
}

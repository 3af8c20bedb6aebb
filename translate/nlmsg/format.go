package nlmsg

import (
	"fmt"
	"strings"
)

// Format renders rs as text, one object per line and one expression per
// indented line, in the spirit of `nft --debug=netlink`. Byte strings are
// printed in hex, in register (memory) order. The rendering is stable and
// meant for tests and debugging, not for parsing.
func Format(rs *Ruleset) string {
	var b strings.Builder
	for _, t := range rs.Tables {
		fmt.Fprintf(&b, "table %s %s handle %d flags %#x\n", t.Family, t.Name, t.Handle, t.Flags)
	}
	for _, c := range rs.Chains {
		fmt.Fprintf(&b, "chain %s %s %s handle %d", c.Family, c.Table, c.Name, c.Handle)
		if c.ID != 0 {
			fmt.Fprintf(&b, " id %d", c.ID)
		}
		if c.Type != "" {
			fmt.Fprintf(&b, " type %s", c.Type)
		}
		if c.Hook != nil {
			fmt.Fprintf(&b, " hook %d priority %d", c.Hook.Num, c.Hook.Priority)
			for _, d := range c.Hook.Devices {
				fmt.Fprintf(&b, " device %q", d)
			}
		}
		if c.Policy != nil {
			fmt.Fprintf(&b, " policy %s", verdictName(int32(*c.Policy)))
		}
		if c.Flags != 0 {
			fmt.Fprintf(&b, " flags %#x", c.Flags)
		}
		b.WriteByte('\n')
	}
	for _, s := range rs.Sets {
		fmt.Fprintf(&b, "set %s %s %s handle %d flags %#x key %d/%d", s.Family, s.Table, s.Name, s.Handle, s.Flags, s.KeyType, s.KeyLen)
		if s.DataType != 0 || s.DataLen != 0 {
			fmt.Fprintf(&b, " data %#x/%d", s.DataType, s.DataLen)
		}
		if s.ObjType != 0 {
			fmt.Fprintf(&b, " objtype %d", s.ObjType)
		}
		if s.ID != 0 {
			fmt.Fprintf(&b, " id %d", s.ID)
		}
		if s.Policy != 0 {
			fmt.Fprintf(&b, " policy %d", s.Policy)
		}
		if s.Size != 0 {
			fmt.Fprintf(&b, " size %d", s.Size)
		}
		if len(s.Concat) > 0 {
			fmt.Fprintf(&b, " concat %v", s.Concat)
		}
		if s.Timeout != 0 {
			fmt.Fprintf(&b, " timeout %dms", s.Timeout)
		}
		if s.GCInt != 0 {
			fmt.Fprintf(&b, " gc-interval %dms", s.GCInt)
		}
		if len(s.ExprKinds) > 0 {
			fmt.Fprintf(&b, " exprs %v", s.ExprKinds)
		}
		if s.Userdata != nil {
			fmt.Fprintf(&b, " userdata %x", s.Userdata)
		}
		b.WriteByte('\n')
	}
	for _, se := range rs.Elems {
		fmt.Fprintf(&b, "elements %s %s %s", se.Family, se.Table, se.Set)
		if se.SetID != 0 {
			fmt.Fprintf(&b, " set-id %d", se.SetID)
		}
		b.WriteByte('\n')
		for _, e := range se.Elems {
			b.WriteString("  ")
			b.WriteString(formatElem(&e))
			b.WriteByte('\n')
		}
	}
	for _, r := range rs.Rules {
		fmt.Fprintf(&b, "rule %s %s %s handle %d", r.Family, r.Table, r.Chain, r.Handle)
		if r.Position != 0 {
			fmt.Fprintf(&b, " position %d", r.Position)
		}
		if r.ID != 0 {
			fmt.Fprintf(&b, " id %d", r.ID)
		}
		if r.Userdata != nil {
			fmt.Fprintf(&b, " userdata %x", r.Userdata)
		}
		b.WriteByte('\n')
		for _, e := range r.Exprs {
			fmt.Fprintf(&b, "  [ %s ]\n", FormatExpr(e))
		}
	}
	return b.String()
}

func formatElem(e *SetElem) string {
	var b strings.Builder
	if e.Key != nil {
		fmt.Fprintf(&b, "key %x", e.Key)
	} else {
		b.WriteString("no-key")
	}
	if e.KeyEnd != nil {
		fmt.Fprintf(&b, " key-end %x", e.KeyEnd)
	}
	if e.Flags != 0 {
		fmt.Fprintf(&b, " flags %#x", e.Flags)
	}
	if e.Data != nil {
		fmt.Fprintf(&b, " data %x", e.Data)
	}
	if e.Verdict != nil {
		fmt.Fprintf(&b, " verdict %s", e.Verdict)
	}
	if e.Timeout != 0 {
		fmt.Fprintf(&b, " timeout %dms", e.Timeout)
	}
	if e.ObjRef != "" {
		fmt.Fprintf(&b, " objref %s", e.ObjRef)
	}
	if len(e.ExprKinds) > 0 {
		fmt.Fprintf(&b, " exprs %v", e.ExprKinds)
	}
	if e.Userdata != nil {
		fmt.Fprintf(&b, " userdata %x", e.Userdata)
	}
	return b.String()
}

// FormatExpr renders one expression as text, e.g.
// "payload load 4b @ network header + 12 => reg 1".
func FormatExpr(e Expr) string {
	switch e := e.(type) {
	case *Payload:
		if e.SReg != 0 {
			return fmt.Sprintf("payload write reg %d => %db @ %s header + %d csum_type %d csum_off %d csum_flags %#x",
				e.SReg, e.Len, baseName(e.Base), e.Offset, e.CsumType, e.CsumOffset, e.CsumFlags)
		}
		return fmt.Sprintf("payload load %db @ %s header + %d => reg %d", e.Len, baseName(e.Base), e.Offset, e.DReg)
	case *Meta:
		if e.SReg != 0 {
			return fmt.Sprintf("meta set key %d with reg %d", e.Key, e.SReg)
		}
		return fmt.Sprintf("meta load key %d => reg %d", e.Key, e.DReg)
	case *Cmp:
		return fmt.Sprintf("cmp %s reg %d %x", cmpName(e.Op), e.SReg, e.Data)
	case *Bitwise:
		switch e.Op {
		case BitwiseMaskXor:
			return fmt.Sprintf("bitwise reg %d = (reg %d & %x) ^ %x len %d", e.DReg, e.SReg, e.Mask, e.Xor, e.Len)
		case BitwiseLShift, BitwiseRShift:
			dir := "<<"
			if e.Op == BitwiseRShift {
				dir = ">>"
			}
			return fmt.Sprintf("bitwise reg %d = (reg %d %s %x) len %d", e.DReg, e.SReg, dir, e.Data, e.Len)
		}
		return fmt.Sprintf("bitwise reg %d = op %d (reg %d, reg %d, data %x) len %d", e.DReg, e.Op, e.SReg, e.SReg2, e.Data, e.Len)
	case *Range:
		op := "eq"
		if e.Op != 0 {
			op = "neq"
		}
		return fmt.Sprintf("range %s reg %d %x %x", op, e.SReg, e.FromData, e.ToData)
	case *Lookup:
		s := fmt.Sprintf("lookup reg %d set %s", e.SReg, e.Set)
		if e.SetID != 0 {
			s += fmt.Sprintf(" set-id %d", e.SetID)
		}
		if e.HasDReg {
			s += fmt.Sprintf(" dreg %d", e.DReg)
		}
		if e.Flags != 0 {
			s += fmt.Sprintf(" flags %#x", e.Flags)
		}
		return s
	case *Immediate:
		if e.Verdict != nil {
			return fmt.Sprintf("immediate reg %d %s", e.DReg, e.Verdict)
		}
		return fmt.Sprintf("immediate reg %d %x", e.DReg, e.Data)
	case *Counter:
		return fmt.Sprintf("counter pkts %d bytes %d", e.Packets, e.Bytes)
	case *Byteorder:
		op := "ntoh"
		if e.Op != 0 {
			op = "hton"
		}
		return fmt.Sprintf("byteorder reg %d = %s(reg %d, %d, %d)", e.DReg, op, e.SReg, e.Size, e.Len)
	case *Ct:
		dir := ""
		if e.HasDirection {
			dir = fmt.Sprintf(" dir %d", e.Direction)
		}
		if e.SReg != 0 {
			return fmt.Sprintf("ct set key %d%s with reg %d", e.Key, dir, e.SReg)
		}
		return fmt.Sprintf("ct load key %d%s => reg %d", e.Key, dir, e.DReg)
	case *Opaque:
		return fmt.Sprintf("%s (opaque) %x", e.Name, e.Data)
	}
	return fmt.Sprintf("%s %+v", e.Kind(), e)
}

func baseName(b uint32) string {
	switch b {
	case 0:
		return "link"
	case 1:
		return "network"
	case 2:
		return "transport"
	case 3:
		return "inner"
	case 4:
		return "tunnel"
	}
	return fmt.Sprintf("base(%d)", b)
}

func cmpName(op uint32) string {
	names := [...]string{"eq", "neq", "lt", "lte", "gt", "gte"}
	if int(op) < len(names) {
		return names[op]
	}
	return fmt.Sprintf("op(%d)", op)
}

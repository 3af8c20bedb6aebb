package ir

import (
	"fmt"
	"io"
	"strings"
)

// typeBits is nft's TYPE_BITS: a concatenation's datatype id holds the
// ids of its fields' types, 6 bits each, the first field highest.
const typeBits = 6

// fieldTypes returns the datatype ids of the fields of s's key.
func (s *Set) fieldTypes() []uint32 {
	n := len(s.Fields)
	if n <= 1 {
		return []uint32{s.KeyType}
	}
	out := make([]uint32, n)
	for i := range out {
		out[i] = (s.KeyType >> (typeBits * uint(n-1-i))) & (1<<typeBits - 1)
	}
	return out
}

// part returns the bytes of field i of a key of s.
func (s *Set) part(key []byte, i int) []byte {
	offs, lens := s.KeyLayout()
	a, b := offs[i], offs[i]+lens[i]
	if int(b) > len(key) {
		return nil
	}
	return key[a:b]
}

// project returns the set of the values field i takes in s's elements.
func (s *Set) project(i int) *Set {
	_, lens := s.KeyLayout()
	out := &Set{Name: s.Name, Flags: s.Flags &^ (SetConcat | SetMap), KeyType: s.fieldTypes()[i], KeyLen: lens[i]}
	for _, e := range s.Elements {
		out.Elements = append(out.Elements, SetElement{Low: s.part(e.Low, i), High: s.part(e.High, i)})
	}
	return out
}

type keyPart struct {
	lhs  string
	typ  ValueType
	host bool
	mask []byte
}

// key prints the fields of a lookup key joined by " . " and says how the
// values of each print.
func (p *printer) key(key []Field, s *Set) (string, []keyPart) {
	parts := make([]keyPart, len(key))
	names := make([]string, len(key))
	for i, f := range key {
		view := s
		if len(key) > 1 && s != nil && len(s.Fields) == len(key) {
			view = s.project(i)
		}
		lhs, typ, host, mask, _ := p.operand(&Match{Field: f, Op: OpInSet, Set: view})
		parts[i] = keyPart{lhs, typ, host, mask}
		names[i] = lhs
	}
	return strings.Join(names, " . "), parts
}

// elementKey prints the key of element e of s, field by field.
func (p *printer) elementKey(s *Set, parts []keyPart, e SetElement) string {
	if len(parts) <= 1 || len(s.Fields) != len(parts) {
		pt := keyPart{typ: TypeHex}
		if len(parts) == 1 {
			pt = parts[0]
		}
		return p.element(pt.typ, pt.host, pt.mask, e)
	}
	out := make([]string, len(parts))
	for i, pt := range parts {
		out[i] = p.element(pt.typ, pt.host, pt.mask, SetElement{Low: s.part(e.Low, i), High: s.part(e.High, i)})
	}
	return strings.Join(out, " . ")
}

// setBody prints an anonymous set or map inline, or a named one as @name.
func (p *printer) setBody(s *Set, parts []keyPart) string {
	if s == nil {
		return "@?"
	}
	if !s.Anonymous() {
		return "@" + s.Name
	}
	elems := make([]string, 0, len(s.Elements))
	for _, e := range s.Elements {
		t := p.elementKey(s, parts, e) + p.elementData(s, e)
		elems = append(elems, t)
	}
	return "{ " + strings.Join(elems, ", ") + " }"
}

func (p *printer) lookup(l *Lookup) string {
	lhs, parts := p.key(l.Key, l.Set)
	neg := ""
	if l.Negate {
		neg = "!= "
	}
	return fmt.Sprintf("%s %s%s", lhs, neg, p.setBody(l.Set, parts))
}

// elementData prints " : value" for an element of a map, "" otherwise.
func (p *printer) elementData(s *Set, e SetElement) string {
	switch {
	case e.Verdict != nil:
		return " : " + e.Verdict.String()
	case e.Data != nil:
		st, ok := setTypes[s.DataType]
		if !ok {
			return " : " + p.value(TypeHex, false, nil, e.Data)
		}
		return " : " + p.value(st.typ, st.host, nil, e.Data)
	}
	return ""
}

func (p *printer) metaSetMap(m *MetaSetMap) string {
	lhs, parts := p.key(m.Key, m.Map)
	return fmt.Sprintf("meta %s set %s map %s", MetaName(m.Meta), lhs, p.setBody(m.Map, parts))
}

func (p *printer) verdictMap(v *VerdictMap) string {
	lhs, parts := p.key(v.Key, v.Set)
	return fmt.Sprintf("%s vmap %s", lhs, p.setBody(v.Set, parts))
}

// printSet prints the declaration of a named set or map.
func printSet(b *strings.Builder, fam Family, s *Set) {
	kind := "set"
	if s.Flags&SetMap != 0 {
		kind = "map"
	}
	fmt.Fprintf(b, "\t%s %s {\n", kind, s.Name)
	ftypes := s.fieldTypes()
	_, lens := s.KeyLayout()
	names := make([]string, len(ftypes))
	parts := make([]keyPart, len(ftypes))
	known := true
	for i, id := range ftypes {
		st, ok := setTypes[id]
		if !ok {
			known = false
			names[i] = fmt.Sprintf("@nh,0,%d", lens[i]*8)
			parts[i] = keyPart{typ: TypeHex}
			continue
		}
		names[i] = st.name
		parts[i] = keyPart{typ: st.typ, host: st.host && s.Flags&SetInterval == 0}
	}
	decl := "type " + strings.Join(names, " . ")
	if !known {
		decl = "typeof " + strings.Join(names, " . ")
	}
	if s.IsVerdictMap() {
		decl += " : verdict"
	} else if s.Flags&SetMap != 0 {
		if st, ok := setTypes[s.DataType]; ok {
			decl += " : " + st.name
		} else {
			decl += fmt.Sprintf(" : @nh,0,%d", s.DataLen*8)
		}
	}
	fmt.Fprintf(b, "\t\t%s\n", decl)
	var flags []string
	if s.Flags&SetConstant != 0 {
		flags = append(flags, "constant")
	}
	if s.Flags&SetInterval != 0 {
		flags = append(flags, "interval")
	}
	// nft leaves the timeout flag out when a default timeout implies it,
	// unless it prints other flags (flags interval,timeout).
	if s.Flags&SetTimeout != 0 && (s.Timeout == 0 || len(flags) > 0) {
		flags = append(flags, "timeout")
	}
	if len(flags) > 0 {
		fmt.Fprintf(b, "\t\tflags %s\n", strings.Join(flags, ","))
	}
	if s.Size != 0 && s.Flags&(SetAnonymous|SetConstant) == 0 {
		fmt.Fprintf(b, "\t\tsize %d\n", s.Size)
	}
	if s.Timeout != 0 {
		fmt.Fprintf(b, "\t\ttimeout %s\n", FormatMillis(s.Timeout))
	}
	if len(s.Elements) > 0 {
		p := newPrinter(fam)
		elems := make([]string, len(s.Elements))
		for i, e := range s.Elements {
			elems[i] = p.elementKey(s, parts, e) + elementTimeouts(e) + p.elementData(s, e)
		}
		b.WriteString("\t\telements = { ")
		count := 0
		for i, e := range elems {
			if i > 0 {
				b.WriteString(elementDelim(s, &count))
			}
			b.WriteString(e)
			count++
		}
		b.WriteString(" }\n")
	}
	b.WriteString("\t}\n")
}

// rangeIsPrefix reports whether [lo, hi] is exactly the addresses of one
// prefix, and its length.
func rangeIsPrefix(lo, hi []byte) (int, bool) {
	if len(lo) != len(hi) {
		return 0, false
	}
	bits := 0
	i := 0
	for ; i < len(lo) && lo[i] == hi[i]; i++ {
		bits += 8
	}
	if i == len(lo) {
		return bits, true
	}
	// In the first differing byte, lo has zeros and hi ones below the
	// prefix; every later byte is 0x00 in lo and 0xff in hi.
	x := lo[i] ^ hi[i]
	n := 8
	for x&0x80 == 0 {
		x <<= 1
		n--
	}
	if lo[i]^hi[i] != byte(1<<n-1) || lo[i]&byte(1<<n-1) != 0 {
		return 0, false
	}
	bits += 8 - n
	for j := i + 1; j < len(lo); j++ {
		if lo[j] != 0 || hi[j] != 0xff {
			return 0, false
		}
	}
	return bits, true
}

// elementDelim returns the separator nft puts after the count-th element
// of a named set's element list (nftables' calculate_delim): a line break
// after every element, or after every fifth (integers, ports, protocols,
// marks, interface indexes) or second (IPv4 addresses) for the types it
// prints compactly.
func elementDelim(s *Set, count *int) string {
	const newline, single = ",\n\t\t\t     ", ", "
	if s.Concatenated() {
		return newline
	}
	per := 0
	switch s.KeyType {
	case 2, 12, 13, 15, 19, 20: // nf_proto, inet_proto, inet_service, tcp_flag, mark, iface_index
		per = 5
	case 7, 31: // ipv4_addr, pkt_type
		per = 2
	case 0: // integer
		per = 5
	}
	if per == 0 {
		return newline
	}
	if *count < per {
		return single
	}
	*count = 0
	return newline
}

// PrintSets prints the table with only its named sets and maps that keep
// selects, as nft's list set, list map, list sets and list maps do: no
// chains, no blank lines between the sets.
func (t *Table) PrintSets(w io.Writer, keep func(*Set) bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", t.Family, t.Name)
	for _, s := range t.Sets {
		if s.Anonymous() || !keep(s) {
			continue
		}
		printSet(&b, t.Family, s)
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

package nlmsg

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// attr is one netlink attribute: its type without the NLA_F_NESTED and
// NLA_F_NET_BYTEORDER flags, and its payload.
type attr struct {
	typ  uint16
	data []byte
}

// splitAttrs splits b into netlink attributes. A truncated attribute (a
// header that does not fit, or a length beyond the end of b) is an error.
// The payload of the last attribute need not be padded.
func splitAttrs(b []byte) ([]attr, error) {
	var out []attr
	for off := 0; off < len(b); {
		if len(b)-off < 4 {
			return nil, fmt.Errorf("truncated attribute header at offset %d (%d bytes left)", off, len(b)-off)
		}
		l := int(binary.NativeEndian.Uint16(b[off:]))
		t := binary.NativeEndian.Uint16(b[off+2:]) & nlaTypeMask
		if l < 4 {
			return nil, fmt.Errorf("attribute type %d at offset %d: length %d shorter than its header", t, off, l)
		}
		if l > len(b)-off {
			return nil, fmt.Errorf("attribute type %d at offset %d: length %d runs past the end (%d bytes left)", t, off, l, len(b)-off)
		}
		out = append(out, attr{typ: t, data: b[off+4 : off+l]})
		off += (l + 3) &^ 3
	}
	return out, nil
}

// attrs reads the attributes of one nest by type. It keeps the first error
// it meets, so that a decoder can read every field and check once.
type attrs struct {
	byType map[uint16][]byte
	list   []attr
	err    error
}

// parseAttrs parses b as a flat list of attributes. When a type appears more
// than once, the last one counts, as with the kernel's nla_parse.
func parseAttrs(b []byte) (*attrs, error) {
	list, err := splitAttrs(b)
	if err != nil {
		return nil, err
	}
	a := &attrs{byType: make(map[uint16][]byte, len(list)), list: list}
	for _, x := range list {
		a.byType[x.typ] = x.data
	}
	return a, nil
}

func (a *attrs) fail(format string, args ...any) {
	if a.err == nil {
		a.err = fmt.Errorf(format, args...)
	}
}

func (a *attrs) has(t uint16) bool {
	_, ok := a.byType[t]
	return ok
}

// require records an error naming the first of names whose type is missing.
func (a *attrs) require(t uint16, name string) bool {
	if !a.has(t) {
		a.fail("missing %s", name)
		return false
	}
	return true
}

func (a *attrs) fixed(t uint16, name string, n int) []byte {
	b, ok := a.byType[t]
	if !ok {
		return nil
	}
	if len(b) != n {
		a.fail("%s: length %d, want %d", name, len(b), n)
		return nil
	}
	return b
}

// u8 returns an optional one-byte attribute (0 when absent).
func (a *attrs) u8(t uint16, name string) uint8 {
	if b := a.fixed(t, name, 1); b != nil {
		return b[0]
	}
	return 0
}

// u32 returns an optional big-endian 32-bit attribute (0 when absent).
func (a *attrs) u32(t uint16, name string) uint32 {
	if b := a.fixed(t, name, 4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// u64 returns an optional big-endian 64-bit attribute (0 when absent).
func (a *attrs) u64(t uint16, name string) uint64 {
	if b := a.fixed(t, name, 8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// reqU32 returns a required big-endian 32-bit attribute.
func (a *attrs) reqU32(t uint16, name string) uint32 {
	if !a.require(t, name) {
		return 0
	}
	return a.u32(t, name)
}

// str returns an optional string attribute up to its first NUL byte.
func (a *attrs) str(t uint16) string {
	return cstring(a.byType[t])
}

// reqStr returns a required, non-empty string attribute.
func (a *attrs) reqStr(t uint16, name string) string {
	if !a.require(t, name) {
		return ""
	}
	s := a.str(t)
	if s == "" {
		a.fail("%s: empty string", name)
	}
	return s
}

// bytes returns a copy of an optional attribute's payload (nil when absent).
func (a *attrs) bytes(t uint16) []byte {
	b, ok := a.byType[t]
	if !ok {
		return nil
	}
	return append([]byte{}, b...)
}

// nested parses an optional nested attribute (nil when absent).
func (a *attrs) nested(t uint16, name string) *attrs {
	b, ok := a.byType[t]
	if !ok {
		return nil
	}
	n, err := parseAttrs(b)
	if err != nil {
		a.fail("%s: %w", name, err)
		return nil
	}
	return n
}

// list returns the payloads of the NFTA_LIST_ELEM attributes nested in
// attribute t, in order (nil when t is absent).
func (a *attrs) elems(t uint16, name string) [][]byte {
	b, ok := a.byType[t]
	if !ok {
		return nil
	}
	list, err := splitAttrs(b)
	if err != nil {
		a.fail("%s: %w", name, err)
		return nil
	}
	out := make([][]byte, 0, len(list))
	for i, x := range list {
		if x.typ != nftaListElem {
			a.fail("%s: element %d has type %d, want NFTA_LIST_ELEM", name, i, x.typ)
			return nil
		}
		out = append(out, x.data)
	}
	return out
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

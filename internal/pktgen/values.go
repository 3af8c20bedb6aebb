package pktgen

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// candidate is a value a field should have (in register space, after the
// field's transforms) and a label saying why it was chosen.
type candidate struct {
	label string
	value []byte
}

// addInt adds delta to v taken as a big-endian integer (the order memcmp
// compares in), wrapping around.
func addInt(v []byte, delta int) []byte {
	out := append([]byte(nil), v...)
	carry := delta
	for i := len(out) - 1; i >= 0 && carry != 0; i-- {
		s := int(out[i]) + carry
		out[i] = byte(s)
		carry = s >> 8 // arithmetic shift: borrows are -1
	}
	return out
}

func filled(n int, b byte) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

func randomBytes(r *rand.Rand, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(r.UintN(256))
	}
	return out
}

// candidates returns the values that probe m: the constants, their
// neighbours, range and set boundaries, extremes and a random value.
func candidates(m *ir.Match, r *rand.Rand) []candidate {
	around := func(prefix string, v []byte) []candidate {
		return []candidate{
			{prefix, v},
			{prefix + "-1", addInt(v, -1)},
			{prefix + "+1", addInt(v, 1)},
		}
	}
	var out []candidate
	switch m.Op {
	case ir.OpEq, ir.OpNeq, ir.OpLt, ir.OpLte, ir.OpGt, ir.OpGte:
		out = around("value", m.Value)
		out = append(out, candidate{"zero", filled(len(m.Value), 0)}, candidate{"max", filled(len(m.Value), 0xff)})
		n := len(m.Value)
		out = append(out, candidate{"random", randomBytes(r, n)})
	case ir.OpInRange, ir.OpNotInRange:
		out = append(around("low", m.Value), around("high", m.High)...)
		out = append(out, candidate{"random", randomBytes(r, len(m.Value))})
	case ir.OpInSet, ir.OpNotInSet:
		if m.Set == nil {
			return nil
		}
		for _, e := range m.Set.Elements {
			out = append(out, candidate{"element", e.Low}, candidate{"element-1", addInt(e.Low, -1)})
			if string(e.High) != string(e.Low) {
				out = append(out, candidate{"element end", e.High})
			}
			out = append(out, candidate{"element end+1", addInt(e.High, 1)})
		}
		out = append(out, candidate{"random", randomBytes(r, int(m.Set.KeyLen))})
	}
	return out
}

// hitValue returns a value that satisfies m, if one is easy to name.
func hitValue(m *ir.Match) ([]byte, bool) {
	switch m.Op {
	case ir.OpEq, ir.OpLte, ir.OpGte, ir.OpInRange:
		return m.Value, true
	case ir.OpNeq, ir.OpGt:
		return addInt(m.Value, 1), !allBytes(m.Value, 0xff)
	case ir.OpLt:
		return addInt(m.Value, -1), !allBytes(m.Value, 0)
	case ir.OpNotInRange:
		if !allBytes(m.High, 0xff) {
			return addInt(m.High, 1), true
		}
		return addInt(m.Value, -1), !allBytes(m.Value, 0)
	case ir.OpInSet:
		if m.Set != nil && len(m.Set.Elements) > 0 {
			return m.Set.Elements[0].Low, true
		}
	case ir.OpNotInSet:
		if m.Set != nil {
			for _, v := range [][]byte{filled(int(m.Set.KeyLen), 0), filled(int(m.Set.KeyLen), 0xff)} {
				if !inSet(m.Set, v) {
					return v, true
				}
			}
		}
	}
	return nil, false
}

func allBytes(v []byte, b byte) bool {
	for _, x := range v {
		if x != b {
			return false
		}
	}
	return true
}

func inSet(s *ir.Set, v []byte) bool {
	for _, e := range s.Elements {
		if string(v) >= string(e.Low) && string(v) <= string(e.High) {
			return true
		}
	}
	return false
}

// invert turns a wanted register value of field f into the raw bytes to
// put in the packet and a mask of the bits that matter: the transforms are
// undone in reverse order. Bits a transform fixes regardless of the input
// (cleared by a mask) do not matter and are left to the template.
func invert(f ir.Field, want []byte) (raw, care []byte) {
	n := int(f.Len)
	if len(want) > n {
		n = len(want)
	}
	n = (n + 3) &^ 3 // shifts work on whole 32-bit words
	val := make([]byte, n)
	care = make([]byte, n)
	copy(val, want)
	for i := range want {
		care[i] = 0xff
	}
	for i := len(f.Transforms) - 1; i >= 0; i-- {
		t := f.Transforms[i]
		l := min(int(t.Len), n)
		switch t.Kind {
		case ir.TransformMaskXor:
			for j := 0; j < l; j++ {
				var mask, xor byte
				if j < len(t.Mask) {
					mask = t.Mask[j]
				}
				if j < len(t.Xor) {
					xor = t.Xor[j]
				}
				care[j] &= mask
				val[j] = (val[j] ^ xor) & care[j]
			}
		case ir.TransformShiftLeft, ir.TransformShiftRight:
			for j := 0; j+4 <= n && j < l; j += 4 {
				v := binary.NativeEndian.Uint32(val[j:])
				c := binary.NativeEndian.Uint32(care[j:])
				if t.Kind == ir.TransformShiftRight {
					v, c = v<<t.Shift, c<<t.Shift
				} else {
					v, c = v>>t.Shift, c>>t.Shift
				}
				binary.NativeEndian.PutUint32(val[j:], v)
				binary.NativeEndian.PutUint32(care[j:], c)
			}
		case ir.TransformHton, ir.TransformNtoh:
			size := int(t.Size)
			if size == 0 || !nativeIsLittle() {
				continue
			}
			for j := 0; j+size <= l; j += size {
				reverse(val[j : j+size])
				reverse(care[j : j+size])
			}
		}
	}
	return val[:f.Len], care[:f.Len]
}

func reverse(b []byte) {
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
}

func nativeIsLittle() bool {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], 1)
	return b[0] == 1
}

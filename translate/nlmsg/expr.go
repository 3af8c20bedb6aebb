package nlmsg

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DecodeExpr decodes one expression: the payload of an NFTA_LIST_ELEM of
// NFTA_RULE_EXPRESSIONS (NFTA_EXPR_NAME and NFTA_EXPR_DATA). Kinds without a
// typed decoder become an *Opaque. The error of a malformed expression does
// not name the expression; DecodeRule adds that context.
func DecodeExpr(fam Family, b []byte) (Expr, error) {
	a, err := parseAttrs(b)
	if err != nil {
		return nil, err
	}
	name := a.reqStr(unix.NFTA_EXPR_NAME, "NFTA_EXPR_NAME")
	if a.err != nil {
		return nil, a.err
	}
	data := a.byType[unix.NFTA_EXPR_DATA]
	dec, ok := exprDecoders[name]
	if !ok {
		return &Opaque{Name: name, Data: a.bytes(unix.NFTA_EXPR_DATA)}, nil
	}
	if !a.has(unix.NFTA_EXPR_DATA) {
		return nil, fmt.Errorf("missing NFTA_EXPR_DATA")
	}
	d, err := parseAttrs(data)
	if err != nil {
		return nil, fmt.Errorf("NFTA_EXPR_DATA: %w", err)
	}
	e := dec(d)
	if d.err != nil {
		return nil, d.err
	}
	return e, nil
}

// exprName returns NFTA_EXPR_NAME of an expression payload, or "" when it
// cannot be read.
func exprName(b []byte) string {
	a, err := parseAttrs(b)
	if err != nil {
		return ""
	}
	return a.str(unix.NFTA_EXPR_NAME)
}

var exprDecoders = map[string]func(*attrs) Expr{
	"payload":   decodePayload,
	"meta":      decodeMeta,
	"cmp":       decodeCmp,
	"bitwise":   decodeBitwise,
	"range":     decodeRange,
	"lookup":    decodeLookup,
	"immediate": decodeImmediate,
	"counter":   decodeCounter,
	"byteorder": decodeByteorder,
	"ct":        decodeCt,
}

// loadOrStore checks that exactly one of a destination and a source register
// is given, as the kernel's payload, meta and ct expressions require.
func loadOrStore(a *attrs, dreg, sreg uint16, dname, sname string) {
	switch {
	case a.has(dreg) && a.has(sreg):
		a.fail("both %s and %s", dname, sname)
	case !a.has(dreg) && !a.has(sreg):
		a.fail("missing %s (or %s)", dname, sname)
	}
}

func decodePayload(a *attrs) Expr {
	loadOrStore(a, unix.NFTA_PAYLOAD_DREG, unix.NFTA_PAYLOAD_SREG, "NFTA_PAYLOAD_DREG", "NFTA_PAYLOAD_SREG")
	return &Payload{
		Base:       a.reqU32(unix.NFTA_PAYLOAD_BASE, "NFTA_PAYLOAD_BASE"),
		Offset:     a.reqU32(unix.NFTA_PAYLOAD_OFFSET, "NFTA_PAYLOAD_OFFSET"),
		Len:        a.reqU32(unix.NFTA_PAYLOAD_LEN, "NFTA_PAYLOAD_LEN"),
		DReg:       a.u32(unix.NFTA_PAYLOAD_DREG, "NFTA_PAYLOAD_DREG"),
		SReg:       a.u32(unix.NFTA_PAYLOAD_SREG, "NFTA_PAYLOAD_SREG"),
		CsumType:   a.u32(unix.NFTA_PAYLOAD_CSUM_TYPE, "NFTA_PAYLOAD_CSUM_TYPE"),
		CsumOffset: a.u32(unix.NFTA_PAYLOAD_CSUM_OFFSET, "NFTA_PAYLOAD_CSUM_OFFSET"),
		CsumFlags:  a.u32(unix.NFTA_PAYLOAD_CSUM_FLAGS, "NFTA_PAYLOAD_CSUM_FLAGS"),
	}
}

func decodeMeta(a *attrs) Expr {
	loadOrStore(a, unix.NFTA_META_DREG, unix.NFTA_META_SREG, "NFTA_META_DREG", "NFTA_META_SREG")
	return &Meta{
		Key:  a.reqU32(unix.NFTA_META_KEY, "NFTA_META_KEY"),
		DReg: a.u32(unix.NFTA_META_DREG, "NFTA_META_DREG"),
		SReg: a.u32(unix.NFTA_META_SREG, "NFTA_META_SREG"),
	}
}

func decodeCmp(a *attrs) Expr {
	e := &Cmp{
		SReg: a.reqU32(unix.NFTA_CMP_SREG, "NFTA_CMP_SREG"),
		Op:   a.reqU32(unix.NFTA_CMP_OP, "NFTA_CMP_OP"),
	}
	e.Data = valueAttr(a, unix.NFTA_CMP_DATA, "NFTA_CMP_DATA")
	return e
}

// valueAttr decodes a required NFTA_DATA nest holding a value.
func valueAttr(a *attrs, t uint16, name string) []byte {
	if !a.require(t, name) {
		return nil
	}
	v, err := decodeValue(a.byType[t])
	if err != nil {
		a.fail("%s: %w", name, err)
	}
	return v
}

func decodeBitwise(a *attrs) Expr {
	e := &Bitwise{
		SReg:  a.reqU32(unix.NFTA_BITWISE_SREG, "NFTA_BITWISE_SREG"),
		DReg:  a.reqU32(unix.NFTA_BITWISE_DREG, "NFTA_BITWISE_DREG"),
		Len:   a.reqU32(unix.NFTA_BITWISE_LEN, "NFTA_BITWISE_LEN"),
		Op:    a.u32(nftaBitwiseOp, "NFTA_BITWISE_OP"),
		SReg2: a.u32(nftaBitwiseSreg2, "NFTA_BITWISE_SREG2"),
	}
	switch e.Op {
	case BitwiseMaskXor:
		e.Mask = valueAttr(a, unix.NFTA_BITWISE_MASK, "NFTA_BITWISE_MASK")
		e.Xor = valueAttr(a, unix.NFTA_BITWISE_XOR, "NFTA_BITWISE_XOR")
	case BitwiseLShift, BitwiseRShift:
		e.Data = valueAttr(a, nftaBitwiseData, "NFTA_BITWISE_DATA")
	default:
		// AND, OR, XOR take their second operand from NFTA_BITWISE_DATA or
		// NFTA_BITWISE_SREG2; unknown operations keep what is there.
		if a.has(nftaBitwiseData) {
			e.Data = valueAttr(a, nftaBitwiseData, "NFTA_BITWISE_DATA")
		}
	}
	return e
}

func decodeRange(a *attrs) Expr {
	return &Range{
		SReg:     a.reqU32(unix.NFTA_RANGE_SREG, "NFTA_RANGE_SREG"),
		Op:       a.reqU32(unix.NFTA_RANGE_OP, "NFTA_RANGE_OP"),
		FromData: valueAttr(a, unix.NFTA_RANGE_FROM_DATA, "NFTA_RANGE_FROM_DATA"),
		ToData:   valueAttr(a, unix.NFTA_RANGE_TO_DATA, "NFTA_RANGE_TO_DATA"),
	}
}

func decodeLookup(a *attrs) Expr {
	e := &Lookup{
		SReg:    a.reqU32(unix.NFTA_LOOKUP_SREG, "NFTA_LOOKUP_SREG"),
		DReg:    a.u32(unix.NFTA_LOOKUP_DREG, "NFTA_LOOKUP_DREG"),
		HasDReg: a.has(unix.NFTA_LOOKUP_DREG),
		Set:     a.str(unix.NFTA_LOOKUP_SET),
		SetID:   a.u32(unix.NFTA_LOOKUP_SET_ID, "NFTA_LOOKUP_SET_ID"),
		Flags:   a.u32(unix.NFTA_LOOKUP_FLAGS, "NFTA_LOOKUP_FLAGS"),
	}
	if e.Set == "" && e.SetID == 0 {
		a.fail("missing NFTA_LOOKUP_SET")
	}
	return e
}

func decodeImmediate(a *attrs) Expr {
	e := &Immediate{DReg: a.reqU32(unix.NFTA_IMMEDIATE_DREG, "NFTA_IMMEDIATE_DREG")}
	if !a.require(unix.NFTA_IMMEDIATE_DATA, "NFTA_IMMEDIATE_DATA") {
		return e
	}
	v, verdict, err := decodeData(a.byType[unix.NFTA_IMMEDIATE_DATA])
	if err != nil {
		a.fail("NFTA_IMMEDIATE_DATA: %w", err)
		return e
	}
	e.Data, e.Verdict = v, verdict
	return e
}

func decodeCounter(a *attrs) Expr {
	return &Counter{
		Packets: a.u64(unix.NFTA_COUNTER_PACKETS, "NFTA_COUNTER_PACKETS"),
		Bytes:   a.u64(unix.NFTA_COUNTER_BYTES, "NFTA_COUNTER_BYTES"),
	}
}

func decodeByteorder(a *attrs) Expr {
	return &Byteorder{
		SReg: a.reqU32(unix.NFTA_BYTEORDER_SREG, "NFTA_BYTEORDER_SREG"),
		DReg: a.reqU32(unix.NFTA_BYTEORDER_DREG, "NFTA_BYTEORDER_DREG"),
		Op:   a.reqU32(unix.NFTA_BYTEORDER_OP, "NFTA_BYTEORDER_OP"),
		Len:  a.reqU32(unix.NFTA_BYTEORDER_LEN, "NFTA_BYTEORDER_LEN"),
		Size: a.reqU32(unix.NFTA_BYTEORDER_SIZE, "NFTA_BYTEORDER_SIZE"),
	}
}

func decodeCt(a *attrs) Expr {
	loadOrStore(a, unix.NFTA_CT_DREG, unix.NFTA_CT_SREG, "NFTA_CT_DREG", "NFTA_CT_SREG")
	return &Ct{
		Key:          a.reqU32(unix.NFTA_CT_KEY, "NFTA_CT_KEY"),
		DReg:         a.u32(unix.NFTA_CT_DREG, "NFTA_CT_DREG"),
		SReg:         a.u32(unix.NFTA_CT_SREG, "NFTA_CT_SREG"),
		Direction:    a.u8(unix.NFTA_CT_DIRECTION, "NFTA_CT_DIRECTION"),
		HasDirection: a.has(unix.NFTA_CT_DIRECTION),
	}
}

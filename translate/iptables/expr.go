package iptables

import (
	"encoding/binary"

	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// nf_tables constants used by the emitted expressions.
const (
	reg1 = 1 // NFT_REG_1, the register iptables-nft uses

	baseLL        = 0 // NFT_PAYLOAD_LL_HEADER
	baseNetwork   = 1 // NFT_PAYLOAD_NETWORK_HEADER
	baseTransport = 2 // NFT_PAYLOAD_TRANSPORT_HEADER

	cmpEq  = 0
	cmpNeq = 1
	cmpLt  = 2
	cmpLte = 3
	cmpGt  = 4
	cmpGte = 5

	rangeEq  = 0
	rangeNeq = 1

	metaLen     = 0
	metaMark    = 3
	metaIifName = 6
	metaOifName = 7
	metaIifType = 8
	metaL4Proto = 16
	metaPktType = 19

	lookupInv = 1 // NFT_LOOKUP_F_INV

	byteorderHton = 1

	setAnonymous = 0x1
	setConstant  = 0x2
	setInterval  = 0x4
	elemEnd      = 0x1 // NFT_SET_ELEM_INTERVAL_END

	typeInetService = 13 // nft's inet_service data type
)

// exprs accumulates a rule's expressions.
type exprs struct {
	list []nlmsg.Expr
	sets []*anonSet
}

// anonSet is an anonymous constant set a rule looks values up in; its name
// is given when the table is written out.
type anonSet struct {
	keyType uint32
	keyLen  uint32
	ranges  [][2][]byte // inclusive, big-endian
	lookup  *nlmsg.Lookup
}

func (e *exprs) add(x ...nlmsg.Expr) { e.list = append(e.list, x...) }

func (e *exprs) payload(base, off, n uint32) {
	e.add(&nlmsg.Payload{Base: base, Offset: off, Len: n, DReg: reg1})
}

func (e *exprs) meta(key uint32) { e.add(&nlmsg.Meta{Key: key, DReg: reg1}) }

func (e *exprs) cmp(op uint32, data []byte) {
	e.add(&nlmsg.Cmp{Op: op, SReg: reg1, Data: data})
}

func (e *exprs) mask(mask []byte) {
	e.add(&nlmsg.Bitwise{SReg: reg1, DReg: reg1, Len: uint32(len(mask)), Mask: mask, Xor: make([]byte, len(mask))})
}

func (e *exprs) rng(op uint32, from, to []byte) {
	e.add(&nlmsg.Range{Op: op, SReg: reg1, FromData: from, ToData: to})
}

func (e *exprs) hton(n uint32) {
	e.add(&nlmsg.Byteorder{SReg: reg1, DReg: reg1, Op: byteorderHton, Len: n, Size: n})
}

// lookupRanges emits a lookup of the register in a new anonymous interval
// set holding ranges.
func (e *exprs) lookupRanges(keyType, keyLen uint32, ranges [][2][]byte, invert bool) {
	l := &nlmsg.Lookup{SReg: reg1}
	if invert {
		l.Flags = lookupInv
	}
	e.sets = append(e.sets, &anonSet{keyType: keyType, keyLen: keyLen, ranges: ranges, lookup: l})
	e.add(l)
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func ne32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// elements encodes ranges as nft's interval encoding: a start element per
// range and an INTERVAL_END element one past its end (none when the range
// reaches the largest key), the first element an end at zero when no range
// starts there.
func (s *anonSet) elements() []nlmsg.SetElem {
	var out []nlmsg.SetElem
	if len(s.ranges) == 0 || !isZero(s.ranges[0][0]) {
		out = append(out, nlmsg.SetElem{Key: make([]byte, s.keyLen), Flags: elemEnd})
	}
	for _, r := range s.ranges {
		out = append(out, nlmsg.SetElem{Key: r[0]})
		if next, ok := increment(r[1]); ok {
			out = append(out, nlmsg.SetElem{Key: next, Flags: elemEnd})
		}
	}
	return out
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// increment returns b+1 (big-endian); false when b is all ones.
func increment(b []byte) ([]byte, bool) {
	out := append([]byte(nil), b...)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	return nil, false
}

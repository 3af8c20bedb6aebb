package translate

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// Attributes of nft_exthdr and nft_compat's match (linux/netfilter/nf_tables.h).
const (
	nftaExthdrDReg   = 1
	nftaExthdrType   = 2
	nftaExthdrOffset = 3
	nftaExthdrLen    = 4
	nftaExthdrFlags  = 5
	nftaExthdrOp     = 6
	nftaExthdrSReg   = 7

	nftExthdrFPresent = 1
	nftExthdrOpIPv6   = 0

	nftaMatchName = 1
	nftaMatchRev  = 2
	nftaMatchInfo = 3
)

// exthdr lifts an nft_exthdr load of an IPv6 extension header
// (nft_exthdr_ipv6_eval) into a SourceExthdr Field.
func (l *ruleLifter) exthdr(o *nlmsg.Opaque) error {
	a, err := exprAttrs(o.Data)
	if err != nil {
		return err
	}
	op, _, err1 := attrBE32(a, nftaExthdrOp, "NFTA_EXTHDR_OP")
	dreg, hasD, err2 := attrBE32(a, nftaExthdrDReg, "NFTA_EXTHDR_DREG")
	off, _, err3 := attrBE32(a, nftaExthdrOffset, "NFTA_EXTHDR_OFFSET")
	n, hasLen, err4 := attrBE32(a, nftaExthdrLen, "NFTA_EXTHDR_LEN")
	flags, _, err5 := attrBE32(a, nftaExthdrFlags, "NFTA_EXTHDR_FLAGS")
	for _, e := range []error{err1, err2, err3, err4, err5} {
		if e != nil {
			return e
		}
	}
	if op != nftExthdrOpIPv6 {
		names := map[uint32]string{1: "tcp option", 2: "ip option", 3: "sctp chunk", 4: "dccp option"}
		what := names[op]
		if what == "" {
			what = fmt.Sprintf("exthdr op %d", op)
		}
		return unsupported("%s matching is not supported", what)
	}
	if _, ok := a[nftaExthdrSReg]; ok || !hasD {
		return unsupported("exthdr set (writing an extension header) is not supported")
	}
	typ, ok := a[nftaExthdrType]
	if !ok || len(typ) != 1 || !hasLen || n == 0 || n > 64 {
		return fmt.Errorf("exthdr without a header type or with length %d", n)
	}
	if flags&^nftExthdrFPresent != 0 {
		return unsupported("exthdr flags %#x", flags)
	}
	switch l.family {
	case ir.FamilyIPv4, ir.FamilyIPv6, ir.FamilyInet:
	default:
		// nft_exthdr reads the IPv6 header of a netdev or bridge
		// packet without validating it first, which the program
		// cannot reproduce for malformed packets.
		return unsupported("IPv6 extension headers are supported in ip, ip6 and inet tables only")
	}
	f := ir.Field{Source: ir.SourceExthdr, Exthdr: typ[0], ExthdrMode: ir.ExthdrLoad, Offset: off, Len: n}
	if flags&nftExthdrFPresent != 0 {
		if n > 4 {
			return unsupported("exthdr presence test into %d bytes", n)
		}
		f.ExthdrMode, f.Offset = ir.ExthdrPresent, 0
	}
	return l.load(dreg, f)
}

// Layout of struct ip6t_rt (linux/netfilter_ipv6/ip6t_rt.h), the info
// of the xtables "rt" match, and its flags.
const (
	rtInfoLen = 280 // XT_ALIGN(sizeof(struct ip6t_rt))

	rtFlagType    = 0x01
	rtFlagSegs    = 0x02
	rtFlagLen     = 0x04
	rtFlagRes     = 0x08
	rtFlagFstMask = 0x30
	rtInvType     = 0x01
	rtInvSegs     = 0x02
	rtInvLen      = 0x04
	rtInvMask     = 0x07
)

// RTInfo is the content of struct ip6t_rt that bpfilter-nft translates.
type RTInfo struct {
	Type     uint32
	SegsLeft [2]uint32
	HdrLen   uint32
	Flags    uint8
	InvFlags uint8
	// Addrs and AddrNr are --rt-0-addrs, which is refused.
	AddrNr uint8
}

// Marshal encodes the info as NFTA_MATCH_INFO (host byte order, padded
// to XT_ALIGN).
func (r *RTInfo) Marshal() []byte {
	b := make([]byte, rtInfoLen)
	binary.NativeEndian.PutUint32(b[0:], r.Type)
	binary.NativeEndian.PutUint32(b[4:], r.SegsLeft[0])
	binary.NativeEndian.PutUint32(b[8:], r.SegsLeft[1])
	binary.NativeEndian.PutUint32(b[12:], r.HdrLen)
	b[16], b[17] = r.Flags, r.InvFlags
	b[274] = r.AddrNr
	return b
}

// xtMatch lifts an xtables match carried by nft_compat. Only the IPv6
// routing header match "rt" (ip6t_rt.c) is translated; it becomes
// several Matches on the routing header in ExthdrXT mode, the first
// returned and the rest queued in l.extra.
func (l *ruleLifter) xtMatch(o *nlmsg.Opaque) (ir.Stmt, error) {
	a, err := exprAttrs(o.Data)
	if err != nil {
		return nil, err
	}
	name := strings.TrimRight(string(a[nftaMatchName]), "\x00")
	rev, _, err := attrBE32(a, nftaMatchRev, "NFTA_MATCH_REV")
	if err != nil {
		return nil, err
	}
	if name != "rt" {
		return nil, unsupported("xtables match %q is not supported", name)
	}
	if rev != 0 || l.family != ir.FamilyIPv6 {
		return nil, unsupported("xtables match rt revision %d in a %s table is not supported", rev, FamilyName(l.family))
	}
	info := a[nftaMatchInfo]
	if len(info) < 275 {
		return nil, fmt.Errorf("match rt: info of %d bytes, want %d", len(info), rtInfoLen)
	}
	ri := RTInfo{
		Type:     binary.NativeEndian.Uint32(info[0:]),
		SegsLeft: [2]uint32{binary.NativeEndian.Uint32(info[4:]), binary.NativeEndian.Uint32(info[8:])},
		HdrLen:   binary.NativeEndian.Uint32(info[12:]),
		Flags:    info[16], InvFlags: info[17], AddrNr: info[274],
	}
	ms, err := RTMatches(ri)
	if err != nil {
		return nil, err
	}
	for _, m := range ms[1:] {
		l.extra = append(l.extra, m)
	}
	return ms[0], nil
}

// RTMatches returns the Matches that decide packets as ip6t_rt's rt_mt6
// does with info ri: the routing header is looked for (a malformed chain
// or a header longer than the packet drops the packet), then
// segments left, length, type and the type 0 reserved word are checked.
// --rt-0-addrs is refused.
func RTMatches(ri RTInfo) ([]*ir.Match, error) {
	if ri.InvFlags&^rtInvMask != 0 {
		return nil, fmt.Errorf("match rt: unknown inverse flags %#x", ri.InvFlags)
	}
	if ri.Flags&(rtFlagRes|rtFlagFstMask) != 0 && (ri.Flags&rtFlagType == 0 || ri.Type != 0 || ri.InvFlags&rtInvType != 0) {
		return nil, fmt.Errorf("match rt: `--rt-type 0' required before `--rt-0-*'")
	}
	if ri.Flags&rtFlagFstMask != 0 {
		return nil, unsupported("-m rt --rt-0-addrs (a list of routing header addresses) is not supported")
	}
	field := func(off, n uint32) ir.Field {
		return ir.Field{Source: ir.SourceExthdr, Exthdr: ir.NextHdrRouting, ExthdrMode: ir.ExthdrXT, Offset: off, Len: n}
	}
	// byteTest compares one byte of the header with the inclusive range
	// [lo, hi] of uint32 values, as the match does with the byte widened.
	byteTest := func(off uint32, lo, hi uint32, inv bool) *ir.Match {
		m := &ir.Match{Field: field(off, 1)}
		if hi > 255 {
			hi = 255
		}
		switch {
		case lo > hi: // no byte value lies in the range
			m.Op, m.Value, m.High = ir.OpNotInRange, []byte{0}, []byte{255}
			if inv {
				m.Op = ir.OpInRange
			}
		case lo == hi:
			m.Op, m.Value = ir.OpEq, []byte{byte(lo)}
			if inv {
				m.Op = ir.OpNeq
			}
		default:
			m.Op, m.Value, m.High = ir.OpInRange, []byte{byte(lo)}, []byte{byte(hi)}
			if inv {
				m.Op = ir.OpNotInRange
			}
		}
		return m
	}
	// Segments left is always compared (0-0xffffffff when not given);
	// a test every header passes is left out when another test reads the
	// header (each does the same search first).
	var out []*ir.Match
	segs := byteTest(3, ri.SegsLeft[0], ri.SegsLeft[1], ri.InvFlags&rtInvSegs != 0)
	everyHeader := segs.Op == ir.OpInRange && segs.Value[0] == 0 && segs.High[0] == 255
	if !everyHeader || ri.Flags&(rtFlagLen|rtFlagType|rtFlagRes) == 0 {
		out = append(out, segs)
	}
	if ri.Flags&rtFlagLen != 0 {
		// ipv6_optlen: (hdrlen + 1) * 8 bytes.
		lo, hi := uint32(1), uint32(0) // empty
		if ri.HdrLen%8 == 0 && ri.HdrLen >= 8 && ri.HdrLen <= 2048 {
			lo = ri.HdrLen/8 - 1
			hi = lo
		}
		out = append(out, byteTest(1, lo, hi, ri.InvFlags&rtInvLen != 0))
	}
	if ri.Flags&rtFlagType != 0 {
		out = append(out, byteTest(2, ri.Type, ri.Type, ri.InvFlags&rtInvType != 0))
	}
	if ri.Flags&rtFlagRes != 0 {
		out = append(out, &ir.Match{Field: field(4, 4), Op: ir.OpEq, Value: make([]byte, 4)})
	}
	return out, nil
}

package translate

import (
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// Attributes of the stateful expressions nlmsg leaves opaque
// (linux/netfilter/nf_tables.h).
const (
	nftaLimitRate  = 1
	nftaLimitUnit  = 2
	nftaLimitBurst = 3
	nftaLimitType  = 4
	nftaLimitFlags = 5

	nftLimitPkts     = 0
	nftLimitPktBytes = 1
	nftLimitFInv     = 1

	nftaQuotaBytes    = 1
	nftaQuotaFlags    = 2
	nftaQuotaConsumed = 4
	nftQuotaFInv      = 1
	nftQuotaFDepleted = 2

	nftaLogGroup      = 1
	nftaLogPrefix     = 2
	nftaLogSnaplen    = 3
	nftaLogQThreshold = 4
	nftaLogLevel      = 5
	nftaLogFlags      = 6
)

// statefulExpr lifts the statement expressions that nlmsg keeps opaque
// (limit, quota, log). ok is false for kinds it does not handle.
func statefulExpr(o *nlmsg.Opaque) (stmt ir.Stmt, ok bool, err error) {
	switch o.Name {
	case "limit":
		s, err := liftLimit(o.Data)
		return s, true, err
	case "quota":
		s, err := liftQuota(o.Data)
		return s, true, err
	case "log":
		s, err := liftLog(o.Data)
		return s, true, err
	case "reject":
		s, err := liftReject(o.Data)
		return s, true, err
	}
	return nil, false, nil
}

// exprAttrs decodes an expression's NFTA_EXPR_DATA into attribute type →
// payload.
func exprAttrs(data []byte) (map[uint16][]byte, error) {
	ad, err := netlink.NewAttributeDecoder(data)
	if err != nil {
		return nil, err
	}
	out := map[uint16][]byte{}
	for ad.Next() {
		out[ad.Type()] = ad.Bytes()
	}
	if err := ad.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func attrBE64(a map[uint16][]byte, t uint16, name string) (uint64, bool, error) {
	b, ok := a[t]
	if !ok {
		return 0, false, nil
	}
	if len(b) != 8 {
		return 0, true, fmt.Errorf("%s has %d bytes, want 8", name, len(b))
	}
	return binary.BigEndian.Uint64(b), true, nil
}

func attrBE32(a map[uint16][]byte, t uint16, name string) (uint32, bool, error) {
	b, ok := a[t]
	if !ok {
		return 0, false, nil
	}
	if len(b) != 4 {
		return 0, true, fmt.Errorf("%s has %d bytes, want 4", name, len(b))
	}
	return binary.BigEndian.Uint32(b), true, nil
}

func attrBE16(a map[uint16][]byte, t uint16, name string) (uint16, bool, error) {
	b, ok := a[t]
	if !ok {
		return 0, false, nil
	}
	if len(b) != 2 {
		return 0, true, fmt.Errorf("%s has %d bytes, want 2", name, len(b))
	}
	return binary.BigEndian.Uint16(b), true, nil
}

// liftLimit reads an nft_limit expression with the checks of the kernel's
// nft_limit_init: a limit the kernel would refuse never reaches the
// program.
func liftLimit(data []byte) (*ir.Limit, error) {
	a, err := exprAttrs(data)
	if err != nil {
		return nil, err
	}
	rate, okR, err1 := attrBE64(a, nftaLimitRate, "NFTA_LIMIT_RATE")
	unit, okU, err2 := attrBE64(a, nftaLimitUnit, "NFTA_LIMIT_UNIT")
	burst, _, err3 := attrBE32(a, nftaLimitBurst, "NFTA_LIMIT_BURST")
	typ, _, err4 := attrBE32(a, nftaLimitType, "NFTA_LIMIT_TYPE")
	flags, _, err5 := attrBE32(a, nftaLimitFlags, "NFTA_LIMIT_FLAGS")
	for _, e := range []error{err1, err2, err3, err4, err5} {
		if e != nil {
			return nil, e
		}
	}
	if !okR || !okU || rate == 0 {
		return nil, fmt.Errorf("limit without a rate or unit")
	}
	if flags&^nftLimitFInv != 0 {
		return nil, unsupported("limit flags %#x", flags)
	}
	l := &ir.Limit{Rate: rate, Unit: unit, Burst: burst, Over: flags&nftLimitFInv != 0}
	switch typ {
	case nftLimitPkts:
		if l.Burst == 0 {
			l.Burst = ir.LimitDefaultBurst
		}
	case nftLimitPktBytes:
		l.Bytes = true
	default:
		return nil, unsupported("limit type %d", typ)
	}
	if _, err := l.Params(); err != nil {
		return nil, err
	}
	return l, nil
}

func liftQuota(data []byte) (*ir.Quota, error) {
	a, err := exprAttrs(data)
	if err != nil {
		return nil, err
	}
	n, ok, err := attrBE64(a, nftaQuotaBytes, "NFTA_QUOTA_BYTES")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("quota without NFTA_QUOTA_BYTES")
	}
	used, _, err := attrBE64(a, nftaQuotaConsumed, "NFTA_QUOTA_CONSUMED")
	if err != nil {
		return nil, err
	}
	flags, _, err := attrBE32(a, nftaQuotaFlags, "NFTA_QUOTA_FLAGS")
	if err != nil {
		return nil, err
	}
	// NFT_QUOTA_F_DEPLETED is the kernel's own state, not a request: its
	// dump sets it when the consumed bytes reach the quota (a quota
	// declared "used" up to its size, for one), and the kernel refuses it
	// in a new quota, so it says nothing beyond NFTA_QUOTA_CONSUMED.
	flags &^= nftQuotaFDepleted
	if flags&^nftQuotaFInv != 0 {
		return nil, unsupported("quota flags %#x", flags)
	}
	return &ir.Quota{Bytes: n, Used: used, Over: flags&nftQuotaFInv != 0}, nil
}

func liftLog(data []byte) (*ir.Log, error) {
	a, err := exprAttrs(data)
	if err != nil {
		return nil, err
	}
	l := &ir.Log{Level: ir.LogDefault}
	if p, ok := a[nftaLogPrefix]; ok {
		l.HasPrefix = true
		for len(p) > 0 && p[len(p)-1] == 0 {
			p = p[:len(p)-1]
		}
		l.Prefix = string(p)
	}
	var errs [5]error
	var hasSnap, hasQ bool
	l.Group, l.HasGroup, errs[0] = attrBE16(a, nftaLogGroup, "NFTA_LOG_GROUP")
	l.Snaplen, hasSnap, errs[1] = attrBE32(a, nftaLogSnaplen, "NFTA_LOG_SNAPLEN")
	l.QThresh, hasQ, errs[2] = attrBE16(a, nftaLogQThreshold, "NFTA_LOG_QTHRESHOLD")
	var level uint32
	level, l.HasLevel, errs[3] = attrBE32(a, nftaLogLevel, "NFTA_LOG_LEVEL")
	l.Flags, _, errs[4] = attrBE32(a, nftaLogFlags, "NFTA_LOG_FLAGS")
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	if l.HasLevel {
		l.Level = level
	}
	if l.HasGroup && l.HasLevel {
		return nil, fmt.Errorf("log with both a group and a level")
	}
	if !l.HasGroup && (hasSnap || hasQ) {
		return nil, fmt.Errorf("log snaplen or queue threshold without a group")
	}
	if l.Level > ir.LogAudit {
		return nil, fmt.Errorf("log level %d", l.Level)
	}
	if l.Flags&^ir.LogAllFlags != 0 {
		return nil, unsupported("log flags %#x", l.Flags)
	}
	return l, nil
}

// constant records an immediate value loaded into a data register; only
// statements that set something (meta mark set) read it.
func (l *ruleLifter) constant(reg uint32, data []byte) error {
	w, err := regWord(reg)
	if err != nil {
		return err
	}
	words := (len(data) + regWordBytes - 1) / regWordBytes
	if len(data) == 0 || w+words > reg32Count {
		return fmt.Errorf("a %d-byte immediate does not fit from register %d", len(data), reg)
	}
	for i := 0; i < words; i++ {
		if err := l.clobber(w + i); err != nil {
			return err
		}
	}
	l.regs[w] = &regValue{konst: append([]byte(nil), data...), field: ir.Field{Len: uint32(len(data))}, expr: l.cur, kind: l.curKind}
	for i := 1; i < words; i++ {
		l.regs[w+i] = &regValue{covered: true}
	}
	return nil
}

// metaSet lifts "meta KEY set": only constant values into keys the code
// generator can write exactly.
func (l *ruleLifter) metaSet(e *nlmsg.Meta) (ir.Stmt, error) {
	key := ir.MetaKey(e.Key)
	if key != ir.MetaMark {
		return nil, unsupported("meta %s set (setting packet metadata) is not supported; only meta mark set is", metaKeyName(e.Key))
	}
	w, err := regWord(e.SReg)
	if err != nil {
		return nil, err
	}
	v := l.regs[w]
	if v == nil || v.covered {
		return nil, unsupported("meta mark set reads register %d, which holds no value", e.SReg)
	}
	if v.mapped != nil {
		v.used = true
		m := *v.mapped
		m.Meta = key
		return &m, nil
	}
	if v.konst == nil {
		return nil, unsupported("meta mark set from a packet value (%s, expression %d) is not supported; only constants are", v.kind, v.expr+1)
	}
	if len(v.konst) != 4 {
		return nil, fmt.Errorf("meta mark set from a %d-byte value", len(v.konst))
	}
	v.used = true
	return &ir.MetaSet{Key: key, Value: v.konst}, nil
}

// NFTA_REJECT_* attributes.
const (
	nftaRejectType     = 1
	nftaRejectICMPCode = 2
)

func liftReject(data []byte) (*ir.Reject, error) {
	a, err := exprAttrs(data)
	if err != nil {
		return nil, err
	}
	typ, ok, err := attrBE32(a, nftaRejectType, "NFTA_REJECT_TYPE")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("reject without a type")
	}
	r := &ir.Reject{Type: typ}
	if c, ok := a[nftaRejectICMPCode]; ok {
		if len(c) != 1 {
			return nil, fmt.Errorf("NFTA_REJECT_ICMP_CODE has %d bytes, want 1", len(c))
		}
		r.Code = c[0]
	}
	switch typ {
	case ir.RejectICMPUnreach, ir.RejectTCPReset, ir.RejectICMPXUnreach:
	default:
		return nil, unsupported("reject type %d", typ)
	}
	return r, nil
}

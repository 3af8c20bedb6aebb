package nlmsg

import (
	"encoding/binary"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// builder appends netlink attributes with big-endian integers, as
// nf_tables expects them.
type builder struct{ b []byte }

func (w *builder) raw(t uint16, v []byte) {
	var hdr [4]byte
	binary.NativeEndian.PutUint16(hdr[0:], uint16(4+len(v)))
	binary.NativeEndian.PutUint16(hdr[2:], t)
	w.b = append(w.b, hdr[:]...)
	w.b = append(w.b, v...)
	for len(w.b)%4 != 0 {
		w.b = append(w.b, 0)
	}
}

func (w *builder) u8(t uint16, v uint8) { w.raw(t, []byte{v}) }

func (w *builder) u32(t uint16, v uint32) { w.raw(t, binary.BigEndian.AppendUint32(nil, v)) }

func (w *builder) u64(t uint16, v uint64) { w.raw(t, binary.BigEndian.AppendUint64(nil, v)) }

func (w *builder) str(t uint16, s string) { w.raw(t, append([]byte(s), 0)) }

func (w *builder) nest(t uint16, fn func(*builder)) {
	var n builder
	fn(&n)
	w.raw(t|unix.NLA_F_NESTED, n.b)
}

func (w *builder) value(t uint16, v []byte) {
	w.nest(t, func(n *builder) { n.raw(unix.NFTA_DATA_VALUE, v) })
}

func (w *builder) verdict(t uint16, v *Verdict) {
	w.nest(t, func(n *builder) {
		n.nest(unix.NFTA_DATA_VERDICT, func(vb *builder) {
			vb.u32(unix.NFTA_VERDICT_CODE, uint32(v.Code))
			if v.Chain != "" {
				vb.str(unix.NFTA_VERDICT_CHAIN, v.Chain)
			}
			if v.ChainID != 0 {
				vb.u32(nftaVerdictChainID, v.ChainID)
			}
		})
	})
}

func message(msg uint16, fam Family, w *builder) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: MsgType(msg), Flags: netlink.Request},
		Data:   append([]byte{uint8(fam), unix.NFNETLINK_V0, 0, 0}, w.b...),
	}
}

// Encode builds one message per object of rs: tables, chains, named
// stateful objects, sets, set elements and rules, in that order.
// Decode(Encode(rs)) gives rs back.
func Encode(rs *Ruleset) []netlink.Message {
	var msgs []netlink.Message
	for _, t := range rs.Tables {
		msgs = append(msgs, EncodeTable(t))
	}
	for _, c := range rs.Chains {
		msgs = append(msgs, EncodeChain(c))
	}
	for _, o := range rs.Objs {
		msgs = append(msgs, EncodeObj(o))
	}
	for _, s := range rs.Sets {
		msgs = append(msgs, EncodeSet(s))
	}
	for _, e := range rs.Elems {
		msgs = append(msgs, EncodeSetElems(e))
	}
	for _, r := range rs.Rules {
		msgs = append(msgs, EncodeRule(r))
	}
	return msgs
}

// EncodeTable builds an NFT_MSG_NEWTABLE message.
func EncodeTable(t *Table) netlink.Message {
	var w builder
	w.str(unix.NFTA_TABLE_NAME, t.Name)
	w.u32(unix.NFTA_TABLE_FLAGS, t.Flags)
	if t.Handle != 0 {
		w.u64(nftaTableHandle, t.Handle)
	}
	return message(unix.NFT_MSG_NEWTABLE, t.Family, &w)
}

// EncodeChain builds an NFT_MSG_NEWCHAIN message.
func EncodeChain(c *Chain) netlink.Message {
	var w builder
	w.str(unix.NFTA_CHAIN_TABLE, c.Table)
	if c.Name != "" {
		w.str(unix.NFTA_CHAIN_NAME, c.Name)
	}
	if c.Handle != 0 {
		w.u64(unix.NFTA_CHAIN_HANDLE, c.Handle)
	}
	if c.ID != 0 {
		w.u32(nftaChainID, c.ID)
	}
	if c.Hook != nil {
		w.nest(unix.NFTA_CHAIN_HOOK, func(h *builder) {
			h.u32(unix.NFTA_HOOK_HOOKNUM, c.Hook.Num)
			h.u32(unix.NFTA_HOOK_PRIORITY, uint32(c.Hook.Priority))
			switch len(c.Hook.Devices) {
			case 0:
			case 1:
				h.str(unix.NFTA_HOOK_DEV, c.Hook.Devices[0])
			default:
				h.nest(nftaHookDevs, func(d *builder) {
					for _, dev := range c.Hook.Devices {
						d.str(nftaDeviceName, dev)
					}
				})
			}
		})
	}
	if c.Policy != nil {
		w.u32(unix.NFTA_CHAIN_POLICY, *c.Policy)
	}
	if c.Type != "" {
		w.str(unix.NFTA_CHAIN_TYPE, c.Type)
	}
	if c.Flags != 0 {
		w.u32(nftaChainFlags, c.Flags)
	}
	return message(unix.NFT_MSG_NEWCHAIN, c.Family, &w)
}

// EncodeSet builds an NFT_MSG_NEWSET message. Set expressions (HasExprs,
// ExprKinds) are encoded as bare expressions without data.
func EncodeSet(s *Set) netlink.Message {
	var w builder
	w.str(unix.NFTA_SET_TABLE, s.Table)
	w.str(unix.NFTA_SET_NAME, s.Name)
	if s.Handle != 0 {
		w.u64(nftaSetHandle, s.Handle)
	}
	if s.ID != 0 {
		w.u32(unix.NFTA_SET_ID, s.ID)
	}
	w.u32(unix.NFTA_SET_FLAGS, s.Flags)
	w.u32(unix.NFTA_SET_KEY_TYPE, s.KeyType)
	w.u32(unix.NFTA_SET_KEY_LEN, s.KeyLen)
	if s.DataType != 0 || s.DataLen != 0 {
		w.u32(unix.NFTA_SET_DATA_TYPE, s.DataType)
		w.u32(unix.NFTA_SET_DATA_LEN, s.DataLen)
	}
	if s.ObjType != 0 {
		w.u32(unix.NFTA_SET_OBJ_TYPE, s.ObjType)
	}
	if s.Policy != 0 {
		w.u32(unix.NFTA_SET_POLICY, s.Policy)
	}
	if s.Size != 0 || len(s.Concat) > 0 {
		w.nest(unix.NFTA_SET_DESC, func(d *builder) {
			if s.Size != 0 {
				d.u32(unix.NFTA_SET_DESC_SIZE, s.Size)
			}
			if len(s.Concat) > 0 {
				d.nest(nftaSetDescConcat, func(c *builder) {
					for _, l := range s.Concat {
						c.nest(nftaListElem, func(f *builder) { f.u32(nftaSetFieldLen, l) })
					}
				})
			}
		})
	}
	if s.Timeout != 0 {
		w.u64(unix.NFTA_SET_TIMEOUT, s.Timeout)
	}
	if s.GCInt != 0 {
		w.u32(unix.NFTA_SET_GC_INTERVAL, s.GCInt)
	}
	if s.Userdata != nil {
		w.raw(unix.NFTA_SET_USERDATA, s.Userdata)
	}
	if s.HasExprs || len(s.ExprKinds) > 0 {
		w.nest(nftaSetExpressions, func(l *builder) {
			for _, k := range s.ExprKinds {
				l.nest(nftaListElem, func(e *builder) { e.str(unix.NFTA_EXPR_NAME, k) })
			}
		})
	}
	return message(unix.NFT_MSG_NEWSET, s.Family, &w)
}

// EncodeSetElems builds an NFT_MSG_NEWSETELEM message.
func EncodeSetElems(se *SetElems) netlink.Message {
	var w builder
	w.str(unix.NFTA_SET_ELEM_LIST_TABLE, se.Table)
	if se.Set != "" {
		w.str(unix.NFTA_SET_ELEM_LIST_SET, se.Set)
	}
	if se.SetID != 0 {
		w.u32(unix.NFTA_SET_ELEM_LIST_SET_ID, se.SetID)
	}
	w.nest(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(l *builder) {
		for _, e := range se.Elems {
			l.nest(nftaListElem, func(b *builder) { encodeSetElem(b, &e) })
		}
	})
	return message(unix.NFT_MSG_NEWSETELEM, se.Family, &w)
}

func encodeSetElem(w *builder, e *SetElem) {
	if e.Key != nil {
		w.value(unix.NFTA_SET_ELEM_KEY, e.Key)
	}
	if e.KeyEnd != nil {
		w.value(nftaSetElemKeyEnd, e.KeyEnd)
	}
	switch {
	case e.Verdict != nil:
		w.verdict(unix.NFTA_SET_ELEM_DATA, e.Verdict)
	case e.Data != nil:
		w.value(unix.NFTA_SET_ELEM_DATA, e.Data)
	}
	if e.Flags != 0 {
		w.u32(unix.NFTA_SET_ELEM_FLAGS, e.Flags)
	}
	if e.Timeout != 0 {
		w.u64(unix.NFTA_SET_ELEM_TIMEOUT, e.Timeout)
	}
	if e.Expiration != 0 {
		w.u64(unix.NFTA_SET_ELEM_EXPIRATION, e.Expiration)
	}
	if e.Userdata != nil {
		w.raw(unix.NFTA_SET_ELEM_USERDATA, e.Userdata)
	}
	if e.ObjRef != "" {
		w.str(unix.NFTA_SET_ELEM_OBJREF, e.ObjRef)
	}
	if len(e.ExprKinds) > 0 {
		w.nest(nftaSetElemExpressions, func(l *builder) {
			for _, k := range e.ExprKinds {
				l.nest(nftaListElem, func(x *builder) { x.str(unix.NFTA_EXPR_NAME, k) })
			}
		})
	}
}

// EncodeRule builds an NFT_MSG_NEWRULE message.
func EncodeRule(r *Rule) netlink.Message {
	var w builder
	w.str(unix.NFTA_RULE_TABLE, r.Table)
	w.str(unix.NFTA_RULE_CHAIN, r.Chain)
	if r.Handle != 0 {
		w.u64(unix.NFTA_RULE_HANDLE, r.Handle)
	}
	if r.Position != 0 {
		w.u64(unix.NFTA_RULE_POSITION, r.Position)
	}
	if r.ID != 0 {
		w.u32(nftaRuleID, r.ID)
	}
	w.nest(unix.NFTA_RULE_EXPRESSIONS, func(l *builder) {
		for _, e := range r.Exprs {
			l.raw(nftaListElem|unix.NLA_F_NESTED, EncodeExpr(e))
		}
	})
	if r.Userdata != nil {
		w.raw(unix.NFTA_RULE_USERDATA, r.Userdata)
	}
	return message(unix.NFT_MSG_NEWRULE, r.Family, &w)
}

// EncodeExpr builds the payload of one NFTA_LIST_ELEM of
// NFTA_RULE_EXPRESSIONS: NFTA_EXPR_NAME and NFTA_EXPR_DATA.
func EncodeExpr(e Expr) []byte {
	var w builder
	w.str(unix.NFTA_EXPR_NAME, e.Kind())
	if o, ok := e.(*Opaque); ok {
		if o.Data != nil {
			w.raw(unix.NFTA_EXPR_DATA|unix.NLA_F_NESTED, o.Data)
		}
		return w.b
	}
	w.nest(unix.NFTA_EXPR_DATA, func(d *builder) { encodeExprData(d, e) })
	return w.b
}

func encodeExprData(w *builder, e Expr) {
	switch e := e.(type) {
	case *Payload:
		if e.SReg != 0 {
			w.u32(unix.NFTA_PAYLOAD_SREG, e.SReg)
		} else {
			w.u32(unix.NFTA_PAYLOAD_DREG, e.DReg)
		}
		w.u32(unix.NFTA_PAYLOAD_BASE, e.Base)
		w.u32(unix.NFTA_PAYLOAD_OFFSET, e.Offset)
		w.u32(unix.NFTA_PAYLOAD_LEN, e.Len)
		if e.CsumType != 0 || e.CsumOffset != 0 || e.CsumFlags != 0 {
			w.u32(unix.NFTA_PAYLOAD_CSUM_TYPE, e.CsumType)
			w.u32(unix.NFTA_PAYLOAD_CSUM_OFFSET, e.CsumOffset)
			w.u32(unix.NFTA_PAYLOAD_CSUM_FLAGS, e.CsumFlags)
		}
	case *Meta:
		w.u32(unix.NFTA_META_KEY, e.Key)
		if e.SReg != 0 {
			w.u32(unix.NFTA_META_SREG, e.SReg)
		} else {
			w.u32(unix.NFTA_META_DREG, e.DReg)
		}
	case *Cmp:
		w.u32(unix.NFTA_CMP_SREG, e.SReg)
		w.u32(unix.NFTA_CMP_OP, e.Op)
		w.value(unix.NFTA_CMP_DATA, e.Data)
	case *Bitwise:
		w.u32(unix.NFTA_BITWISE_SREG, e.SReg)
		w.u32(unix.NFTA_BITWISE_DREG, e.DReg)
		w.u32(unix.NFTA_BITWISE_LEN, e.Len)
		if e.Op != BitwiseMaskXor {
			w.u32(nftaBitwiseOp, e.Op)
		}
		if e.Mask != nil {
			w.value(unix.NFTA_BITWISE_MASK, e.Mask)
		}
		if e.Xor != nil {
			w.value(unix.NFTA_BITWISE_XOR, e.Xor)
		}
		if e.Data != nil {
			w.value(nftaBitwiseData, e.Data)
		}
		if e.SReg2 != 0 {
			w.u32(nftaBitwiseSreg2, e.SReg2)
		}
	case *Range:
		w.u32(unix.NFTA_RANGE_SREG, e.SReg)
		w.u32(unix.NFTA_RANGE_OP, e.Op)
		w.value(unix.NFTA_RANGE_FROM_DATA, e.FromData)
		w.value(unix.NFTA_RANGE_TO_DATA, e.ToData)
	case *Lookup:
		if e.Set != "" {
			w.str(unix.NFTA_LOOKUP_SET, e.Set)
		}
		if e.SetID != 0 {
			w.u32(unix.NFTA_LOOKUP_SET_ID, e.SetID)
		}
		w.u32(unix.NFTA_LOOKUP_SREG, e.SReg)
		if e.HasDReg {
			w.u32(unix.NFTA_LOOKUP_DREG, e.DReg)
		}
		if e.Flags != 0 {
			w.u32(unix.NFTA_LOOKUP_FLAGS, e.Flags)
		}
	case *Immediate:
		w.u32(unix.NFTA_IMMEDIATE_DREG, e.DReg)
		if e.Verdict != nil {
			w.verdict(unix.NFTA_IMMEDIATE_DATA, e.Verdict)
		} else {
			w.value(unix.NFTA_IMMEDIATE_DATA, e.Data)
		}
	case *Counter:
		w.u64(unix.NFTA_COUNTER_BYTES, e.Bytes)
		w.u64(unix.NFTA_COUNTER_PACKETS, e.Packets)
	case *Byteorder:
		w.u32(unix.NFTA_BYTEORDER_SREG, e.SReg)
		w.u32(unix.NFTA_BYTEORDER_DREG, e.DReg)
		w.u32(unix.NFTA_BYTEORDER_OP, e.Op)
		w.u32(unix.NFTA_BYTEORDER_LEN, e.Len)
		w.u32(unix.NFTA_BYTEORDER_SIZE, e.Size)
	case *Ct:
		w.u32(unix.NFTA_CT_KEY, e.Key)
		if e.SReg != 0 {
			w.u32(unix.NFTA_CT_SREG, e.SReg)
		} else {
			w.u32(unix.NFTA_CT_DREG, e.DReg)
		}
		if e.HasDirection {
			w.u8(unix.NFTA_CT_DIRECTION, e.Direction)
		}
	}
}

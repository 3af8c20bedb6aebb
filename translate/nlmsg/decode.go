package nlmsg

import (
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// MsgType returns the netlink header type of an nf_tables message
// (NFNL_SUBSYS_NFTABLES<<8 | msg, msg being an NFT_MSG_* value).
func MsgType(msg uint16) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg)
}

// msgNames names the NFT_MSG_* types, for errors.
var msgNames = map[uint16]string{
	unix.NFT_MSG_NEWTABLE:      "NFT_MSG_NEWTABLE",
	unix.NFT_MSG_GETTABLE:      "NFT_MSG_GETTABLE",
	unix.NFT_MSG_DELTABLE:      "NFT_MSG_DELTABLE",
	unix.NFT_MSG_NEWCHAIN:      "NFT_MSG_NEWCHAIN",
	unix.NFT_MSG_GETCHAIN:      "NFT_MSG_GETCHAIN",
	unix.NFT_MSG_DELCHAIN:      "NFT_MSG_DELCHAIN",
	unix.NFT_MSG_NEWRULE:       "NFT_MSG_NEWRULE",
	unix.NFT_MSG_GETRULE:       "NFT_MSG_GETRULE",
	unix.NFT_MSG_DELRULE:       "NFT_MSG_DELRULE",
	unix.NFT_MSG_NEWSET:        "NFT_MSG_NEWSET",
	unix.NFT_MSG_GETSET:        "NFT_MSG_GETSET",
	unix.NFT_MSG_DELSET:        "NFT_MSG_DELSET",
	unix.NFT_MSG_NEWSETELEM:    "NFT_MSG_NEWSETELEM",
	unix.NFT_MSG_GETSETELEM:    "NFT_MSG_GETSETELEM",
	unix.NFT_MSG_DELSETELEM:    "NFT_MSG_DELSETELEM",
	unix.NFT_MSG_NEWGEN:        "NFT_MSG_NEWGEN",
	unix.NFT_MSG_GETGEN:        "NFT_MSG_GETGEN",
	unix.NFT_MSG_TRACE:         "NFT_MSG_TRACE",
	unix.NFT_MSG_NEWOBJ:        "NFT_MSG_NEWOBJ",
	unix.NFT_MSG_GETOBJ:        "NFT_MSG_GETOBJ",
	unix.NFT_MSG_DELOBJ:        "NFT_MSG_DELOBJ",
	unix.NFT_MSG_GETOBJ_RESET:  "NFT_MSG_GETOBJ_RESET",
	unix.NFT_MSG_NEWFLOWTABLE:  "NFT_MSG_NEWFLOWTABLE",
	unix.NFT_MSG_GETFLOWTABLE:  "NFT_MSG_GETFLOWTABLE",
	unix.NFT_MSG_DELFLOWTABLE:  "NFT_MSG_DELFLOWTABLE",
	unix.NFT_MSG_GETRULE_RESET: "NFT_MSG_GETRULE_RESET",
}

// TypeName returns a readable name for a netlink header type: an NFT_MSG_*
// name for nf_tables messages, NLMSG_* for control messages.
func TypeName(t netlink.HeaderType) string {
	switch t {
	case netlink.Noop:
		return "NLMSG_NOOP"
	case netlink.Error:
		return "NLMSG_ERROR"
	case netlink.Done:
		return "NLMSG_DONE"
	case netlink.Overrun:
		return "NLMSG_OVERRUN"
	}
	if uint16(t)>>8 == unix.NFNL_SUBSYS_NFTABLES {
		if n, ok := msgNames[uint16(t)&0xff]; ok {
			return n
		}
		return fmt.Sprintf("NFT_MSG type %d", uint16(t)&0xff)
	}
	return fmt.Sprintf("netlink message type %#x (subsystem %d)", uint16(t), uint16(t)>>8)
}

// Decode decodes the messages of a dump (or a batch) into a Ruleset, keeping
// message order within each kind. NLMSG_DONE messages are skipped; any other
// message type is an error naming it.
func Decode(msgs []netlink.Message) (*Ruleset, error) {
	rs := &Ruleset{}
	for i, m := range msgs {
		if m.Header.Type == netlink.Done {
			continue
		}
		var err error
		switch m.Header.Type {
		case MsgType(unix.NFT_MSG_NEWTABLE):
			var t *Table
			if t, err = DecodeTable(m); err == nil {
				rs.Tables = append(rs.Tables, t)
			}
		case MsgType(unix.NFT_MSG_NEWCHAIN):
			var c *Chain
			if c, err = DecodeChain(m); err == nil {
				rs.Chains = append(rs.Chains, c)
			}
		case MsgType(unix.NFT_MSG_NEWSET):
			var s *Set
			if s, err = DecodeSet(m); err == nil {
				rs.Sets = append(rs.Sets, s)
			}
		case MsgType(unix.NFT_MSG_NEWSETELEM):
			var e *SetElems
			if e, err = DecodeSetElems(m); err == nil {
				rs.Elems = append(rs.Elems, e)
			}
		case MsgType(unix.NFT_MSG_NEWRULE):
			var r *Rule
			if r, err = DecodeRule(m); err == nil {
				rs.Rules = append(rs.Rules, r)
			}
		case MsgType(unix.NFT_MSG_NEWOBJ):
			var o *Obj
			if o, err = DecodeObj(m); err == nil {
				rs.Objs = append(rs.Objs, o)
			}
		default:
			err = fmt.Errorf("unexpected %s", TypeName(m.Header.Type))
		}
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
	}
	return rs, nil
}

// body checks a message's type and splits off its nfgenmsg header.
func body(m netlink.Message, msg uint16) (Family, *attrs, error) {
	if m.Header.Type != MsgType(msg) {
		return 0, nil, fmt.Errorf("got %s, want %s", TypeName(m.Header.Type), msgNames[msg])
	}
	if len(m.Data) < 4 {
		return 0, nil, fmt.Errorf("%s: %d bytes, too short for nfgenmsg", msgNames[msg], len(m.Data))
	}
	a, err := parseAttrs(m.Data[4:])
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", msgNames[msg], err)
	}
	return Family(m.Data[0]), a, nil
}

// DecodeTable decodes an NFT_MSG_NEWTABLE message.
func DecodeTable(m netlink.Message) (*Table, error) {
	fam, a, err := body(m, unix.NFT_MSG_NEWTABLE)
	if err != nil {
		return nil, err
	}
	t := &Table{
		Family: fam,
		Name:   a.reqStr(unix.NFTA_TABLE_NAME, "NFTA_TABLE_NAME"),
		Flags:  a.u32(unix.NFTA_TABLE_FLAGS, "NFTA_TABLE_FLAGS"),
		Handle: a.u64(nftaTableHandle, "NFTA_TABLE_HANDLE"),
	}
	if a.err != nil {
		if t.Name != "" {
			return nil, fmt.Errorf("table %s %s: %w", fam, t.Name, a.err)
		}
		return nil, fmt.Errorf("table (%s): %w", fam, a.err)
	}
	return t, nil
}

// DecodeChain decodes an NFT_MSG_NEWCHAIN message.
func DecodeChain(m netlink.Message) (*Chain, error) {
	fam, a, err := body(m, unix.NFT_MSG_NEWCHAIN)
	if err != nil {
		return nil, err
	}
	c := &Chain{
		Family: fam,
		Table:  a.reqStr(unix.NFTA_CHAIN_TABLE, "NFTA_CHAIN_TABLE"),
		Name:   a.str(unix.NFTA_CHAIN_NAME),
		Handle: a.u64(unix.NFTA_CHAIN_HANDLE, "NFTA_CHAIN_HANDLE"),
		ID:     a.u32(nftaChainID, "NFTA_CHAIN_ID"),
		Flags:  a.u32(nftaChainFlags, "NFTA_CHAIN_FLAGS"),
		Type:   a.str(unix.NFTA_CHAIN_TYPE),
	}
	if c.Name == "" && c.ID == 0 {
		a.fail("missing NFTA_CHAIN_NAME")
	}
	if a.has(unix.NFTA_CHAIN_POLICY) {
		p := a.u32(unix.NFTA_CHAIN_POLICY, "NFTA_CHAIN_POLICY")
		c.Policy = &p
	}
	if h := a.nested(unix.NFTA_CHAIN_HOOK, "NFTA_CHAIN_HOOK"); h != nil {
		c.Hook = decodeHook(h)
		if h.err != nil {
			a.fail("NFTA_CHAIN_HOOK: %w", h.err)
		}
	}
	if a.err != nil {
		return nil, fmt.Errorf("table %s %s, chain %s: %w", fam, c.Table, c.Name, a.err)
	}
	return c, nil
}

func decodeHook(h *attrs) *ChainHook {
	hk := &ChainHook{
		Num:      h.reqU32(unix.NFTA_HOOK_HOOKNUM, "NFTA_HOOK_HOOKNUM"),
		Priority: int32(h.reqU32(unix.NFTA_HOOK_PRIORITY, "NFTA_HOOK_PRIORITY")),
	}
	// The kernel reports a single device both as NFTA_HOOK_DEV and inside
	// NFTA_HOOK_DEVS; NFTA_HOOK_DEVS, when present, is the whole list.
	if _, ok := h.byType[nftaHookDevs]; !ok && h.has(unix.NFTA_HOOK_DEV) {
		hk.Devices = append(hk.Devices, h.reqStr(unix.NFTA_HOOK_DEV, "NFTA_HOOK_DEV"))
	}
	if b, ok := h.byType[nftaHookDevs]; ok {
		list, err := splitAttrs(b)
		if err != nil {
			h.fail("NFTA_HOOK_DEVS: %w", err)
			return hk
		}
		for i, x := range list {
			switch x.typ {
			case nftaDeviceName:
				name := cstring(x.data)
				if name == "" {
					h.fail("NFTA_HOOK_DEVS: device %d: empty name", i)
					return hk
				}
				hk.Devices = append(hk.Devices, name)
			case nftaDevicePrefix:
				h.fail("NFTA_HOOK_DEVS: device %d: wildcard device name %q* (NFTA_DEVICE_PREFIX) is not supported", i, cstring(x.data))
				return hk
			default:
				h.fail("NFTA_HOOK_DEVS: device %d has attribute type %d, want NFTA_DEVICE_NAME", i, x.typ)
				return hk
			}
		}
	}
	return hk
}

// DecodeSet decodes an NFT_MSG_NEWSET message.
func DecodeSet(m netlink.Message) (*Set, error) {
	fam, a, err := body(m, unix.NFT_MSG_NEWSET)
	if err != nil {
		return nil, err
	}
	s := &Set{
		Family:   fam,
		Table:    a.reqStr(unix.NFTA_SET_TABLE, "NFTA_SET_TABLE"),
		Name:     a.reqStr(unix.NFTA_SET_NAME, "NFTA_SET_NAME"),
		Handle:   a.u64(nftaSetHandle, "NFTA_SET_HANDLE"),
		ID:       a.u32(unix.NFTA_SET_ID, "NFTA_SET_ID"),
		Flags:    a.u32(unix.NFTA_SET_FLAGS, "NFTA_SET_FLAGS"),
		KeyType:  a.u32(unix.NFTA_SET_KEY_TYPE, "NFTA_SET_KEY_TYPE"),
		KeyLen:   a.reqU32(unix.NFTA_SET_KEY_LEN, "NFTA_SET_KEY_LEN"),
		DataType: a.u32(unix.NFTA_SET_DATA_TYPE, "NFTA_SET_DATA_TYPE"),
		DataLen:  a.u32(unix.NFTA_SET_DATA_LEN, "NFTA_SET_DATA_LEN"),
		ObjType:  a.u32(unix.NFTA_SET_OBJ_TYPE, "NFTA_SET_OBJ_TYPE"),
		Policy:   a.u32(unix.NFTA_SET_POLICY, "NFTA_SET_POLICY"),
		Timeout:  a.u64(unix.NFTA_SET_TIMEOUT, "NFTA_SET_TIMEOUT"),
		GCInt:    a.u32(unix.NFTA_SET_GC_INTERVAL, "NFTA_SET_GC_INTERVAL"),
		Userdata: a.bytes(unix.NFTA_SET_USERDATA),
	}
	if d := a.nested(unix.NFTA_SET_DESC, "NFTA_SET_DESC"); d != nil {
		s.Size = d.u32(unix.NFTA_SET_DESC_SIZE, "NFTA_SET_DESC_SIZE")
		for i, f := range d.elems(nftaSetDescConcat, "NFTA_SET_DESC_CONCAT") {
			fa, err := parseAttrs(f)
			if err != nil {
				d.fail("NFTA_SET_DESC_CONCAT: field %d: %w", i, err)
				break
			}
			s.Concat = append(s.Concat, fa.reqU32(nftaSetFieldLen, "NFTA_SET_FIELD_LEN"))
			if fa.err != nil {
				d.fail("NFTA_SET_DESC_CONCAT: field %d: %w", i, fa.err)
				break
			}
		}
		if d.err != nil {
			a.fail("NFTA_SET_DESC: %w", d.err)
		}
	}
	s.ExprKinds = exprKinds(a, nftaSetExpr, nftaSetExpressions, "NFTA_SET_EXPR", "NFTA_SET_EXPRESSIONS")
	s.HasExprs = a.has(nftaSetExpr) || a.has(nftaSetExpressions)
	if a.err != nil {
		return nil, fmt.Errorf("table %s %s, set %s: %w", fam, s.Table, s.Name, a.err)
	}
	return s, nil
}

// exprKinds returns the kinds of the expressions in a single-expression
// attribute (one NFTA_EXPR_NAME/DATA nest) and a list attribute.
func exprKinds(a *attrs, one, list uint16, oneName, listName string) []string {
	var kinds []string
	if b, ok := a.byType[one]; ok {
		k := exprName(b)
		if k == "" {
			a.fail("%s: missing NFTA_EXPR_NAME", oneName)
		}
		kinds = append(kinds, k)
	}
	for i, b := range a.elems(list, listName) {
		k := exprName(b)
		if k == "" {
			a.fail("%s: expression %d: missing NFTA_EXPR_NAME", listName, i)
		}
		kinds = append(kinds, k)
	}
	return kinds
}

// DecodeSetElems decodes an NFT_MSG_NEWSETELEM message.
func DecodeSetElems(m netlink.Message) (*SetElems, error) {
	fam, a, err := body(m, unix.NFT_MSG_NEWSETELEM)
	if err != nil {
		return nil, err
	}
	se := &SetElems{
		Family: fam,
		Table:  a.reqStr(unix.NFTA_SET_ELEM_LIST_TABLE, "NFTA_SET_ELEM_LIST_TABLE"),
		Set:    a.str(unix.NFTA_SET_ELEM_LIST_SET),
		SetID:  a.u32(unix.NFTA_SET_ELEM_LIST_SET_ID, "NFTA_SET_ELEM_LIST_SET_ID"),
	}
	if se.Set == "" && se.SetID == 0 {
		a.fail("missing NFTA_SET_ELEM_LIST_SET")
	}
	list := a.elems(unix.NFTA_SET_ELEM_LIST_ELEMENTS, "NFTA_SET_ELEM_LIST_ELEMENTS")
	if a.err != nil {
		return nil, fmt.Errorf("table %s %s, set %s: %w", fam, se.Table, se.Set, a.err)
	}
	for i, b := range list {
		e, err := decodeSetElem(b)
		if err != nil {
			return nil, fmt.Errorf("table %s %s, set %s, element %d: %w", fam, se.Table, se.Set, i, err)
		}
		se.Elems = append(se.Elems, e)
	}
	return se, nil
}

func decodeSetElem(b []byte) (SetElem, error) {
	a, err := parseAttrs(b)
	if err != nil {
		return SetElem{}, err
	}
	e := SetElem{
		Flags:      a.u32(unix.NFTA_SET_ELEM_FLAGS, "NFTA_SET_ELEM_FLAGS"),
		Timeout:    a.u64(unix.NFTA_SET_ELEM_TIMEOUT, "NFTA_SET_ELEM_TIMEOUT"),
		Expiration: a.u64(unix.NFTA_SET_ELEM_EXPIRATION, "NFTA_SET_ELEM_EXPIRATION"),
		Userdata:   a.bytes(unix.NFTA_SET_ELEM_USERDATA),
		ObjRef:     a.str(unix.NFTA_SET_ELEM_OBJREF),
	}
	// Only the catch-all element has no key.
	if e.Flags&SetElemCatchall == 0 {
		e.Key = valueAttr(a, unix.NFTA_SET_ELEM_KEY, "NFTA_SET_ELEM_KEY")
	} else if a.has(unix.NFTA_SET_ELEM_KEY) {
		e.Key = valueAttr(a, unix.NFTA_SET_ELEM_KEY, "NFTA_SET_ELEM_KEY")
	}
	if a.has(nftaSetElemKeyEnd) {
		e.KeyEnd = valueAttr(a, nftaSetElemKeyEnd, "NFTA_SET_ELEM_KEY_END")
	}
	if b, ok := a.byType[unix.NFTA_SET_ELEM_DATA]; ok {
		v, verdict, err := decodeData(b)
		if err != nil {
			a.fail("NFTA_SET_ELEM_DATA: %w", err)
		}
		e.Data, e.Verdict = v, verdict
	}
	e.ExprKinds = exprKinds(a, unix.NFTA_SET_ELEM_EXPR, nftaSetElemExpressions, "NFTA_SET_ELEM_EXPR", "NFTA_SET_ELEM_EXPRESSIONS")
	return e, a.err
}

// ExprError is the error of a malformed expression in a rule. Index is the
// expression's position in Rule.Exprs (from 0); the message counts from 1,
// as package translate does.
type ExprError struct {
	Family Family
	Table  string
	Chain  string
	Handle uint64
	Index  int
	Kind   string // "" when NFTA_EXPR_NAME itself is unreadable
	Err    error
}

func (e *ExprError) Error() string {
	kind := e.Kind
	if kind == "" {
		kind = "?"
	}
	return fmt.Sprintf("table %s %s, chain %s, rule handle %d, expression %d (%s): %v",
		e.Family, e.Table, e.Chain, e.Handle, e.Index+1, kind, e.Err)
}

func (e *ExprError) Unwrap() error { return e.Err }

// DecodeRule decodes an NFT_MSG_NEWRULE message. Every NFTA_LIST_ELEM of
// NFTA_RULE_EXPRESSIONS becomes one element of Exprs, in order; a malformed
// expression gives an *ExprError.
func DecodeRule(m netlink.Message) (*Rule, error) {
	fam, a, err := body(m, unix.NFT_MSG_NEWRULE)
	if err != nil {
		return nil, err
	}
	r := &Rule{
		Family:   fam,
		Table:    a.reqStr(unix.NFTA_RULE_TABLE, "NFTA_RULE_TABLE"),
		Chain:    a.reqStr(unix.NFTA_RULE_CHAIN, "NFTA_RULE_CHAIN"),
		Handle:   a.u64(unix.NFTA_RULE_HANDLE, "NFTA_RULE_HANDLE"),
		Position: a.u64(unix.NFTA_RULE_POSITION, "NFTA_RULE_POSITION"),
		ID:       a.u32(nftaRuleID, "NFTA_RULE_ID"),
		Userdata: a.bytes(unix.NFTA_RULE_USERDATA),
	}
	// NFTA_RULE_COMPAT only qualifies xtables "match"/"target"
	// expressions, which stay Opaque; it is not kept.
	list := a.elems(unix.NFTA_RULE_EXPRESSIONS, "NFTA_RULE_EXPRESSIONS")
	if a.err != nil {
		return nil, fmt.Errorf("table %s %s, chain %s, rule handle %d: %w", fam, r.Table, r.Chain, r.Handle, a.err)
	}
	r.Exprs = make([]Expr, 0, len(list))
	for i, b := range list {
		e, err := DecodeExpr(fam, b)
		if err != nil {
			return nil, &ExprError{Family: fam, Table: r.Table, Chain: r.Chain, Handle: r.Handle, Index: i, Kind: exprName(b), Err: err}
		}
		r.Exprs = append(r.Exprs, e)
	}
	return r, nil
}

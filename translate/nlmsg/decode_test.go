package nlmsg

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func u32p(v uint32) *uint32 { return &v }

// fullRuleset has every field of every type set, so that a round trip
// through Encode and Decode covers every attribute.
func fullRuleset() *Ruleset {
	return &Ruleset{
		Tables: []*Table{{Family: FamilyInet, Name: "filter", Handle: 7, Flags: 1}},
		Chains: []*Chain{
			{Family: FamilyInet, Table: "filter", Name: "input", Handle: 1, Flags: ChainBase, Type: "filter",
				Hook: &ChainHook{Num: 1, Priority: -150}, Policy: u32p(0)},
			{Family: FamilyNetdev, Table: "nd", Name: "ingress", Handle: 2, ID: 9, Flags: ChainBase, Type: "filter",
				Hook: &ChainHook{Num: 0, Priority: 10, Devices: []string{"veth0"}}, Policy: u32p(1)},
			{Family: FamilyNetdev, Table: "nd", Name: "multi", Handle: 3, Type: "filter",
				Hook: &ChainHook{Num: 0, Priority: 0, Devices: []string{"a0", "b1"}}},
			{Family: FamilyInet, Table: "filter", Name: "user", Handle: 4},
		},
		Sets: []*Set{{
			Family: FamilyIPv4, Table: "t", Name: "s", Handle: 3, ID: 4, Flags: 0x8c, KeyType: 7, KeyLen: 8,
			DataType: 0xffffff00, DataLen: 16, ObjType: 1, Policy: 1, Size: 10, Concat: []uint32{4, 2},
			Timeout: 60000, GCInt: 1000, Userdata: []byte{1, 2, 3}, HasExprs: true, ExprKinds: []string{"counter"},
		}},
		Elems: []*SetElems{{
			Family: FamilyIPv4, Table: "t", Set: "s", SetID: 4,
			Elems: []SetElem{
				{Key: []byte{192, 0, 2, 1}, KeyEnd: []byte{192, 0, 2, 9}, Verdict: &Verdict{Code: VerdictJump, Chain: "c"},
					Flags: SetElemIntervalEnd, Timeout: 5, Expiration: 3, Userdata: []byte{9}, ExprKinds: []string{"counter", "limit"}},
				{Key: []byte{1}, Data: []byte{2, 3}, ObjRef: "obj"},
				{Flags: SetElemCatchall, Verdict: &Verdict{Code: VerdictDrop}},
			},
		}},
		Rules: []*Rule{{
			Family: FamilyIPv6, Table: "t", Chain: "c", Handle: 4, Position: 3, ID: 2, Userdata: []byte("\x00\x03hi\x00"),
			Exprs: []Expr{
				&Payload{Base: 1, Offset: 12, Len: 4, DReg: 1},
				&Payload{Base: 2, Offset: 16, Len: 2, SReg: 1, CsumType: 1, CsumOffset: 10, CsumFlags: 1},
				&Meta{Key: 3, DReg: 1},
				&Meta{Key: 3, SReg: 2},
				&Cmp{Op: 1, SReg: 1, Data: []byte{1, 2, 3, 4}},
				&Bitwise{SReg: 1, DReg: 1, Len: 4, Mask: []byte{255, 255, 255, 0}, Xor: []byte{0, 0, 0, 0}},
				&Bitwise{SReg: 1, DReg: 2, Len: 4, Op: BitwiseLShift, Data: []byte{0, 0, 0, 8}},
				&Bitwise{SReg: 1, DReg: 2, Len: 4, Op: BitwiseAnd, SReg2: 3},
				&Range{Op: 1, SReg: 1, FromData: []byte{0, 1}, ToData: []byte{0, 9}},
				&Lookup{SReg: 1, Set: "s", SetID: 4, Flags: 1},
				&Lookup{SReg: 1, DReg: 0, HasDReg: true, Set: "m"},
				&Immediate{DReg: 1, Data: []byte{5, 6}},
				&Immediate{DReg: 0, Verdict: &Verdict{Code: VerdictGoto, Chain: "x", ChainID: 3}},
				&Counter{Packets: 10, Bytes: 1000},
				&Byteorder{SReg: 1, DReg: 1, Op: 1, Len: 4, Size: 2},
				&Ct{Key: 0, DReg: 1},
				&Ct{Key: 3, SReg: 1, Direction: 1, HasDirection: true},
				&Opaque{Name: "log", Data: []byte{8, 0, 1, 0, 0, 0, 0, 1}},
				&Opaque{Name: "notrack"},
			},
		}},
	}
}

func TestRoundTrip(t *testing.T) {
	want := fullRuleset()
	msgs := Encode(want)
	msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: netlink.Done}})
	got, err := Decode(msgs)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip differs:\n got %s\nwant %s", Format(got), Format(want))
	}
	if Format(got) != Format(want) {
		t.Errorf("Format differs")
	}
}

// ruleMsg builds an NFT_MSG_NEWRULE for table ip filter, chain input,
// handle 4, with the given expression payloads.
func ruleMsg(exprs ...[]byte) netlink.Message {
	var w builder
	w.str(unix.NFTA_RULE_TABLE, "filter")
	w.str(unix.NFTA_RULE_CHAIN, "input")
	w.u64(unix.NFTA_RULE_HANDLE, 4)
	w.nest(unix.NFTA_RULE_EXPRESSIONS, func(l *builder) {
		for _, e := range exprs {
			l.raw(nftaListElem|unix.NLA_F_NESTED, e)
		}
	})
	return message(unix.NFT_MSG_NEWRULE, FamilyIPv4, &w)
}

// rawExpr builds an expression payload with the given name and data
// attributes.
func rawExpr(name string, data func(*builder)) []byte {
	var w builder
	w.str(unix.NFTA_EXPR_NAME, name)
	if data != nil {
		w.nest(unix.NFTA_EXPR_DATA, data)
	}
	return w.b
}

var goodPayload = EncodeExpr(&Payload{Base: 1, Offset: 12, Len: 4, DReg: 1})

func TestDecodeRuleErrors(t *testing.T) {
	tests := []struct {
		name string
		msg  netlink.Message
		want string
	}{
		{
			name: "missing cmp data",
			msg: ruleMsg(goodPayload, goodPayload, rawExpr("cmp", func(w *builder) {
				w.u32(unix.NFTA_CMP_SREG, 1)
				w.u32(unix.NFTA_CMP_OP, 0)
			})),
			want: "table ip filter, chain input, rule handle 4, expression 3 (cmp): missing NFTA_CMP_DATA",
		},
		{
			name: "short u32",
			msg: ruleMsg(rawExpr("meta", func(w *builder) {
				w.raw(unix.NFTA_META_KEY, []byte{0, 3})
				w.u32(unix.NFTA_META_DREG, 1)
			})),
			want: "expression 1 (meta): NFTA_META_KEY: length 2, want 4",
		},
		{
			name: "meta without register",
			msg:  ruleMsg(rawExpr("meta", func(w *builder) { w.u32(unix.NFTA_META_KEY, 3) })),
			want: "expression 1 (meta): missing NFTA_META_DREG (or NFTA_META_SREG)",
		},
		{
			name: "payload with both registers",
			msg: ruleMsg(rawExpr("payload", func(w *builder) {
				w.u32(unix.NFTA_PAYLOAD_BASE, 1)
				w.u32(unix.NFTA_PAYLOAD_OFFSET, 1)
				w.u32(unix.NFTA_PAYLOAD_LEN, 1)
				w.u32(unix.NFTA_PAYLOAD_DREG, 1)
				w.u32(unix.NFTA_PAYLOAD_SREG, 1)
			})),
			want: "expression 1 (payload): both NFTA_PAYLOAD_DREG and NFTA_PAYLOAD_SREG",
		},
		{
			name: "missing expression data",
			msg:  ruleMsg(rawExpr("cmp", nil)),
			want: "expression 1 (cmp): missing NFTA_EXPR_DATA",
		},
		{
			name: "missing expression name",
			msg:  ruleMsg(func() []byte { var w builder; w.u32(unix.NFTA_EXPR_DATA, 0); return w.b }()),
			want: "expression 1 (?): missing NFTA_EXPR_NAME",
		},
		{
			name: "truncated attribute inside expression data",
			msg: ruleMsg(func() []byte {
				var w builder
				w.str(unix.NFTA_EXPR_NAME, "counter")
				w.raw(unix.NFTA_EXPR_DATA, []byte{12, 0, 1, 0, 0, 0}) // claims 12 bytes, has 6
				return w.b
			}()),
			want: "expression 1 (counter): NFTA_EXPR_DATA: attribute type 1 at offset 0: length 12 runs past the end",
		},
		{
			name: "immediate with neither value nor verdict",
			msg: ruleMsg(rawExpr("immediate", func(w *builder) {
				w.u32(unix.NFTA_IMMEDIATE_DREG, 0)
				w.nest(unix.NFTA_IMMEDIATE_DATA, func(*builder) {})
			})),
			want: "expression 1 (immediate): NFTA_IMMEDIATE_DATA: neither NFTA_DATA_VALUE nor NFTA_DATA_VERDICT",
		},
		{
			name: "jump without chain",
			msg: ruleMsg(rawExpr("immediate", func(w *builder) {
				w.u32(unix.NFTA_IMMEDIATE_DREG, 0)
				w.nest(unix.NFTA_IMMEDIATE_DATA, func(d *builder) {
					d.nest(unix.NFTA_DATA_VERDICT, func(v *builder) { v.u32(unix.NFTA_VERDICT_CODE, uint32(0xfffffffd)) })
				})
			})),
			want: "expression 1 (immediate): NFTA_IMMEDIATE_DATA: NFTA_DATA_VERDICT: jump without NFTA_VERDICT_CHAIN",
		},
		{
			name: "cmp with a verdict",
			msg: ruleMsg(rawExpr("cmp", func(w *builder) {
				w.u32(unix.NFTA_CMP_SREG, 1)
				w.u32(unix.NFTA_CMP_OP, 0)
				w.verdict(unix.NFTA_CMP_DATA, &Verdict{Code: VerdictAccept})
			})),
			want: "expression 1 (cmp): NFTA_CMP_DATA: verdict where a value is expected",
		},
		{
			name: "bitwise mask without xor",
			msg: ruleMsg(rawExpr("bitwise", func(w *builder) {
				w.u32(unix.NFTA_BITWISE_SREG, 1)
				w.u32(unix.NFTA_BITWISE_DREG, 1)
				w.u32(unix.NFTA_BITWISE_LEN, 4)
				w.value(unix.NFTA_BITWISE_MASK, []byte{1, 2, 3, 4})
			})),
			want: "expression 1 (bitwise): missing NFTA_BITWISE_XOR",
		},
		{
			name: "lookup without set",
			msg:  ruleMsg(rawExpr("lookup", func(w *builder) { w.u32(unix.NFTA_LOOKUP_SREG, 1) })),
			want: "expression 1 (lookup): missing NFTA_LOOKUP_SET",
		},
		{
			name: "range without bounds",
			msg: ruleMsg(rawExpr("range", func(w *builder) {
				w.u32(unix.NFTA_RANGE_SREG, 1)
				w.u32(unix.NFTA_RANGE_OP, 0)
				w.value(unix.NFTA_RANGE_FROM_DATA, []byte{1})
			})),
			want: "expression 1 (range): missing NFTA_RANGE_TO_DATA",
		},
		{
			name: "byteorder without size",
			msg: ruleMsg(rawExpr("byteorder", func(w *builder) {
				w.u32(unix.NFTA_BYTEORDER_SREG, 1)
				w.u32(unix.NFTA_BYTEORDER_DREG, 1)
				w.u32(unix.NFTA_BYTEORDER_OP, 0)
				w.u32(unix.NFTA_BYTEORDER_LEN, 4)
			})),
			want: "expression 1 (byteorder): missing NFTA_BYTEORDER_SIZE",
		},
		{
			name: "ct with a long direction",
			msg: ruleMsg(rawExpr("ct", func(w *builder) {
				w.u32(unix.NFTA_CT_KEY, 0)
				w.u32(unix.NFTA_CT_DREG, 1)
				w.u32(unix.NFTA_CT_DIRECTION, 1)
			})),
			want: "expression 1 (ct): NFTA_CT_DIRECTION: length 4, want 1",
		},
		{
			name: "counter with short packets",
			msg:  ruleMsg(rawExpr("counter", func(w *builder) { w.u32(unix.NFTA_COUNTER_PACKETS, 1) })),
			want: "expression 1 (counter): NFTA_COUNTER_PACKETS: length 4, want 8",
		},
		{
			name: "missing table",
			msg: func() netlink.Message {
				var w builder
				w.str(unix.NFTA_RULE_CHAIN, "input")
				return message(unix.NFT_MSG_NEWRULE, FamilyIPv4, &w)
			}(),
			want: "missing NFTA_RULE_TABLE",
		},
		{
			name: "expression list with a foreign attribute",
			msg: func() netlink.Message {
				var w builder
				w.str(unix.NFTA_RULE_TABLE, "filter")
				w.str(unix.NFTA_RULE_CHAIN, "input")
				w.nest(unix.NFTA_RULE_EXPRESSIONS, func(l *builder) { l.u32(2, 0) })
				return message(unix.NFT_MSG_NEWRULE, FamilyIPv4, &w)
			}(),
			want: "NFTA_RULE_EXPRESSIONS: element 0 has type 2, want NFTA_LIST_ELEM",
		},
		{
			name: "short nfgenmsg",
			msg:  netlink.Message{Header: netlink.Header{Type: MsgType(unix.NFT_MSG_NEWRULE)}, Data: []byte{2, 0}},
			want: "NFT_MSG_NEWRULE: 2 bytes, too short for nfgenmsg",
		},
		{
			name: "truncated attribute header",
			msg:  netlink.Message{Header: netlink.Header{Type: MsgType(unix.NFT_MSG_NEWRULE)}, Data: []byte{2, 0, 0, 0, 8, 0}},
			want: "truncated attribute header at offset 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeRule(tt.msg)
			if err == nil {
				t.Fatalf("no error, got %+v", r)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDecodeExprKinds(t *testing.T) {
	r, err := DecodeRule(ruleMsg(
		goodPayload,
		rawExpr("log", func(w *builder) { w.str(unix.NFTA_LOG_PREFIX, "p") }),
		rawExpr("notrack", nil),
		EncodeExpr(&Cmp{SReg: 1, Data: []byte{1}}),
	))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		kind   string
		opaque bool
	}{{"payload", false}, {"log", true}, {"notrack", true}, {"cmp", false}}
	if len(r.Exprs) != len(tests) {
		t.Fatalf("%d expressions, want %d", len(r.Exprs), len(tests))
	}
	for i, tt := range tests {
		_, isOpaque := r.Exprs[i].(*Opaque)
		if r.Exprs[i].Kind() != tt.kind || isOpaque != tt.opaque {
			t.Errorf("expression %d: %s (opaque %v), want %s (opaque %v)", i, r.Exprs[i].Kind(), isOpaque, tt.kind, tt.opaque)
		}
	}
	if o := r.Exprs[1].(*Opaque); !strings.Contains(string(o.Data), "p") {
		t.Errorf("opaque log data %x lacks the prefix", o.Data)
	}
	if o := r.Exprs[2].(*Opaque); o.Data != nil {
		t.Errorf("opaque notrack data %x, want none", o.Data)
	}
}

// TestDecodeNestedFlag checks that nests decode with and without
// NLA_F_NESTED, and that NLA_F_NET_BYTEORDER is ignored.
func TestDecodeNestedFlag(t *testing.T) {
	for _, flag := range []uint16{0, unix.NLA_F_NESTED, unix.NLA_F_NET_BYTEORDER} {
		var data builder
		data.u32(unix.NFTA_CMP_SREG|flag&unix.NLA_F_NET_BYTEORDER, 1)
		data.u32(unix.NFTA_CMP_OP, 0)
		var value builder
		value.raw(unix.NFTA_DATA_VALUE, []byte{7})
		data.raw(unix.NFTA_CMP_DATA|flag, value.b)
		var e builder
		e.str(unix.NFTA_EXPR_NAME, "cmp")
		e.raw(unix.NFTA_EXPR_DATA|flag, data.b)
		r, err := DecodeRule(ruleMsg(e.b))
		if err != nil {
			t.Fatalf("flag %#x: %v", flag, err)
		}
		want := &Cmp{SReg: 1, Data: []byte{7}}
		if !reflect.DeepEqual(r.Exprs[0], want) {
			t.Errorf("flag %#x: %+v, want %+v", flag, r.Exprs[0], want)
		}
	}
}

func TestDecodeDispatch(t *testing.T) {
	tests := []struct {
		name string
		msgs []netlink.Message
		want string // error substring; "" for success
	}{
		{"done skipped", []netlink.Message{EncodeTable(&Table{Name: "t"}), {Header: netlink.Header{Type: netlink.Done}}}, ""},
		{"object without table", []netlink.Message{{Header: netlink.Header{Type: MsgType(unix.NFT_MSG_NEWOBJ)}, Data: []byte{2, 0, 0, 0}}}, "message 0: object ip  : missing NFTA_OBJ_TABLE"},
		{"flowtable", []netlink.Message{{Header: netlink.Header{Type: MsgType(unix.NFT_MSG_NEWFLOWTABLE)}, Data: []byte{2, 0, 0, 0}}}, "message 0: unexpected NFT_MSG_NEWFLOWTABLE"},
		{"delrule", []netlink.Message{EncodeTable(&Table{Name: "t"}), {Header: netlink.Header{Type: MsgType(unix.NFT_MSG_DELRULE)}}}, "message 1: unexpected NFT_MSG_DELRULE"},
		{"other subsystem", []netlink.Message{{Header: netlink.Header{Type: 0x0102}}}, "netlink message type 0x102 (subsystem 1)"},
		{"error", []netlink.Message{{Header: netlink.Header{Type: netlink.Error}}}, "unexpected NLMSG_ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.msgs)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestDecodeOtherErrors(t *testing.T) {
	withElems := func(fn func(*builder)) netlink.Message {
		var w builder
		w.str(unix.NFTA_SET_ELEM_LIST_TABLE, "t")
		w.str(unix.NFTA_SET_ELEM_LIST_SET, "s")
		w.nest(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(l *builder) {
			l.nest(nftaListElem, func(b *builder) { b.value(unix.NFTA_SET_ELEM_KEY, []byte{0}) })
			l.nest(nftaListElem, fn)
		})
		return message(unix.NFT_MSG_NEWSETELEM, FamilyIPv4, &w)
	}
	tests := []struct {
		name   string
		decode func() error
		want   string
	}{
		{"element without key", func() error {
			_, err := DecodeSetElems(withElems(func(b *builder) { b.u32(unix.NFTA_SET_ELEM_FLAGS, 0) }))
			return err
		}, "table ip t, set s, element 1: missing NFTA_SET_ELEM_KEY"},
		{"element with bad data", func() error {
			_, err := DecodeSetElems(withElems(func(b *builder) {
				b.value(unix.NFTA_SET_ELEM_KEY, []byte{1})
				b.raw(unix.NFTA_SET_ELEM_DATA, []byte{1, 2, 3})
			}))
			return err
		}, "table ip t, set s, element 1: NFTA_SET_ELEM_DATA: truncated attribute header"},
		{"set without key length", func() error {
			var w builder
			w.str(unix.NFTA_SET_TABLE, "t")
			w.str(unix.NFTA_SET_NAME, "s")
			_, err := DecodeSet(message(unix.NFT_MSG_NEWSET, FamilyIPv6, &w))
			return err
		}, "table ip6 t, set s: missing NFTA_SET_KEY_LEN"},
		{"set with bad concat", func() error {
			var w builder
			w.str(unix.NFTA_SET_TABLE, "t")
			w.str(unix.NFTA_SET_NAME, "s")
			w.u32(unix.NFTA_SET_KEY_LEN, 8)
			w.nest(unix.NFTA_SET_DESC, func(d *builder) {
				d.nest(nftaSetDescConcat, func(c *builder) { c.nest(nftaListElem, func(*builder) {}) })
			})
			_, err := DecodeSet(message(unix.NFT_MSG_NEWSET, FamilyIPv4, &w))
			return err
		}, "NFTA_SET_DESC: NFTA_SET_DESC_CONCAT: field 0: missing NFTA_SET_FIELD_LEN"},
		{"chain hook without priority", func() error {
			var w builder
			w.str(unix.NFTA_CHAIN_TABLE, "t")
			w.str(unix.NFTA_CHAIN_NAME, "c")
			w.nest(unix.NFTA_CHAIN_HOOK, func(h *builder) { h.u32(unix.NFTA_HOOK_HOOKNUM, 1) })
			_, err := DecodeChain(message(unix.NFT_MSG_NEWCHAIN, FamilyInet, &w))
			return err
		}, "table inet t, chain c: NFTA_CHAIN_HOOK: missing NFTA_HOOK_PRIORITY"},
		{"chain wildcard device", func() error {
			var w builder
			w.str(unix.NFTA_CHAIN_TABLE, "t")
			w.str(unix.NFTA_CHAIN_NAME, "c")
			w.nest(unix.NFTA_CHAIN_HOOK, func(h *builder) {
				h.u32(unix.NFTA_HOOK_HOOKNUM, 0)
				h.u32(unix.NFTA_HOOK_PRIORITY, 0)
				h.nest(nftaHookDevs, func(d *builder) { d.str(nftaDevicePrefix, "eth") })
			})
			_, err := DecodeChain(message(unix.NFT_MSG_NEWCHAIN, FamilyNetdev, &w))
			return err
		}, `wildcard device name "eth"* (NFTA_DEVICE_PREFIX) is not supported`},
		{"table without name", func() error {
			var w builder
			w.u32(unix.NFTA_TABLE_FLAGS, 0)
			_, err := DecodeTable(message(unix.NFT_MSG_NEWTABLE, FamilyInet, &w))
			return err
		}, "table (inet): missing NFTA_TABLE_NAME"},
		{"wrong message type", func() error {
			_, err := DecodeTable(EncodeChain(&Chain{Table: "t", Name: "c"}))
			return err
		}, "got NFT_MSG_NEWCHAIN, want NFT_MSG_NEWTABLE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.decode()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

package nlmsg

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func TestDecodeObj(t *testing.T) {
	var data builder
	data.u64(1, 100) // NFTA_COUNTER_BYTES
	data.u64(2, 3)   // NFTA_COUNTER_PACKETS
	msg := func(attrs func(w *builder)) netlink.Message {
		var w builder
		attrs(&w)
		return netlink.Message{
			Header: netlink.Header{Type: MsgType(unix.NFT_MSG_NEWOBJ)},
			Data:   append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, w.b...),
		}
	}
	full := func(w *builder) {
		w.str(unix.NFTA_OBJ_TABLE, "t")
		w.str(unix.NFTA_OBJ_NAME, "c1")
		w.u32(unix.NFTA_OBJ_TYPE, 1)
		w.raw(unix.NFTA_OBJ_DATA|unix.NLA_F_NESTED, data.b)
		w.u32(unix.NFTA_OBJ_USE, 2)
		w.u64(nftaObjHandle, 7)
		w.raw(nftaObjUserdata, []byte{1, 2})
	}
	rs, err := Decode([]netlink.Message{msg(full)})
	if err != nil {
		t.Fatal(err)
	}
	want := &Obj{Family: FamilyInet, Table: "t", Name: "c1", Handle: 7, Type: 1, Data: data.b, Userdata: []byte{1, 2}}
	if len(rs.Objs) != 1 || !reflect.DeepEqual(rs.Objs[0], want) {
		t.Fatalf("decoded %+v, want %+v", rs.Objs, want)
	}
	back, err := DecodeObj(EncodeObj(want))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, want) {
		t.Errorf("DecodeObj(EncodeObj(%+v)) = %+v", want, back)
	}
	for _, tt := range []struct {
		name  string
		attrs func(w *builder)
		want  string
	}{
		{"no name", func(w *builder) { w.str(unix.NFTA_OBJ_TABLE, "t"); w.u32(unix.NFTA_OBJ_TYPE, 1) }, "missing NFTA_OBJ_NAME"},
		{"no type", func(w *builder) { w.str(unix.NFTA_OBJ_TABLE, "t"); w.str(unix.NFTA_OBJ_NAME, "c") }, "missing NFTA_OBJ_TYPE"},
		{"short type", func(w *builder) {
			w.str(unix.NFTA_OBJ_TABLE, "t")
			w.str(unix.NFTA_OBJ_NAME, "c")
			w.raw(unix.NFTA_OBJ_TYPE, []byte{1})
		}, "NFTA_OBJ_TYPE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeObj(msg(tt.attrs))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

package nlmsg

import (
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Obj is an NFT_MSG_NEWOBJ message: a named stateful object of a table.
type Obj struct {
	Family Family
	Table  string
	Name   string
	Handle uint64
	// Type is NFTA_OBJ_TYPE (NFT_OBJECT_*).
	Type uint32
	// Data is NFTA_OBJ_DATA, the object's attributes, undecoded: their
	// meaning depends on Type (NFTA_COUNTER_*, NFTA_QUOTA_*, NFTA_LIMIT_*).
	Data     []byte
	Userdata []byte
}

// DecodeObj decodes an NFT_MSG_NEWOBJ message.
func DecodeObj(m netlink.Message) (*Obj, error) {
	fam, a, err := body(m, unix.NFT_MSG_NEWOBJ)
	if err != nil {
		return nil, err
	}
	o := &Obj{
		Family:   fam,
		Table:    a.reqStr(unix.NFTA_OBJ_TABLE, "NFTA_OBJ_TABLE"),
		Name:     a.reqStr(unix.NFTA_OBJ_NAME, "NFTA_OBJ_NAME"),
		Type:     a.reqU32(unix.NFTA_OBJ_TYPE, "NFTA_OBJ_TYPE"),
		Handle:   a.u64(nftaObjHandle, "NFTA_OBJ_HANDLE"),
		Data:     a.bytes(unix.NFTA_OBJ_DATA),
		Userdata: a.bytes(nftaObjUserdata),
	}
	if a.err != nil {
		return nil, fmt.Errorf("object %s %s %s: %w", fam, o.Table, o.Name, a.err)
	}
	return o, nil
}

// NFTA_OBJ_* attributes golang.org/x/sys/unix does not name.
const (
	nftaObjHandle   = 6
	nftaObjUserdata = 8
)

// EncodeObj builds an NFT_MSG_NEWOBJ message.
func EncodeObj(o *Obj) netlink.Message {
	var w builder
	w.str(unix.NFTA_OBJ_TABLE, o.Table)
	w.str(unix.NFTA_OBJ_NAME, o.Name)
	w.u32(unix.NFTA_OBJ_TYPE, o.Type)
	if o.Data != nil {
		w.raw(unix.NFTA_OBJ_DATA|unix.NLA_F_NESTED, o.Data)
	}
	if o.Handle != 0 {
		w.u64(nftaObjHandle, o.Handle)
	}
	if o.Userdata != nil {
		w.raw(nftaObjUserdata, o.Userdata)
	}
	return message(unix.NFT_MSG_NEWOBJ, o.Family, &w)
}

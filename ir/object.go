package ir

import (
	"fmt"
	"strings"
)

// ObjectType is an nf_tables stateful object type (NFT_OBJECT_*).
type ObjectType uint32

// Object types.
const (
	ObjectCounter ObjectType = 1 // NFT_OBJECT_COUNTER
	ObjectQuota   ObjectType = 2 // NFT_OBJECT_QUOTA
	ObjectLimit   ObjectType = 4 // NFT_OBJECT_LIMIT
)

// String returns nft's keyword for the object type.
func (t ObjectType) String() string {
	switch t {
	case ObjectCounter:
		return "counter"
	case ObjectQuota:
		return "quota"
	case ObjectLimit:
		return "limit"
	}
	return fmt.Sprintf("object type %d", uint32(t))
}

// Object is a named stateful object of a table ("counter c1 { … }",
// "quota q1 { … }", "limit l1 { … }"). Rules refer to it with an ObjRef
// statement; every reference shares the object's one state.
type Object struct {
	Type ObjectType
	Name string
	// Packets and Bytes are a counter object's values when it was loaded
	// (ObjectCounter).
	Packets, Bytes uint64
	// Quota holds a quota object's parameters (ObjectQuota); Quota.Used
	// is the bytes consumed when it was loaded.
	Quota *Quota
	// Limit holds a limit object's parameters (ObjectLimit).
	Limit *Limit
}

// ObjRef is a reference to a named stateful object ("counter name "c1"",
// nft_objref with an immediate name): the object's statement runs with
// the object's state.
type ObjRef struct {
	Object *Object
}

func (*ObjRef) isStmt() {}

// Object returns the table's object of type typ called name, or nil.
func (t *Table) Object(typ ObjectType, name string) *Object {
	for _, o := range t.Objects {
		if o.Type == typ && o.Name == name {
			return o
		}
	}
	return nil
}

// Identity is the object's identity for keeping its state across reloads:
// its type, name and declared parameters. A changed declaration is a new
// object with fresh state, as nft's replacing of the object would give.
func (o *Object) Identity() string {
	return o.Type.String() + " " + o.Name + " {" + o.Body() + "}"
}

// Body returns the object's declaration body as nft lists it, e.g.
// "packets 0 bytes 0" or "over 1000 bytes".
func (o *Object) Body() string {
	switch o.Type {
	case ObjectCounter:
		return fmt.Sprintf("packets %d bytes %d", o.Packets, o.Bytes)
	case ObjectQuota:
		if o.Quota != nil {
			return strings.TrimPrefix(o.Quota.String(), "quota ")
		}
	case ObjectLimit:
		if o.Limit != nil {
			return strings.TrimPrefix(o.Limit.String(), "limit ")
		}
	}
	return ""
}

// ObjectState is the live state of an object, for printing.
type ObjectState struct {
	Packets, Bytes uint64 // counter
	Used           uint64 // quota: bytes consumed
}

// Live returns a copy of o with the live values st in place of the
// values it was loaded with.
func (o *Object) Live(st ObjectState) *Object {
	c := *o
	switch o.Type {
	case ObjectCounter:
		c.Packets, c.Bytes = st.Packets, st.Bytes
	case ObjectQuota:
		if o.Quota != nil {
			q := *o.Quota
			q.Used = q.Listed(st.Used)
			c.Quota = &q
		}
	}
	return &c
}

// PrintObject writes o as nft lists it inside a table, indented by one
// tab.
func PrintObject(b *strings.Builder, o *Object) {
	fmt.Fprintf(b, "\t%s %s {\n\t\t%s\n\t}\n", o.Type, o.Name, o.Body())
}

// String returns the reference in nft syntax, e.g. `counter name "c1"`.
func (r *ObjRef) String() string {
	return fmt.Sprintf("%s name %s", r.Object.Type, quote(r.Object.Name))
}

// Listed returns the "used" value nft lists for a quota that has consumed
// used bytes: the kernel's dump (nft_quota_do_dump) caps it at the quota.
func (q *Quota) Listed(used uint64) uint64 {
	return min(used, q.Bytes)
}

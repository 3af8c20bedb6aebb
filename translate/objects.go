package translate

import (
	"fmt"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// Named stateful objects (NFT_MSG_NEWOBJ) and the nft_objref expression
// that refers to them.

// NFTA_COUNTER_* and NFTA_OBJREF_* attributes.
const (
	nftaCounterBytes   = 1
	nftaCounterPackets = 2

	nftaObjrefImmType = 1
	nftaObjrefImmName = 2
	nftaObjrefSetSreg = 3
	nftaObjrefSetName = 4
)

// liftObject lifts a counter, quota or limit object; other object types
// (ct helper, ct timeout, ct expectation, secmark, synproxy) are refused.
func liftObject(o *nlmsg.Obj) (*ir.Object, error) {
	obj := &ir.Object{Type: ir.ObjectType(o.Type), Name: o.Name}
	switch obj.Type {
	case ir.ObjectCounter:
		a, err := exprAttrs(o.Data)
		if err != nil {
			return nil, err
		}
		var errs [2]error
		obj.Bytes, _, errs[0] = attrBE64(a, nftaCounterBytes, "NFTA_COUNTER_BYTES")
		obj.Packets, _, errs[1] = attrBE64(a, nftaCounterPackets, "NFTA_COUNTER_PACKETS")
		for _, e := range errs {
			if e != nil {
				return nil, e
			}
		}
	case ir.ObjectQuota:
		q, err := liftQuota(o.Data)
		if err != nil {
			return nil, err
		}
		obj.Quota = q
	case ir.ObjectLimit:
		l, err := liftLimit(o.Data)
		if err != nil {
			return nil, err
		}
		obj.Limit = l
	default:
		return nil, unsupported("stateful object type %d (only counter, quota and limit objects are)", o.Type)
	}
	return obj, nil
}

// objref lifts nft_objref with an immediate object name. An object map
// (the object chosen by a packet value, "counter name ip saddr map { … }")
// is refused.
func (l *ruleLifter) objref(o *nlmsg.Opaque) (ir.Stmt, error) {
	a, err := exprAttrs(o.Data)
	if err != nil {
		return nil, err
	}
	if _, ok := a[nftaObjrefSetName]; ok {
		return nil, unsupported("object maps (an object chosen by a packet value, set %q) are not supported", cstring(a[nftaObjrefSetName]))
	}
	if _, ok := a[nftaObjrefSetSreg]; ok {
		return nil, unsupported("object maps (an object chosen by a packet value) are not supported")
	}
	typ, ok, err := attrBE32(a, nftaObjrefImmType, "NFTA_OBJREF_IMM_TYPE")
	if err != nil {
		return nil, err
	}
	name, okName := a[nftaObjrefImmName]
	if !ok || !okName {
		return nil, fmt.Errorf("objref without an object type and name")
	}
	n := cstring(name)
	if l.table == nil {
		return nil, fmt.Errorf("%s object %q: no table", ir.ObjectType(typ), n)
	}
	obj := l.table.Object(ir.ObjectType(typ), n)
	if obj == nil {
		return nil, fmt.Errorf("%s object %q not found in table %s %s", ir.ObjectType(typ), n, l.table.Family, l.table.Name)
	}
	return &ir.ObjRef{Object: obj}, nil
}

// cstring returns b without its trailing NUL bytes.
func cstring(b []byte) string {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return string(b)
}

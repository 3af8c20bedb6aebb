package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/loader"
)

// objectListing is a `list counters|quotas|limits [table FAMILY NAME]` or
// `list counter|quota|limit FAMILY TABLE NAME` request.
type objectListing struct {
	typ           ir.ObjectType
	family, table string // "" for every table
	name          string // "" for every object of the type
}

// objectTypes maps the listing keywords to object types.
var objectTypes = map[string]ir.ObjectType{
	"counter": ir.ObjectCounter, "quota": ir.ObjectQuota, "limit": ir.ObjectLimit,
}

// parseObjectListing recognises an object listing in the arguments of
// `list`.
func parseObjectListing(args []string) (objectListing, bool) {
	if len(args) == 0 {
		return objectListing{}, false
	}
	if typ, ok := objectTypes[strings.TrimSuffix(args[0], "s")]; ok && strings.HasSuffix(args[0], "s") {
		switch {
		case len(args) == 1:
			return objectListing{typ: typ}, true
		case len(args) == 4 && args[1] == "table":
			return objectListing{typ: typ, family: args[2], table: args[3]}, true
		}
		return objectListing{}, false
	}
	if typ, ok := objectTypes[args[0]]; ok && len(args) == 4 {
		return objectListing{typ: typ, family: args[1], table: args[2], name: args[3]}, true
	}
	return objectListing{}, false
}

// print writes the requested objects with their live values as nft lists
// them: every table that has named objects, with those of the requested
// type (a table whose objects are all of other types prints empty, as
// nft 1.0.6 prints it).
func (ol objectListing) print(w io.Writer, live *liveRuleset) error {
	if ol.family != "" && live.table(ol.family, ol.table) == nil {
		return fmt.Errorf("table %s %s: no such table", ol.family, ol.table)
	}
	var b strings.Builder
	found := false
	for _, t := range live.rs.Tables {
		if ol.family != "" && (t.Family.String() != ol.family || t.Name != ol.table) {
			continue
		}
		if len(t.Objects) == 0 {
			continue
		}
		var objs []*ir.Object
		for _, o := range t.Objects {
			if o.Type == ol.typ && (ol.name == "" || o.Name == ol.name) {
				objs = append(objs, o)
			}
		}
		if ol.name != "" && len(objs) == 0 {
			continue
		}
		found = found || len(objs) > 0
		fmt.Fprintf(&b, "table %s %s {\n", t.Family, t.Name)
		for _, o := range objs {
			if st, ok := live.objectState(t.Family, t.Name, o); ok {
				o = o.Live(st)
			}
			ir.PrintObject(&b, o)
		}
		b.WriteString("}\n")
	}
	if ol.name != "" && !found {
		return fmt.Errorf("%s %s %s %s: no such object", ol.typ, ol.family, ol.table, ol.name)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// objectState serves ir.PrintOptions.Objects: the live values of a named
// object, the values it was declared with included.
func (l *liveRuleset) objectState(fam ir.Family, table string, o *ir.Object) (ir.ObjectState, bool) {
	v, ok := l.objects[loader.ObjectStateID(fam, table, o)]
	if !ok {
		return ir.ObjectState{}, false
	}
	switch o.Type {
	case ir.ObjectCounter:
		return ir.ObjectState{Packets: o.Packets + v.A, Bytes: o.Bytes + v.B}, true
	case ir.ObjectQuota:
		if o.Quota == nil {
			return ir.ObjectState{}, false
		}
		return ir.ObjectState{Used: o.Quota.Used + v.A}, true
	}
	return ir.ObjectState{}, false
}

// liveJSONObject puts the live values into a counter or quota object of
// nft's JSON listing (an element of its "nftables" array), in place.
func (l *liveRuleset) liveJSONObject(elem map[string]json.RawMessage) error {
	for kind, typ := range map[string]ir.ObjectType{"counter": ir.ObjectCounter, "quota": ir.ObjectQuota} {
		raw, ok := elem[kind]
		if !ok {
			continue
		}
		var obj map[string]any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&obj); err != nil {
			return fmt.Errorf("nft's JSON listing of a %s: %w", kind, err)
		}
		fam, _ := obj["family"].(string)
		table, _ := obj["table"].(string)
		name, _ := obj["name"].(string)
		t := l.table(fam, table)
		if t == nil {
			continue
		}
		o := t.Object(typ, name)
		if o == nil {
			continue
		}
		st, ok := l.objectState(t.Family, t.Name, o)
		if !ok {
			continue
		}
		if typ == ir.ObjectCounter {
			obj["packets"], obj["bytes"] = st.Packets, st.Bytes
		} else {
			obj["used"] = o.Quota.Listed(st.Used)
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		elem[kind] = b
	}
	return nil
}

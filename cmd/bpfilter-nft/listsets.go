package main

import (
	"fmt"
	"io"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// setListing is a parsed list set|map|sets|maps command.
type setListing struct {
	maps   bool   // map/maps: verdict and data maps; set/sets: sets
	one    bool   // set/map: one set
	family string // "" with sets/maps: every family
	table  string
	name   string
}

// parseSetListing recognises list set [FAMILY] TABLE NAME, list map
// [FAMILY] TABLE NAME, list sets [FAMILY] and list maps [FAMILY]; the
// family of set and map defaults to ip, as in nft.
func parseSetListing(args []string) (setListing, bool) {
	if len(args) == 0 {
		return setListing{}, false
	}
	var l setListing
	switch args[0] {
	case "set", "map":
		l.one, l.maps = true, args[0] == "map"
		rest := args[1:]
		l.family = "ip"
		if len(rest) == 3 && familyNames[rest[0]] {
			l.family, rest = rest[0], rest[1:]
		}
		if len(rest) != 2 {
			return setListing{}, false
		}
		l.table, l.name = rest[0], rest[1]
	case "sets", "maps":
		l.maps = args[0] == "maps"
		switch {
		case len(args) == 1:
		case len(args) == 2 && familyNames[args[1]]:
			l.family = args[1]
		default:
			return setListing{}, false
		}
	default:
		return setListing{}, false
	}
	return l, true
}

// print writes the selected sets of rs the way nft lists them.
func (l setListing) print(w io.Writer, rs *ir.Ruleset) error {
	isMap := func(s *ir.Set) bool { return s.Flags&ir.SetMap != 0 }
	if l.one {
		for _, t := range rs.Tables {
			if t.Family.String() != l.family || t.Name != l.table {
				continue
			}
			for _, s := range t.Sets {
				if s.Name == l.name && !s.Anonymous() && isMap(s) == l.maps {
					return t.PrintSets(w, func(o *ir.Set) bool { return o == s })
				}
			}
		}
		kind := "set"
		if l.maps {
			kind = "map"
		}
		return fmt.Errorf("%s %s %s %s: no such %s", kind, l.family, l.table, l.name, kind)
	}
	for _, t := range rs.Tables {
		if l.family != "" && t.Family.String() != l.family {
			continue
		}
		if err := t.PrintSets(w, func(s *ir.Set) bool { return isMap(s) == l.maps }); err != nil {
			return err
		}
	}
	return nil
}

package state

// ManifestVersion is the manifest format this package reads and writes.
const ManifestVersion = 1

// Manifest is the bookkeeping of one loaded ruleset: its text, which pinned
// objects belong to which attach point, and where each rule's counters are.
type Manifest struct {
	Version int `json:"version"`
	// Generation counts loads; program and counter-map pins carry it.
	Generation uint64 `json:"generation"`
	// NetNS is the inode of the network namespace the ruleset serves.
	NetNS uint64 `json:"netns"`
	// Ruleset is the ruleset in nft syntax, as `nft -f` reads it.
	Ruleset string `json:"ruleset"`
	// Rules lists every rule with counters, in ruleset order.
	Rules []Rule `json:"rules,omitempty"`
	// Points lists the attach points in attach order.
	Points []Point `json:"points"`
	// Counters describes the shared counter map.
	Counters Counters `json:"counters"`
	// Sets lists the pinned maps backing named sets.
	Sets []SetMap `json:"sets,omitempty"`
	// State describes the map of limit and quota state, shared by all
	// programs like the counter map (slots keyed by statement identity).
	State Counters `json:"state,omitempty"`
	// Events is the pinned name of the log ring buffer ("" if no rule
	// logs).
	Events string `json:"events,omitempty"`
	// Shape identifies everything loaded except the elements of the
	// sets in Sets: attach points, programs, counter slots and set map
	// shapes. A load of the same shape only changes set maps.
	Shape string `json:"shape,omitempty"`
}

// SetMap is the pinned BPF map backing a named set, shared by every
// program that looks the set up.
type SetMap struct {
	Family string `json:"family"`
	Table  string `json:"table"`
	Name   string `json:"name"`
	// Map is the map's entry name in the state directory.
	Map string `json:"map"`
	// Digest identifies the map's shape and elements; a reload keeps the
	// map when the set's digest is unchanged.
	Digest string `json:"digest"`
	// Verdicts are the verdicts a verdict map's values index, in the
	// order the programs dispatch on them: elements with other verdicts
	// need new programs.
	Verdicts []string `json:"verdicts,omitempty"`
	// Timeouts is set for a set whose elements expire: its map's values
	// hold each element's deadline (codegen.TimeoutValue).
	Timeouts bool `json:"timeouts,omitempty"`
	// RangeKeyLen is the key length of a set of concatenated ranges (a
	// range table, whose values hold an element's bounds before its
	// deadline); 0 for other sets.
	RangeKeyLen uint32 `json:"range_key_len,omitempty"`
}

// Rule is a rule's identity and the counter slots of its counter
// statements.
type Rule struct {
	Family string `json:"family"`
	Table  string `json:"table"`
	Chain  string `json:"chain"`
	Handle uint64 `json:"handle"`
	// Text is the rule in nft syntax.
	Text string `json:"text"`
	// Slots are the counter map slots of the rule's counter statements,
	// in statement order.
	Slots []uint32 `json:"slots"`
	// State are the state map slots of the rule's limit and quota
	// statements, in statement order.
	State []uint32 `json:"state,omitempty"`
}

// Point is one attach point and the pinned objects serving it.
type Point struct {
	// Key identifies the attach point across loads; pin names derive
	// from it.
	Key string `json:"key"`
	// Kind is xdp, tcx-ingress, tcx-egress, netfilter, cgroup-ingress or
	// cgroup-egress.
	Kind     string `json:"kind"`
	Family   string `json:"family"`
	Table    string `json:"table"`
	Chain    string `json:"chain"`
	Hook     string `json:"hook"`
	Priority int32  `json:"priority"`
	// ProtoFamily is ip or ip6 for netfilter and cgroup points.
	ProtoFamily string `json:"proto_family,omitempty"`
	Device      string `json:"device,omitempty"`
	Ifindex     uint32 `json:"ifindex,omitempty"`
	Cgroup      string `json:"cgroup,omitempty"`
	// Backend says why a netdev ingress chain's program has its kind
	// (xdp or tcx-ingress): the automatic choice's reason, or the
	// --netdev-backend option.
	Backend string `json:"backend,omitempty"`
	// Fingerprint identifies the loaded program: its instructions, map
	// layout (counter and state slots, the maps it references by entry
	// name) and attach point. A reload whose program for this point has
	// the same fingerprint keeps the running program and link.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Link, Program and Array are entry names in the state directory;
	// Array is set for netfilter points (the dispatcher's program array).
	Link    string `json:"link"`
	Program string `json:"program"`
	Array   string `json:"array,omitempty"`
	// Tail is the entry name of the program array of a chain split
	// into tail-called programs (codegen.Program.Tail), if it is.
	Tail string `json:"tail,omitempty"`
}

// Counters describes the per-CPU counter map all programs of a namespace
// share. Slot identities are stable rule identities, so that a reload keeps
// the counts of unchanged rules.
type Counters struct {
	Map      string `json:"map"`
	Capacity uint32 `json:"capacity"`
	// Slots maps a rule counter's identity to its slot.
	Slots map[string]uint32 `json:"slots"`
}

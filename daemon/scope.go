package daemon

import (
	"fmt"
	"regexp"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/internal/pipeline"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// Object scoping follows the BPF-namespace RFC (shared/seeds/003): the
// namespaces form a tree, here the tree of user namespaces (every network
// namespace hangs below the user namespace that owns it); an object —
// table, chain program, map, link — created for a network namespace owned
// by a user namespace at level N gets an ID in that namespace and in each
// of its N ancestors. A requester sees the objects of its own user
// namespace and of its descendants, each numbered with the ID of the
// requester's level; the host (level 0) sees everything.

// MaxLevel is the deepest user-namespace level served, as the RFC's
// MAX_BPF_NS_LEVEL: the initial user namespace is level 0.
const MaxLevel = 32

// Limits are per-user quotas, charged to the (host) uid of the requester
// that first loaded a ruleset into a network namespace. Zero means no limit.
type Limits struct {
	// MaxObjects bounds the objects (tables, programs, maps, links) of all
	// rulesets a user has loaded.
	MaxObjects int
	// MaxNamespaces bounds the network namespaces with a ruleset a user
	// has loaded.
	MaxNamespaces int
}

// Object kinds.
const (
	KindTable   = "table"
	KindProgram = "program"
	KindMap     = "map"
	KindLink    = "link"
)

// ObjectInfo is an object as a requester sees it.
type ObjectInfo struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// ID is the object's ID at the requester's level.
	ID uint32 `json:"id"`
	// NetNS is the inode of the network namespace the object serves.
	NetNS uint64 `json:"netns"`
	// Level is the level of the user namespace that owns the object's
	// network namespace, relative to the requester (0: its own).
	Level int `json:"level"`
	// IDs are the object's IDs from the requester's level down to its
	// own (the nested IDs), shown to the host.
	IDs []uint32 `json:"ids,omitempty"`
}

// NamespaceInfo is one user namespace of the tree, for `list namespaces`.
type NamespaceInfo struct {
	UserNS   uint64          `json:"userns"`
	Level    int             `json:"level"`
	NetNS    []NetNSInfo     `json:"netns,omitempty"`
	Children []NamespaceInfo `json:"children,omitempty"`
}

// NetNSInfo is a network namespace with a ruleset.
type NetNSInfo struct {
	Inode   uint64 `json:"inode"`
	Cookie  uint64 `json:"cookie"`
	UID     uint32 `json:"uid"`
	Objects int    `json:"objects"`
}

type object struct {
	kind, name string
	ids        []uint32 // ids[l]: the ID at level l, 0 … owner level
}

type scopeNode struct {
	userns   uint64
	level    int
	parent   *scopeNode
	children map[uint64]*scopeNode
	next     map[string]uint32
	nets     map[uint64]*netEntry
}

type netEntry struct {
	inode, cookie uint64
	uid           uint32
	node          *scopeNode
	objects       map[string]*object // by kind + " " + name
}

// Registry is the tree of namespaces and the IDs of every object.
type Registry struct {
	mu     sync.Mutex
	limits Limits
	root   *scopeNode
	nets   map[uint64]*netEntry
}

// NewRegistry returns an empty registry enforcing limits.
func NewRegistry(limits Limits) *Registry {
	return &Registry{limits: limits, nets: map[uint64]*netEntry{}}
}

// ScopeError is a refusal by the scoping rules (ENOSPC, like the RFC's).
type ScopeError struct{ Msg string }

func (e *ScopeError) Error() string { return e.Msg }

// Errno is the error's errno.
func (e *ScopeError) Errno() unix.Errno { return unix.ENOSPC }

// CheckLevel refuses user namespaces nested deeper than MaxLevel; path is
// the user namespace chain (inodes) from the root down.
func CheckLevel(path []uint64) error {
	if len(path)-1 > MaxLevel {
		return &ScopeError{fmt.Sprintf("user namespace %d is at level %d: nesting deeper than %d levels is not supported (ENOSPC)", path[len(path)-1], len(path)-1, MaxLevel)}
	}
	return nil
}

// nodeLocked returns the node of path, creating missing ones.
func (r *Registry) nodeLocked(path []uint64) *scopeNode {
	if r.root == nil || r.root.userns != path[0] {
		if r.root == nil {
			r.root = newNode(path[0], 0, nil)
		}
	}
	n := r.root
	for i, ino := range path[1:] {
		c := n.children[ino]
		if c == nil {
			c = newNode(ino, i+1, n)
			n.children[ino] = c
		}
		n = c
	}
	return n
}

func newNode(ino uint64, level int, parent *scopeNode) *scopeNode {
	return &scopeNode{userns: ino, level: level, parent: parent, children: map[uint64]*scopeNode{}, next: map[string]uint32{}, nets: map[uint64]*netEntry{}}
}

// estimate counts the objects res would create, as objectsOf does for
// the manifest Apply writes.
func estimate(res *pipeline.Result) int {
	n := len(res.Ruleset.Tables)
	for _, cp := range res.Programs {
		n += 2 // program, link
		if cp.Target.Type == codegen.Netfilter {
			n++ // dispatcher program array
		}
	}
	if len(res.Programs) > 0 {
		n++ // counter map
	}
	return n
}

// Reserve checks the quotas of uid for a ruleset of n objects in network
// namespace netns (its user namespace chain is path).
func (r *Registry) Reserve(path []uint64, netns uint64, uid uint32, n int) error {
	if err := CheckLevel(path); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	owner := uid
	if e := r.nets[netns]; e != nil {
		owner = e.uid
	}
	objs, nets := 0, 0
	for ino, e := range r.nets {
		if e.uid != owner || ino == netns {
			continue
		}
		objs += len(e.objects)
		nets++
	}
	if r.limits.MaxNamespaces > 0 && n > 0 && nets+1 > r.limits.MaxNamespaces {
		return &ScopeError{fmt.Sprintf("user %d already has rulesets in %d network namespaces, the limit (ENOSPC)", owner, nets)}
	}
	if r.limits.MaxObjects > 0 && objs+n > r.limits.MaxObjects {
		return &ScopeError{fmt.Sprintf("user %d would own %d objects (tables, programs, maps, links), more than the limit of %d (ENOSPC)", owner, objs+n, r.limits.MaxObjects)}
	}
	return nil
}

var tableLine = regexp.MustCompile(`(?m)^table (\S+) (\S+) \{`)

// objectsOf lists the objects of a stored ruleset: its tables, and per
// attach point its program, link and (netfilter) program array, and the
// shared counter map.
func objectsOf(m *state.Manifest) [][2]string {
	var out [][2]string
	for _, t := range tableLine.FindAllStringSubmatch(m.Ruleset, -1) {
		out = append(out, [2]string{KindTable, t[1] + " " + t[2]})
	}
	for _, p := range m.Points {
		out = append(out, [2]string{KindProgram, p.Key}, [2]string{KindLink, p.Key})
		if p.Array != "" {
			out = append(out, [2]string{KindMap, "dispatcher " + p.Key})
		}
		if p.Tail != "" {
			out = append(out, [2]string{KindMap, "tail calls " + p.Key})
		}
	}
	if m.Counters.Map != "" && len(m.Points) > 0 {
		out = append(out, [2]string{KindMap, "counters"})
	}
	if m.State.Map != "" && len(m.Points) > 0 {
		out = append(out, [2]string{KindMap, "state"})
	}
	if m.Events != "" && len(m.Points) > 0 {
		out = append(out, [2]string{KindMap, "events"})
	}
	return out
}

// Set records the objects of the ruleset m now running in network
// namespace netns (cookie, owned by the user namespace chain path, loaded
// by uid). Objects kept from the previous ruleset keep their IDs; new
// ones get new IDs at every level; gone ones are forgotten. An empty
// ruleset removes the namespace. ids, when not nil, restores IDs saved
// before a restart.
func (r *Registry) Set(path []uint64, netns, cookie uint64, uid uint32, m *state.Manifest, ids map[string][]uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	objs := objectsOf(m)
	e := r.nets[netns]
	if len(objs) == 0 {
		if e != nil {
			r.dropLocked(e)
		}
		return
	}
	if e == nil {
		n := r.nodeLocked(path)
		e = &netEntry{inode: netns, cookie: cookie, uid: uid, node: n, objects: map[string]*object{}}
		r.nets[netns] = e
		n.nets[netns] = e
	}
	keep := map[string]bool{}
	for _, o := range objs {
		k := o[0] + " " + o[1]
		keep[k] = true
		if e.objects[k] != nil {
			continue
		}
		obj := &object{kind: o[0], name: o[1], ids: make([]uint32, e.node.level+1)}
		saved := ids[k]
		for n := e.node; n != nil; n = n.parent {
			if len(saved) == len(obj.ids) {
				obj.ids[n.level] = saved[n.level]
				if saved[n.level] > n.next[o[0]] {
					n.next[o[0]] = saved[n.level]
				}
				continue
			}
			n.next[o[0]]++
			obj.ids[n.level] = n.next[o[0]]
		}
		e.objects[k] = obj
	}
	for k := range e.objects {
		if !keep[k] {
			delete(e.objects, k)
		}
	}
}

// IDs returns the IDs of the objects of netns, for saving.
func (r *Registry) IDs(netns uint64) map[string][]uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.nets[netns]
	if e == nil {
		return nil
	}
	out := map[string][]uint32{}
	for k, o := range e.objects {
		out[k] = append([]uint32(nil), o.ids...)
	}
	return out
}

// Drop forgets network namespace netns and its objects.
func (r *Registry) Drop(netns uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.nets[netns]; e != nil {
		r.dropLocked(e)
	}
}

func (r *Registry) dropLocked(e *netEntry) {
	delete(r.nets, e.inode)
	delete(e.node.nets, e.inode)
	// Prune empty leaves so the tree shows live namespaces only.
	for n := e.node; n != nil && n.parent != nil && len(n.nets) == 0 && len(n.children) == 0; n = n.parent {
		delete(n.parent.children, n.userns)
	}
}

// NetNSes returns the inodes of the network namespaces with objects.
func (r *Registry) NetNSes() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []uint64
	for ino := range r.nets {
		out = append(out, ino)
	}
	return out
}

// Visible lists the objects a requester whose user namespace chain is
// path sees: those of its own user namespace and its descendants, with
// the IDs of its level. nested adds every level's ID below it.
func (r *Registry) Visible(path []uint64) []ObjectInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ObjectInfo
	lvl := len(path) - 1
	for _, e := range r.nets {
		chain := chainOf(e.node)
		if len(chain) < len(path) || !prefix(path, chain) {
			continue
		}
		for _, o := range e.objects {
			out = append(out, ObjectInfo{
				Kind: o.kind, Name: o.name, ID: o.ids[lvl], NetNS: e.inode,
				Level: e.node.level - lvl, IDs: append([]uint32(nil), o.ids[lvl:]...),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.ID < b.ID
	})
	return out
}

// Tree returns the namespace tree.
func (r *Registry) Tree() *NamespaceInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.root == nil {
		return nil
	}
	var walk func(n *scopeNode) NamespaceInfo
	walk = func(n *scopeNode) NamespaceInfo {
		ni := NamespaceInfo{UserNS: n.userns, Level: n.level}
		for _, e := range n.nets {
			ni.NetNS = append(ni.NetNS, NetNSInfo{Inode: e.inode, Cookie: e.cookie, UID: e.uid, Objects: len(e.objects)})
		}
		sort.Slice(ni.NetNS, func(i, j int) bool { return ni.NetNS[i].Inode < ni.NetNS[j].Inode })
		for _, c := range n.children {
			ni.Children = append(ni.Children, walk(c))
		}
		sort.Slice(ni.Children, func(i, j int) bool { return ni.Children[i].UserNS < ni.Children[j].UserNS })
		return ni
	}
	t := walk(r.root)
	return &t
}

func chainOf(n *scopeNode) []uint64 {
	var c []uint64
	for ; n != nil; n = n.parent {
		c = append([]uint64{n.userns}, c...)
	}
	return c
}

func prefix(p, c []uint64) bool {
	for i := range p {
		if p[i] != c[i] {
			return false
		}
	}
	return true
}

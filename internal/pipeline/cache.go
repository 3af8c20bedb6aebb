package pipeline

import (
	"container/list"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/bpfilter-nft/bpfilter-nft/codegen"
	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// CompileCache keeps the programs compiled for base chains so that a base
// chain whose inputs did not change is not compiled again: a long-lived
// process (the daemon) that applies one edit after another compiles only
// the chains the edit touched.
//
// An entry is keyed by a SHA-256 over everything the code generator reads
// for the chain: the whole table it belongs to in nft syntax with rule
// handles (every chain a jump may reach, every set with its type, flags
// and elements, every named object), the chain's name, the target
// (program type, hook, protocol family, direction, device) and the
// options. Anything that changes the compiled program changes the key, so
// an entry cannot be stale; the cost is that an unrelated change to the
// same table (another chain's rule, a set element) compiles the chain
// again. Programs handed out are copies whose named sets are the
// requesting table's own.
type CompileCache struct {
	mu      sync.Mutex
	max     int
	entries map[[32]byte]*list.Element
	lru     *list.List // of *cacheEntry, most recently used first
	hits    int
	misses  int
}

type cacheEntry struct {
	key  [32]byte
	prog *codegen.Program
}

// NewCompileCache returns a cache holding at most max programs (the least
// recently used are dropped first).
func NewCompileCache(max int) *CompileCache {
	if max < 1 {
		max = 1
	}
	return &CompileCache{max: max, entries: map[[32]byte]*list.Element{}, lru: list.New()}
}

// Stats returns how many lookups found a program and how many did not.
func (c *CompileCache) Stats() (hits, misses int) {
	if c == nil {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses
}

// Len returns the number of programs held.
func (c *CompileCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// tableText prints t with rule handles, the part of a compile cache key
// that stands for the IR; texts memoises it per table for one Translate,
// rules holds the rules' texts.
func tableText(t *ir.Table, texts map[*ir.Table]string, rules map[*ir.Rule]string) (string, error) {
	if s, ok := texts[t]; ok {
		return s, nil
	}
	var b strings.Builder
	opts := ir.PrintOptions{Handles: true, RuleText: func(fam ir.Family, r *ir.Rule) string {
		if s, ok := rules[r]; ok {
			return s
		}
		return ir.FormatRule(fam, r)
	}}
	if err := t.PrintWith(&b, opts); err != nil {
		return "", err
	}
	texts[t] = b.String()
	return b.String(), nil
}

func cacheKey(table string, t *ir.Table, c *ir.Chain, tgt codegen.Target, opts codegen.Options) [32]byte {
	h := sha256.New()
	dev := "none"
	if tgt.Device != nil {
		dev = fmt.Sprintf("%+v", *tgt.Device)
	}
	fmt.Fprintf(h, "family %d name %q flags %#x\nchain %q\ntarget %d %d %d %d %v device %s\noptions %+v\n",
		t.Family, t.Name, t.Flags, c.Name, tgt.Type, tgt.Family, tgt.Hook, tgt.ProtoFamily, tgt.Egress, dev, opts)
	h.Write([]byte(table))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// get returns a copy of the program stored under k, its named sets those
// of t, or nil.
func (c *CompileCache) get(k [32]byte, t *ir.Table) *codegen.Program {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		c.misses++
		return nil
	}
	p := copyProgram(e.Value.(*cacheEntry).prog, t)
	if p == nil {
		c.misses++
		return nil
	}
	c.lru.MoveToFront(e)
	c.hits++
	return p
}

// put stores a copy of p under k.
func (c *CompileCache) put(k [32]byte, p *codegen.Program) {
	cp := copyProgram(p, nil)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		e.Value.(*cacheEntry).prog = cp
		c.lru.MoveToFront(e)
		return
	}
	c.entries[k] = c.lru.PushFront(&cacheEntry{key: k, prog: cp})
	for c.lru.Len() > c.max {
		last := c.lru.Back()
		delete(c.entries, last.Value.(*cacheEntry).key)
		c.lru.Remove(last)
	}
}

// copyProgram copies p so that neither copy's changes reach the other: its
// program specs (instructions included) and slices. With t, the named
// sets' keys become t's sets of the same names; nil if t lacks one.
func copyProgram(p *codegen.Program, t *ir.Table) *codegen.Program {
	cp := *p
	cp.Spec = p.Spec.Copy()
	cp.Counters = copyMapSpec(p.Counters)
	cp.State = copyMapSpec(p.State)
	cp.Events = copyMapSpec(p.Events)
	cp.TailCalls = copyMapSpec(p.TailCalls)
	cp.CounterSlots = append([]codegen.CounterSlot(nil), p.CounterSlots...)
	cp.StateSlots = append([]codegen.CounterSlot(nil), p.StateSlots...)
	cp.Annotations = append([]codegen.Annotation(nil), p.Annotations...)
	cp.Groups = append([]*codegen.GroupMap(nil), p.Groups...)
	cp.Tail = make([]codegen.TailPart, len(p.Tail))
	for i, tp := range p.Tail {
		tp.Spec = tp.Spec.Copy()
		tp.Annotations = append([]codegen.Annotation(nil), tp.Annotations...)
		cp.Tail[i] = tp
	}
	if p.Tail == nil {
		cp.Tail = nil
	}
	if p.Sets != nil {
		cp.Sets = make(map[*ir.Set]*ebpf.MapSpec, len(p.Sets))
		for s, ms := range p.Sets {
			ns := s
			if t != nil {
				if ns = tableSet(t, s.Name); ns == nil {
					return nil
				}
			}
			cp.Sets[ns] = copyMapSpec(ms)
		}
	}
	return &cp
}

func copyMapSpec(m *ebpf.MapSpec) *ebpf.MapSpec {
	if m == nil {
		return nil
	}
	return m.Copy()
}

func tableSet(t *ir.Table, name string) *ir.Set {
	for _, s := range t.Sets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

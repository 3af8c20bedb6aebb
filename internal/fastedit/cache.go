package fastedit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/netlink"

	"github.com/bpfilter-nft/bpfilter-nft/state"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// The cache is two state entries: CacheName holds a decoded ruleset (the
// base) in canonical form, named by the SHA-256 of its stored text;
// LogName holds the rule edits applied since, each with what nft made of
// its rule, and the SHA-256 of the text they lead to. Load replays the log
// on the base; an edit appends to the log (a small write) until it holds
// MaxLog edits, when the base is written again. Both are bound to the
// stored text by its hash: a cache of another text is never served.
const (
	// CacheName is the state entry holding the base decoded ruleset.
	CacheName = "decoded"
	// LogName is the state entry holding the edits since the base.
	LogName = "decoded-log"
	// MaxLog is the number of edits the log holds before the base is
	// written again.
	MaxLog = 8
)

// Entries are the cache's state entries, which loader.Apply must keep
// (loader.Options.Keep).
var Entries = []string{CacheName, LogName}

var (
	cacheMagic = [8]byte{'b', 'p', 'f', 'n', 'f', 't', 'E', '1'}
	logMagic   = [8]byte{'b', 'p', 'f', 'n', 'f', 't', 'L', '1'}
)

// State is what Load found of the cache, for Record.
type State struct {
	base  [32]byte // the base's text hash
	edits []Edit
}

// Marshal encodes rs (in canonical form, see Canonical) as the base cache
// of the stored ruleset text: a header naming the text by its SHA-256,
// then rs's nf_tables messages, each as its length, type and payload.
func Marshal(text string, rs *nlmsg.Ruleset) []byte {
	sum := sha256.Sum256([]byte(text))
	b := append(append([]byte(nil), cacheMagic[:]...), sum[:]...)
	return appendMessages(b, rs)
}

func appendMessages(b []byte, rs *nlmsg.Ruleset) []byte {
	msgs := nlmsg.Encode(rs)
	n := len(b) + 4
	for _, m := range msgs {
		n += 6 + len(m.Data)
	}
	out := make([]byte, 0, n)
	out = append(out, b...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(msgs)))
	for _, m := range msgs {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(m.Data)))
		out = binary.LittleEndian.AppendUint16(out, uint16(m.Header.Type))
		out = append(out, m.Data...)
	}
	return out
}

// reader decodes the cache's little-endian fields.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n > len(r.b) {
		r.err = errors.New("decoded ruleset cache: truncated")
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (r *reader) str() string { return string(r.take(int(r.u32()))) }

func (r *reader) messages() (*nlmsg.Ruleset, error) {
	n := int(r.u32())
	var msgs []netlink.Message
	for i := 0; i < n && r.err == nil; i++ {
		size := int(r.u32())
		typ := r.take(2)
		data := r.take(size)
		if r.err == nil {
			msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(binary.LittleEndian.Uint16(typ))}, Data: data})
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	rs, err := nlmsg.Decode(msgs)
	if err != nil {
		return nil, fmt.Errorf("decoded ruleset cache: %w", err)
	}
	return rs, nil
}

// Unmarshal decodes a base cache written by Marshal for text. A cache of
// another text yields ErrNotCached.
func Unmarshal(text string, b []byte) (*nlmsg.Ruleset, error) {
	sum := sha256.Sum256([]byte(text))
	rs, got, err := unmarshalBase(b)
	if err != nil {
		return nil, err
	}
	if got != sum {
		return nil, fmt.Errorf("%w: the cached ruleset is not the stored one", ErrNotCached)
	}
	return rs, nil
}

func unmarshalBase(b []byte) (*nlmsg.Ruleset, [32]byte, error) {
	var sum [32]byte
	if len(b) < 40 || !bytes.Equal(b[:8], cacheMagic[:]) {
		return nil, sum, fmt.Errorf("%w: no decoded ruleset cached", ErrNotCached)
	}
	copy(sum[:], b[8:40])
	r := &reader{b: b[40:]}
	rs, err := r.messages()
	return rs, sum, err
}

func marshalLog(base, final [32]byte, edits []Edit) []byte {
	b := append(append(append([]byte(nil), logMagic[:]...), base[:]...), final[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(edits)))
	for _, e := range edits {
		c := e.Cmd
		b = append(b, byte(c.Op), byte(c.Family))
		b = binary.LittleEndian.AppendUint64(b, c.Handle)
		for _, s := range []string{c.Table, c.Chain, c.Rule} {
			b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
			b = append(b, s...)
		}
		parsed := e.Parsed
		if parsed == nil {
			parsed = &nlmsg.Ruleset{}
		}
		b = appendMessages(b, parsed)
	}
	return b
}

func unmarshalLog(b []byte) (base, final [32]byte, edits []Edit, err error) {
	if len(b) < 72 || !bytes.Equal(b[:8], logMagic[:]) {
		return base, final, nil, errors.New("decoded ruleset cache: bad edit log")
	}
	copy(base[:], b[8:40])
	copy(final[:], b[40:72])
	r := &reader{b: b[72:]}
	n := int(r.u32())
	for i := 0; i < n && r.err == nil; i++ {
		var e Edit
		hdr := r.take(2)
		if hdr == nil {
			break
		}
		e.Cmd.Op, e.Cmd.Family = Op(hdr[0]), nlmsg.Family(hdr[1])
		e.Cmd.Handle = r.u64()
		e.Cmd.Table, e.Cmd.Chain, e.Cmd.Rule = r.str(), r.str(), r.str()
		parsed, perr := r.messages()
		if perr != nil {
			return base, final, nil, perr
		}
		if e.Cmd.Op != OpDelete {
			e.Parsed = parsed
		}
		edits = append(edits, e)
	}
	return base, final, edits, r.err
}

// Save stores rs, the decoded form of the stored ruleset text, in st as a
// new base (in canonical form) without edits, and returns the cache's
// state for Record. What Canonical cannot model removes the cache
// instead (nil state), so that the next edit takes the slow path.
func Save(st *state.Dir, text string, rs *nlmsg.Ruleset) (*State, error) {
	crs, err := Canonical(rs)
	if err != nil {
		return nil, Drop(st)
	}
	return SaveCanonical(st, text, crs)
}

// SaveCanonical is Save for a ruleset already in canonical form.
func SaveCanonical(st *state.Dir, text string, crs *nlmsg.Ruleset) (*State, error) {
	if st.Exists(LogName) {
		if err := st.Remove(LogName); err != nil {
			return nil, err
		}
	}
	if err := st.WriteBlob(CacheName, Marshal(text, crs)); err != nil {
		return nil, err
	}
	return &State{base: sha256.Sum256([]byte(text))}, nil
}

// Record stores the ruleset after edit e: s is what Load returned for the
// text e was applied to (nil: unknown), text the text stored now and next
// the ruleset Apply returned for it. The edit is appended to the log while
// it has room; otherwise next becomes the new base. It returns the cache's
// state for the next Record.
func Record(st *state.Dir, s *State, text string, next *nlmsg.Ruleset, e Edit) (*State, error) {
	if s == nil || len(s.edits) >= MaxLog {
		return SaveCanonical(st, text, next)
	}
	edits := append(append([]Edit(nil), s.edits...), e)
	if err := st.WriteBlob(LogName, marshalLog(s.base, sha256.Sum256([]byte(text)), edits)); err != nil {
		return nil, err
	}
	return &State{base: s.base, edits: edits}, nil
}

// Drop removes the cache from st: the next edit takes the slow path.
func Drop(st *state.Dir) error {
	var errs []error
	for _, n := range Entries {
		if st.Exists(n) {
			errs = append(errs, st.Remove(n))
		}
	}
	return errors.Join(errs...)
}

// Load returns the cached decoded form of the stored ruleset text (the
// base with the logged edits replayed) and the cache's state for Record,
// or an error wrapping ErrNotCached.
func Load(st *state.Dir, text string) (*nlmsg.Ruleset, *State, error) {
	b, err := st.ReadBlob(CacheName)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: no decoded ruleset cached", ErrNotCached)
	}
	if err != nil {
		return nil, nil, err
	}
	rs, base, err := unmarshalBase(b)
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256([]byte(text))
	if base == sum {
		return rs, &State{base: base}, nil
	}
	lb, err := st.ReadBlob(LogName)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: the cached ruleset is not the stored one", ErrNotCached)
	}
	if err != nil {
		return nil, nil, err
	}
	lbase, final, edits, err := unmarshalLog(lb)
	if err != nil {
		return nil, nil, err
	}
	if lbase != base || final != sum {
		return nil, nil, fmt.Errorf("%w: the cached edits do not lead to the stored ruleset", ErrNotCached)
	}
	for i, e := range edits {
		if rs, err = replay(rs, e); err != nil {
			return nil, nil, fmt.Errorf("decoded ruleset cache: edit %d: %w", i+1, err)
		}
	}
	return rs, &State{base: base, edits: edits}, nil
}

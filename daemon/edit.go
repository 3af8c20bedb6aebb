package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/internal/fastedit"
	"github.com/bpfilter-nft/bpfilter-nft/internal/settimeouts"
	"github.com/bpfilter-nft/bpfilter-nft/state"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nftfile"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// ControlEditRule applies one rule edit of the nft command line (add,
// insert, replace or delete rule) to the stored ruleset of the
// requester's network namespace (or the one it passed) through the
// decoded running ruleset the daemon keeps (package fastedit): nft parses
// only the new rule. The request's ControlAttrJSON is an EditRequest; the
// reply's document is {} when the edit was applied. A request the fast
// path cannot serve (no decoded ruleset, a chain or handle it does not
// know, nft refusing the rule) is answered with EAGAIN and changes
// nothing: the client then sends the change as a batch, whose errors are
// nft's. Translation refusals are EOPNOTSUPP, as for batches.
const ControlEditRule = 4

// EditRequest is the document of a ControlEditRule request: the command's
// verb and its arguments as the shell split them.
type EditRequest struct {
	Verb string   `json:"verb"`
	Args []string `json:"args"`
}

// decodedCache holds the canonical decoded running ruleset of each
// namespace the daemon changed, next to the copy in its state directory,
// so that an edit needs no decoding.
type decodedCache struct {
	mu sync.Mutex
	m  map[uint64]decodedEntry
}

type decodedEntry struct {
	text  string
	rs    *nlmsg.Ruleset
	state *fastedit.State // the state directory's copy
}

// get returns the decoded form of text for namespace ino, from memory or
// from st.
func (c *decodedCache) get(st *state.Dir, ino uint64, text string) (decodedEntry, error) {
	c.mu.Lock()
	e, ok := c.m[ino]
	c.mu.Unlock()
	if ok && e.text == text {
		return e, nil
	}
	rs, fs, err := fastedit.Load(st, text)
	if err != nil {
		return decodedEntry{}, err
	}
	e = decodedEntry{text, rs, fs}
	c.put(ino, e)
	return e, nil
}

func (c *decodedCache) put(ino uint64, e decodedEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[uint64]decodedEntry{}
	}
	c.m[ino] = e
}

func (c *decodedCache) drop(ino uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, ino)
}

// save records rs, the decoded form of the ruleset text just stored for
// namespace ino, in memory and in st. Rulesets with element timeouts are
// not kept (their elements change in the maps). Failing to write the
// cache costs only speed: it is logged.
func (c *decodedCache) save(st *state.Dir, ino uint64, text string, rs *nlmsg.Ruleset, logf func(string, ...any)) {
	if settimeouts.Mentioned(text) {
		c.drop(ino)
		if err := fastedit.Drop(st); err != nil {
			logf("netns %d: %v", ino, err)
		}
		return
	}
	crs, err := fastedit.Canonical(rs)
	if err != nil {
		c.drop(ino)
		if err := fastedit.Drop(st); err != nil {
			logf("netns %d: %v", ino, err)
		}
		return
	}
	fs, err := fastedit.SaveCanonical(st, text, crs)
	if err != nil {
		c.drop(ino)
		logf("netns %d: decoded ruleset cache: %v", ino, err)
		return
	}
	c.put(ino, decodedEntry{text, crs, fs})
}

// record records the ruleset after edit e, applied to entry cur: in memory,
// and in st's log of edits (see fastedit.Record).
func (c *decodedCache) record(st *state.Dir, ino uint64, cur decodedEntry, text string, next *nlmsg.Ruleset, e fastedit.Edit, logf func(string, ...any)) {
	fs, err := fastedit.Record(st, cur.state, text, next, e)
	if err != nil {
		c.drop(ino)
		logf("netns %d: decoded ruleset cache: %v", ino, err)
		return
	}
	c.put(ino, decodedEntry{text, next, fs})
}

// editRule serves ControlEditRule.
func (s *Server) editRule(cn *conn, req netlink.Message) (any, error) {
	var er EditRequest
	if err := decodeControlJSON(req, &er); err != nil {
		return nil, &requestError{errno: unix.EINVAL, msg: err.Error()}
	}
	cmd, ok := fastedit.ParseCommand(er.Verb, er.Args)
	if !ok {
		return nil, &requestError{errno: unix.EAGAIN, msg: "not a rule edit the daemon applies by itself; send a batch"}
	}
	start := time.Now()
	t, st, release, err := s.openState(cn, "change")
	if err != nil {
		return nil, err
	}
	defer release()
	man, err := st.ReadManifest(state.StateName)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &requestError{errno: unix.EAGAIN, msg: "no ruleset stored"}
	}
	if err != nil {
		return nil, err
	}
	if st.Exists(state.NextName) || settimeouts.Mentioned(man.Ruleset) {
		return nil, &requestError{errno: unix.EAGAIN, msg: "the stored ruleset needs a full parse"}
	}
	cur, err := s.decoded.get(st, t.ns.Inode(), man.Ruleset)
	if err != nil {
		return nil, &requestError{errno: unix.EAGAIN, msg: err.Error()}
	}
	loaded := time.Now()
	next, e, err := fastedit.Apply(cur.rs, cmd, fastedit.NftParser(nftfile.Options{TargetNetNS: t.ns.File(), Nft: s.nft}))
	parsed := time.Now()
	if err != nil {
		return nil, &requestError{errno: unix.EAGAIN, msg: fmt.Sprintf("edit not applied by the daemon: %v", err)}
	}
	record := func(stored string) { s.decoded.record(st, t.ns.Inode(), cur, stored, next, e, s.logf) }
	if err := s.applyDecodedWith(cn, t, st, next, nil, record); err != nil {
		var rf *refusal
		if errors.As(err, &rf) {
			return nil, &requestError{errno: unix.EOPNOTSUPP, msg: rf.msg}
		}
		return nil, err
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	s.logf("pid %d: netns %d: %s (%.1f ms: ruleset %.1f, rule parsed %.1f, applied %.1f)", cn.peer.PID, t.ns.Inode(), cmd,
		ms(time.Since(start)), ms(loaded.Sub(start)), ms(parsed.Sub(loaded)), ms(time.Since(parsed)))
	return struct{}{}, nil
}

// decodeControlJSON decodes the ControlAttrJSON document of a control
// request into v.
func decodeControlJSON(req netlink.Message, v any) error {
	if len(req.Data) < 4 {
		return errors.New("control request without an nfgenmsg")
	}
	ad, err := netlink.NewAttributeDecoder(req.Data[4:])
	if err != nil {
		return err
	}
	for ad.Next() {
		if ad.Type() == ControlAttrJSON {
			return json.Unmarshal(ad.Bytes(), v)
		}
	}
	if err := ad.Err(); err != nil {
		return err
	}
	return errors.New("control request without a document")
}

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

// CacheName is the state entry holding the decoded running ruleset.
const CacheName = "decoded"

var cacheMagic = [8]byte{'b', 'p', 'f', 'n', 'f', 't', 'E', '1'}

// Marshal encodes rs (in canonical form, see Canonical) as the cache of
// the stored ruleset text: a header naming the text by its SHA-256, then
// rs's nf_tables messages, each as its length, type and payload.
func Marshal(text string, rs *nlmsg.Ruleset) []byte {
	sum := sha256.Sum256([]byte(text))
	msgs := nlmsg.Encode(rs)
	n := len(cacheMagic) + len(sum)
	for _, m := range msgs {
		n += 6 + len(m.Data)
	}
	b := make([]byte, 0, n)
	b = append(append(b, cacheMagic[:]...), sum[:]...)
	for _, m := range msgs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(m.Data)))
		b = binary.LittleEndian.AppendUint16(b, uint16(m.Header.Type))
		b = append(b, m.Data...)
	}
	return b
}

// Unmarshal decodes a cache written by Marshal for text. A cache of
// another text yields ErrNotCached.
func Unmarshal(text string, b []byte) (*nlmsg.Ruleset, error) {
	sum := sha256.Sum256([]byte(text))
	if len(b) < len(cacheMagic)+len(sum) || !bytes.Equal(b[:8], cacheMagic[:]) {
		return nil, fmt.Errorf("%w: no decoded ruleset cached", ErrNotCached)
	}
	if !bytes.Equal(b[8:8+len(sum)], sum[:]) {
		return nil, fmt.Errorf("%w: the cached ruleset is not the stored one", ErrNotCached)
	}
	b = b[8+len(sum):]
	var msgs []netlink.Message
	for len(b) > 0 {
		if len(b) < 6 {
			return nil, errors.New("decoded ruleset cache: truncated")
		}
		n := int(binary.LittleEndian.Uint32(b))
		typ := netlink.HeaderType(binary.LittleEndian.Uint16(b[4:]))
		b = b[6:]
		if n > len(b) {
			return nil, errors.New("decoded ruleset cache: truncated message")
		}
		msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: typ}, Data: b[:n:n]})
		b = b[n:]
	}
	rs, err := nlmsg.Decode(msgs)
	if err != nil {
		return nil, fmt.Errorf("decoded ruleset cache: %w", err)
	}
	return rs, nil
}

// Save stores rs, the decoded form of the stored ruleset text, in st, in
// canonical form. What Canonical cannot model removes the cache instead,
// so that the next edit takes the slow path.
func Save(st *state.Dir, text string, rs *nlmsg.Ruleset) error {
	crs, err := Canonical(rs)
	if err != nil {
		return Drop(st)
	}
	return st.WriteBlob(CacheName, Marshal(text, crs))
}

// Drop removes the cache from st: the next edit takes the slow path.
func Drop(st *state.Dir) error {
	if st.Exists(CacheName) {
		return st.Remove(CacheName)
	}
	return nil
}

// Load returns the cached decoded form of the stored ruleset text, or an
// error wrapping ErrNotCached.
func Load(st *state.Dir, text string) (*nlmsg.Ruleset, error) {
	b, err := st.ReadBlob(CacheName)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: no decoded ruleset cached", ErrNotCached)
	}
	if err != nil {
		return nil, err
	}
	return Unmarshal(text, b)
}

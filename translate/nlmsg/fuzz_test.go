package nlmsg

import (
	"reflect"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The fuzz targets take a message body (nfgenmsg and attributes). Malformed
// input must give an error, never a panic; what decodes must survive a round
// trip through the encoder unchanged. Seeds are real kernel dumps, in
// testdata/fuzz/<target>/ (written by nftfile's TestFuzzSeeds -update).

func fuzzRoundTrip[T any](t *testing.T, msg uint16, data []byte, decode func(netlink.Message) (T, error), encode func(T) netlink.Message) {
	m := netlink.Message{Header: netlink.Header{Type: MsgType(msg)}, Data: data}
	v, err := decode(m)
	if err != nil {
		return
	}
	again, err := decode(encode(v))
	if err != nil {
		t.Fatalf("re-encoded message does not decode: %v\nfirst: %+v", err, v)
	}
	if !reflect.DeepEqual(v, again) {
		t.Fatalf("round trip differs:\nfirst  %+v\nsecond %+v", v, again)
	}
}

func seed(f *testing.F, m netlink.Message) { f.Add(m.Data) }

func FuzzDecodeRule(f *testing.F) {
	for _, r := range fullRuleset().Rules {
		seed(f, EncodeRule(r))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRoundTrip(t, unix.NFT_MSG_NEWRULE, data, DecodeRule, EncodeRule)
	})
}

func FuzzDecodeSet(f *testing.F) {
	for _, s := range fullRuleset().Sets {
		seed(f, EncodeSet(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRoundTrip(t, unix.NFT_MSG_NEWSET, data, DecodeSet, EncodeSet)
	})
}

func FuzzDecodeSetElems(f *testing.F) {
	for _, e := range fullRuleset().Elems {
		seed(f, EncodeSetElems(e))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRoundTrip(t, unix.NFT_MSG_NEWSETELEM, data, DecodeSetElems, EncodeSetElems)
	})
}

func FuzzDecodeChain(f *testing.F) {
	for _, c := range fullRuleset().Chains {
		seed(f, EncodeChain(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRoundTrip(t, unix.NFT_MSG_NEWCHAIN, data, DecodeChain, EncodeChain)
	})
}

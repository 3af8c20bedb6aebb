package nftfile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// fuzzTargets maps a message type to the nlmsg fuzz target whose corpus
// holds its bodies.
var fuzzTargets = map[netlink.HeaderType]string{
	nlmsg.MsgType(unix.NFT_MSG_NEWRULE):    "FuzzDecodeRule",
	nlmsg.MsgType(unix.NFT_MSG_NEWSET):     "FuzzDecodeSet",
	nlmsg.MsgType(unix.NFT_MSG_NEWSETELEM): "FuzzDecodeSetElems",
	nlmsg.MsgType(unix.NFT_MSG_NEWCHAIN):   "FuzzDecodeChain",
}

// TestRealMessagesRoundTrip dumps the rulesets of testdata/*.nft as the
// kernel sends them and checks that each message survives nlmsg's
// decode-encode-decode round trip. With -update it also writes the message
// bodies as seed corpus for nlmsg's fuzz targets.
func TestRealMessagesRoundTrip(t *testing.T) {
	requirePrivileged(t)
	files, err := filepath.Glob("testdata/*.nft")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.nft: %v", err)
	}
	seeds := map[string]int{}
	for _, path := range files {
		base := strings.TrimSuffix(filepath.Base(path), ".nft")
		msgs, err := parseMessages(path, Options{}, func(cmd *exec.Cmd) { cmd.Args = append(cmd.Args, "-f", path) }, 1)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			rs, err := nlmsg.Decode([]netlink.Message{m})
			if err != nil {
				t.Fatalf("%s message %d: %v", path, i, err)
			}
			again, err := nlmsg.Decode(nlmsg.Encode(rs))
			if err != nil {
				t.Fatalf("%s message %d: re-encoded: %v", path, i, err)
			}
			if !reflect.DeepEqual(rs, again) {
				t.Errorf("%s message %d: round trip differs:\n%s\n%s", path, i, nlmsg.Format(rs), nlmsg.Format(again))
			}
			target, ok := fuzzTargets[m.Header.Type]
			if !ok || !*update {
				continue
			}
			dir := filepath.Join("..", "nlmsg", "testdata", "fuzz", target)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(m.Data)) + ")\n"
			file := filepath.Join(dir, fmt.Sprintf("%s-%02d", base, i))
			if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			seeds[target]++
		}
	}
	if *update {
		t.Logf("wrote seeds: %v", seeds)
	}
}

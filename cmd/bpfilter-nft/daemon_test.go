package main

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/bpfilter-nft/bpfilter-nft/daemon"
	"github.com/bpfilter-nft/bpfilter-nft/daemon/client"
	"github.com/bpfilter-nft/bpfilter-nft/internal/bpffstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

// TestListDaemon: `list namespaces` and `list objects` ask the daemon at
// --socket (or $BPFILTER_NFT_SOCKET) and print the tree and the objects.
func TestListDaemon(t *testing.T) {
	privtest.Require(t)
	root := bpffstest.Mount(t)
	sock := filepath.Join(os.TempDir(), fmt.Sprintf("bpfnft-test-%d-cli.sock", os.Getpid()))
	s, err := daemon.Listen(daemon.Config{Socket: sock, StateRoot: filepath.Join(root, "state"), Log: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close(); os.Remove(sock) })
	ns, err := nsctx.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	conn, closer, err := client.Nftables(sock, client.WithNetNS(ns.File()))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "t"})
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		args []string
		env  string
		want []string
	}{
		{[]string{"--socket", sock, "list", "namespaces"}, "", []string{"(level 0)", fmt.Sprintf("netns %d ", ns.Inode()), "1 objects"}},
		{[]string{"list", "objects"}, sock, []string{"KIND", "table", "ip t", fmt.Sprint(ns.Inode())}},
	} {
		t.Setenv(client.SocketEnv, c.env)
		var out, errb bytes.Buffer
		if code := run(&out, &errb, c.args); code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, errb.String())
		}
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: output lacks %q:\n%s", c.args, w, out.String())
			}
		}
	}
	var out, errb bytes.Buffer
	if code := run(&out, &errb, []string{"--socket", sock + "-none", "list", "namespaces"}); code == 0 || !strings.Contains(errb.String(), "is the daemon running") {
		t.Errorf("no daemon: exit %d, %q", code, errb.String())
	}
}

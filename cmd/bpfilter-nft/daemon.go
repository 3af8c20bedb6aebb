package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/daemon"
	"github.com/bpfilter-nft/bpfilter-nft/daemon/client"
)

func init() {
	register(&command{
		name:    "daemon",
		args:    "[--socket PATH] [--state DIR] [--max-objects N] [--max-namespaces N] [--netdev-backend auto|xdp|tc]",
		summary: "serve google/nftables and other nf_tables netlink clients on a Unix socket, in their own namespaces",
		run:     runDaemon,
	})
}

const daemonHelp = `Listens on a Unix socket (--socket, else $BPFILTER_NFT_SOCKET, else
/run/bpfilter-nft.sock) speaking nf_tables' netlink wire format: clients send
the batches they would send the kernel and get the kernel's ACKs and errors.
Each client acts on its own network namespace, and must hold CAP_NET_ADMIN over
it; objects are numbered per user-namespace level (bpfilter-nft list objects,
and for the host, bpfilter-nft list namespaces). Runs until SIGINT or SIGTERM;
loaded rulesets stay pinned and are picked up again by the next start. With
systemd's Type=notify it reports readiness ($NOTIFY_SOCKET).`

func runDaemon(stdout, stderr io.Writer, args []string) error {
	c := lookup("daemon")
	fs := newFlagSet(c, stderr, daemonHelp)
	socket := fs.String("socket", globals.socket, "listen on the Unix socket at `PATH`")
	root := fs.String("state", globals.stateRoot, "bpffs `DIR` holding the pinned rulesets (default /sys/fs/bpf/bpfilter-nft)")
	maxObjects := fs.Int("max-objects", 0, "per-user limit of tables, programs, maps and links (0: none)")
	maxNamespaces := fs.Int("max-namespaces", 0, "per-user limit of network namespaces with a ruleset (0: none)")
	backend := fs.String("netdev-backend", "auto", "program type of netdev ingress chains: auto (per device: tcx on veth and devices without native XDP, XDP on native-XDP drivers), xdp or tc")
	reap := fs.Duration("reap-interval", 5*time.Second, "how often namespaces are checked for being gone")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	typ, err := parseNetdevBackend(*backend)
	if err != nil {
		return err
	}
	s, err := daemon.Listen(daemon.Config{
		Socket:        *socket,
		StateRoot:     *root,
		NetdevBackend: typ,
		Limits:        daemon.Limits{MaxObjects: *maxObjects, MaxNamespaces: *maxNamespaces},
		ReapInterval:  *reap,
		Log:           log.New(stderr, "", log.LstdFlags),
	})
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		s.Close()
	}()
	fmt.Fprintf(stderr, "bpfilter-nft daemon: listening on %s\n", s.Addr())
	if err := notifyReady(); err != nil {
		fmt.Fprintf(stderr, "bpfilter-nft daemon: sd_notify: %v\n", err)
	}
	return s.Serve()
}

// notifyReady tells systemd (Type=notify) that the daemon is ready.
func notifyReady() error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte("READY=1"))
	return err
}

// runListDaemon serves `list objects` and `list namespaces`, which ask the
// daemon.
func runListDaemon(stdout io.Writer, what string) error {
	conn, err := client.Dial(daemon.SocketPath(globals.socket))
	if err != nil {
		return fmt.Errorf("%w (is the daemon running? see bpfilter-nft daemon)", err)
	}
	defer conn.Close()
	switch what {
	case "namespaces":
		var tree *daemon.NamespaceInfo
		if err := client.ListNamespaces(conn, &tree); err != nil {
			return err
		}
		if tree == nil {
			fmt.Fprintln(stdout, "no rulesets loaded")
			return nil
		}
		printTree(stdout, tree, "")
	case "objects":
		var objs []daemon.ObjectInfo
		if err := client.ListObjects(conn, &objs); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-8s %6s  %-12s %-6s %s\n", "KIND", "ID", "NETNS", "LEVEL", "NAME (nested IDs)")
		for _, o := range objs {
			nested := ""
			if len(o.IDs) > 1 {
				nested = fmt.Sprintf(" %v", o.IDs)
			}
			fmt.Fprintf(stdout, "%-8s %6d  %-12d %-6d %s%s\n", o.Kind, o.ID, o.NetNS, o.Level, o.Name, nested)
		}
	default:
		return errors.New("unknown listing")
	}
	return nil
}

func printTree(w io.Writer, n *daemon.NamespaceInfo, indent string) {
	fmt.Fprintf(w, "%suserns %d (level %d)\n", indent, n.UserNS, n.Level)
	for _, ns := range n.NetNS {
		fmt.Fprintf(w, "%s  netns %d (cookie %d, uid %d): %d objects\n", indent, ns.Inode, ns.Cookie, ns.UID, ns.Objects)
	}
	for i := range n.Children {
		printTree(w, &n.Children[i], indent+"  ")
	}
}

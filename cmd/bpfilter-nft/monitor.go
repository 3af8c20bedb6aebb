package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/nflog"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

func init() {
	register(&command{
		name:    "monitor",
		args:    "[--netns PATH | --pid PID] [--state DIR] [--count N] [--handle]",
		summary: "print the packets log statements log, as the kernel log would",
		run:     runMonitor,
	})
}

const monitorHelp = `Prints one line per packet a "log" statement of the running ruleset logs,
in the format of the kernel's nf_log_syslog (what nft's log statement writes
to the kernel log), e.g.

  ssh: IN=veth0 OUT= MAC=02:… SRC=192.0.2.1 DST=198.51.100.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=40000 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0

Interface names are those of the namespace at the time the line is printed.
Events come from the namespace's ring buffer (1 MiB); when a reader falls
behind, the programs drop events rather than packets.`

func runMonitor(stdout, stderr io.Writer, args []string) error {
	c := lookup("monitor")
	fs := newFlagSet(c, stderr, monitorHelp)
	g := globals
	fs.StringVar(&g.netns, "netns", g.netns, "monitor the network namespace at `PATH`")
	fs.IntVar(&g.pid, "pid", g.pid, "monitor the network namespace of process `PID`")
	fs.StringVar(&g.stateRoot, "state", g.stateRoot, "bpffs `DIR` holding the pinned ruleset (default "+state.DefaultRoot+")")
	count := fs.Int("count", 0, "exit after `N` events (0: run until interrupted)")
	handle := fs.Bool("handle", false, "end each line with the handle of the logging rule")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return withTarget(g, func(t *target) error {
		return monitor(ctx, t.ns, t.st, stdout, monitorOptions{count: *count, handle: *handle})
	})
}

type monitorOptions struct {
	count  int  // stop after this many events (0: until ctx ends)
	handle bool // append the rule handle
}

// monitor prints the log events of the ruleset in st until ctx ends or
// opts.count events are printed.
func monitor(ctx context.Context, ns *nsctx.NetNS, st *state.Dir, w io.Writer, opts monitorOptions) error {
	m, err := loader.OpenEvents(st)
	if err != nil {
		return err
	}
	defer m.Close()
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return fmt.Errorf("log ring buffer: %w", err)
	}
	defer rd.Close()
	names := map[uint32]string{}
	ifname := func(i uint32) string {
		if n, ok := names[i]; ok {
			return n
		}
		var name string
		ns.Do(func() error {
			if ifi, err := net.InterfaceByIndex(int(i)); err == nil {
				name = ifi.Name
			}
			return nil
		})
		names[i] = name
		return name
	}
	for n := 0; opts.count == 0 || n < opts.count; {
		if err := ctx.Err(); err != nil {
			return nil
		}
		rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return fmt.Errorf("log ring buffer: %w", err)
		}
		ev, err := nflog.Decode(rec.RawSample)
		if err != nil {
			return err
		}
		line := nflog.Format(ev, ifname)
		if opts.handle {
			line += fmt.Sprintf("# handle %d", ev.Handle)
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
		n++
	}
	return nil
}

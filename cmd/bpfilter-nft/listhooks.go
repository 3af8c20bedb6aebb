package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/bpfilter-nft/bpfilter-nft/loader"
	"github.com/bpfilter-nft/bpfilter-nft/state"
)

// runListHooks prints where the running ruleset's programs are attached
// (`list hooks`).
func runListHooks(stdout io.Writer, g rulesetFlags) error {
	return withRuleset(g,
		func(t *target) error {
			snap, err := loader.Load(t.st)
			if err != nil {
				return err
			}
			return printHooks(stdout, snap.Manifest.Points)
		},
		func(d *daemonTarget) error {
			info, err := d.fetch()
			if err != nil {
				return err
			}
			return printHooks(stdout, info.Points)
		})
}

// printHooks prints one line per attach point: the program kind, where it
// is attached, the chain it runs, and for netdev ingress chains why they
// run on XDP or tcx.
func printHooks(w io.Writer, points []state.Point) error {
	if len(points) == 0 {
		_, err := fmt.Fprintln(w, "no programs attached")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tAT\tPRIORITY\tCHAIN\tWHY")
	for _, p := range points {
		at := p.Hook
		switch {
		case p.Device != "":
			at = p.Device
		case p.Cgroup != "":
			at = p.Cgroup
		}
		if p.ProtoFamily != "" && p.Kind != loader.KindXDP {
			at += " " + p.ProtoFamily
		}
		why := p.Backend
		if why == "" {
			why = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s %s %s\t%s\n", p.Kind, at, p.Priority, p.Family, p.Table, p.Chain, why)
	}
	return tw.Flush()
}

package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteTable prints results as one table: per program type, ruleset kind,
// mode and size, the cost per packet of a first-rule hit, a last-rule hit
// and a packet no rule matches (ns, and × the empty program of the same
// type), then compile and load times, program length and verifier work
// (summed over the programs of a chain split into tail-called parts) and
// the number of parts.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "type\tkind\tmode\trules\tempty ns\tfirst ns\t×empty\tlast ns\t×empty\tmiss ns\t×empty\tcompile ms\tload ms\tinsns\tverified\tgroups\tparts\t")
	var refused []string
	for _, r := range results {
		if r.Refused != "" {
			refused = append(refused, fmt.Sprintf("%s %s %s %d rules: refused: %s", r.Type, r.Kind, r.Mode, r.Rules, r.Refused))
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\trefused¹\t-\t-\t-\t-\t-\t%s\t%s\t-\t-\t-\t-\t\n", r.Type, r.Kind, r.Mode, r.Rules, r.Empty.Nanoseconds(), ms(r.Compile), ms(r.Load))
			continue
		}
		first, firstX, last, lastX := "-", "-", "-", "-"
		if r.Rules > 0 {
			first, firstX = ns(r.First), ratio(r.Ratio(r.First))
			last, lastX = ns(r.Last), ratio(r.Ratio(r.Last))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t\n",
			r.Type, r.Kind, r.Mode, r.Rules, r.Empty.Nanoseconds(),
			first, firstX, last, lastX, ns(r.Miss), ratio(r.Ratio(r.Miss)),
			ms(r.Compile), ms(r.Load), r.Insns, r.Verified, r.Groups, r.Parts)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range refused {
		if _, err := fmt.Fprintln(w, "¹", r); err != nil {
			return err
		}
	}
	return nil
}

func ns(d time.Duration) string { return fmt.Sprint(d.Nanoseconds()) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func ratio(x float64) string {
	if x >= 100 {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

// Scaling is, for one program type, kind and mode, how the cost of a
// packet no rule matches grows from Small to Large rules.
type Scaling struct {
	Result       Result // the large ruleset's
	Small, Large int
	Factor       float64 // miss cost at Large / miss cost at Small
}

// Scalings returns, for every program type, kind and mode measured at both
// small and large rules, the growth factor of the fall-through cost.
func Scalings(results []Result, small, large int) []Scaling {
	type key struct {
		t, k, m string
	}
	at := map[key]map[int]Result{}
	var order []key
	for _, r := range results {
		k := key{r.Type.String(), string(r.Kind), string(r.Mode)}
		if at[k] == nil {
			at[k] = map[int]Result{}
			order = append(order, k)
		}
		at[k][r.Rules] = r
	}
	var out []Scaling
	for _, k := range order {
		s, okS := at[k][small]
		l, okL := at[k][large]
		if !okS || !okL || s.Refused != "" || l.Refused != "" || s.Miss <= 0 {
			continue
		}
		out = append(out, Scaling{Result: l, Small: small, Large: large, Factor: float64(l.Miss) / float64(s.Miss)})
	}
	return out
}

// WriteVethTable prints end-to-end packet rates: one row per ruleset size,
// one column per attach kind, and bpfilter-nft's rates as ratios to the
// kernel's nftables and to the floor (nothing attached).
func WriteVethTable(w io.Writer, results []VethResult) error {
	var floor float64
	by := map[int]map[Attach]float64{}
	var sizes []int
	var refused []string
	for _, r := range results {
		if r.Attach == AttachNone {
			floor = r.PPS
			continue
		}
		if r.Refused != "" {
			refused = append(refused, fmt.Sprintf("%s at %d rules: refused: %s", r.Attach, r.Rules, r.Refused))
		}
		if by[r.Rules] == nil {
			by[r.Rules] = map[Attach]float64{}
			sizes = append(sizes, r.Rules)
		}
		by[r.Rules][r.Attach] = r.PPS
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "rules\txdp Mpps\ttcx Mpps\tnft Mpps\txdp/nft\ttcx/nft\txdp-linear Mpps\ttcx-linear Mpps\txdp/nofilter\ttcx/nofilter\tnft/nofilter\t\n")
	div := func(a, b float64) string {
		if a == 0 || b == 0 {
			return "-"
		}
		return ratio(a / b)
	}
	mpps := func(x float64) string {
		if x == 0 {
			return "-"
		}
		return fmt.Sprintf("%.3f", x/1e6)
	}
	for _, n := range sizes {
		m := by[n]
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", n, mpps(m[AttachXDP]), mpps(m[AttachTCX]), mpps(m[AttachNFT]),
			div(m[AttachXDP], m[AttachNFT]), div(m[AttachTCX], m[AttachNFT]), mpps(m[AttachXDPLinear]), mpps(m[AttachTCXLinear]),
			div(m[AttachXDP], floor), div(m[AttachTCX], floor), div(m[AttachNFT], floor))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if floor > 0 {
		if _, err := fmt.Fprintf(w, "no filter (nothing attached, the IP layer drops the frame): %.3f Mpps\n", floor/1e6); err != nil {
			return err
		}
	}
	for _, r := range refused {
		if _, err := fmt.Fprintln(w, r); err != nil {
			return err
		}
	}
	return nil
}

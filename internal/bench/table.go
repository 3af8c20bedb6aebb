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
// type), then compile and load times, program length and verifier work.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "type\tkind\tmode\trules\tempty ns\tfirst ns\t×empty\tlast ns\t×empty\tmiss ns\t×empty\tcompile ms\tload ms\tinsns\tverified\tgroups\t")
	for _, r := range results {
		if r.Refused != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\trefused: %s\t\t\t\t\t\t\t\t\t\t\t\n", r.Type, r.Kind, r.Mode, r.Rules, r.Empty.Nanoseconds(), r.Refused)
			continue
		}
		first, firstX, last, lastX := "-", "-", "-", "-"
		if r.Rules > 0 {
			first, firstX = ns(r.First), ratio(r.Ratio(r.First))
			last, lastX = ns(r.Last), ratio(r.Ratio(r.Last))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t\n",
			r.Type, r.Kind, r.Mode, r.Rules, r.Empty.Nanoseconds(),
			first, firstX, last, lastX, ns(r.Miss), ratio(r.Ratio(r.Miss)),
			ms(r.Compile), ms(r.Load), r.Insns, r.Verified, r.Groups)
	}
	return tw.Flush()
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

package translate

import (
	"strings"
	"testing"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
	"github.com/bpfilter-nft/bpfilter-nft/translate/nlmsg"
)

// TestTimeoutSets: expiring elements are taken into named sets, verdict
// maps and data maps of exact keys and of intervals (one field or
// concatenated) with their
// timeout and time left, and refused, naming the set, everywhere else.
func TestTimeoutSets(t *testing.T) {
	elem := nlmsg.SetElem{Key: []byte{0, 22}, Timeout: 3000, Expiration: 2500}
	for _, tc := range []struct {
		name string
		set  *ir.Set
		elem nlmsg.SetElem
		err  string
	}{
		{"flags timeout", &ir.Set{Name: "t", Flags: ir.SetTimeout, KeyLen: 2}, elem, ""},
		{"default timeout", &ir.Set{Name: "t", Flags: ir.SetTimeout, KeyLen: 2, Timeout: 10000}, nlmsg.SetElem{Key: []byte{0, 22}, Expiration: 9000}, ""},
		{"concatenation", &ir.Set{Name: "t", Flags: ir.SetTimeout | ir.SetConcat, KeyLen: 8, Fields: []uint32{4, 2}}, nlmsg.SetElem{Key: make([]byte, 8), Timeout: 1000}, ""},
		{"no timeout flag", &ir.Set{Name: "t", KeyLen: 2}, elem, "set elements with timeouts in @t, which has no timeout flag"},
		{"interval", &ir.Set{Name: "t", Flags: ir.SetTimeout | ir.SetInterval, KeyLen: 2}, elem, ""},
		{"interval with key end", &ir.Set{Name: "t", Flags: ir.SetTimeout | ir.SetInterval, KeyLen: 2}, nlmsg.SetElem{Key: []byte{0, 20}, KeyEnd: []byte{0, 30}, Timeout: 3000, Expiration: 2500}, ""},
		{"verdict map", &ir.Set{Name: "t", Flags: ir.SetTimeout | ir.SetMap, KeyLen: 2, DataType: ir.DataVerdict}, elem, ""},
		{"data map", &ir.Set{Name: "t", Flags: ir.SetTimeout | ir.SetMap, KeyLen: 2, DataType: 19, DataLen: 4}, elem, ""},
		{"concatenated ranges", &ir.Set{Name: "t", Flags: ir.SetTimeout | ir.SetInterval | ir.SetConcat, KeyLen: 8, Fields: []uint32{4, 2}}, nlmsg.SetElem{Key: make([]byte, 8), KeyEnd: make([]byte, 8), Timeout: 1000}, ""},
		{"object map", &ir.Set{Name: "t", Flags: ir.SetTimeout | ir.SetMap | ir.SetObject, KeyLen: 2}, elem, "timeouts in object maps (@t)"},
		{"dynamic", &ir.Set{Name: "t", Flags: ir.SetTimeout | ir.SetEval, KeyLen: 2}, elem, "dynamic sets (@t"},
		{"anonymous", &ir.Set{Name: "__set0", Flags: ir.SetTimeout | ir.SetAnonymous, KeyLen: 2}, elem, "the kernel refuses element timeouts in anonymous sets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := normaliseElements(tc.set, []nlmsg.SetElem{tc.elem})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if timeoutSupported(tc.set) == nil && tc.name != "no timeout flag" {
					t.Errorf("timeoutSupported accepts the set")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != 1 || out[0].Timeout != tc.elem.Timeout || out[0].Expires != tc.elem.Expiration {
				t.Errorf("elements %+v, want timeout %d expires %d", out, tc.elem.Timeout, tc.elem.Expiration)
			}
		})
	}
}

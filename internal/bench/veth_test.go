package bench

import (
	"testing"
	"time"

	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
)

// TestVeth floods a veth pair briefly with each attach kind: every
// measurement must see the receiver process frames.
func TestVeth(t *testing.T) {
	privtest.Require(t)
	res, err := Veth(VethConfig{Sizes: []int{10}, Attachs: []Attach{AttachNone, AttachXDP, AttachTCX, AttachNFT}, Time: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("%d results, want 4", len(res))
	}
	for _, r := range res {
		if r.Frames == 0 || r.PPS <= 0 {
			t.Errorf("%s: %d frames, %.0f pps", r.Attach, r.Frames, r.PPS)
		}
		t.Logf("%s %d rules: %.0f pps (%d frames)", r.Attach, r.Rules, r.PPS, r.Frames)
	}
}

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
	for _, sender := range []Sender{SenderXDP, SenderPacket} {
		res, err := Veth(VethConfig{Sizes: []int{10}, Attachs: []Attach{AttachNone, AttachXDP, AttachTCX, AttachNFT}, Time: 50 * time.Millisecond, Sender: sender}, nil)
		if err != nil {
			t.Fatalf("%s sender: %v", sender, err)
		}
		if len(res) != 4 {
			t.Fatalf("%s sender: %d results, want 4", sender, len(res))
		}
		for _, r := range res {
			if r.Frames == 0 || r.PPS <= 0 {
				t.Errorf("%s sender, %s: %d frames, %.0f pps", sender, r.Attach, r.Frames, r.PPS)
			}
			t.Logf("%s sender, %s %d rules: %.0f pps (%d frames)", sender, r.Attach, r.Rules, r.PPS, r.Frames)
		}
	}
}

package bench

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"
)

// TestPlot draws two series and checks the PNG: its size, and pixels of
// each series' colour where its points lie.
func TestPlot(t *testing.T) {
	res := []VethResult{
		{Attach: AttachNFT, Rules: 0, PPS: 4e6}, {Attach: AttachNFT, Rules: 10, PPS: 1.5e6}, {Attach: AttachNFT, Rules: 10000, PPS: 4e3},
		{Attach: AttachXDP, Rules: 0, PPS: 8e6}, {Attach: AttachXDP, Rules: 10, PPS: 8e6}, {Attach: AttachXDP, Rules: 10000, PPS: 6e6},
		{Attach: AttachNone, Rules: 0, PPS: 3e6},
	}
	series := VethSeries(res)
	if len(series) != 2 {
		t.Fatalf("%d series, want 2 (nft, xdp)", len(series))
	}
	var buf bytes.Buffer
	if err := Plot(&buf, "ns per packet", "rules", "ns/packet", series); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds() != image.Rect(0, 0, plotW, plotH) {
		t.Fatalf("bounds %v", img.Bounds())
	}
	count := map[color.RGBA]int{}
	for y := 0; y < plotH; y++ {
		for x := 0; x < plotW; x++ {
			r, g, b, a := img.At(x, y).RGBA()
			count[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), uint8(a >> 8)}]++
		}
	}
	for _, s := range series {
		if count[s.Color] < 100 {
			t.Errorf("series %s: %d pixels of its colour", s.Name, count[s.Color])
		}
	}
	if count[color.RGBA{0, 0, 0, 255}] < 500 {
		t.Errorf("%d black (text) pixels", count[color.RGBA{0, 0, 0, 255}])
	}
	if err := Plot(&buf, "t", "x", "y", nil); err == nil {
		t.Error("plot of nothing: no error")
	}
}

package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"strings"
)

// Series is one line of a plot.
type Series struct {
	Name  string
	Color color.RGBA
	X, Y  []float64
}

// Plot size and margins in pixels.
const (
	plotW, plotH       = 960, 640
	marginL, marginR   = 110, 30
	marginT, marginB   = 70, 80
	glyphScale         = 2
	glyphW, glyphH     = 5, 7
	glyphAdvance       = (glyphW + 1) * glyphScale
	legendLineHeight   = 22
	markerHalf         = 3
	lineThicknessHalf  = 1
	gridShade          = 225
	axisShade          = 60
	minLogDecadeSpread = 1
)

// Plot draws series on log-log axes as a PNG: X values ≤ 0 are drawn at
// the left edge (a ruleset of 0 rules), labelled "0".
func Plot(w io.Writer, title, xlabel, ylabel string, series []Series) error {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	fill(img, img.Bounds(), color.RGBA{255, 255, 255, 255})
	// Ranges in decades.
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	zeroX := false
	for _, s := range series {
		for i := range s.X {
			if s.X[i] <= 0 {
				zeroX = true
			} else {
				xmin, xmax = math.Min(xmin, s.X[i]), math.Max(xmax, s.X[i])
			}
			if s.Y[i] > 0 {
				ymin, ymax = math.Min(ymin, s.Y[i]), math.Max(ymax, s.Y[i])
			}
		}
	}
	if math.IsInf(xmin, 0) || math.IsInf(ymin, 0) {
		return fmt.Errorf("plot: no positive values")
	}
	x0, x1 := math.Floor(math.Log10(xmin)), math.Ceil(math.Log10(xmax))
	if zeroX {
		x0-- // a decade to the left for 0
	}
	y0, y1 := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
	if x1-x0 < minLogDecadeSpread {
		x1 = x0 + minLogDecadeSpread
	}
	if y1-y0 < minLogDecadeSpread {
		y1 = y0 + minLogDecadeSpread
	}
	left, right, top, bottom := marginL, plotW-marginR, marginT, plotH-marginB
	px := func(x float64) int {
		lx := x0
		if x > 0 {
			lx = math.Log10(x)
		}
		return left + int(math.Round((lx-x0)/(x1-x0)*float64(right-left)))
	}
	py := func(y float64) int {
		return bottom - int(math.Round((math.Log10(y)-y0)/(y1-y0)*float64(bottom-top)))
	}
	grid := color.RGBA{gridShade, gridShade, gridShade, 255}
	axis := color.RGBA{axisShade, axisShade, axisShade, 255}
	black := color.RGBA{0, 0, 0, 255}
	// Grid and tick labels, one per decade.
	for d := x0; d <= x1; d++ {
		x := left + int(math.Round((d-x0)/(x1-x0)*float64(right-left)))
		vline(img, x, top, bottom, grid)
		label := decade(d)
		if zeroX && d == x0 {
			label = "0"
		}
		text(img, x-len(label)*glyphAdvance/2, bottom+10, label, axis)
	}
	for d := y0; d <= y1; d++ {
		y := bottom - int(math.Round((d-y0)/(y1-y0)*float64(bottom-top)))
		hline(img, left, right, y, grid)
		label := decade(d)
		text(img, left-10-len(label)*glyphAdvance, y-glyphH*glyphScale/2, label, axis)
	}
	vline(img, left, top, bottom, axis)
	hline(img, left, right, bottom, axis)
	text(img, (left+right-len(title)*glyphAdvance)/2, 10, title, black)
	text(img, (left+right-len(xlabel)*glyphAdvance)/2, bottom+40, xlabel, black)
	text(img, 10, top-25, ylabel, black)
	// Lines with markers.
	for _, s := range series {
		prevX, prevY, have := 0, 0, false
		for i := range s.X {
			if s.Y[i] <= 0 {
				have = false
				continue
			}
			x, y := px(s.X[i]), py(s.Y[i])
			fill(img, image.Rect(x-markerHalf, y-markerHalf, x+markerHalf+1, y+markerHalf+1), s.Color)
			if have {
				line(img, prevX, prevY, x, y, s.Color)
			}
			prevX, prevY, have = x, y, true
		}
	}
	// Legend, top left inside the axes.
	ly := top + 10
	for _, s := range series {
		fill(img, image.Rect(left+15, ly+4, left+45, ly+10), s.Color)
		text(img, left+55, ly, s.Name, black)
		ly += legendLineHeight
	}
	return png.Encode(w, img)
}

func decade(d float64) string {
	if d >= 0 && d <= 6 {
		return fmt.Sprint(int(math.Pow(10, d)))
	}
	return fmt.Sprintf("1E%d", int(d))
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	fill(img, image.Rect(x, y0, x+1, y1+1), c)
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	fill(img, image.Rect(x0, y, x1+1, y+1), c)
}

// line draws a thick line from (x0,y0) to (x1,y1).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	n := max(abs(x1-x0), abs(y1-y0), 1)
	for i := 0; i <= n; i++ {
		x := x0 + (x1-x0)*i/n
		y := y0 + (y1-y0)*i/n
		fill(img, image.Rect(x-lineThicknessHalf, y-lineThicknessHalf, x+lineThicknessHalf+1, y+lineThicknessHalf+1), c)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// text draws s with the built-in 5×7 font (letters in upper case).
func text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for _, r := range strings.ToUpper(s) {
		g, ok := glyphs[r]
		if !ok {
			g = glyphs['?']
		}
		for row, bits := range g {
			for col, b := range bits {
				if b != '#' {
					continue
				}
				fill(img, image.Rect(x+col*glyphScale, y+row*glyphScale, x+(col+1)*glyphScale, y+(row+1)*glyphScale), c)
			}
		}
		x += glyphAdvance
	}
}

// glyphs is a 5×7 pixel font of the characters plot labels use.
var glyphs = map[rune][glyphH]string{
	' ': {".....", ".....", ".....", ".....", ".....", ".....", "....."},
	'?': {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."},
	'.': {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."},
	',': {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."},
	':': {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."},
	'/': {"....#", "...#.", "...#.", "..#..", ".#...", ".#...", "#...."},
	'-': {".....", ".....", ".....", "#####", ".....", ".....", "....."},
	'(': {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."},
	')': {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."},
	'×': {".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "....."},
	'0': {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."},
	'1': {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'2': {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"},
	'3': {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."},
	'4': {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
	'5': {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."},
	'6': {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."},
	'7': {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."},
	'8': {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."},
	'9': {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."},
	'A': {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
	'B': {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."},
	'C': {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."},
	'D': {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."},
	'E': {"#####", "#....", "#....", "####.", "#....", "#....", "#####"},
	'F': {"#####", "#....", "#....", "####.", "#....", "#....", "#...."},
	'G': {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"},
	'H': {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
	'I': {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'J': {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."},
	'K': {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"},
	'L': {"#....", "#....", "#....", "#....", "#....", "#....", "#####"},
	'M': {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"},
	'N': {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"},
	'O': {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
	'P': {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."},
	'Q': {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"},
	'R': {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"},
	'S': {".####", "#....", "#....", ".###.", "....#", "....#", "####."},
	'T': {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."},
	'U': {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
	'V': {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
	'W': {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."},
	'X': {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"},
	'Y': {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."},
	'Z': {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"},
}

// seriesColors gives each attach kind its colour.
var seriesColors = map[Attach]color.RGBA{
	AttachNFT:       {200, 30, 30, 255},
	AttachXDP:       {20, 100, 220, 255},
	AttachTCX:       {20, 160, 60, 255},
	AttachXDPLinear: {130, 170, 240, 255},
	AttachTCXLinear: {140, 210, 150, 255},
}

// seriesNames names each attach kind in the legend.
var seriesNames = map[Attach]string{
	AttachNFT:       "kernel nftables (netdev ingress)",
	AttachXDP:       "bpfilter-nft xdp, grouped",
	AttachTCX:       "bpfilter-nft tcx, grouped",
	AttachXDPLinear: "bpfilter-nft xdp, linear",
	AttachTCXLinear: "bpfilter-nft tcx, linear",
}

// VethSeries turns end-to-end results into plot series of nanoseconds per
// packet (1e9 / packets per second) against the number of rules.
func VethSeries(results []VethResult) []Series {
	var out []Series
	for _, a := range []Attach{AttachNFT, AttachXDPLinear, AttachTCXLinear, AttachTCX, AttachXDP} {
		s := Series{Name: seriesNames[a], Color: seriesColors[a]}
		for _, r := range results {
			if r.Attach == a && r.PPS > 0 {
				s.X = append(s.X, float64(r.Rules))
				s.Y = append(s.Y, 1e9/r.PPS)
			}
		}
		if len(s.X) > 0 {
			out = append(out, s)
		}
	}
	return out
}

package monitoring

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// PlotPanel is one dashboard panel's query results over a time range.
type PlotPanel struct {
	Title string
	// Unit formats the y axis: "s" (durations), "ops"/"reqps" (per
	// second), or "" (plain numbers).
	Unit   string
	Series []Series
	// Legend names a series from its labels.
	Legend func(map[string]string) string
	// States draws each series as a lane of states (Grafana's state
	// timeline) instead of a line: a sample's value picks its state.
	States map[float64]State
}

// State is how a state-timeline value is shown.
type State struct {
	Text  string
	Color color.RGBA
}

// Marker is a labelled moment drawn across every panel.
type Marker struct {
	At    time.Time
	Label string
}

// Plot draws panels side by side, two per row, over [start, end], as a
// PNG. It plots query results as they are; it is not Grafana's rendering.
func Plot(w io.Writer, title string, panels []PlotPanel, markers []Marker, start, end time.Time) error {
	const cols, pw, ph, pad = 2, 620, 330, 16
	rows := (len(panels) + cols - 1) / cols
	img := image.NewRGBA(image.Rect(0, 0, cols*pw+pad, rows*ph+40))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	text(img, pad, 22, title, color.Black)
	for i, p := range panels {
		x0, y0 := pad+(i%cols)*pw, 36+(i/cols)*ph
		plotPanel(img, image.Rect(x0, y0, x0+pw-pad, y0+ph-pad), p, markers, start, end)
	}
	return png.Encode(w, img)
}

var palette = []color.RGBA{
	{31, 119, 180, 255}, {214, 39, 40, 255}, {44, 160, 44, 255}, {255, 127, 14, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
}

func plotPanel(img *image.RGBA, r image.Rectangle, p PlotPanel, markers []Marker, start, end time.Time) {
	grey := color.RGBA{200, 200, 200, 255}
	outline(img, r, grey)
	text(img, r.Min.X+8, r.Min.Y+16, p.Title, color.Black)
	sort.Slice(p.Series, func(i, j int) bool { return p.Legend(p.Series[i].Metric) < p.Legend(p.Series[j].Metric) })
	// The legend: series, or for states the states; wrapped to the panel.
	type entry struct {
		label string
		c     color.RGBA
	}
	var legend []entry
	if p.States != nil {
		var vals []float64
		for v := range p.States {
			vals = append(vals, v)
		}
		sort.Float64s(vals)
		for _, v := range vals {
			legend = append(legend, entry{p.States[v].Text, p.States[v].Color})
		}
	} else {
		for i, s := range p.Series {
			legend = append(legend, entry{p.Legend(s.Metric), palette[i%len(palette)]})
		}
	}
	lx, ly := r.Min.X+8, r.Min.Y+24
	for _, e := range legend {
		w := 24 + 7*len(e.label)
		if lx+w > r.Max.X && lx > r.Min.X+8 {
			lx, ly = r.Min.X+8, ly+16
		}
		fill(img, image.Rect(lx, ly, lx+10, ly+10), e.c)
		text(img, lx+14, ly+10, e.label, color.Black)
		lx += w
	}
	left := 70
	if p.States != nil {
		left = 8
		for _, s := range p.Series {
			left = max(left, 16+7*len(p.Legend(s.Metric)))
		}
	}
	area := image.Rect(r.Min.X+left, ly+20, r.Max.X-10, r.Max.Y-26)
	outline(img, area, grey)
	xOf := func(t time.Time) int {
		return area.Min.X + int(float64(area.Dx())*t.Sub(start).Seconds()/end.Sub(start).Seconds())
	}
	defer func() {
		for t := start.Truncate(time.Minute).Add(time.Minute); t.Before(end); t = t.Add(time.Minute) {
			x := xOf(t)
			vline(img, x, area.Max.Y, area.Max.Y+4, color.Black)
			text(img, x-18, area.Max.Y+16, t.UTC().Format("15:04"), color.Black)
		}
		for _, m := range markers {
			x := xOf(m.At)
			for y := area.Min.Y; y < area.Max.Y; y += 6 {
				vline(img, x, y, y+3, color.RGBA{90, 90, 90, 255})
			}
			text(img, x+3, area.Max.Y-4, m.Label, color.RGBA{90, 90, 90, 255})
		}
	}()
	if p.States != nil {
		lanes(img, area, p, xOf)
		return
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range p.Series {
		for _, pt := range s.Points {
			lo, hi = math.Min(lo, pt.Value), math.Max(hi, pt.Value)
		}
	}
	if math.IsInf(lo, 0) {
		text(img, area.Min.X+10, area.Min.Y+20, "no data", color.Black)
		return
	}
	lo = math.Min(lo, 0)
	if hi <= lo {
		hi = lo + 1
	}
	hi += (hi - lo) * 0.08
	yOf := func(v float64) int { return area.Max.Y - int(float64(area.Dy())*(v-lo)/(hi-lo)) }
	for _, v := range []float64{lo, (lo + hi) / 2, hi} {
		y := yOf(v)
		hline(img, area.Min.X, area.Max.X, y, color.RGBA{235, 235, 235, 255})
		label := formatValue(v, p.Unit)
		text(img, area.Min.X-6-7*len(label), y+4, label, color.Black)
	}
	for i, s := range p.Series {
		c := palette[i%len(palette)]
		for j := 1; j < len(s.Points); j++ {
			a, b := s.Points[j-1], s.Points[j]
			if b.Time.Sub(a.Time) > 5*time.Second {
				continue // a gap: the series was absent
			}
			line(img, xOf(a.Time), yOf(a.Value), xOf(b.Time), yOf(b.Value), c)
		}
	}
}

// lanes draws one lane per series: each sample's state colours the time
// up to the next sample; where the series is absent the lane is empty.
func lanes(img *image.RGBA, area image.Rectangle, p PlotPanel, xOf func(time.Time) int) {
	if len(p.Series) == 0 {
		text(img, area.Min.X+10, area.Min.Y+20, "no data", color.Black)
		return
	}
	h := area.Dy() / len(p.Series)
	for i, s := range p.Series {
		y0 := area.Min.Y + i*h
		label := p.Legend(s.Metric)
		text(img, area.Min.X-8-7*len(label), y0+h/2+4, label, color.Black)
		for j, pt := range s.Points {
			st, ok := p.States[pt.Value]
			if !ok {
				st = State{Color: color.RGBA{127, 127, 127, 255}}
			}
			x1 := xOf(pt.Time.Add(time.Second))
			if j+1 < len(s.Points) && s.Points[j+1].Time.Sub(pt.Time) <= 5*time.Second {
				x1 = xOf(s.Points[j+1].Time)
			}
			fill(img, image.Rect(xOf(pt.Time), y0+h/5, x1, y0+h-h/5), st.Color)
		}
	}
}

// Colour names of Grafana's value mappings.
var namedColors = map[string]color.RGBA{
	"green": {55, 135, 45, 255}, "red": {196, 22, 42, 255}, "orange": {255, 120, 10, 255},
}

// NamedColor is the colour of a Grafana colour name, grey if unknown.
func NamedColor(name string) color.RGBA {
	if c, ok := namedColors[name]; ok {
		return c
	}
	return color.RGBA{127, 127, 127, 255}
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "s":
		return (time.Duration(v) * time.Second).String()
	case "ops", "reqps":
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".") + "/s"
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func fill(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

func outline(img *image.RGBA, r image.Rectangle, c color.Color) {
	hline(img, r.Min.X, r.Max.X, r.Min.Y, c)
	hline(img, r.Min.X, r.Max.X, r.Max.Y, c)
	vline(img, r.Min.X, r.Min.Y, r.Max.Y, c)
	vline(img, r.Max.X, r.Min.Y, r.Max.Y, c)
}

func hline(img *image.RGBA, x0, x1, y int, c color.Color) {
	for x := x0; x <= x1; x++ {
		img.Set(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.Color) {
	for y := y0; y <= y1; y++ {
		img.Set(x, y, c)
	}
}

// line draws a two-pixel line from (x0, y0) to (x1, y1).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	steps := max(abs(x1-x0), abs(y1-y0), 1)
	for i := 0; i <= steps; i++ {
		x := x0 + (x1-x0)*i/steps
		y := y0 + (y1-y0)*i/steps
		img.Set(x, y, c)
		img.Set(x, y+1, c)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

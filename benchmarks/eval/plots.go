package eval

import (
	"bytes"
	"fmt"
	"image/color"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Figures are drawn with gonum/plot and written as PNG (shown on a
// repository page) and SVG (scalable, diffable).

// strategyColor gives every strategy the same color in every figure.
func strategyColor(name string) color.Color {
	switch name {
	case StrategyCold:
		return color.RGBA{0x7f, 0x7f, 0x7f, 0xff}
	case StrategyFixed:
		return color.RGBA{0x1f, 0x77, 0xb4, 0xff}
	case StrategyRequestCentric:
		return color.RGBA{0xd6, 0x27, 0x28, 0xff}
	case StrategyBandit:
		return color.RGBA{0x2c, 0xa0, 0x2c, 0xff}
	}
	return color.RGBA{0x94, 0x67, 0xbd, 0xff}
}

// palette colors series that are not strategies (seeds, model lines).
func palette(i int) color.Color {
	p := []color.RGBA{{0x1f, 0x77, 0xb4, 0xff}, {0xff, 0x7f, 0x0e, 0xff}, {0x2c, 0xa0, 0x2c, 0xff}, {0xd6, 0x27, 0x28, 0xff},
		{0x94, 0x67, 0xbd, 0xff}, {0x8c, 0x56, 0x4b, 0xff}, {0xe3, 0x77, 0xc2, 0xff}, {0xbc, 0xbd, 0x22, 0xff}}
	return p[i%len(p)]
}

// figure is a grid of panels written as name.png and name.svg.
type figure struct {
	Name   string // file name without extension, relative to figures/
	Panels []*plot.Plot
	Cols   int
	// PanelW and PanelH size one panel.
	PanelW, PanelH vg.Length
}

// write draws f into dir/<name>.png and .svg and returns their paths.
func (f figure) write(dir string) ([]string, error) {
	if len(f.Panels) == 0 {
		return nil, nil
	}
	cols := max(1, min(f.Cols, len(f.Panels)))
	rows := (len(f.Panels) + cols - 1) / cols
	w, h := vg.Length(cols)*f.PanelW, vg.Length(rows)*f.PanelH
	grid := make([][]*plot.Plot, rows)
	for r := range grid {
		grid[r] = make([]*plot.Plot, cols)
		for c := range grid[r] {
			if i := r*cols + c; i < len(f.Panels) {
				grid[r][c] = f.Panels[i]
			}
		}
	}
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	render := func(c vg.CanvasWriterTo) vg.CanvasWriterTo {
		dc := draw.New(c)
		// An opaque background: a transparent PNG is unreadable on a
		// repository page in dark mode.
		dc.SetColor(color.White)
		dc.Fill(dc.Rectangle.Path())
		canvases := plot.Align(grid, tiles, dc)
		for r := range grid {
			for c := range grid[r] {
				if grid[r][c] != nil {
					grid[r][c].Draw(canvases[r][c])
				}
			}
		}
		return c
	}
	var paths []string
	for _, out := range []struct {
		ext string
		c   func() vg.CanvasWriterTo
	}{
		{"png", func() vg.CanvasWriterTo {
			return vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(96))}
		}},
		{"svg", func() vg.CanvasWriterTo { return vgsvg.New(w, h) }},
	} {
		path := filepath.Join(dir, f.Name+"."+out.ext)
		var buf bytes.Buffer
		if _, err := render(out.c()).WriteTo(&buf); err != nil {
			return nil, fmt.Errorf("figure %s: %w", path, err)
		}
		if err := writeFile(path, func(w io.Writer) error { _, err := w.Write(buf.Bytes()); return err }); err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// newPanel is a plot with the report's common style.
func newPanel(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	return p
}

// logAxis makes an axis logarithmic with readable ticks; values must be
// positive.
func logAxis(a *plot.Axis) {
	a.Scale = plot.LogScale{}
	a.Tick.Marker = logTicks{}
}

// logTicks labels powers of ten and, when the range spans less than two
// decades, 2× and 5× too, with plain numbers (not 1e+01).
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= 0 {
		return nil
	}
	dense := math.Log10(hi/lo) < 2
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		base := math.Pow(10, e)
		for m := 1; m < 10; m++ {
			v := base * float64(m)
			if v < lo || v > hi {
				continue
			}
			label := ""
			if m == 1 || (dense && (m == 2 || m == 5)) {
				label = strconv.FormatFloat(v, 'g', 4, 64)
			}
			ticks = append(ticks, plot.Tick{Value: v, Label: label})
		}
	}
	return ticks
}

// addLine adds a line with a legend entry (when name is set).
func addLine(p *plot.Plot, xs, ys []float64, c color.Color, width vg.Length, name string) error {
	if len(xs) == 0 {
		return nil
	}
	pts := make(plotter.XYs, len(xs))
	for i := range xs {
		pts[i].X, pts[i].Y = xs[i], ys[i]
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	l.Color, l.Width = c, width
	p.Add(l)
	if name != "" {
		p.Legend.Add(name, l)
	}
	return nil
}

// addPoints adds small dots.
func addPoints(p *plot.Plot, xs, ys []float64, c color.Color, radius vg.Length, name string) error {
	if len(xs) == 0 {
		return nil
	}
	pts := make(plotter.XYs, len(xs))
	for i := range xs {
		pts[i].X, pts[i].Y = xs[i], ys[i]
	}
	s, err := plotter.NewScatter(pts)
	if err != nil {
		return err
	}
	s.GlyphStyle.Color, s.GlyphStyle.Radius = c, radius
	p.Add(s)
	if name != "" {
		p.Legend.Add(name, s)
	}
	return nil
}

// positive drops non-positive values, which a log axis cannot show.
func positive(xs, ys []float64) ([]float64, []float64) {
	var ox, oy []float64
	for i := range xs {
		if xs[i] > 0 && ys[i] > 0 {
			ox, oy = append(ox, xs[i]), append(oy, ys[i])
		}
	}
	return ox, oy
}

// cdfPanel draws the empirical CDF of each series' latencies.
func cdfPanel(title string, series []namedValues) (*plot.Plot, error) {
	p := newPanel(title, "client latency (ms, log)", "fraction of requests")
	logAxis(&p.X)
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top, p.Legend.Left = false, false
	for _, s := range series {
		x, y := cdf(s.Values)
		x, y = positive(x, y)
		// A step function: each value raises the curve at once.
		var sx, sy []float64
		for i := range x {
			prev := 0.0
			if i > 0 {
				prev = y[i-1]
			}
			sx, sy = append(sx, x[i], x[i]), append(sy, prev, y[i])
		}
		if err := addLine(p, sx, sy, s.Color, vg.Points(1.5), s.Name); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// namedValues is one series of a figure.
type namedValues struct {
	Name   string
	Color  color.Color
	Values []float64
}

// sortedKeys returns a map's keys in order.
func sortedKeys[K interface{ ~int | ~int64 | ~string }, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// gray is a gray of level v.
func gray(v uint8) color.Color { return color.RGBA{v, v, v, 0xff} }

// addGlyph adds one marker.
func addGlyph(p *plot.Plot, x, y float64, c color.Color, shape draw.GlyphDrawer, name string) error {
	s, err := plotter.NewScatter(plotter.XYs{{X: x, Y: y}})
	if err != nil {
		return err
	}
	s.GlyphStyle.Color, s.GlyphStyle.Shape, s.GlyphStyle.Radius = c, shape, vg.Points(3)
	p.Add(s)
	if name != "" {
		p.Legend.Add(name, s)
	}
	return nil
}

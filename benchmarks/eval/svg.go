package eval

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// Series is one line of a CDF figure.
type Series struct {
	Name   string
	Values []float64 // latencies in milliseconds
}

// strategyColor gives every strategy the same color in every figure.
func strategyColor(name string, i int) string {
	switch name {
	case StrategyCold:
		return "#7f7f7f"
	case StrategyFixed:
		return "#1f77b4"
	case StrategyRequestCentric:
		return "#d62728"
	case StrategyBandit:
		return "#2ca02c"
	}
	palette := []string{"#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"}
	return palette[i%len(palette)]
}

// WriteCDFSVG draws the empirical latency CDF of each series as a step
// line on a log-scaled latency axis (cold starts and warm requests differ
// by orders of magnitude, which a linear axis would flatten), as one
// self-contained SVG document.
func WriteCDFSVG(w io.Writer, title string, series []Series) error {
	const (
		// right leaves room for the longest legend entry,
		// "request-centric (n=500)", at 12px sans-serif.
		width, height          = 720, 400
		left, right, top, bott = 64, 230, 36, 48
		plotW, plotH           = width - left - right, height - top - bott
	)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, v := range s.Values {
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 1) { // no data: an empty but valid frame
		lo, hi = 1, 10
	}
	// Whole decades around the data keep the ticks readable.
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	xOf := func(v float64) float64 {
		v = math.Max(v, math.Pow(10, dlo))
		return left + (math.Log10(v)-dlo)/(dhi-dlo)*plotW
	}
	yOf := func(p float64) float64 { return top + (1-p)*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	// Grid and ticks.
	for d := dlo; d <= dhi; d++ {
		for m := 1; m < 10; m++ {
			v := float64(m) * math.Pow(10, d)
			if d == dhi && m > 1 {
				break
			}
			x := xOf(v)
			stroke, sw := "#eeeeee", 1
			if m == 1 {
				stroke = "#cccccc"
				fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, top+plotH+16, fmtMS(v))
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="%d"/>`+"\n", x, top, x, top+plotH, stroke, sw)
		}
	}
	for p := 0.0; p <= 1.0001; p += 0.25 {
		y := yOf(p)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#cccccc"/>`+"\n", left, y, left+plotW, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%.2f</text>`+"\n", left-6, y+4, p)
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>`+"\n", left, top, plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">client latency (ms, log scale)</text>`+"\n", left+plotW/2, height-10)
	fmt.Fprintf(&b, `<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">CDF</text>`+"\n", top+plotH/2, top+plotH/2)
	// Lines, as steps: the CDF jumps at each observed value.
	for i, s := range series {
		color := strategyColor(s.Name, i)
		xs, ps := cdf(s.Values)
		if len(xs) > 0 {
			var path strings.Builder
			fmt.Fprintf(&path, "M%.1f,%.1f", xOf(xs[0]), yOf(0))
			prev := 0.0
			for j, v := range xs {
				x := xOf(v)
				fmt.Fprintf(&path, " L%.1f,%.1f L%.1f,%.1f", x, yOf(prev), x, yOf(ps[j]))
				prev = ps[j]
			}
			fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.8"/>`+"\n", path.String(), color)
		}
		ly := top + 10 + i*20
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", left+plotW+10, ly, left+plotW+34, ly, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s (n=%d)</text>`+"\n", left+plotW+40, ly+4, html.EscapeString(s.Name), len(s.Values))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("svg: %w", err)
	}
	return nil
}

func fmtMS(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%gs", v/1000)
	case v >= 1:
		return fmt.Sprintf("%gms", v)
	default:
		return fmt.Sprintf("%gµs", v*1000)
	}
}

package eval

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// wellFormed decodes the whole document, which fails on any XML error.
func wellFormed(t *testing.T, doc []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
	}
}

func TestCDFIsMonotone(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
	}{
		{"empty", nil},
		{"one", []float64{3}},
		{"unsorted with ties", []float64{5, 1, 3, 3, 9, 0.5, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, y := cdf(tt.in)
			if len(x) != len(tt.in) || len(y) != len(tt.in) {
				t.Fatalf("lengths %d, %d; want %d", len(x), len(y), len(tt.in))
			}
			for i := 1; i < len(x); i++ {
				if x[i] < x[i-1] || y[i] <= y[i-1] {
					t.Errorf("not monotone at %d: x %v y %v", i, x, y)
				}
			}
			if len(y) > 0 && y[len(y)-1] != 1 {
				t.Errorf("CDF ends at %v, want 1", y[len(y)-1])
			}
		})
	}
}

func TestWriteCDFSVG(t *testing.T) {
	tests := []struct {
		name   string
		title  string
		series []Series
	}{
		{"three strategies", "bfs, E=4", []Series{
			{Name: StrategyCold, Values: []float64{120, 80, 35, 30, 29}},
			{Name: StrategyFixed, Values: []float64{40, 12, 11, 10}},
			{Name: StrategyRequestCentric, Values: []float64{9, 8.5, 300, 7}},
		}},
		{"escaping and no data", `a<b & "c"`, []Series{{Name: "x<y"}}},
		{"sub-millisecond", "fast", []Series{{Name: "bandit", Values: []float64{0.2, 0.3, 0.25}}}},
	}
	pathRe := regexp.MustCompile(`<path d="([^"]*)"`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteCDFSVG(&buf, tt.title, tt.series); err != nil {
				t.Fatal(err)
			}
			wellFormed(t, buf.Bytes())
			// Every drawn line goes right and up only (SVG y grows downwards).
			paths := pathRe.FindAllStringSubmatch(buf.String(), -1)
			drawn := 0
			for _, s := range tt.series {
				if len(s.Values) > 0 {
					drawn++
				}
			}
			if len(paths) != drawn {
				t.Fatalf("%d paths, want %d", len(paths), drawn)
			}
			for _, p := range paths {
				px, py := -1.0, 1e9
				for _, pt := range strings.Fields(strings.NewReplacer("M", "", "L", "").Replace(p[1])) {
					xy := strings.Split(pt, ",")
					x, _ := strconv.ParseFloat(xy[0], 64)
					y, _ := strconv.ParseFloat(xy[1], 64)
					if x < px || y > py {
						t.Fatalf("path not monotone at %s: %s", pt, p[1])
					}
					px, py = x, y
				}
			}
		})
	}
}

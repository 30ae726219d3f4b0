package eval

import (
	"math"
	"testing"
)

func TestMeansOfAll(t *testing.T) {
	id := func(x float64) float64 { return x }
	same := func(got, want float64) bool {
		return math.IsNaN(got) == math.IsNaN(want) && (math.IsNaN(got) || math.Abs(got-want) < 1e-12)
	}
	for _, tc := range []struct {
		name              string
		xs                []float64
		wantGeo, wantMean float64 // NaN: none
	}{
		{"every row", []float64{2, 8}, 4, 5},
		// Shares may be negative: the arithmetic mean takes them, the
		// geometric one only the positive values.
		{"shares of either sign", []float64{0.3, -0.1}, 0.3, 0.1},
		{"one row without a value", []float64{2, math.NaN(), 8}, math.NaN(), math.NaN()},
		{"no rows", nil, math.NaN(), math.NaN()},
	} {
		if got := geomeanOfAll(tc.xs, id); !same(got, tc.wantGeo) {
			t.Errorf("%s: geomeanOfAll %v, want %v", tc.name, got, tc.wantGeo)
		}
		if got := meanOfAll(tc.xs, id); !same(got, tc.wantMean) {
			t.Errorf("%s: meanOfAll %v, want %v", tc.name, got, tc.wantMean)
		}
	}
}

package eval

import (
	"math"
	"testing"
)

func TestGeomeanOfAll(t *testing.T) {
	id := func(x float64) float64 { return x }
	for _, tc := range []struct {
		name string
		xs   []float64
		want float64 // NaN: none
	}{
		{"every row", []float64{2, 8}, 4},
		{"one row without a value", []float64{2, math.NaN(), 8}, math.NaN()},
		{"no rows", nil, math.NaN()},
	} {
		got := geomeanOfAll(tc.xs, id)
		if math.IsNaN(tc.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tc.want) > 1e-12) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMeanOfAll(t *testing.T) {
	id := func(x float64) float64 { return x }
	for _, tc := range []struct {
		name string
		xs   []float64
		want float64 // NaN: none
	}{
		{"shares of either sign", []float64{0.3, -0.1}, 0.1},
		{"one row without a value", []float64{0.3, math.NaN()}, math.NaN()},
		{"no rows", nil, math.NaN()},
	} {
		got := meanOfAll(tc.xs, id)
		if math.IsNaN(tc.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tc.want) > 1e-12) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

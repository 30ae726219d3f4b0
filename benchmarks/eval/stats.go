package eval

import (
	"math"
	"sort"
)

// quantile returns the q-quantile (0..1) of xs with linear interpolation
// between closest ranks, or NaN for no data. xs is not modified.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// cdf returns the empirical CDF of xs as sorted x values and cumulative
// fractions: point i is (x_i, (i+1)/n).
func cdf(xs []float64) (x, y []float64) {
	x = append([]float64(nil), xs...)
	sort.Float64s(x)
	y = make([]float64, len(x))
	for i := range x {
		y[i] = float64(i+1) / float64(len(x))
	}
	return x, y
}

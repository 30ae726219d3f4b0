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

// stddev is the sample standard deviation of xs (NaN below two values).
func stddev(xs []float64) float64 {
	if len(xs) < 2 {
		return math.NaN()
	}
	m := mean(xs)
	var ss float64
	for _, x := range xs {
		ss += (x - m) * (x - m)
	}
	return math.Sqrt(ss / float64(len(xs)-1))
}

// geomean is the geometric mean of the positive values of xs (NaN when
// there are none).
func geomean(xs []float64) float64 {
	var s float64
	n := 0
	for _, x := range xs {
		if x > 0 && !math.IsInf(x, 0) {
			s += math.Log(x)
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return math.Exp(s / float64(n))
}

// ofAll is f of every row, or false when a row has no value (NaN): a mean
// over the rows that have one would not compare like for like with a mean
// over all of them.
func ofAll[T any](rows []T, f func(T) float64) ([]float64, bool) {
	xs := make([]float64, 0, len(rows))
	for _, r := range rows {
		v := f(r)
		if math.IsNaN(v) {
			return nil, false
		}
		xs = append(xs, v)
	}
	return xs, true
}

// geomeanOfAll is the geometric mean of f over rows, NaN unless every row
// has a value.
func geomeanOfAll[T any](rows []T, f func(T) float64) float64 {
	xs, ok := ofAll(rows, f)
	if !ok {
		return math.NaN()
	}
	return geomean(xs)
}

// meanOfAll is the arithmetic mean of f over rows (for shares, which may
// be negative), NaN unless every row has a value.
func meanOfAll[T any](rows []T, f func(T) float64) float64 {
	xs, ok := ofAll(rows, f)
	if !ok {
		return math.NaN()
	}
	return mean(xs)
}

// minMax returns the extremes of xs (NaN for none).
func minMax(xs []float64) (lo, hi float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	lo, hi = xs[0], xs[0]
	for _, x := range xs[1:] {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

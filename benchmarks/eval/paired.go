package eval

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// pairWindow is how far apart request-centric's and ours' runs of one seed
// may have started and still count as run next to each other. The plan runs
// them back to back, about two minutes apart; over an hour the machine's
// speed drifts by more than the two policies differ.
const pairWindow = 15 * time.Minute

// pair is one seed's request-centric and ours runs of a benchmark at a rate,
// started within pairWindow of each other.
type pair struct{ rc, ours RunResult }

// pairs lists, per benchmark and rate (cellKey without a strategy), the
// seeds whose request-centric run has an ours run of the same seed within
// pairWindow, the nearest one, ordered by seed.
func pairs(ds *Dataset) map[cellKey][]pair {
	type seedKey struct {
		bench string
		rate  int
		seed  int64
	}
	ours := map[seedKey][]RunResult{}
	for _, r := range ds.Runs {
		if r.Kind == KindRun && r.Strategy == StrategyBandit {
			k := seedKey{r.Benchmark, r.Rate, r.Seed}
			ours[k] = append(ours[k], r)
		}
	}
	out := map[cellKey][]pair{}
	for _, rc := range ds.Runs {
		if rc.Kind != KindRun || rc.Strategy != StrategyRequestCentric {
			continue
		}
		var best RunResult
		found, apart := false, pairWindow
		for _, o := range ours[seedKey{rc.Benchmark, rc.Rate, rc.Seed}] {
			if d := o.Started.Sub(rc.Started).Abs(); d <= apart {
				best, found, apart = o, true, d
			}
		}
		if found {
			k := cellKey{bench: rc.Benchmark, rate: rc.Rate}
			out[k] = append(out[k], pair{rc, best})
		}
	}
	for _, ps := range out {
		sort.Slice(ps, func(i, j int) bool { return ps[i].rc.Seed < ps[j].rc.Seed })
	}
	return out
}

// pairRatios is ours over request-centric within each pair, for the mean,
// the p90 and the p50 of client latency.
func pairRatios(ps []pair) (means, p90s, p50s []float64) {
	for _, p := range ps {
		o, rc := clientMS(p.ours.Samples), clientMS(p.rc.Samples)
		if len(o) == 0 || len(rc) == 0 {
			continue
		}
		means = append(means, mean(o)/mean(rc))
		p90s = append(p90s, quantile(o, 0.9)/quantile(rc, 0.9))
		p50s = append(p50s, quantile(o, 0.5)/quantile(rc, 0.5))
	}
	return means, p90s, p50s
}

// pairBound is HeadroomTable's bound built from one pair's own samples:
// the best any policy could have done in the same minutes. Its first
// worker starts as the pair's two first workers did; every later worker
// starts from the snapshot point whose restores, in either run, answered
// their first request fastest; every other request is as fast as the
// faster run's steady state. The pooled bound takes its parts from the
// fastest sitting of any run, which the policies never saw; this one
// leaves the machine's drift out. ok is false when the pair restored too
// few workers from any one point, or served too few later requests, to
// set it.
func pairBound(p pair) (pb pairBoundParts, ok bool) {
	both := &Dataset{Runs: []RunResult{p.rc, p.ours}}
	first, ok := bestFirstRequests(both)[p.rc.Benchmark]
	if !ok {
		return pb, false
	}
	steady := bestSteady(both, nil)[p.rc.Benchmark]
	n, e := len(p.rc.Samples), p.rc.Rate
	if e > 1 && len(steady) == 0 {
		return pb, false
	}
	var firstWorker [][]float64
	for _, r := range both.Runs {
		for _, s := range r.Samples {
			if s.Index < 0 || s.Index >= e {
				continue
			}
			for len(firstWorker) <= s.Index {
				firstWorker = append(firstWorker, nil)
			}
			firstWorker[s.Index] = append(firstWorker[s.Index], float64(s.ClientUS)/1000)
		}
	}
	return pairBoundParts{best: bound(n, e, firstWorker, first.samples, steady), first: first.samples, steady: steady}, true
}

// pairBoundParts is a pair bound's distribution and what it was built from.
type pairBoundParts struct {
	best          []weighted
	first, steady []float64 // its later workers' first requests; its other requests
}

// savings splits where the bound is faster than request-centric, as shares
// of request-centric's mean: on the first requests of the workers after
// the first (a faster snapshot point, no dump beside the restore), and on
// the other requests after the first worker (no dump freezes, a warmer
// snapshot). What neither covers, the floor and a restore's first request,
// no policy avoids under the protocol.
func (pb pairBoundParts) savings(rc RunResult) (onFirst, onOthers float64) {
	var firsts, others []float64
	for _, s := range rc.Samples {
		switch {
		case s.Index < rc.Rate: // the first worker, which starts cold in any policy
		case s.Served == 1:
			firsts = append(firsts, float64(s.ClientUS)/1000)
		default:
			others = append(others, float64(s.ClientUS)/1000)
		}
	}
	n, m := float64(len(rc.Samples)), mean(clientMS(rc.Samples))
	if len(firsts) > 0 {
		onFirst = (mean(firsts) - mean(pb.first)) * float64(len(firsts)) / n / m
	}
	if len(others) > 0 && len(pb.steady) > 0 {
		onOthers = (mean(others) - mean(pb.steady)) * float64(len(others)) / n / m
	}
	return onFirst, onOthers
}

// pairedRow is one benchmark at one rate over its pairs (or, with bench
// "", the geometric means over the benchmarks with pairs at that rate):
// ours over request-centric and the pair bound over request-centric,
// geometric means over the pairs; p50s over the floor's p50. NaN where not
// measured.
type pairedRow struct {
	bench                         string
	n                             int // pairs, or benchmarks in a geometric-mean row
	rate                          int
	mean, p90, p50                float64
	meanLo, meanHi                float64
	boundMean, boundP90, boundP50 float64
	oursP50                       float64
	// Where the bound saves on request-centric, as shares of its mean
	// (arithmetic means over the pairs, then over the benchmarks).
	savedOnFirst, savedOnOthers float64
}

// paired computes PairedTable's rows, each rate's followed by its
// geometric-mean row.
func paired(ds *Dataset) []pairedRow {
	g, ps, fl := gridOf(ds), pairs(ds), floors(ds)
	var out []pairedRow
	for _, e := range g.rates {
		var rows []pairedRow
		for _, b := range g.benchmarks {
			cell := ps[cellKey{bench: b, rate: e}]
			means, p90s, p50s := pairRatios(cell)
			if len(means) == 0 {
				continue
			}
			floorP50 := math.NaN()
			if len(fl[b]) > 0 {
				floorP50 = quantile(fl[b], 0.5)
			}
			var bMean, bP90, bP50, oP50, onFirst, onOthers []float64
			for _, p := range cell {
				pb, ok := pairBound(p)
				if !ok {
					continue
				}
				rc := clientMS(p.rc.Samples)
				bMean = append(bMean, weightedMean(pb.best)/mean(rc))
				bP90 = append(bP90, weightedQuantile(pb.best, 0.9)/quantile(rc, 0.9))
				bP50 = append(bP50, weightedQuantile(pb.best, 0.5)/floorP50)
				oP50 = append(oP50, quantile(clientMS(p.ours.Samples), 0.5)/floorP50)
				f, o := pb.savings(p.rc)
				onFirst, onOthers = append(onFirst, f), append(onOthers, o)
			}
			row := pairedRow{bench: b, n: len(means), rate: e, mean: geomean(means), p90: geomean(p90s), p50: geomean(p50s),
				boundMean: math.NaN(), boundP90: math.NaN(), boundP50: math.NaN(), oursP50: math.NaN(),
				savedOnFirst: math.NaN(), savedOnOthers: math.NaN()}
			row.meanLo, row.meanHi = minMax(means)
			if len(bP90) == len(cell) { // a bound for every pair: like for like with ours
				row.boundMean, row.boundP90 = geomean(bMean), geomean(bP90)
				row.savedOnFirst, row.savedOnOthers = mean(onFirst), mean(onOthers)
				if !math.IsNaN(floorP50) {
					row.boundP50, row.oursP50 = geomean(bP50), geomean(oP50)
				}
			}
			rows = append(rows, row)
		}
		if len(rows) == 0 {
			continue
		}
		gm := func(f func(pairedRow) float64) float64 { return geomeanOfAll(rows, f) }
		out = append(append(out, rows...), pairedRow{n: len(rows), rate: e, meanLo: math.NaN(), meanHi: math.NaN(),
			mean: gm(func(r pairedRow) float64 { return r.mean }), p90: gm(func(r pairedRow) float64 { return r.p90 }),
			p50: gm(func(r pairedRow) float64 { return r.p50 }), boundMean: gm(func(r pairedRow) float64 { return r.boundMean }),
			boundP90: gm(func(r pairedRow) float64 { return r.boundP90 }), boundP50: gm(func(r pairedRow) float64 { return r.boundP50 }),
			oursP50: gm(func(r pairedRow) float64 { return r.oursP50 }), savedOnFirst: meanOfAll(rows, func(r pairedRow) float64 { return r.savedOnFirst }),
			savedOnOthers: meanOfAll(rows, func(r pairedRow) float64 { return r.savedOnOthers })})
	}
	return out
}

// PairedTable compares ours with request-centric only where the two ran
// next to each other: the pooled comparison of the summary mixes runs made
// hours apart when one strategy was rerun, and the machine's drift over
// hours is as large as the difference being measured. Beside each, the
// pair bound: what any policy could have reached in the same minutes.
func PairedTable(ds *Dataset) Table {
	t := Table{
		Title: "Ours against request-centric, run next to each other",
		Note: "Only the seeds whose request-centric and ours runs started within " + strconv.Itoa(int(pairWindow.Minutes())) +
			" minutes of each other (the plan runs them back to back; a strategy rerun alone breaks the pair), so the machine's " +
			"drift between runs made hours apart is not counted as the policy's. Per pair, ours' mean, p90 and p50 against " +
			"request-centric's (reduction: positive is lower); per benchmark the geometric mean over its pairs and the range of " +
			"the mean's reduction; the all-benchmarks rows are geometric means over the benchmarks with a pair. " +
			"Bound: the bound of the table above built from each pair's own samples (its first worker as the pair's first " +
			"workers began, every later worker's first request from the snapshot point whose restores in either run answered " +
			"fastest, every other request as fast as the faster run's steady state): what any policy could have reached in the " +
			"same minutes. p50 over floor: ours' and the bound's median against the warm floor's, as in the target table.",
		Header: []string{"benchmark", "E", "pairs", "mean vs rc", "p90 vs rc", "p50 vs rc", "mean vs rc: range",
			"bound mean vs rc", "bound p90 vs rc", "ours p50 over floor", "bound p50 over floor"},
	}
	for _, r := range paired(ds) {
		name, pairsCol, rng := "all ("+strconv.Itoa(r.n)+")", "", ""
		if r.bench != "" {
			name, pairsCol, rng = r.bench, strconv.Itoa(r.n), reduction(r.meanHi, 1)+" to "+reduction(r.meanLo, 1)
		}
		t.Rows = append(t.Rows, []string{name, strconv.Itoa(r.rate), pairsCol,
			reduction(r.mean, 1), reduction(r.p90, 1), reduction(r.p50, 1), rng,
			reduction(r.boundMean, 1), reduction(r.boundP90, 1), signedPct(r.oursP50), signedPct(r.boundP50)})
	}
	return t
}

// PairedVerdict says, per rate the targets apply to, what the pair bound
// leaves for the targets and how far ours got next to request-centric,
// from the geometric-mean rows.
func PairedVerdict(ds *Dataset) string {
	var b strings.Builder
	for _, r := range paired(ds) {
		if r.bench != "" || (r.rate != 4 && r.rate != 20) || math.IsNaN(r.boundMean) {
			continue
		}
		cutMean, cutP90 := 1-r.boundMean, 1-r.boundP90
		plural := "s"
		if r.n == 1 {
			plural = ""
		}
		fmt.Fprintf(&b, "- E=%d, next to request-centric (%d benchmark%s): in the same minutes any policy could have cut the mean by at most %s "+
			"and the p90 by %s; ours cut them by %s and %s. ", r.rate, r.n, plural, fmtPct(cutMean), fmtPct(cutP90), fmtPct(1-r.mean), fmtPct(1-r.p90))
		var out []string
		if cutMean < targetCut {
			out = append(out, "the mean")
		}
		if cutP90 < targetCut {
			out = append(out, "the p90")
		}
		if len(out) > 0 {
			fmt.Fprintf(&b, "The %s target is out of reach for %s. ", fmtPct(targetCut), strings.Join(out, " and "))
		}
		if !math.IsNaN(r.savedOnFirst) {
			fmt.Fprintf(&b, "Where the bound saves on request-centric: %s of its mean on the first requests of restored workers "+
				"(a faster snapshot point, no dump beside the restore) and %s on their other requests (no dump freezes, a warmer snapshot); the rest is the floor "+
				"and each restore's first request, which no policy avoids under the protocol. ", fmtPct(r.savedOnFirst), fmtPct(r.savedOnOthers))
		}
		if !math.IsNaN(r.boundP50) {
			fmt.Fprintf(&b, "Median against the floor's: the bound's %s, ours %s (target: within +%s).", signedPct(r.boundP50),
				signedPct(r.oursP50), fmtPct(targetOverFloor))
		}
		b.WriteString("\n")
	}
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

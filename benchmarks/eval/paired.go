package eval

import (
	"sort"
	"strconv"
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

// PairedTable compares ours with request-centric only where the two ran
// next to each other: the pooled comparison of the summary mixes runs made
// hours apart when one strategy was rerun, and the machine's drift over
// hours is as large as the difference being measured.
func PairedTable(ds *Dataset) Table {
	g, ps := gridOf(ds), pairs(ds)
	t := Table{
		Title: "Ours against request-centric, run next to each other",
		Note: "Only the seeds whose request-centric and ours runs started within " + strconv.Itoa(int(pairWindow.Minutes())) +
			" minutes of each other (the plan runs them back to back; a strategy rerun alone breaks the pair), so the machine's " +
			"drift between runs made hours apart is not counted as the policy's. Per pair, ours' mean, p90 and p50 against " +
			"request-centric's (reduction: positive is lower); per benchmark the geometric mean over its pairs and the range of " +
			"the mean's reduction; the all-benchmarks rows are geometric means over the benchmarks with a pair.",
		Header: []string{"benchmark", "E", "pairs", "mean vs rc", "p90 vs rc", "p50 vs rc", "mean vs rc: range"},
	}
	for _, e := range g.rates {
		var bm, bp90, bp50 []float64
		for _, b := range g.benchmarks {
			means, p90s, p50s := pairRatios(ps[cellKey{bench: b, rate: e}])
			if len(means) == 0 {
				continue
			}
			lo, hi := minMax(means)
			m, p90, p50 := geomean(means), geomean(p90s), geomean(p50s)
			bm, bp90, bp50 = append(bm, m), append(bp90, p90), append(bp50, p50)
			t.Rows = append(t.Rows, []string{b, strconv.Itoa(e), strconv.Itoa(len(means)),
				reduction(m, 1), reduction(p90, 1), reduction(p50, 1), reduction(hi, 1) + " to " + reduction(lo, 1)})
		}
		if len(bm) == 0 {
			continue
		}
		t.Rows = append(t.Rows, []string{"all (" + strconv.Itoa(len(bm)) + ")", strconv.Itoa(e), "",
			reduction(geomean(bm), 1), reduction(geomean(bp90), 1), reduction(geomean(bp50), 1), ""})
	}
	return t
}

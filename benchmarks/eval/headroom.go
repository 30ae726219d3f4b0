package eval

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// minFirstSamples is how many first requests a snapshot point needs before
// it can count as the fastest way to start: fewer would let one lucky
// restore set the bound.
const minFirstSamples = 5

// firstRequest is the fastest way a new worker was seen to answer its first
// request in a benchmark's runs: a restore from one snapshot point, or a
// cold start.
type firstRequest struct {
	at      int // lineage requests the snapshot had served; -1 for a cold start
	samples []float64
}

// bestFirstRequests picks, per benchmark, the snapshot point (or cold start)
// whose workers answered their first request fastest (lowest mean among
// the points with enough samples, over every strategy and rate: the bound
// is about means, and a point with a fast median can hide slow restores).
func bestFirstRequests(ds *Dataset) map[string]firstRequest {
	byPoint := map[string]map[int][]float64{}
	for _, r := range ds.Runs {
		if r.Kind != KindRun {
			continue
		}
		for _, s := range r.Samples {
			if s.Served != 1 || s.Start == "" {
				continue
			}
			at := -1
			if s.Start == StartRestore {
				at = s.Lineage - 1
			}
			if byPoint[r.Benchmark] == nil {
				byPoint[r.Benchmark] = map[int][]float64{}
			}
			byPoint[r.Benchmark][at] = append(byPoint[r.Benchmark][at], float64(s.ClientUS)/1000)
		}
	}
	out := map[string]firstRequest{}
	for b, points := range byPoint {
		best, bestMean := firstRequest{}, math.Inf(1)
		for _, at := range sortedKeys(points) {
			xs := points[at]
			if len(xs) < minFirstSamples {
				continue
			}
			if m := mean(xs); m < bestMean {
				best, bestMean = firstRequest{at: at, samples: xs}, m
			}
		}
		if best.samples != nil {
			out[b] = best
		}
	}
	return out
}

// minSteadySamples is how many later requests a run needs before its
// steady state can stand in for the floor.
const minSteadySamples = 50

// bestSteady is, per benchmark, the fastest steady state seen: the warm
// floor, or the later requests (each worker's second on) of any run whose
// median is lower. The machine's speed drifts between runs, and a bound
// that took the floor alone would be beaten by a run made in a faster
// minute.
func bestSteady(ds *Dataset, floors map[string][]float64) map[string][]float64 {
	out := map[string][]float64{}
	for b, f := range floors {
		out[b] = f
	}
	for _, r := range ds.Runs {
		if r.Kind != KindRun {
			continue
		}
		var later []float64
		for _, s := range r.Samples {
			if s.Served > 1 {
				later = append(later, float64(s.ClientUS)/1000)
			}
		}
		if len(later) < minSteadySamples {
			continue
		}
		if cur, ok := out[r.Benchmark]; !ok || quantile(later, 0.5) < quantile(cur, 0.5) {
			out[r.Benchmark] = later
		}
	}
	return out
}

// weighted is a sample standing for a share of a latency distribution.
type weighted struct{ v, w float64 }

// component is a share of a request stream drawn from measured latencies.
type component struct {
	xs    []float64
	share float64
}

// mixture is the distribution of a stream whose requests come from the
// components in their shares, sorted by latency.
func mixture(cs ...component) []weighted {
	var out []weighted
	for _, c := range cs {
		if c.share <= 0 {
			continue
		}
		for _, x := range c.xs {
			out = append(out, weighted{x, c.share / float64(len(c.xs))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].v < out[j].v })
	return out
}

// weightedQuantile is the smallest value of sorted ws whose cumulative
// weight reaches q of the total (no interpolation: a mixture's quantile
// falls on one of its samples).
func weightedQuantile(ws []weighted, q float64) float64 {
	if len(ws) == 0 {
		return math.NaN()
	}
	var total, cum float64
	for _, w := range ws {
		total += w.w
	}
	for _, w := range ws {
		cum += w.w
		if cum >= q*total*(1-1e-12) {
			return w.v
		}
	}
	return ws[len(ws)-1].v
}

func weightedMean(ws []weighted) float64 {
	var sum, total float64
	for _, w := range ws {
		sum += w.v * w.w
		total += w.w
	}
	if total == 0 {
		return math.NaN()
	}
	return sum / total
}

// coldWorker is, per benchmark, the client latencies of the never-evicted
// worker's requests by position (index 0: its first, cold request), over
// seeds: how the first worker of every run starts, since a run deploys a
// new function with an empty pool.
func coldWorker(ds *Dataset) map[string][][]float64 {
	out := map[string][][]float64{}
	for _, r := range ds.Runs {
		if r.Kind != KindWarmup {
			continue
		}
		for _, s := range r.Samples {
			if s.Index < 0 || s.Index >= r.Requests {
				continue // not a position of this run
			}
			pos := out[r.Benchmark]
			for len(pos) <= s.Index {
				pos = append(pos, nil)
			}
			pos[s.Index] = append(pos[s.Index], float64(s.ClientUS)/1000)
			out[r.Benchmark] = pos
		}
	}
	return out
}

// bound is the latency distribution of a run of n requests at rate e
// under the best conceivable policy: the first worker as the never-evicted
// one began, every later worker's first request from first, the rest from
// steady.
func bound(n, e int, coldPos [][]float64, first, steady []float64) []weighted {
	if e <= 0 {
		e = max(n, 1) // never evicted: one worker serves the run
	}
	var cs []component
	firstWorker := min(e, n)
	head := min(firstWorker, len(coldPos))
	for _, xs := range coldPos[:head] {
		cs = append(cs, component{xs, 1})
	}
	later := n - firstWorker
	workers := (later + e - 1) / e
	cs = append(cs, component{first, float64(workers)},
		component{steady, float64(firstWorker - head + later - workers)})
	return mixture(cs...)
}

// minSpreadWorkers is how many workers restored from one snapshot in one
// run it takes to measure how much such workers differ.
const minSpreadWorkers = 3

// workerSpread is, per benchmark, how much workers that start alike differ:
// for each group of at least minSpreadWorkers workers restored from the
// same snapshot in the same run, each worker's median latency after its
// first request relative to the group's median of those; returned as the
// 10th and 90th percentile of the ratio. Strategies whose results differ by
// less than this spread differ by what the machine does, not by policy.
func workerSpread(ds *Dataset) map[string][2]float64 {
	ratios := map[string][]float64{}
	for _, r := range ds.Runs {
		if r.Kind != KindRun {
			continue
		}
		lat := map[int][]float64{}
		snapshotOf := map[int]int{}
		for _, s := range r.Samples {
			switch {
			case s.Served == 1 && s.Start == StartRestore:
				snapshotOf[s.Worker] = s.Lineage - 1
			case s.Served > 1:
				lat[s.Worker] = append(lat[s.Worker], float64(s.ClientUS)/1000)
			}
		}
		groups := map[int][]float64{}
		for w, at := range snapshotOf {
			if len(lat[w]) >= 2 {
				groups[at] = append(groups[at], quantile(lat[w], 0.5))
			}
		}
		for _, medians := range groups {
			if len(medians) < minSpreadWorkers {
				continue
			}
			m := quantile(medians, 0.5)
			for _, x := range medians {
				ratios[r.Benchmark] = append(ratios[r.Benchmark], x/m)
			}
		}
	}
	out := map[string][2]float64{}
	for b, xs := range ratios {
		out[b] = [2]float64{quantile(xs, 0.1), quantile(xs, 0.9)}
	}
	return out
}

// headroomRow is one benchmark at one rate (or, with bench "", the
// geometric means over the benchmarks at that rate): the bound's and ours'
// latency ratios to the floor's p50 (p50) and to request-centric (mean,
// p90), NaN where not measured.
type headroomRow struct {
	bench                         string
	n                             int // benchmarks in a geometric-mean row
	rate                          int
	first                         firstRequest
	boundP50, boundMean, boundP90 float64
	oursP50, oursMean, oursP90    float64
}

// headroom computes the bound of HeadroomTable per benchmark and rate, each
// rate's rows followed by its geometric-mean row.
func headroom(ds *Dataset) []headroomRow {
	g, cs, fl, first, coldPos := gridOf(ds), cells(ds), floors(ds), bestFirstRequests(ds), coldWorker(ds)
	steady := bestSteady(ds, fl)
	var out []headroomRow
	for _, e := range g.rates {
		var rows []headroomRow
		for _, b := range g.benchmarks {
			f, fr := fl[b], first[b]
			rc, ours := cs[cellKey{b, StrategyRequestCentric, e}], cs[cellKey{b, StrategyBandit, e}]
			if len(f) == 0 || fr.samples == nil || !rc.ok() {
				continue
			}
			n := int(rc.perRun(func(r RunResult) float64 { return float64(r.Requests) }))
			best := bound(n, e, coldPos[b], fr.samples, steady[b])
			floorP50, rcMean, rcP90 := quantile(f, 0.5), mean(rc.latency), quantile(rc.latency, 0.9)
			row := headroomRow{bench: b, rate: e, first: fr,
				boundP50: weightedQuantile(best, 0.5) / floorP50, boundMean: weightedMean(best) / rcMean,
				boundP90: weightedQuantile(best, 0.9) / rcP90, oursP50: math.NaN(), oursMean: math.NaN(), oursP90: math.NaN()}
			if ours.ok() {
				row.oursP50, row.oursMean, row.oursP90 = quantile(ours.latency, 0.5)/floorP50, mean(ours.latency)/rcMean, quantile(ours.latency, 0.9)/rcP90
			}
			rows = append(rows, row)
		}
		if len(rows) == 0 {
			continue
		}
		gm := func(f func(headroomRow) float64) float64 { return geomeanOfAll(rows, f) }
		out = append(append(out, rows...), headroomRow{n: len(rows), rate: e,
			boundP50: gm(func(r headroomRow) float64 { return r.boundP50 }), boundMean: gm(func(r headroomRow) float64 { return r.boundMean }),
			boundP90: gm(func(r headroomRow) float64 { return r.boundP90 }), oursP50: gm(func(r headroomRow) float64 { return r.oursP50 }),
			oursMean: gm(func(r headroomRow) float64 { return r.oursMean }), oursP90: gm(func(r headroomRow) float64 { return r.oursP90 })})
	}
	return out
}

// The targets of the policy against request-centric at E=4 and E=20.
const (
	targetCut       = 0.20 // mean and p90 at least this much below request-centric
	targetOverFloor = 0.03 // p50 at most this much above the floor
)

// HeadroomTable bounds what any snapshot policy could reach under the
// protocol, from the measured curves. A policy decides when to checkpoint
// and what a new worker restores; it cannot keep a worker past E requests.
// The best it could do is to start every worker the fastest way seen (the
// snapshot point whose restores answered their first request fastest), pay
// nothing for checkpoints, and have every later request as fast as the
// fastest steady state seen.
// The table compares that bound, and ours, with request-centric: when the
// bound's reduction is below the target, no policy reaches it here.
func HeadroomTable(ds *Dataset) Table {
	spread := workerSpread(ds)
	t := Table{
		Title: "What any policy could reach",
		Note: "A bound from the measured curves: a run's first worker starts cold (a run deploys a new function) and serves " +
			"its E requests as the never-evicted worker's first E did; every later worker starts the fastest way seen in the " +
			"benchmark's runs (first request: the snapshot point, by lineage request number, whose restores answered first fastest, " +
			"mean; \"cold\" when a cold start was faster); checkpoints cost nothing; every other request is as fast as the " +
			"fastest steady state seen (the warm floor, or the later requests of any run of the benchmark whose median was " +
			"lower: the machine's speed drifts between runs). " +
			"Bound and ours against request-centric: reduction of the mean and p90 (positive: lower); p50 over floor as in the table above. " +
			"The all-benchmarks rows are geometric means; where the bound is below the target (20% for mean and p90, 3% for p50), " +
			"no policy can meet it on this system. The bound is built from samples of other runs, so it carries their noise: " +
			"a strategy can beat it where its own run was quieter, most visibly in the tail at E=1. Worker spread: how much workers restored from the same snapshot in the same run " +
			"differ (10th to 90th percentile of each one's median latency after its first request, against their common median): " +
			"differences between strategies smaller than this are the machine's, not the policy's.",
		Header: []string{"benchmark", "E", "first request ms (at)", "bound p50 over floor", "bound mean vs rc", "bound p90 vs rc",
			"ours p50 over floor", "ours mean vs rc", "ours p90 vs rc", "worker spread"},
	}
	for _, r := range headroom(ds) {
		name, first, sp := "all ("+strconv.Itoa(r.n)+")", "", ""
		if r.bench != "" {
			at := "cold"
			if r.first.at >= 0 {
				at = strconv.Itoa(r.first.at)
			}
			name, first = r.bench, fmtMS(mean(r.first.samples))+" ("+at+")"
			if s, ok := spread[r.bench]; ok {
				sp = signedPct(s[0]) + " to " + signedPct(s[1])
			}
		}
		t.Rows = append(t.Rows, []string{name, strconv.Itoa(r.rate), first,
			signedPct(r.boundP50), reduction(r.boundMean, 1), reduction(r.boundP90, 1),
			signedPct(r.oursP50), reduction(r.oursMean, 1), reduction(r.oursP90, 1), sp})
	}
	return t
}

// HeadroomVerdict says, per rate the targets apply to, whether the bound
// leaves room for them and how far ours got, from the geometric-mean rows.
func HeadroomVerdict(ds *Dataset) string {
	var b strings.Builder
	for _, r := range headroom(ds) {
		if r.bench != "" || (r.rate != 4 && r.rate != 20) {
			continue
		}
		cutMean, cutP90 := 1-r.boundMean, 1-r.boundP90
		plural := "s"
		if r.n == 1 {
			plural = ""
		}
		fmt.Fprintf(&b, "- E=%d (%d benchmark%s), each part from the fastest runs seen: any policy could cut the mean by at most %s "+
			"and the p90 by %s against request-centric, ",
			r.rate, r.n, plural, fmtPct(cutMean), fmtPct(cutP90))
		switch {
		case cutMean < targetCut && cutP90 < targetCut:
			fmt.Fprintf(&b, "so the %s target is out of reach for both here", fmtPct(targetCut))
		case cutMean < targetCut:
			fmt.Fprintf(&b, "so the %s target is out of reach for the mean here", fmtPct(targetCut))
		case cutP90 < targetCut:
			fmt.Fprintf(&b, "so the %s target is out of reach for the p90 here", fmtPct(targetCut))
		default:
			fmt.Fprintf(&b, "room for the %s target across sittings (the bound next to request-centric, below, keeps to one)", fmtPct(targetCut))
		}
		fmt.Fprintf(&b, "; its median would be %s against the floor's (target: within +%s). ", signedPct(r.boundP50), fmtPct(targetOverFloor))
		if !math.IsNaN(r.oursMean) {
			fmt.Fprintf(&b, "Ours: mean %s and p90 %s below request-centric, median %s against the floor's.",
				fmtPct(1-r.oursMean), fmtPct(1-r.oursP90), signedPct(r.oursP50))
		}
		b.WriteString("\n")
	}
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

// signedPct formats a ratio as a signed percentage above (or below) 1.
func signedPct(ratio float64) string {
	if ratio >= 1 {
		return "+" + fmtPct(ratio-1)
	}
	return fmtPct(ratio - 1)
}

package eval

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator/sim"
)

// Calibration fits the simulator's model (orchestrator/sim.Model) to one
// benchmark's real traces, then runs the simulator on the same grid, so
// simulated and real latencies can be compared:
//
//   - the warm curve: the median client latency at each lineage request
//     number of the never-evicted worker (warm-up runs), smoothed by a
//     running median of 5, becomes Model.Curve; an exponential
//     Floor + (Peak-Floor)·exp(-(r-1)/Tau) is fitted too, for the table;
//   - noise and GC pauses: the spread of the warm-up latencies around the
//     curve (1.4826·MAD of the log ratio) and the share and size of those
//     more than 3 sigma above it;
//   - first-request costs: the median excess over the curve of cold
//     workers' and restored workers' first requests, in every run;
//   - the checkpoint's cost: the median excess of the request a worker
//     served right after one that triggered a checkpoint (from the
//     provider log);
//   - snapshot size: the median stored size.
type Calibration struct {
	Benchmark string
	Model     sim.Model
	// Samples behind each part of the fit.
	WarmupN, ColdFirstN, RestoreFirstN, HeldN int
	// RealCurve is the median client latency (ms) by lineage request
	// number 1..len of the warm-up runs.
	RealCurve []float64
	// SimWarmup is a simulated never-evicted worker, ms per request.
	SimWarmup []float64
	Rows      []CalibrationRow
}

// CalibrationRow compares one strategy and rate, pooled over seeds.
type CalibrationRow struct {
	Strategy                   string
	Rate                       int
	RealMean, RealP50, RealP90 float64 // ms
	SimMean, SimP50, SimP90    float64 // ms
}

// Calibrate fits and simulates every benchmark with a warm-up run.
func Calibrate(ctx context.Context, ds *Dataset) ([]Calibration, error) {
	var out []Calibration
	for _, b := range benchmarkOrder(ds.Runs) {
		c, ok := fitModel(ds.Runs, b)
		if !ok {
			continue
		}
		if err := c.simulate(ctx, ds.Runs); err != nil {
			return nil, fmt.Errorf("calibrate %s: %w", b, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// fitModel fits the model of benchmark b; ok is false without a warm-up run.
func fitModel(runs []RunResult, b string) (Calibration, bool) {
	c := Calibration{Benchmark: b}
	byR := map[int][]float64{}
	type obs struct {
		r  int
		ms float64
	}
	var warm []obs
	for _, r := range runs {
		if r.Benchmark != b || r.Kind != KindWarmup {
			continue
		}
		for _, s := range r.Samples {
			lin := s.Lineage
			if lin < 1 {
				lin = s.Index + 1
			}
			ms := float64(s.ClientUS) / 1000
			byR[lin] = append(byR[lin], ms)
			warm = append(warm, obs{lin, ms})
		}
	}
	if len(byR) < 3 {
		return c, false
	}
	c.WarmupN = len(warm)
	n := 0
	for r := range byR {
		n = max(n, r)
	}
	c.RealCurve = make([]float64, n)
	for r := 1; r <= n; r++ {
		c.RealCurve[r-1] = quantile(byR[r], 0.5)
	}
	// The first request carries the worker's start (InitCost below), so
	// the curve starts at the second request's level.
	curve := runningMedian(c.RealCurve, 5)
	if n > 1 {
		curve[0] = curve[1]
	}
	m := sim.Model{Curve: make([]time.Duration, n)}
	for i, v := range curve {
		m.Curve[i] = msDuration(v)
	}
	warmAt := func(r int) float64 { return float64(m.Warm(r)) / float64(time.Millisecond) }

	// Exponential fit, for the table: the floor is the second half's
	// median; Tau by a grid search, Peak by least squares given Tau.
	var tail []float64
	for _, o := range warm {
		if o.r > n/2 {
			tail = append(tail, o.ms)
		}
	}
	floor := quantile(tail, 0.5)
	bestErr := math.Inf(1)
	for tau := 0.5; tau <= 2*float64(n); tau *= 1.1 {
		var num, den float64
		for r := 2; r <= n; r++ {
			if math.IsNaN(c.RealCurve[r-1]) {
				continue
			}
			e := math.Exp(-float64(r-1) / tau)
			num += (c.RealCurve[r-1] - floor) * e
			den += e * e
		}
		a := math.Max(0, num/den)
		var sse float64
		for r := 2; r <= n; r++ {
			y := c.RealCurve[r-1]
			if math.IsNaN(y) || y <= 0 {
				continue
			}
			d := math.Log(y) - math.Log(floor+a*math.Exp(-float64(r-1)/tau))
			sse += d * d
		}
		if sse < bestErr {
			bestErr = sse
			m.Floor, m.Peak, m.Tau = msDuration(floor), msDuration(floor+a), tau
		}
	}

	// Noise and GC pauses around the curve.
	var logs []float64
	for _, o := range warm {
		if o.r >= 2 && o.ms > 0 {
			logs = append(logs, math.Log(o.ms/warmAt(o.r)))
		}
	}
	med := quantile(logs, 0.5)
	var dev []float64
	for _, l := range logs {
		dev = append(dev, math.Abs(l-med))
	}
	m.Noise = 1.4826 * quantile(dev, 0.5)
	var pauses []float64
	for _, o := range warm {
		if o.r >= 2 && o.ms > 0 && math.Log(o.ms/warmAt(o.r)) > med+3*m.Noise && o.ms-warmAt(o.r) > 1 {
			pauses = append(pauses, o.ms-warmAt(o.r))
		}
	}
	if len(logs) > 0 && len(pauses) > 0 {
		m.GCProb = float64(len(pauses)) / float64(len(logs))
		m.GCMin, m.GCMax = msDuration(quantile(pauses, 0.1)), msDuration(quantile(pauses, 0.9))
	}

	// First requests and the request held by a checkpoint, in all runs.
	var coldFirst, restoreFirst, held, sizes []float64
	for _, r := range runs {
		if r.Benchmark != b {
			continue
		}
		if r.PackedBytes > 0 {
			sizes = append(sizes, r.PackedBytes)
		}
		triggers := map[int]bool{}
		for _, e := range r.Events {
			if e.Kind == EventCheckpoint && e.Index >= 0 {
				triggers[e.Index] = true
			}
		}
		for i, s := range r.Samples {
			if s.Lineage < 1 {
				continue
			}
			excess := float64(s.ClientUS)/1000 - warmAt(s.Lineage)
			switch {
			case s.Start == StartCold:
				coldFirst = append(coldFirst, excess)
			case s.Start == StartRestore:
				restoreFirst = append(restoreFirst, excess)
			case i > 0 && triggers[r.Samples[i-1].Index] && r.Samples[i-1].Worker == s.Worker:
				held = append(held, excess)
			}
		}
	}
	c.ColdFirstN, c.RestoreFirstN, c.HeldN = len(coldFirst), len(restoreFirst), len(held)
	m.InitCost = msDuration(math.Max(0, nanTo0(quantile(coldFirst, 0.5))))
	m.RestoreCost = msDuration(math.Max(0, nanTo0(quantile(restoreFirst, 0.5))))
	m.CheckpointCost = msDuration(math.Max(0, nanTo0(quantile(held, 0.5))))
	m.SnapshotSize = int64(nanTo0(quantile(sizes, 0.5)))
	c.Model = m
	return c, true
}

// simulate runs the fitted model through the real engine on the grid the
// benchmark ran on (same strategies, rates, requests, seeds and engine
// parameters) and pools the latencies over seeds.
func (c *Calibration) simulate(ctx context.Context, runs []RunResult) error {
	type key struct {
		strategy string
		rate     int
	}
	real := map[key][]float64{}
	seeds := map[int64]bool{}
	var proto Protocol
	var warmN int
	for _, r := range runs {
		if r.Benchmark != c.Benchmark {
			continue
		}
		if r.Kind == KindWarmup {
			warmN = max(warmN, r.Requests)
			continue
		}
		k := key{r.Strategy, r.Rate}
		real[k] = append(real[k], clientMS(r.Samples)...)
		seeds[r.Seed] = true
		proto = r.Protocol
	}
	base := orchestrator.DefaultConfig()
	if proto.PoolCapacity > 0 {
		base.PoolCapacity = proto.PoolCapacity
	}
	if proto.CheckpointAt > 0 {
		base.CheckpointAt = proto.CheckpointAt
	}
	simulated := map[key][]float64{}
	for _, seed := range sortedKeys(seeds) {
		for k := range real {
			res, err := sim.Run(ctx, sim.Options{Strategies: []string{k.strategy}, Rates: []int{k.rate}, Requests: proto.Requests,
				Seed: seed + 1, Model: c.Model, Base: base})
			if err != nil {
				return err
			}
			for _, row := range res.Rows {
				for _, l := range row.Latencies {
					simulated[k] = append(simulated[k], float64(l)/float64(time.Millisecond))
				}
			}
		}
	}
	if warmN > 0 {
		res, err := sim.Run(ctx, sim.Options{Strategies: []string{StrategyCold}, Rates: []int{0}, Requests: warmN, Seed: 1, Model: c.Model, Base: base})
		if err != nil {
			return err
		}
		for _, l := range res.Rows[0].Latencies {
			c.SimWarmup = append(c.SimWarmup, float64(l)/float64(time.Millisecond))
		}
	}
	keys := make([]key, 0, len(real))
	for k := range real {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].rate != keys[j].rate {
			return keys[i].rate > keys[j].rate
		}
		return strategyRank(keys[i].strategy) < strategyRank(keys[j].strategy)
	})
	for _, k := range keys {
		rl, sl := real[k], simulated[k]
		c.Rows = append(c.Rows, CalibrationRow{Strategy: k.strategy, Rate: k.rate,
			RealMean: mean(rl), RealP50: quantile(rl, 0.5), RealP90: quantile(rl, 0.9),
			SimMean: mean(sl), SimP50: quantile(sl, 0.5), SimP90: quantile(sl, 0.9)})
	}
	return nil
}

// runningMedian smooths xs with a centred window of w values (NaNs skipped).
func runningMedian(xs []float64, w int) []float64 {
	out := make([]float64, len(xs))
	for i := range xs {
		var win []float64
		for j := max(0, i-w/2); j <= min(len(xs)-1, i+w/2); j++ {
			if !math.IsNaN(xs[j]) {
				win = append(win, xs[j])
			}
		}
		out[i] = quantile(win, 0.5)
	}
	return out
}

func msDuration(ms float64) time.Duration {
	if math.IsNaN(ms) {
		return 0
	}
	return time.Duration(ms * float64(time.Millisecond))
}

func nanTo0(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return v
}

// CalibrationTable lists the fitted parameters per benchmark.
func CalibrationTable(cals []Calibration) Table {
	t := Table{
		Title: "Fitted model",
		Note: "Per benchmark, the simulator's model fitted to the real traces (orchestrator/sim.Model). Floor, peak and tau: the exponential " +
			"fit of the warm-up curve (the simulation uses the measured curve itself). Noise: log-normal sigma around the curve; GC: share of " +
			"requests more than 3 sigma above it and their 10th-90th percentile excess. Init, restore: median excess of cold and restored " +
			"workers' first requests over the curve; checkpoint: of the request right after one that triggered a checkpoint (n: samples).",
		Header: []string{"benchmark", "floor ms", "peak ms", "tau (requests)", "noise", "GC share", "GC pause ms", "init ms (n)", "restore ms (n)",
			"checkpoint ms (n)", "snapshot MiB"},
	}
	for _, c := range cals {
		m := c.Model
		t.Rows = append(t.Rows, []string{c.Benchmark, fmtMS(durMS(m.Floor)), fmtMS(durMS(m.Peak)), fmtF(m.Tau, 1), fmtF(m.Noise, 2),
			fmtPct(m.GCProb), fmt.Sprintf("%s-%s", fmtMS(durMS(m.GCMin)), fmtMS(durMS(m.GCMax))),
			fmt.Sprintf("%s (%d)", fmtMS(durMS(m.InitCost)), c.ColdFirstN), fmt.Sprintf("%s (%d)", fmtMS(durMS(m.RestoreCost)), c.RestoreFirstN),
			fmt.Sprintf("%s (%d)", fmtMS(durMS(m.CheckpointCost)), c.HeldN), mib(float64(m.SnapshotSize))})
	}
	return t
}

// CalibrationCompareTable sets simulated against real latencies.
func CalibrationCompareTable(cals []Calibration, t int) Table {
	tb := Table{
		Title: "Simulated against real",
		Note: "Client latency of the real runs against the simulator (the real engine driven by the fitted model) on the same grid, " +
			"pooled over seeds; sim/real is the ratio of the means.",
		Header: []string{"benchmark", "E", "strategy", "real p50", "sim p50", "real p90", "sim p90", "real mean", "sim mean", "sim/real mean"},
	}
	for _, c := range cals {
		for _, r := range c.Rows {
			tb.Rows = append(tb.Rows, []string{c.Benchmark, fmt.Sprint(r.Rate), strategyLabel(r.Strategy, t), fmtMS(r.RealP50), fmtMS(r.SimP50),
				fmtMS(r.RealP90), fmtMS(r.SimP90), fmtMS(r.RealMean), fmtMS(r.SimMean), fmtF(r.SimMean/r.RealMean, 2)})
		}
	}
	return tb
}

func durMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// calibrationFigures draws, per benchmark, the real warm-up curve against
// the model and a simulated never-evicted worker, and the simulated
// against the real mean latency of every strategy and rate.
func calibrationFigures(cals []Calibration) ([]figure, error) {
	var warm, cmp []*plot.Plot
	for _, c := range cals {
		p := newPanel(c.Benchmark, "lineage request number", "client latency (ms, log)")
		logAxis(&p.Y)
		var rx, ry []float64
		for i, v := range c.RealCurve {
			rx, ry = append(rx, float64(i+1)), append(ry, v)
		}
		x, y := positive(rx, ry)
		if err := addPoints(p, x, y, gray(0x55), vg.Points(1.5), "real (median)"); err != nil {
			return nil, err
		}
		var sx, sy []float64
		for i, v := range c.SimWarmup {
			sx, sy = append(sx, float64(i+1)), append(sy, v)
		}
		x, y = positive(sx, sy)
		if err := addLine(p, x, y, palette(0), vg.Points(0.8), "simulated"); err != nil {
			return nil, err
		}
		var mx, my []float64
		for r := 1; r <= len(c.RealCurve); r++ {
			m := c.Model
			m.Curve = nil // the exponential fit
			mx, my = append(mx, float64(r)), append(my, durMS(m.Warm(r)))
		}
		x, y = positive(mx, my)
		if err := addLine(p, x, y, palette(1), vg.Points(1.2), "exponential fit"); err != nil {
			return nil, err
		}
		warm = append(warm, p)

		q := newPanel(c.Benchmark, "real mean (ms, log)", "simulated mean (ms, log)")
		logAxis(&q.X)
		logAxis(&q.Y)
		lo, hi := math.Inf(1), 0.0
		seen := map[string]bool{}
		for _, r := range c.Rows {
			if r.RealMean <= 0 || r.SimMean <= 0 {
				continue
			}
			lo, hi = math.Min(lo, math.Min(r.RealMean, r.SimMean)), math.Max(hi, math.Max(r.RealMean, r.SimMean))
			name := ""
			if !seen[r.Strategy] {
				name, seen[r.Strategy] = strategyLabel(r.Strategy, 1), true
			}
			if err := addGlyph(q, r.RealMean, r.SimMean, strategyColor(r.Strategy), rateGlyph(r.Rate), name); err != nil {
				return nil, err
			}
		}
		if hi > 0 {
			if err := addLine(q, []float64{lo / 1.2, hi * 1.2}, []float64{lo / 1.2, hi * 1.2}, gray(0x99), vg.Points(0.8), "sim = real"); err != nil {
				return nil, err
			}
		}
		q.Legend.Top, q.Legend.Left = true, true
		cmp = append(cmp, q)
	}
	return []figure{
		{Name: "calibration-warmup", Panels: warm, Cols: 3, PanelW: 4 * vg.Inch, PanelH: 3 * vg.Inch},
		{Name: "calibration-means", Panels: cmp, Cols: 3, PanelW: 4 * vg.Inch, PanelH: 3.2 * vg.Inch},
	}, nil
}

// rateGlyph marks eviction rates: E=20 circle, E=4 triangle, E=1 square.
func rateGlyph(rate int) draw.GlyphDrawer {
	switch {
	case rate >= 20:
		return draw.CircleGlyph{}
	case rate >= 4:
		return draw.TriangleGlyph{}
	}
	return draw.SquareGlyph{}
}

// WriteCalibration writes the calibration figures (PNG, SVG) and tables
// (CSV) into dir and returns the files written.
func WriteCalibration(dir string, cals []Calibration) ([]string, error) {
	figs, err := calibrationFigures(cals)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, f := range figs {
		p, err := f.write(dir)
		if err != nil {
			return nil, err
		}
		paths = append(paths, p...)
	}
	for name, t := range map[string]Table{"calibration.csv": CalibrationTable(cals), "calibration-compare.csv": CalibrationCompareTable(cals, 1)} {
		path := filepath.Join(dir, name)
		if err := writeFile(path, t.WriteCSV); err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	sort.Strings(paths)
	return paths, nil
}

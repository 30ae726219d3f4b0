// Package sim drives a real orchestrator.Engine (on a temporary bbolt file)
// with a synthetic model of JIT warm-up latency, so the strategies can be
// compared over thousands of evictions in seconds, without CRIU. It mirrors
// the paper's evaluation protocol: sequential requests, a worker is evicted
// every E requests (or when its lineage reaches the horizon), the next
// request starts a fresh worker from the engine's plan.
package sim

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
)

// Model is the synthetic latency model. The latency of the r-th request
// since the cold start (its lineage request number) is
//
//	L(r) = Floor + (Peak-Floor)*exp(-(r-1)/Tau), times exp(Noise*Z),
//
// (or Curve[r-1] times the noise, when Curve is set) plus InitCost on a cold
// worker's first request, RestoreCost on a restored worker's first request,
// CheckpointCost on the request after one that triggered a checkpoint, and
// with probability GCProb a pause drawn uniformly from [GCMin, GCMax].
type Model struct {
	Floor, Peak  time.Duration // fully warm / first-request (interpreted) latency
	Tau          float64       // warm-up constant, in requests
	Noise        float64       // log-normal sigma of the multiplicative noise
	GCProb       float64
	GCMin, GCMax time.Duration
	InitCost     time.Duration // process start + runtime init, paid by a cold worker's first request
	RestoreCost  time.Duration // CRIU restore + page-in, paid by a restored worker's first request
	SnapshotSize int64         // reported size of every snapshot
	// Curve, when set, replaces the exponential warm-up: Curve[r-1] is the
	// noise-free latency of lineage request number r, and its last entry
	// holds beyond its end. Calibration from real traces fills it, because
	// measured warm-up curves are not exponential (the JVM's tiered
	// compilation makes steps).
	Curve []time.Duration
	// CheckpointCost is added to the request served right after one that
	// triggered a checkpoint, by the same worker or, when that worker was
	// evicted, by its successor: the real agent holds calls back while CRIU
	// dumps, and the dump and the packing of the image run on the CPUs that
	// restore the successor and serve its first request. Zero keeps
	// checkpoints free, as they were before calibration existed.
	CheckpointCost time.Duration
	// RegisterDelay is how many more requests are served before a
	// checkpoint's snapshot is in the pool (the dump, packing and upload
	// take hundreds of ms, during which the successor of an evicted worker
	// is already planned). Zero registers it before the next request.
	RegisterDelay int
}

// isZero reports an unset model (Model holds a slice, so == cannot).
func (m Model) isZero() bool { return reflect.ValueOf(m).IsZero() }

// Warm is the noise-free latency of lineage request number r (r >= 1)
// before any first-request, checkpoint or GC cost.
func (m Model) Warm(r int) time.Duration {
	if len(m.Curve) > 0 {
		return m.Curve[min(max(r, 1), len(m.Curve))-1]
	}
	return time.Duration(float64(m.Floor) + float64(m.Peak-m.Floor)*math.Exp(-float64(r-1)/m.Tau))
}

// DefaultModel is a slowly warming function: 100 ms interpreted, 10 ms once
// the JIT has warmed up over ~100 requests, 250 ms to start cold, 30 ms to
// restore (Table 4 of the artifact: restores of 30-80 ms), a 5-50 ms GC
// pause on 3% of requests. A checkpoint costs the next request 20 ms and
// reaches the pool two requests later, as measured on the real system (the
// request after a checkpoint was 12-45 ms slower; dump, packing and upload
// took two to three requests at the evaluation's spacing). The 13 measured
// benchmarks warm up within 3-20 requests; this curve is the harder case.
func DefaultModel() Model {
	return Model{
		Floor: 10 * time.Millisecond, Peak: 100 * time.Millisecond, Tau: 40, Noise: 0.1,
		GCProb: 0.03, GCMin: 5 * time.Millisecond, GCMax: 50 * time.Millisecond,
		InitCost: 250 * time.Millisecond, RestoreCost: 30 * time.Millisecond,
		CheckpointCost: 20 * time.Millisecond, RegisterDelay: 2,
		SnapshotSize: 55 << 20,
	}
}

// latency draws one request's latency. It always consumes exactly three
// random numbers so that every strategy sees the same noise at the same
// request index (common random numbers make the comparison less noisy).
func (m Model) latency(rng *rand.Rand, r int, first, restored, afterCheckpoint bool) time.Duration {
	z, gcU, gcAmt := rng.NormFloat64(), rng.Float64(), rng.Float64()
	d := float64(m.Warm(r)) * math.Exp(m.Noise*z)
	if first {
		if restored {
			d += float64(m.RestoreCost)
		} else {
			d += float64(m.InitCost)
		}
	}
	if afterCheckpoint {
		d += float64(m.CheckpointCost)
	}
	if gcU < m.GCProb {
		d += float64(m.GCMin) + gcAmt*float64(m.GCMax-m.GCMin)
	}
	return time.Duration(d)
}

// Options selects what to simulate.
type Options struct {
	Strategies []string // default: cold, fixed, request-centric, bandit
	Rates      []int    // eviction rates E; default 20, 4, 1
	Requests   int      // sequential requests per (strategy, E); default 5000
	Seed       int64    // default 1
	Model      Model    // zero value = DefaultModel()
	// Base supplies everything but Strategy, EvictAfter and Seed; zero value =
	// orchestrator.DefaultConfig() with the evaluation's pool capacity 12.
	Base orchestrator.Config
	Dir  string // directory for the temporary bbolt file; "" = os.TempDir()
}

func (o Options) withDefaults() Options {
	if len(o.Strategies) == 0 {
		o.Strategies = orchestrator.Strategies()
	}
	if len(o.Rates) == 0 {
		o.Rates = []int{20, 4, 1}
	}
	if o.Requests <= 0 {
		o.Requests = 5000
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Model.isZero() {
		o.Model = DefaultModel()
	}
	if o.Base == (orchestrator.Config{}) {
		o.Base = orchestrator.DefaultConfig()
		o.Base.PoolCapacity = 12
	}
	return o
}

// Row is the outcome of one (strategy, E) run.
type Row struct {
	Strategy    string        // label, e.g. "fixed(1)"
	EvictAfter  int           // E
	Requests    int           // requests simulated
	Median, P90 time.Duration // of per-request latency
	Mean        time.Duration
	ColdStarts  uint64
	Restores    uint64
	Checkpoints uint64          // snapshots taken (each one is a dump and an upload)
	Pruned      int             // snapshots deleted by pruning
	PeakPool    int             // largest pool size seen
	Latencies   []time.Duration `json:"-"`
}

// Results holds every row, strategies in the order given, rates in order.
type Results struct {
	Rows []Row
}

// Find returns the row for (strategy label or name, E).
func (r Results) Find(strategy string, e int) (Row, bool) {
	for _, row := range r.Rows {
		if row.EvictAfter == e && (row.Strategy == strategy || strings.SplitN(row.Strategy, "(", 2)[0] == strategy) {
			return row, true
		}
	}
	return Row{}, false
}

func label(cfg orchestrator.Config) string {
	if cfg.Strategy == orchestrator.StrategyFixed {
		return fmt.Sprintf("fixed(%d)", cfg.CheckpointAt)
	}
	return cfg.Strategy
}

// Run simulates every (strategy, E) combination on one temporary bbolt file
// (opened with NoSync: durability is irrelevant here and fsync would
// dominate) and returns their latency statistics.
func Run(ctx context.Context, opts Options) (Results, error) {
	opts = opts.withDefaults()
	dir, err := os.MkdirTemp(opts.Dir, "pronghorn-sim-")
	if err != nil {
		return Results{}, fmt.Errorf("sim: temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	db, err := bbolt.Open(filepath.Join(dir, "sim.db"), 0o600, &bbolt.Options{NoSync: true, NoFreelistSync: true})
	if err != nil {
		return Results{}, fmt.Errorf("sim: open bbolt: %w", err)
	}
	defer db.Close()
	eng, err := orchestrator.Open(db)
	if err != nil {
		return Results{}, err
	}
	// Deferred after db.Close, so it runs first: the engine's final flush
	// needs the file open.
	defer eng.Close(ctx)
	var res Results
	for _, e := range opts.Rates {
		for _, s := range opts.Strategies {
			cfg := opts.Base
			cfg.Strategy, cfg.EvictAfter = s, e
			cfg.Seed = opts.Seed*1000003 + int64(e)
			row, err := runOne(ctx, eng, cfg, opts)
			if err != nil {
				return Results{}, err
			}
			res.Rows = append(res.Rows, row)
		}
	}
	return res, nil
}

func runOne(ctx context.Context, eng *orchestrator.Engine, cfg orchestrator.Config, opts Options) (Row, error) {
	fn := fmt.Sprintf("sim/%s/%d", cfg.Strategy, cfg.EvictAfter)
	if err := eng.Configure(ctx, fn, cfg); err != nil {
		return Row{}, fmt.Errorf("sim: configure %s: %w", fn, err)
	}
	// Same model noise for every strategy at a given E.
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), uint64(cfg.EvictAfter)))
	row := Row{Strategy: label(cfg), EvictAfter: cfg.EvictAfter, Requests: opts.Requests,
		Latencies: make([]time.Duration, 0, opts.Requests)}
	var w *orchestrator.Worker
	pool, seq := 0, 0
	// held: the previous request triggered a checkpoint, so this one waits
	// for the dump or shares the CPUs with it (Model.CheckpointCost).
	held := false
	// inFlight: checkpoints taken and not yet registered, in order.
	type inFlight struct {
		s   orchestrator.Snapshot
		due int // index of the request before which it is registered
	}
	var flying []inFlight
	for i := 0; i < opts.Requests; i++ {
		for len(flying) > 0 && flying[0].due <= i {
			if err := eng.Register(ctx, fn, flying[0].s); err != nil {
				return Row{}, fmt.Errorf("sim: %w", err)
			}
			flying = flying[1:]
			pool++
			row.PeakPool = max(row.PeakPool, pool)
		}
		if w == nil {
			plan, err := eng.OnStart(ctx, fn, fmt.Sprintf("w%d", i))
			if err != nil {
				return Row{}, fmt.Errorf("sim: %w", err)
			}
			row.Pruned += len(plan.Pruned)
			pool -= len(plan.Pruned)
			w = &plan.Worker
		}
		lat := opts.Model.latency(rng, w.Lineage+1, w.Served == 0, w.Snapshot != "", held)
		held = false
		row.Latencies = append(row.Latencies, lat)
		act, err := eng.OnRequest(ctx, fn, w, lat)
		if err != nil {
			return Row{}, fmt.Errorf("sim: %w", err)
		}
		if act.Checkpoint {
			seq++
			s := orchestrator.Snapshot{Key: fmt.Sprintf("%s/%d", fn, seq), RequestNumber: w.Lineage, SizeBytes: opts.Model.SnapshotSize}
			flying = append(flying, inFlight{s, i + 1 + max(opts.Model.RegisterDelay, 0)})
			held = true
		}
		if act.Evict {
			w = nil
		}
	}
	st, err := eng.Inspect(ctx, fn)
	if err != nil {
		return Row{}, fmt.Errorf("sim: %w", err)
	}
	row.ColdStarts, row.Restores, row.Checkpoints = st.ColdStarts, st.Restores, st.Checkpoints
	sorted := slices.Clone(row.Latencies)
	slices.Sort(sorted)
	row.Median, row.P90 = quantile(sorted, 0.5), quantile(sorted, 0.9)
	var sum float64
	for _, l := range sorted {
		sum += float64(l)
	}
	row.Mean = time.Duration(sum / float64(len(sorted)))
	return row, nil
}

// quantile is the nearest-rank quantile of sorted.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// WriteTable prints one line per (E, strategy): latency median, p90 and mean
// in milliseconds, and the snapshot traffic behind them.
func (r Results) WriteTable(out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "E\tstrategy\trequests\tmedian ms\tp90 ms\tmean ms\tcold starts\trestores\tcheckpoints\tpruned\tpeak pool\t")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t\n", row.EvictAfter, row.Strategy, row.Requests,
			ms(row.Median), ms(row.P90), ms(row.Mean), row.ColdStarts, row.Restores, row.Checkpoints, row.Pruned, row.PeakPool)
	}
	return tw.Flush()
}

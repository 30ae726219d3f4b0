package eval

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// RunResult is everything measured in one benchmark × strategy × rate run.
type RunResult struct {
	Benchmark, Strategy string
	Rate                int
	Function            string // deployed name
	Samples             []Sample
	Errors              int         // failed invocations (not in Samples)
	State               EngineState // engine state at the end of the run
	PeakPoolBytes       int64       // max of the pool's stored bytes seen during the run
	PeakPoolSnapshots   int
	PackedBytes         float64 // latest snapshot's stored size at the end (0: none taken)
	RawBytes            float64 // latest snapshot's CRIU image size at the end
	UploadBytes         float64 // snapshot bytes sent to the store during the run
	DownloadBytes       float64 // snapshot bytes fetched from the store during the run
	// Per-event durations in seconds, from _sum/_count deltas between scrapes.
	Dump, Upload, Download, Restore []float64
}

// Run executes the evaluation described by o against a running provider
// and writes its results to o.OutDir. Rows reach latency.csv as they are
// measured; the tables, figures and index are written at the end, also
// (for the runs that completed) when the evaluation fails or is cancelled.
func Run(ctx context.Context, o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return fmt.Errorf("eval options: %w", err)
	}
	results, runErr := execute(ctx, o)
	if len(results) == 0 {
		return runErr
	}
	if err := WriteReport(o.OutDir, results, o.Stdout); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

func execute(ctx context.Context, o Options) ([]RunResult, error) {
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("out dir: %w", err)
	}
	lw, err := openLatencyCSV(filepath.Join(o.OutDir, "latency.csv"))
	if err != nil {
		return nil, err
	}
	defer lw.Close()
	c := newClient(o.Gateway, o.User, o.Password, o.RequestTimeout)
	var results []RunResult
	total := len(o.Benchmarks) * len(o.Rates) * len(o.Strategies)
	// Benchmark → rate → strategy: each (benchmark, rate) figure is complete
	// as early as possible in a long run.
	for _, b := range o.Benchmarks {
		for _, rate := range o.Rates {
			for _, s := range o.Strategies {
				start := time.Now()
				fmt.Fprintf(o.Stdout, "eval: [%d/%d] %s strategy=%s E=%d requests=%d\n", len(results)+1, total, b, s, rate, o.Requests)
				res, err := runOne(ctx, c, o, lw, b, s, rate)
				if err != nil {
					return results, fmt.Errorf("%s/%s/E=%d: %w", b, s, rate, err)
				}
				results = append(results, res)
				fmt.Fprintf(o.Stdout, "eval:   done in %s: p50=%.1fms cold=%d restores=%d checkpoints=%d failed(restore/checkpoint)=%d/%d errors=%d\n",
					time.Since(start).Round(time.Second), quantile(clientMS(res.Samples), 0.5), res.State.ColdStarts, res.State.Restores,
					res.State.Checkpoints, res.State.FailedRestores, res.State.FailedCheckpoints, res.Errors)
			}
		}
	}
	return results, nil
}

func (o Options) annotations(strategy string, rate int) map[string]string {
	a := map[string]string{
		"com.pronghorn.strategy":    strategy,
		"com.pronghorn.evict-after": strconv.Itoa(rate),
		"com.pronghorn.seed":        strconv.FormatInt(o.Seed, 10),
	}
	switch strategy {
	case StrategyFixed:
		a["com.pronghorn.checkpoint-at"] = strconv.Itoa(o.CheckpointAt)
	case StrategyRequestCentric, StrategyBandit:
		a["com.pronghorn.pool-capacity"] = strconv.Itoa(o.PoolCapacity)
	}
	return a
}

// runOne deploys, drives and removes one function. The function is removed
// (and with it its snapshots) even when the run fails or is cancelled.
func runOne(ctx context.Context, c *client, o Options, lw *latencyWriter, bench, strategy string, rate int) (res RunResult, err error) {
	name := fmt.Sprintf("%s-%s-e%d-%s", bench, shortStrategy(strategy), rate, o.RunID)
	metricName := name + ".openfaas-fn"
	res = RunResult{Benchmark: bench, Strategy: strategy, Rate: rate, Function: name}

	// Counters and histograms are cumulative per function name; a name left
	// over from an interrupted run must not count, so everything is a delta
	// from a scrape taken before the deploy.
	before, err := c.metrics(ctx, metricName)
	if err != nil {
		return res, err
	}
	if err := c.deploy(ctx, name, bench, o.annotations(strategy, rate)); err != nil {
		return res, err
	}
	defer func() {
		// A fresh context: a cancelled evaluation still cleans up.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := c.remove(cctx, name); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove %s: %w", name, rerr))
		}
	}()
	if err := c.waitReady(ctx, name, o.ReadyTimeout); err != nil {
		return res, err
	}

	trackers := map[string]*eventTracker{}
	for _, m := range []string{mDump, mUpload, mDownload, mRestore} {
		trackers[m] = &eventTracker{name: m, sum: before[m+"_sum"], cnt: before[m+"_count"]}
	}
	observe := func(s Scrape) {
		for _, t := range trackers {
			t.observe(s)
		}
		res.PeakPoolBytes = max(res.PeakPoolBytes, int64(s[mPoolBytes]))
		res.PeakPoolSnapshots = max(res.PeakPoolSnapshots, int(s[mPoolSnaps]))
	}

	pause := o.interval(bench)
	for i := 0; i < o.Requests; i++ {
		inv, ierr := c.invoke(ctx, name, o.Seed+int64(i), o.Mutability)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if ierr != nil {
			res.Errors++
			fmt.Fprintf(o.Stdout, "eval:   request %d: %v\n", i, ierr)
			// A platform that fails a fifth of its calls is broken, not slow.
			if res.Errors > max(2, o.Requests/5) {
				return res, fmt.Errorf("too many failed requests (%d), last: %w", res.Errors, ierr)
			}
		} else {
			s := Sample{Index: i, Benchmark: bench, Mutability: o.Mutability, Strategy: strategy, Rate: rate, ClientUS: inv.clientUS, ServerUS: inv.serverUS}
			res.Samples = append(res.Samples, s)
			if err := lw.Write(s); err != nil {
				return res, err
			}
		}
		// Scraping happens in the pause, off the measured path.
		if (i+1)%o.PollEvery == 0 {
			sc, err := c.metrics(ctx, metricName)
			if err != nil {
				return res, err
			}
			observe(sc)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(pause):
		}
	}

	// The last request may have started a checkpoint; give it a moment so
	// its cost is counted.
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(o.Settle):
	}
	after, err := c.metrics(ctx, metricName)
	if err != nil {
		return res, err
	}
	observe(after)
	if res.State, err = c.inspect(ctx, name); err != nil {
		return res, err
	}
	res.PeakPoolBytes = max(res.PeakPoolBytes, res.State.PoolBytes())
	res.PeakPoolSnapshots = max(res.PeakPoolSnapshots, len(res.State.Pool))
	res.PackedBytes, res.RawBytes = after[mPackedBytes], after[mRawBytes]
	res.UploadBytes = after[mTransferUp] - before[mTransferUp]
	res.DownloadBytes = after[mTransferDown] - before[mTransferDown]
	res.Dump, res.Upload = trackers[mDump].samples, trackers[mUpload].samples
	res.Download, res.Restore = trackers[mDownload].samples, trackers[mRestore].samples
	return res, nil
}

func clientMS(ss []Sample) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = float64(s.ClientUS) / 1000
	}
	return out
}

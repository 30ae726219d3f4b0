package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// session is what the chunks of one Run share.
type session struct {
	o        Options
	c        *client
	cpu      *cpuSampler // nil: CPU not sampled
	log      *logTail    // nil: no provider log
	env      string      // environment hash
	progress *progress
}

// Run executes the chunks of the protocol that are not yet in o.OutDir,
// each written as a whole when it completes, then writes the report over
// everything the directory holds (also when the run failed or was
// cancelled: for the chunks that completed).
func Run(ctx context.Context, o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return fmt.Errorf("eval options: %w", err)
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return fmt.Errorf("out dir: %w", err)
	}
	if err := removeStaleTemps(o.OutDir); err != nil {
		return err
	}
	done, err := completedChunks(o.OutDir)
	if err != nil {
		return err
	}
	var pending []Chunk
	plan := o.Plan()
	for _, c := range plan {
		if prev, ok := done[c.Dir()]; ok {
			if err := o.compatible(c, prev); err != nil {
				return err
			}
			continue
		}
		pending = append(pending, c)
	}
	fmt.Fprintf(o.Stdout, "eval: %d chunks in the plan, %d already in %s, %d to run (about %s)\n",
		len(plan), len(plan)-len(pending), o.OutDir, len(pending), round(estimateTotal(o, pending)))

	runErr := o.runChunks(ctx, pending)
	if o.NoReport {
		return runErr
	}
	if err := WriteReport(ctx, o.ReportDir, []string{o.OutDir}, ReportOptions{}); err != nil {
		return errors.Join(runErr, err)
	}
	fmt.Fprintf(o.Stdout, "eval: report in %s\n", filepath.Join(o.ReportDir, "README.md"))
	return runErr
}

func (o Options) runChunks(ctx context.Context, pending []Chunk) error {
	if len(pending) == 0 {
		return nil
	}
	env := captureEnvironment(ctx, envProbe{CRIU: o.CRIU, Build: o.Build})
	hash, err := writeEnvironment(o.OutDir, env)
	if err != nil {
		return err
	}
	s := &session{o: o, c: newClient(o.Gateway, o.User, o.Password, o.RequestTimeout), env: hash}
	if o.ProviderPID > 0 {
		s.cpu = &cpuSampler{proc: "/proc", root: o.ProviderPID}
		if _, err := s.cpu.sample(); err != nil {
			fmt.Fprintf(o.Stdout, "eval: not sampling CPU: %v\n", err)
			s.cpu = nil
		}
	}
	if o.ProviderLog != "" {
		s.log = &logTail{path: o.ProviderLog}
	}
	s.progress = newProgress(o, pending)
	defer s.progress.finish()
	for i, c := range pending {
		s.progress.startChunk(i)
		var summary string
		var err error
		if c.Kind == KindProbe {
			var res ProbeResult
			if res, err = s.probe(ctx, c); err == nil {
				err = writeProbeChunk(o.OutDir, res)
				summary = res.summary()
			}
		} else {
			var res RunResult
			if res, err = s.run(ctx, c); err == nil {
				err = writeRunChunk(o.OutDir, res)
				summary = res.summary()
			}
		}
		if err != nil {
			s.progress.println("eval: %s failed: %v", c, err)
			return fmt.Errorf("%s: %w", c, err)
		}
		s.progress.doneChunk(summary)
	}
	return nil
}

func (r RunResult) summary() string {
	return fmt.Sprintf("p50=%.1fms mean=%.1fms cold=%d restores=%d checkpoints=%d failed(restore/checkpoint)=%d/%d errors=%d",
		quantile(clientMS(r.Samples), 0.5), mean(clientMS(r.Samples)), r.State.ColdStarts, r.State.Restores, r.State.Checkpoints,
		r.State.FailedRestores, r.State.FailedCheckpoints, r.Errors)
}

func (o Options) annotations(strategy string, rate int, seed int64) map[string]string {
	a := map[string]string{
		"com.pronghorn.strategy":    strategy,
		"com.pronghorn.evict-after": strconv.Itoa(rate),
		"com.pronghorn.seed":        strconv.FormatInt(seed, 10),
	}
	switch strategy {
	case StrategyFixed:
		a["com.pronghorn.checkpoint-at"] = strconv.Itoa(o.CheckpointAt)
	case StrategyRequestCentric, StrategyBandit:
		a["com.pronghorn.pool-capacity"] = strconv.Itoa(o.PoolCapacity)
	}
	return a
}

// workerTracker tells the run's workers apart from what the function
// reports: a new worker starts when the previous one served E requests
// (the provider retires it then), when the worker token changes, or when
// the lineage does not continue. Functions that report neither still get
// positions from the E count.
type workerTracker struct {
	rate    int
	started bool
	worker  int
	served  int
	lineage int
	token   string
}

// next places a successful request; start is cold or restore on a
// worker's first request when the lineage tells which.
func (w *workerTracker) next(inv invocation) (worker, served int, start string) {
	fresh := !w.started ||
		(w.rate > 0 && w.served >= w.rate) ||
		(inv.worker != "" && w.token != "" && inv.worker != w.token) ||
		(inv.lineage >= 0 && w.lineage >= 0 && inv.lineage != w.lineage+1)
	if fresh {
		if w.started {
			w.worker++
		}
		w.served = 0
	}
	w.started = true
	w.served++
	w.token, w.lineage = inv.worker, inv.lineage
	if w.served == 1 && inv.lineage >= 1 {
		start = StartRestore
		if inv.lineage == 1 {
			start = StartCold
		}
	}
	return w.worker, w.served, start
}

// failed counts a failed request against the current worker, which served
// it as far as the provider is concerned.
func (w *workerTracker) failed() {
	if w.started {
		w.served++
	}
	w.lineage = -1 // unknown now: the next reply decides
}

// run deploys, drives and removes one function. The function is removed
// (and with it its snapshots) even when the run fails or is cancelled.
func (s *session) run(ctx context.Context, ch Chunk) (res RunResult, err error) {
	o, c := s.o, s.c
	tag := shortStrategy(ch.Strategy)
	if ch.Kind == KindWarmup {
		tag = "warm"
	}
	name := fmt.Sprintf("%s-%s-e%d-s%d-%s", ch.Benchmark, tag, ch.Rate, ch.Seed, o.RunID)
	metricName := name + ".openfaas-fn"
	res = RunResult{Chunk: ch, Protocol: o.protocol(ch), Function: name, Env: s.env, Started: time.Now(), LoadStart: loadAverage("/proc")}

	// Counters and histograms are cumulative per function name; a name left
	// over from an interrupted run must not count, so everything is a delta
	// from a scrape taken before the deploy.
	before, err := c.metrics(ctx, metricName)
	if err != nil {
		return res, err
	}
	s.log.mark()
	if err := c.deploy(ctx, name, ch.Benchmark, o.annotations(ch.Strategy, ch.Rate, ch.Seed)); err != nil {
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

	trackers := []*eventTracker{
		{name: mDump, kind: EventDump}, {name: mUpload, kind: EventUpload},
		{name: mDownload, kind: EventDownload}, {name: mRestore, kind: EventRestore},
	}
	for _, t := range trackers {
		t.sum, t.cnt = before[t.name+"_sum"], before[t.name+"_count"]
	}
	observe := func(sc Scrape, index int) {
		for _, t := range trackers {
			t.observe(sc, index)
		}
		res.PeakPoolBytes = max(res.PeakPoolBytes, int64(sc[mPoolBytes]))
		res.PeakPoolSnapshots = max(res.PeakPoolSnapshots, int(sc[mPoolSnaps]))
	}

	var lastCPU cpuSample
	cpuOK := s.cpu != nil
	if cpuOK {
		if lastCPU, err = s.cpu.sample(); err != nil {
			cpuOK = false
		}
	}
	res.CPUSampled = cpuOK
	wt := workerTracker{rate: ch.Rate, lineage: -1}
	pause := o.interval(ch.Benchmark)
	start := time.Now()
	for i := 0; i < ch.Requests; i++ {
		sent := time.Since(start)
		inv, ierr := c.invoke(ctx, name, inputSeed(ch.Seed, i), o.Mutability)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		s.progress.request()
		if ierr != nil {
			res.Errors++
			wt.failed()
			s.progress.println("eval:   request %d: %v", i, ierr)
			// A platform that fails a fifth of its calls is broken, not slow.
			if res.Errors > max(2, ch.Requests/5) {
				return res, fmt.Errorf("too many failed requests (%d), last: %w", res.Errors, ierr)
			}
		} else {
			smp := Sample{Index: i, Benchmark: ch.Benchmark, Mutability: o.Mutability, Strategy: ch.Strategy, Rate: ch.Rate,
				ClientUS: inv.clientUS, ServerUS: inv.serverUS, Seed: ch.Seed, Lineage: inv.lineage, CPUProviderUS: -1, CPUWorkersUS: -1,
				SentMS: float64(sent) / float64(time.Millisecond)}
			smp.Worker, smp.Served, smp.Start = wt.next(inv)
			if cpuOK {
				// The interval since the previous response: its pause (and
				// whatever the provider did in it: checkpoints, worker
				// starts) and this request.
				if cur, err := s.cpu.sample(); err == nil {
					d := cur.sub(lastCPU)
					smp.CPUProviderUS, smp.CPUWorkersUS = d.Provider.Microseconds(), d.Workers.Microseconds()
					lastCPU = cur
				}
			}
			res.Samples = append(res.Samples, smp)
		}
		// Scraping happens in the pause, off the measured path.
		if (i+1)%o.PollEvery == 0 {
			sc, err := c.metrics(ctx, metricName)
			if err != nil {
				return res, err
			}
			observe(sc, i)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(pause):
		}
	}

	// The last requests may have started a checkpoint; it is counted once
	// it is stored or has failed.
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(o.Settle):
	}
	after, err := c.checkpointsDone(ctx, metricName, checkpointWait)
	if err != nil {
		return res, err
	}
	if n := after[mInProgress]; n > 0 {
		s.progress.println("eval:   %g checkpoint(s) still in progress after %s, not counted", n, checkpointWait)
	}
	observe(after, ch.Requests-1)
	if res.State, err = c.inspect(ctx, name); err != nil {
		return res, err
	}
	res.PeakPoolBytes = max(res.PeakPoolBytes, res.State.PoolBytes())
	res.PeakPoolSnapshots = max(res.PeakPoolSnapshots, len(res.State.Pool))
	res.PackedBytes, res.RawBytes = after[mPackedBytes], after[mRawBytes]
	res.UploadBytes = after[mTransferUp] - before[mTransferUp]
	res.DownloadBytes = after[mTransferDown] - before[mTransferDown]
	for _, t := range trackers {
		res.Events = append(res.Events, t.events...)
	}
	if lines, err := s.log.lines(); err == nil {
		res.Events = append(res.Events, logEvents(lines, metricName, res.Samples, start)...)
	} else {
		s.progress.println("eval:   %v", err)
	}
	res.Duration = time.Since(res.Started)
	res.LoadEnd = loadAverage("/proc")
	return res, nil
}

func clientMS(ss []Sample) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = float64(s.ClientUS) / 1000
	}
	return out
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

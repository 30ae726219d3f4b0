package eval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// A probe measures the mechanism's costs one at a time, as the artifact's
// Table 4 did (cost-analysis/table_4.py dumps and restores a warm function
// in isolation), with nothing else running: in the evaluation's runs a
// checkpoint, the next request and a replacement worker's start overlap,
// and their CPU time cannot be told apart.
//
// Each repetition deploys the benchmark with fixed(T=ProbeAt) and no
// eviction, sends T requests, then:
//
//   - checkpoint: from the T-th response until the checkpoint is registered,
//     then the same time idle, for a baseline;
//   - restore: scale to zero, then one request, which scales from zero by
//     restoring the snapshot, then the same time idle;
//   - cold: the same with a cold-strategy deployment of the benchmark.
//
// CPU is the provider's and its workers' from /proc (cpuSampler), minus
// the idle baseline of the same length.

// ProbeRow is one measured event of a probe.
type ProbeRow struct {
	Rep  int
	Kind string // checkpoint, restore, cold
	// RequestNumber is the lineage request number checkpointed, or the
	// first request a restored or cold worker served.
	RequestNumber int
	// Seconds is CRIU's dump or restore time from /metrics (0 for cold).
	Seconds       float64
	FrozenSeconds float64 // checkpoint: the function's freeze, from the provider log
	UploadSeconds float64 // checkpoint: packing and storing
	// ClientUS and ServerUS time the first request of a restored or cold
	// worker, scale from zero included (0 for a checkpoint).
	ClientUS, ServerUS int64
	// Window is the measured interval; CPU is spent in it and Idle in the
	// same length of nothing happening right after it.
	Window                           time.Duration
	CPUProviderUS, CPUWorkersUS      int64
	IdleCPUProviderUS, IdleWorkersUS int64
	PackedBytes, RawBytes            int64
}

// MechanismCPU is the event's CPU time beyond the idle baseline.
func (r ProbeRow) MechanismCPU() (provider, workers time.Duration) {
	return time.Duration(r.CPUProviderUS-r.IdleCPUProviderUS) * time.Microsecond,
		time.Duration(r.CPUWorkersUS-r.IdleWorkersUS) * time.Microsecond
}

// Probe event kinds.
const (
	ProbeCheckpoint = "checkpoint"
	ProbeRestore    = "restore"
	ProbeCold       = "cold"
)

func probeHeader() []string {
	return []string{"rep", "kind", "request_number", "seconds", "frozen_seconds", "upload_seconds", "client_us", "server_us",
		"window_s", "cpu_provider_us", "cpu_workers_us", "idle_cpu_provider_us", "idle_cpu_workers_us", "packed_bytes", "raw_bytes"}
}

func (r ProbeRow) record() []string {
	return []string{strconv.Itoa(r.Rep), r.Kind, strconv.Itoa(r.RequestNumber), fmtFloat(r.Seconds), fmtFloat(r.FrozenSeconds),
		fmtFloat(r.UploadSeconds), strconv.FormatInt(r.ClientUS, 10), strconv.FormatInt(r.ServerUS, 10),
		strconv.FormatFloat(r.Window.Seconds(), 'f', 3, 64), strconv.FormatInt(r.CPUProviderUS, 10), strconv.FormatInt(r.CPUWorkersUS, 10),
		strconv.FormatInt(r.IdleCPUProviderUS, 10), strconv.FormatInt(r.IdleWorkersUS, 10),
		strconv.FormatInt(r.PackedBytes, 10), strconv.FormatInt(r.RawBytes, 10)}
}

func parseProbeRow(r row) (ProbeRow, error) {
	p := ProbeRow{Rep: r.int("rep"), Kind: r.str("kind"), RequestNumber: r.int("request_number"), Seconds: r.float("seconds"),
		FrozenSeconds: r.float("frozen_seconds"), UploadSeconds: r.float("upload_seconds"), ClientUS: r.int64("client_us"),
		ServerUS: r.int64("server_us"), Window: time.Duration(r.float("window_s") * float64(time.Second)),
		CPUProviderUS: r.int64("cpu_provider_us"), CPUWorkersUS: r.int64("cpu_workers_us"),
		IdleCPUProviderUS: r.int64("idle_cpu_provider_us"), IdleWorkersUS: r.int64("idle_cpu_workers_us"),
		PackedBytes: r.int64("packed_bytes"), RawBytes: r.int64("raw_bytes")}
	return p, r.err
}

// ProbeResult is a probe chunk: its run.csv row and its events.
type ProbeResult struct {
	Run  RunResult // Chunk, Protocol, Env, timings; no samples
	Rows []ProbeRow
}

func (p ProbeResult) summary() string {
	var out string
	for _, kind := range []string{ProbeCheckpoint, ProbeRestore, ProbeCold} {
		var cpu []float64
		for _, r := range p.Rows {
			if r.Kind == kind {
				pr, wk := r.MechanismCPU()
				cpu = append(cpu, float64(pr+wk)/float64(time.Millisecond))
			}
		}
		out += fmt.Sprintf("%s cpu=%.0fms ", kind, quantile(cpu, 0.5))
	}
	return out
}

func writeProbeChunk(resultsDir string, p ProbeResult) error {
	rows := make([][]string, len(p.Rows))
	for i, r := range p.Rows {
		rows[i] = r.record()
	}
	return commitChunk(resultsDir, p.Run.Chunk, map[string]func(io.Writer) error{
		runFile:   func(w io.Writer) error { return encodeTable(w, runHeader(), [][]string{p.Run.record()}, false) },
		probeFile: func(w io.Writer) error { return encodeTable(w, probeHeader(), rows, false) },
	})
}

// probe runs a probe chunk. Without a CPU sampler (no provider pid) it
// still records times and sizes, with zero CPU.
func (s *session) probe(ctx context.Context, ch Chunk) (ProbeResult, error) {
	res := ProbeResult{Run: RunResult{Chunk: ch, Protocol: s.o.protocol(ch), Env: s.env, Started: time.Now(),
		LoadStart: loadAverage("/proc"), CPUSampled: s.cpu != nil}}
	for rep := 1; rep <= s.o.ProbeReps; rep++ {
		rows, err := s.probeSnapshots(ctx, ch, rep)
		if err != nil {
			return res, err
		}
		res.Run.State.Checkpoints++
		res.Run.State.Restores++
		cold, err := s.probeCold(ctx, ch, rep)
		if err != nil {
			return res, err
		}
		res.Rows = append(append(res.Rows, rows...), cold)
	}
	res.Run.Duration = time.Since(res.Run.Started)
	res.Run.LoadEnd = loadAverage("/proc")
	return res, nil
}

// measure reads the CPU time of f's window and of an idle window of the
// same length right after it.
func (s *session) measure(ctx context.Context, f func() error) (window time.Duration, busy, idle cpuSample, err error) {
	var a, b, c cpuSample
	if s.cpu != nil {
		if a, err = s.cpu.sample(); err != nil {
			return 0, busy, idle, err
		}
	}
	start := time.Now()
	if err := f(); err != nil {
		return 0, busy, idle, err
	}
	window = time.Since(start)
	if s.cpu != nil {
		if b, err = s.cpu.sample(); err != nil {
			return 0, busy, idle, err
		}
	}
	select {
	case <-ctx.Done():
		return 0, busy, idle, ctx.Err()
	case <-time.After(window):
	}
	if s.cpu != nil {
		if c, err = s.cpu.sample(); err != nil {
			return 0, busy, idle, err
		}
	}
	return window, b.sub(a), c.sub(b), nil
}

func (r *ProbeRow) setCPU(window time.Duration, busy, idle cpuSample) {
	r.Window = window
	r.CPUProviderUS, r.CPUWorkersUS = busy.Provider.Microseconds(), busy.Workers.Microseconds()
	r.IdleCPUProviderUS, r.IdleWorkersUS = idle.Provider.Microseconds(), idle.Workers.Microseconds()
}

// deployed deploys a probe function and returns its remover.
func (s *session) deployed(ctx context.Context, name, bench string, annotations map[string]string) (func() error, error) {
	if err := s.c.deploy(ctx, name, bench, annotations); err != nil {
		return nil, err
	}
	remove := func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := s.c.remove(cctx, name); err != nil {
			return fmt.Errorf("remove %s: %w", name, err)
		}
		return nil
	}
	if err := s.c.waitReady(ctx, name, s.o.ReadyTimeout); err != nil {
		return nil, errors.Join(err, remove())
	}
	return remove, nil
}

// probeSnapshots measures one checkpoint and one restore.
func (s *session) probeSnapshots(ctx context.Context, ch Chunk, rep int) (rows []ProbeRow, err error) {
	o, c := s.o, s.c
	name := fmt.Sprintf("%s-probe-s%d-r%d-%s", ch.Benchmark, ch.Seed, rep, o.RunID)
	metric := name + ".openfaas-fn"
	before, err := c.metrics(ctx, metric)
	if err != nil {
		return nil, err
	}
	s.log.mark()
	a := o.annotations(StrategyFixed, 0, ch.Seed)
	a["com.pronghorn.checkpoint-at"] = strconv.Itoa(ch.Requests)
	remove, err := s.deployed(ctx, name, ch.Benchmark, a)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, remove()) }()
	pause := o.interval(ch.Benchmark)
	start := time.Now()
	var samples []Sample
	call := func(i int) (invocation, error) {
		sent := time.Since(start)
		inv, err := c.invoke(ctx, name, inputSeed(ch.Seed, i), o.Mutability)
		s.progress.request()
		if err == nil {
			samples = append(samples, Sample{Index: i, Lineage: inv.lineage, SentMS: float64(sent) / float64(time.Millisecond)})
		}
		return inv, err
	}
	for i := 0; i < ch.Requests-1; i++ {
		if _, err := call(i); err != nil {
			return nil, err
		}
		if err := sleep(ctx, pause); err != nil {
			return nil, err
		}
	}
	if _, err := call(ch.Requests - 1); err != nil {
		return nil, err
	}
	// The T-th response has just come back: the checkpoint is starting.
	ck := ProbeRow{Rep: rep, Kind: ProbeCheckpoint, RequestNumber: ch.Requests}
	var after Scrape
	window, busy, idle, err := s.measure(ctx, func() error {
		// The coordinator counts the uploaded bytes last, after the dump
		// and upload times and the sizes.
		after, err = s.waitMetric(ctx, metric, func(sc Scrape) bool {
			return sc[mTransferUp] > before[mTransferUp] || sc[mFailedCkpts] > before[mFailedCkpts]
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if after[mFailedCkpts] > before[mFailedCkpts] {
		return nil, errors.New("checkpoint failed (see the provider log)")
	}
	ck.setCPU(window, busy, idle)
	ck.Seconds = delta(after, before, mDump)
	ck.UploadSeconds = delta(after, before, mUpload)
	ck.PackedBytes, ck.RawBytes = int64(after[mPackedBytes]), int64(after[mRawBytes])
	if lines, err := s.log.lines(); err == nil {
		for _, e := range logEvents(lines, metric, samples, start) {
			if e.Kind == EventCheckpoint {
				ck.FrozenSeconds = e.FrozenSeconds
			}
		}
	}

	// Restore: no worker, then one request that scales from zero.
	if err := s.scaleToZero(ctx, name); err != nil {
		return nil, err
	}
	rs := ProbeRow{Rep: rep, Kind: ProbeRestore}
	var inv invocation
	window, busy, idle, err = s.measure(ctx, func() error {
		inv, err = call(ch.Requests)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	final, err := c.metrics(ctx, metric)
	if err != nil {
		return nil, err
	}
	if final[mRestores] <= before[mRestores] {
		return nil, fmt.Errorf("restore: the worker after scale from zero started cold (lineage %d): see the provider log", inv.lineage)
	}
	rs.setCPU(window, busy, idle)
	rs.RequestNumber, rs.ClientUS, rs.ServerUS = inv.lineage, inv.clientUS, inv.serverUS
	rs.Seconds = delta(final, after, mRestore)
	return []ProbeRow{ck, rs}, nil
}

// probeCold measures one cold start from zero.
func (s *session) probeCold(ctx context.Context, ch Chunk, rep int) (row ProbeRow, err error) {
	name := fmt.Sprintf("%s-probecold-s%d-r%d-%s", ch.Benchmark, ch.Seed, rep, s.o.RunID)
	remove, err := s.deployed(ctx, name, ch.Benchmark, s.o.annotations(StrategyCold, 0, ch.Seed))
	if err != nil {
		return row, err
	}
	defer func() { err = errors.Join(err, remove()) }()
	if err := s.scaleToZero(ctx, name); err != nil {
		return row, err
	}
	row = ProbeRow{Rep: rep, Kind: ProbeCold}
	var inv invocation
	window, busy, idle, err := s.measure(ctx, func() error {
		var ierr error
		inv, ierr = s.c.invoke(ctx, name, inputSeed(ch.Seed, 0), s.o.Mutability)
		s.progress.request()
		return ierr
	})
	if err != nil {
		return row, fmt.Errorf("cold start: %w", err)
	}
	row.setCPU(window, busy, idle)
	row.RequestNumber, row.ClientUS, row.ServerUS = inv.lineage, inv.clientUS, inv.serverUS
	return row, nil
}

// scaleToZero retires the function's worker and waits until it is gone,
// processes included (the process count below the provider has dropped
// and holds still), so the next window sees only what it measures.
func (s *session) scaleToZero(ctx context.Context, name string) error {
	liveBefore := -1
	if s.cpu != nil {
		if st, err := s.cpu.sample(); err == nil {
			liveBefore = st.Live
		}
	}
	if err := s.c.scale(ctx, name, 0); err != nil {
		return err
	}
	deadline := time.Now().Add(s.o.ReadyTimeout)
	lastLive, still := -1, 0
	for {
		n, err := s.c.availableReplicas(ctx, name)
		gone := err == nil && n == 0
		if gone && liveBefore >= 0 {
			st, serr := s.cpu.sample()
			if serr == nil && st.Live < liveBefore && st.Live == lastLive {
				still++
			} else {
				still = 0
			}
			if serr == nil {
				lastLive = st.Live
			}
			gone = still >= 2
		}
		if gone {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scale %s to zero: still running after %s", name, s.o.ReadyTimeout)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitMetric scrapes until done says so.
func (s *session) waitMetric(ctx context.Context, metric string, done func(Scrape) bool) (Scrape, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		sc, err := s.c.metrics(ctx, metric)
		if err != nil {
			return nil, err
		}
		if done(sc) {
			return sc, nil
		}
		if time.Now().After(deadline) {
			return nil, errors.New("timed out")
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// delta is the mean duration of the events of histogram name between two
// scrapes.
func delta(after, before Scrape, name string) float64 {
	n := after[name+"_count"] - before[name+"_count"]
	if n < 1 {
		return 0
	}
	return (after[name+"_sum"] - before[name+"_sum"]) / n
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// Package eval is the evaluation driver of the paper's Section 5 (our
// docs/architecture.md, "Evaluation pipeline"): it deploys each benchmark
// function on a running Pronghorn provider under every strategy and
// eviction rate, sends sequential requests, records client and server
// latency, the lineage request number and worker of every request, the CPU
// the provider and its workers spent, the engine's state and the snapshot
// events. Every (benchmark, strategy, rate, seed) run is a chunk written
// atomically when complete, so a long protocol resumes where it stopped.
// The report (WriteReport) is generated from those files alone. The driver
// talks HTTP to the provider and reads /proc and the provider's log; it
// measures what a client of the platform sees.
package eval

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Strategy names the provider accepts in com.pronghorn.strategy.
const (
	StrategyCold           = "cold"
	StrategyFixed          = "fixed"
	StrategyRequestCentric = "request-centric"
	StrategyBandit         = "bandit"
)

// AllStrategies is the comparison of issue 9: the baselines, the paper's
// policy and ours.
func AllStrategies() []string {
	return []string{StrategyCold, StrategyFixed, StrategyRequestCentric, StrategyBandit}
}

// ProgressMode says how the driver shows its progress.
type ProgressMode int

const (
	// ProgressLines prints a status line at every chunk and every 30 s:
	// for logs and pipes.
	ProgressLines ProgressMode = iota
	// ProgressBar draws a progress bar with the ETA: for a terminal.
	ProgressBar
	// ProgressNone prints only the chunk summaries.
	ProgressNone
)

// Options configure one evaluation. Zero values take the artifact's
// protocol from DefaultOptions.
type Options struct {
	// Gateway is the provider's (or an OpenFaaS gateway's) base URL.
	Gateway string
	// User and Password are the basic auth credentials sent on the API
	// calls (deploy, status, inspect, remove, metrics), never on the
	// measured invocations; an empty Password sends none. User defaults
	// to admin.
	User, Password string
	// Benchmarks are function directory names under the provider's
	// --functions-dir; they double as the deployed image.
	Benchmarks []string
	// Strategies to compare; fixed runs with T = CheckpointAt.
	Strategies []string
	// Rates are the eviction rates E (requests a worker serves).
	Rates []int
	// Requests per run, sent sequentially.
	Requests int
	// Intervals is the pause after each response, per runtime ("pypy",
	// "jvm", "node"); DefaultInterval covers runtimes not listed.
	Intervals       map[string]time.Duration
	DefaultInterval time.Duration
	// Runtimes maps a benchmark to its runtime; Catalog() fills the 13
	// paper benchmarks, and a benchmark missing here uses DefaultInterval.
	Runtimes map[string]string
	// Mutability is the relative stddev of the handlers' input size.
	Mutability float64
	// Seeds: every configuration runs once per seed. A seed seeds the
	// engine's decisions (com.pronghorn.seed) and the inputs: request i of
	// a run with seed s gets input seed s*1000000+i, so every strategy sees
	// the same input sequence and seeds see different ones.
	Seeds []int64
	// PoolCapacity is C of request-centric and bandit (12 in the paper).
	PoolCapacity int
	// CheckpointAt is T of fixed (1: the snapshot-after-first-request baseline).
	CheckpointAt int
	// WarmupRequests is the length of the warm-up run per benchmark and
	// seed: one cold worker that is never evicted, for the warm-up curve
	// and the floor. 0 means Requests; negative skips warm-up runs.
	WarmupRequests int
	// ProbeReps is how often a probe chunk measures a checkpoint, a
	// restore and a cold start one at a time (for their CPU cost); 0 means
	// 3, negative skips probes. ProbeAt is the request checkpointed (0: 20).
	ProbeReps, ProbeAt int
	// PollEvery scrapes /metrics after every PollEvery-th request, for the
	// peak pool storage and exact per-event dump/restore times.
	PollEvery int
	// ReadyTimeout bounds the wait for a deployed function's first replica.
	ReadyTimeout time.Duration
	// Settle is the wait after a run's last request before its final
	// scrape, so a checkpoint that request triggered is counted.
	Settle time.Duration
	// RequestTimeout bounds one invocation.
	RequestTimeout time.Duration
	// OutDir is the results directory: one directory per completed chunk
	// (see Chunk); a rerun skips the chunks already there.
	OutDir string
	// ReportDir receives the report after the run (default OutDir/report);
	// NoReport skips it.
	ReportDir string
	NoReport  bool
	// ProviderPID, when set, is the provider's process: the driver samples
	// its CPU time and its workers' from /proc after every response.
	ProviderPID int
	// ProviderLog, when set, is the provider's log file: the driver reads
	// each checkpoint's request number and freeze time from it.
	ProviderLog string
	// CRIU and Build are recorded in the environment (env/<hash>.csv): the
	// CRIU binary the provider runs, and the pronghorn build.
	CRIU, Build string
	// Stdout receives progress and the summary; nil discards.
	Stdout   io.Writer
	Progress ProgressMode
	// RunID makes deployed names unique; empty derives one from the clock.
	RunID string
}

// Catalog returns the paper's 13 benchmarks and their runtimes.
func Catalog() map[string]string {
	return map[string]string{
		"bfs": "pypy", "dfs": "pypy", "mst": "pypy", "pagerank": "pypy",
		"dynamic-html": "pypy", "compress": "pypy", "upload": "pypy",
		"thumbnail": "pypy", "video": "pypy",
		"matrix-multiplication": "jvm", "simple-hash": "jvm",
		"word-count": "jvm", "html-rendering": "jvm",
	}
}

// CatalogNames lists Catalog's benchmarks in the paper's order.
func CatalogNames() []string {
	return []string{"bfs", "dfs", "mst", "pagerank", "dynamic-html", "compress", "upload", "thumbnail", "video",
		"matrix-multiplication", "simple-hash", "word-count", "html-rendering"}
}

// DefaultOptions is the full protocol of issue 9 on the artifact's
// spacing: all 13 benchmarks, cold, fixed(1), request-centric and bandit
// (C=12), E ∈ {20, 4, 1}, 500 requests 200 ms apart on PyPy and 100 ms
// apart on the JVM, one seed, plus a warm-up run and a probe per benchmark.
func DefaultOptions() Options {
	return Options{
		Gateway:         "http://127.0.0.1:8080",
		Benchmarks:      CatalogNames(),
		Strategies:      AllStrategies(),
		Rates:           []int{20, 4, 1},
		Requests:        500,
		Intervals:       map[string]time.Duration{"pypy": 200 * time.Millisecond, "jvm": 100 * time.Millisecond, "node": 100 * time.Millisecond},
		DefaultInterval: 200 * time.Millisecond,
		Runtimes:        Catalog(),
		Seeds:           []int64{1},
		PoolCapacity:    12,
		CheckpointAt:    1,
		ProbeReps:       3,
		ProbeAt:         20,
		PollEvery:       1,
		ReadyTimeout:    60 * time.Second,
		RequestTimeout:  60 * time.Second,
		Settle:          time.Second,
		OutDir:          "results",
	}
}

// QuickOptions is `make eval-quick`: both runtimes (bfs on PyPy,
// simple-hash on the JVM), every strategy and rate, three seeds, 25
// requests per run (50 for the warm-up run), on the artifact's spacing:
// about 12 minutes on two cores, so policy changes are checked over seeds,
// not tuned to one.
func QuickOptions() Options {
	o := DefaultOptions()
	o.Benchmarks = []string{"bfs", "simple-hash"}
	o.Requests = 25
	o.WarmupRequests = 50
	o.Seeds = []int64{1, 2, 3}
	o.ProbeReps = 1
	o.ProbeAt = 10
	return o
}

// withDefaults fills zero fields from DefaultOptions and validates.
func (o Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	if o.Gateway == "" {
		o.Gateway = d.Gateway
	}
	if o.User == "" {
		o.User = "admin"
	}
	if len(o.Benchmarks) == 0 {
		o.Benchmarks = d.Benchmarks
	}
	if len(o.Strategies) == 0 {
		o.Strategies = d.Strategies
	}
	if len(o.Rates) == 0 {
		o.Rates = d.Rates
	}
	if o.Requests == 0 {
		o.Requests = d.Requests
	}
	if o.Intervals == nil {
		o.Intervals = d.Intervals
	}
	if o.DefaultInterval == 0 {
		o.DefaultInterval = d.DefaultInterval
	}
	if o.Runtimes == nil {
		o.Runtimes = d.Runtimes
	}
	if len(o.Seeds) == 0 {
		o.Seeds = d.Seeds
	}
	if o.PoolCapacity == 0 {
		o.PoolCapacity = d.PoolCapacity
	}
	if o.CheckpointAt == 0 {
		o.CheckpointAt = d.CheckpointAt
	}
	if o.WarmupRequests == 0 {
		o.WarmupRequests = o.Requests
	}
	if o.ProbeReps == 0 {
		o.ProbeReps = d.ProbeReps
	}
	if o.ProbeAt == 0 {
		o.ProbeAt = d.ProbeAt
	}
	if o.PollEvery == 0 {
		o.PollEvery = d.PollEvery
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = d.ReadyTimeout
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = d.RequestTimeout
	}
	if o.Settle == 0 {
		o.Settle = d.Settle
	}
	if o.OutDir == "" {
		o.OutDir = d.OutDir
	}
	if o.ReportDir == "" {
		o.ReportDir = filepath.Join(o.OutDir, "report")
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.RunID == "" {
		o.RunID = strings.ToLower(fmt.Sprintf("%x", time.Now().Unix()%0xffffff))
	}
	var errs []error
	if u, err := url.Parse(o.Gateway); err != nil || u.Scheme == "" || u.Host == "" {
		errs = append(errs, fmt.Errorf("gateway %q is not an http(s) URL", o.Gateway))
	}
	for _, s := range o.Strategies {
		switch s {
		case StrategyCold, StrategyFixed, StrategyRequestCentric, StrategyBandit:
		default:
			errs = append(errs, fmt.Errorf("unknown strategy %q (cold, fixed, request-centric, bandit)", s))
		}
	}
	for _, r := range o.Rates {
		if r < 1 {
			errs = append(errs, fmt.Errorf("eviction rate %d: must be ≥ 1 (the never-evicted worker is the warm-up run)", r))
		}
	}
	if o.Requests < 1 {
		errs = append(errs, fmt.Errorf("requests %d: must be ≥ 1", o.Requests))
	}
	if o.Mutability < 0 {
		errs = append(errs, fmt.Errorf("mutability %g: must be ≥ 0", o.Mutability))
	}
	if o.PoolCapacity < 1 || o.CheckpointAt < 1 || o.PollEvery < 1 || o.ProbeAt < 1 {
		errs = append(errs, errors.New("pool capacity, checkpoint-at, probe-at and poll-every must be ≥ 1"))
	}
	for _, b := range o.Benchmarks {
		if b == "" || strings.ContainsAny(b, "/ ") {
			errs = append(errs, fmt.Errorf("benchmark %q: want a function directory name", b))
		}
	}
	seen := map[int64]bool{}
	for _, s := range o.Seeds {
		if s < 0 || seen[s] {
			errs = append(errs, fmt.Errorf("seeds: %d is negative or repeated", s))
		}
		seen[s] = true
	}
	return o, errors.Join(errs...)
}

// Plan lists the protocol's chunks in the order they run: seed by seed (an
// interrupted protocol has whole seeds), then benchmark by benchmark (its
// warm-up run, its probe, then rate by rate every strategy, so each
// (benchmark, rate) figure is complete as early as possible).
func (o Options) Plan() []Chunk {
	var out []Chunk
	for _, seed := range o.Seeds {
		for _, b := range o.Benchmarks {
			if o.WarmupRequests > 0 {
				out = append(out, Chunk{Kind: KindWarmup, Benchmark: b, Strategy: StrategyCold, Seed: seed, Requests: o.WarmupRequests})
			}
			if o.ProbeReps > 0 {
				out = append(out, Chunk{Kind: KindProbe, Benchmark: b, Seed: seed, Requests: o.ProbeAt})
			}
			for _, rate := range o.Rates {
				for _, s := range o.Strategies {
					out = append(out, Chunk{Kind: KindRun, Benchmark: b, Strategy: s, Rate: rate, Seed: seed, Requests: o.Requests})
				}
			}
		}
	}
	return out
}

// protocol is what a chunk records about how it was run.
func (o Options) protocol(c Chunk) Protocol {
	p := Protocol{Requests: c.Requests, IntervalMS: float64(o.interval(c.Benchmark)) / float64(time.Millisecond),
		Mutability: o.Mutability, PoolCapacity: o.PoolCapacity, CheckpointAt: o.CheckpointAt}
	if c.Kind == KindProbe {
		p.ProbeReps = o.ProbeReps
	}
	return p
}

// compatible says why a completed chunk cannot count for c under o: a
// results directory holds one protocol, or its runs are not comparable.
func (o Options) compatible(c Chunk, done RunResult) error {
	want, got := o.protocol(c), done.Protocol
	if want != got {
		return fmt.Errorf("%s was run with %s (probe reps %d), this run asks for %s (probe reps %d): use another --out, or remove %s to measure it again",
			c, got, got.ProbeReps, want, want.ProbeReps, c.Dir())
	}
	return nil
}

// interval is the pause after each response for benchmark b.
func (o Options) interval(b string) time.Duration {
	if d, ok := o.Intervals[o.Runtimes[b]]; ok {
		return d
	}
	return o.DefaultInterval
}

// inputSeed is the input seed of request i of a run with seed s.
func inputSeed(s int64, i int) int64 { return s*1_000_000 + int64(i) }

// shortStrategy keeps deployed names within a DNS label.
func shortStrategy(s string) string {
	switch s {
	case StrategyRequestCentric:
		return "rc"
	case StrategyFixed:
		return "fixed"
	}
	return s
}

// strategyLabel is how tables and figures name a strategy; t is fixed's T.
func strategyLabel(s string, t int) string {
	switch s {
	case StrategyFixed:
		return fmt.Sprintf("fixed(%d)", t)
	case StrategyBandit:
		return "bandit (ours)"
	}
	return s
}

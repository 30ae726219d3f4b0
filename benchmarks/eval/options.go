// Package eval is the evaluation driver of the paper's Section 5 (our
// docs/architecture.md, "Evaluation pipeline"): it deploys each benchmark function on a running Pronghorn
// provider under every strategy and eviction rate, sends sequential
// requests, records client and server latency, reads the engine's state and
// the snapshot metrics, and writes the latency CSV, Tables 4 and 5, latency
// CDF figures and an HTML index. It talks HTTP to the provider only, so it
// measures what a client of the platform sees.
package eval

import (
	"errors"
	"fmt"
	"io"
	"net/url"
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
	// Requests per benchmark × strategy × rate, sent sequentially.
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
	// Seed seeds the engine's decisions (com.pronghorn.seed) and the
	// per-request inputs (request i gets seed Seed+i, so every strategy
	// sees the same input sequence).
	Seed int64
	// PoolCapacity is C of request-centric and bandit (12 in the paper).
	PoolCapacity int
	// CheckpointAt is T of fixed (1: the snapshot-after-first-request baseline).
	CheckpointAt int
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
	// OutDir receives latency.csv, runs.csv, tables, figures and index.html.
	OutDir string
	// Stdout receives progress lines and the summary table; nil discards.
	Stdout io.Writer
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

// DefaultOptions is the artifact's protocol: all 13 benchmarks, cold,
// fixed(1) and request-centric (C=12), E ∈ {20, 4, 1}, 500 requests 200 ms
// apart on PyPy and 100 ms apart on the JVM.
func DefaultOptions() Options {
	return Options{
		Gateway:         "http://127.0.0.1:8080",
		Benchmarks:      CatalogNames(),
		Strategies:      []string{StrategyCold, StrategyFixed, StrategyRequestCentric},
		Rates:           []int{20, 4, 1},
		Requests:        500,
		Intervals:       map[string]time.Duration{"pypy": 200 * time.Millisecond, "jvm": 100 * time.Millisecond, "node": 100 * time.Millisecond},
		DefaultInterval: 200 * time.Millisecond,
		Runtimes:        Catalog(),
		Seed:            1,
		PoolCapacity:    12,
		CheckpointAt:    1,
		PollEvery:       1,
		ReadyTimeout:    60 * time.Second,
		RequestTimeout:  60 * time.Second,
		Settle:          time.Second,
		OutDir:          "results",
	}
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
	if o.PoolCapacity == 0 {
		o.PoolCapacity = d.PoolCapacity
	}
	if o.CheckpointAt == 0 {
		o.CheckpointAt = d.CheckpointAt
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
			errs = append(errs, fmt.Errorf("eviction rate %d: must be ≥ 1", r))
		}
	}
	if o.Requests < 1 {
		errs = append(errs, fmt.Errorf("requests %d: must be ≥ 1", o.Requests))
	}
	if o.Mutability < 0 {
		errs = append(errs, fmt.Errorf("mutability %g: must be ≥ 0", o.Mutability))
	}
	if o.PoolCapacity < 1 || o.CheckpointAt < 1 || o.PollEvery < 1 {
		errs = append(errs, errors.New("pool capacity, checkpoint-at and poll-every must be ≥ 1"))
	}
	for _, b := range o.Benchmarks {
		if b == "" || strings.ContainsAny(b, "/ ") {
			errs = append(errs, fmt.Errorf("benchmark %q: want a function directory name", b))
		}
	}
	return o, errors.Join(errs...)
}

// interval is the pause after each response for benchmark b.
func (o Options) interval(b string) time.Duration {
	if d, ok := o.Intervals[o.Runtimes[b]]; ok {
		return d
	}
	return o.DefaultInterval
}

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

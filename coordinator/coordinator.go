// Package coordinator runs the snapshot life cycle for any backend: it
// plans each worker's start with the engine, feeds the engine what workers
// observe, takes and registers checkpoints, keeps a verified local copy of
// pool images, and deletes what leaves the pool, durably. Backends only
// start workers and carry the plan to them.
//
// A snapshot belongs to one version of a function (see VersionInputs); the
// engine keeps one entry per version, and a worker restores only snapshots
// of its own version. docs/architecture.md describes the whole life cycle.
package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/singleflight"

	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// Timeout bounds one checkpoint, download or store call.
const Timeout = 2 * time.Minute

// DefaultDeleteRetry is how often deletes the store refused are retried.
const DefaultDeleteRetry = 30 * time.Second

// Config is what a Coordinator works with.
type Config struct {
	// Engine and Store: with either nil, snapshots are off and every worker
	// starts cold (Enabled reports false).
	Engine *orchestrator.Engine
	Store  snapshot.Store
	// Defaults is the strategy of a function whose annotations name none.
	Defaults orchestrator.Config
	// WorkDir holds dumps on their way to the store and the local copies
	// of pool images.
	WorkDir     string
	DeleteRetry time.Duration
	Logger      *slog.Logger
}

// Coordinator is the snapshot life cycle of one provider.
type Coordinator struct {
	cfg     Config
	log     *slog.Logger
	deletes *deleteLog
	digests *digester
	metrics *metrics

	cacheMu   sync.Mutex
	seals     map[string]*snapshot.Seal
	downloads singleflight.Group

	fnMu      sync.Mutex
	functions map[string]*Function

	// Every goroutine the coordinator starts is tracked, so Close returns
	// only once none of them can touch the state file or the store.
	tasksMu     sync.Mutex
	tasksClosed bool
	tasks       sync.WaitGroup
	stop        chan struct{}
	closed      atomic.Bool
}

// New opens the coordinator's records in db and, when snapshots are on,
// starts the janitor that retries deletes and removes partial uploads.
func New(db *bolt.DB, cfg Config) (*Coordinator, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Defaults.Strategy == "" {
		cfg.Defaults = orchestrator.DefaultConfig()
	}
	if cfg.DeleteRetry <= 0 {
		cfg.DeleteRetry = DefaultDeleteRetry
	}
	deletes, err := openDeleteLog(db)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg: cfg, log: cfg.Logger, deletes: deletes, digests: newDigester(), metrics: newMetrics(),
		seals: map[string]*snapshot.Seal{}, functions: map[string]*Function{}, stop: make(chan struct{}),
	}
	if c.Enabled() {
		if cfg.WorkDir == "" {
			return nil, fmt.Errorf("coordinator: no work dir")
		}
		c.goTracked(c.janitor)
	}
	return c, nil
}

// Enabled reports whether workers take part in snapshots at all.
func (c *Coordinator) Enabled() bool { return c.cfg.Engine != nil && c.cfg.Store != nil }

// Close stops the janitor and waits for every checkpoint and delete in
// flight, or until ctx ends. Later calls start nothing.
func (c *Coordinator) Close(ctx context.Context) error {
	if c.closed.Swap(true) {
		return nil
	}
	close(c.stop)
	c.tasksMu.Lock()
	c.tasksClosed = true
	c.tasksMu.Unlock()
	done := make(chan struct{})
	go func() { c.tasks.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("coordinator: wait for checkpoints and deletes: %w", ctx.Err())
	}
}

// goTracked runs fn on a goroutine Close waits for; after Close it runs
// nothing and reports false.
func (c *Coordinator) goTracked(fn func()) bool {
	c.tasksMu.Lock()
	defer c.tasksMu.Unlock()
	if c.tasksClosed {
		return false
	}
	c.tasks.Add(1)
	go func() {
		defer c.tasks.Done()
		fn()
	}()
	return true
}

// EngineConfig resolves a deployment's strategy from its annotations.
func (c *Coordinator) EngineConfig(annotations map[string]string) (orchestrator.Config, error) {
	return orchestrator.ConfigFromAnnotations(c.cfg.Defaults, annotations)
}

// Function is one function as the coordinator tracks it across versions.
type Function struct {
	key     string // namespace/name
	display string // name.namespace, as OpenFaaS names functions in metrics

	mu sync.Mutex
	// current is the engine key of the most recently started worker;
	// starts orders starts, since versions are computed off the lock.
	starts, currentSeq uint64
	current            string
	// configured maps engine keys to the configuration generation + 1
	// they were configured with.
	configured map[string]uint64
	// live counts the workers holding each engine key.
	live    map[string]int
	removed bool
}

// Function returns the tracked state of namespace/name, creating it. A
// function deleted and deployed again while workers of the old one still
// run gets the same state back, so neither collects the other's versions.
func (c *Coordinator) Function(namespace, name string) *Function {
	key := namespace + "/" + name
	c.fnMu.Lock()
	defer c.fnMu.Unlock()
	if f := c.functions[key]; f != nil {
		f.mu.Lock()
		f.removed = false
		f.mu.Unlock()
		return f
	}
	f := &Function{key: key, display: name + "." + namespace, configured: map[string]uint64{}, live: map[string]int{}}
	c.functions[key] = f
	return f
}

// Worker is one worker's part in the life cycle. Its methods are safe for
// concurrent use.
type Worker struct {
	id       string
	fn       *Function
	runtime  string
	logf     func(format string, args ...any)
	dumper   Dumper
	uploader Uploader
	key      string // engine key; "" when the worker takes no part in snapshots

	mu  sync.Mutex // serialises the engine's updates of eng, in call order
	eng orchestrator.Worker

	checkpointing atomic.Bool
	// dumping is true from the engine's checkpoint decision until the dump
	// has been taken: a call the worker served meanwhile would end up in a
	// snapshot labelled with an earlier request number.
	dumping  atomic.Bool
	onDumped func()
	gone     atomic.Bool
}

// ID is the worker's id.
func (w *Worker) ID() string { return w.id }

// Key is the engine key of the worker's version, "" when it takes no part
// in snapshots.
func (w *Worker) Key() string { return w.key }

// Version is the version the worker runs, "" when it takes no part in
// snapshots. A backend whose workers outlive the provider hands it to the
// worker with its plan, so that a provider started later can Adopt it.
func (w *Worker) Version() string {
	if w.key == "" {
		return ""
	}
	v, _ := versionOf(w.fn.key, w.key)
	return v
}

// CheckpointAt is the lineage request number at which the worker is to be
// checkpointed, 0 for none; handed to the worker with Version.
func (w *Worker) CheckpointAt() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.eng.CheckpointAt
}

// Served is how many calls the engine has learned from this worker.
func (w *Worker) Served() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.eng.Served
}

// Dumping reports whether the worker is about to be, or being, dumped;
// backends send it no new call until then (Spec.OnDumped says when).
func (w *Worker) Dumping() bool { return w.dumping.Load() }

// Checkpointing reports whether a checkpoint of the worker is in flight.
func (w *Worker) Checkpointing() bool { return w.checkpointing.Load() }

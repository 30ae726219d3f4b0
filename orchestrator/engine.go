package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// Snapshot is one checkpoint image in a function's pool.
type Snapshot struct {
	Key           string    `json:"key"`
	RequestNumber int       `json:"requestNumber"` // lineage request number at which it was taken
	SizeBytes     int64     `json:"sizeBytes"`
	SHA256        string    `json:"sha256,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
}

// Worker is the engine's view of one running replica. The caller owns it;
// it is not safe for concurrent use on the same Worker.
type Worker struct {
	ID           string `json:"id"`
	Lineage      int    `json:"lineage"`      // requests the runtime state has served since its original cold start
	Served       int    `json:"served"`       // requests this worker has served
	CheckpointAt int    `json:"checkpointAt"` // lineage request number at which to checkpoint; 0 = never
	Snapshot     string `json:"snapshot"`     // key it was restored from, "" if cold
}

// Plan is how a new worker starts.
type Plan struct {
	Worker  Worker     // initial state (Lineage = the snapshot's RequestNumber, or 0)
	Restore *Snapshot  // nil = cold start
	Pruned  []Snapshot // removed from the pool now: the caller must delete them from the store
}

// Action is what the caller must do after a request.
type Action struct {
	Checkpoint bool // snapshot this worker now; its Lineage is the snapshot's RequestNumber
	Evict      bool // the worker is due for eviction (served E requests, or lineage reached M when E > 0)
}

// Option configures an Engine.
type Option func(*Engine)

// WithRandSource replaces how a decision's random source is made. The engine
// calls it once per OnStart with the function, its effective seed and the
// number of OnStart calls before this one, so the sequence of decisions is a
// pure function of (seed, call sequence) and survives restarts.
func WithRandSource(f func(fn string, seed int64, call uint64) *rand.Rand) Option {
	return func(e *Engine) { e.newRand = f }
}

// WithClock replaces time.Now (snapshot CreatedAt, seed 0 derivation).
func WithClock(f func() time.Time) Option { return func(e *Engine) { e.now = f } }

// DefaultFlushInterval is how often learned weights are written by default.
const DefaultFlushInterval = time.Second

// WithFlushInterval sets how often the weights learned by OnRequest are
// written to bbolt: the most learning a crash can lose. A non-positive d
// keeps DefaultFlushInterval.
func WithFlushInterval(d time.Duration) Option {
	return func(e *Engine) {
		if d > 0 {
			e.flushEvery = d
		}
	}
}

// WithLogger sets where the engine reports what it cannot act on itself:
// unreadable records at Open and failed background flushes. A nil l keeps
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(e *Engine) {
		if l != nil {
			e.log = l
		}
	}
}

// withAfterFlush lets tests observe (and stall) the background flusher.
func withAfterFlush(f func()) Option { return func(e *Engine) { e.afterFlush = f } }

// Engine is the orchestration engine over one bbolt file. Its methods are
// safe for concurrent use. It keeps every function's state in memory and
// must be the only Engine writing to its bucket; call Close before closing
// the bbolt DB.
type Engine struct {
	db         *bbolt.DB
	newRand    func(fn string, seed int64, call uint64) *rand.Rand
	now        func() time.Time
	log        *slog.Logger
	flushEvery time.Duration
	afterFlush func()

	mu  sync.RWMutex // guards fns; taken before any fnState.mu, never after
	fns map[string]*fnState

	closed    atomic.Bool
	stop      chan struct{}
	flusher   sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open creates the engine's bucket in db if needed, loads every function's
// state and starts the background flusher. Unreadable records are logged
// and reset (see WithLogger); only a bbolt failure fails Open.
func Open(db *bbolt.DB, opts ...Option) (*Engine, error) {
	if db == nil {
		return nil, fmt.Errorf("orchestrator: nil bbolt DB: %w", errdefs.ErrInvalid)
	}
	e := &Engine{
		db: db, newRand: defaultRand, now: time.Now, log: slog.Default(), flushEvery: DefaultFlushInterval,
		fns: map[string]*fnState{}, stop: make(chan struct{}),
	}
	for _, o := range opts {
		o(e)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(rootBucket); err != nil {
			return fmt.Errorf("create bucket: %w", err)
		}
		return e.load(tx)
	}); err != nil {
		return nil, fmt.Errorf("orchestrator: open: %w", err)
	}
	e.flusher.Add(1)
	go e.runFlusher()
	return e, nil
}

// Close stops the background flusher, waits for it and for write-throughs
// in flight, and writes the weights learned since the last flush. Later
// calls fail with errdefs.ErrUnavailable; a second Close returns the first
// one's result. The bbolt DB stays open: the caller owns it. ctx does not
// cut the final flush short: a late return is better than lost learning.
func (e *Engine) Close(ctx context.Context) error {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		close(e.stop)
		e.flusher.Wait()
		// Every write-through checks closed after taking wmu, so once each
		// wmu has been free none is in flight, and the final flush (which
		// skips functions being written through) misses nothing.
		for _, s := range e.states() {
			s.wmu.Lock()
			s.wmu.Unlock()
		}
		if err := e.flush(); err != nil {
			e.closeErr = fmt.Errorf("orchestrator: close: %w", err)
		}
	})
	return e.closeErr
}

func defaultRand(fn string, seed int64, call uint64) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(fn))
	return rand.New(rand.NewPCG(uint64(seed), h.Sum64()^(call*0x9e3779b97f4a7c15)))
}

func errNotFound(fn string) error {
	return fmt.Errorf("function %q not configured: %w", fn, errdefs.ErrNotFound)
}

func errClosed() error {
	return fmt.Errorf("engine closed: %w", errdefs.ErrUnavailable)
}

func checkFn(fn string) error {
	if fn == "" {
		return fmt.Errorf("orchestrator: empty function name: %w", errdefs.ErrInvalid)
	}
	return nil
}

func opErr(op, fn string, err error) error {
	return fmt.Errorf("orchestrator: %s %q: %w", op, fn, err)
}

// precheck is what every call checks before looking at fn.
func (e *Engine) precheck(ctx context.Context, fn string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkFn(fn); err != nil {
		return err
	}
	if e.closed.Load() {
		return fmt.Errorf("orchestrator: %w", errClosed())
	}
	return nil
}

func (e *Engine) lookup(fn string) *fnState {
	e.mu.RLock()
	s := e.fns[fn]
	e.mu.RUnlock()
	return s
}

func (e *Engine) states() []*fnState {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]*fnState, 0, len(e.fns))
	for _, s := range e.fns {
		out = append(out, s)
	}
	return out
}

// writeThrough runs one durable operation on fn, which must be configured.
// plan gets a snapshot of the record (weights cloned, so it runs without
// blocking OnRequest) and fills next; next is committed in one bbolt
// transaction and only then installed, so a failed commit changes nothing.
func (e *Engine) writeThrough(ctx context.Context, fn, op string, plan func(cur record, next *record) (writeKind, error)) error {
	if err := e.precheck(ctx, fn); err != nil {
		return err
	}
	s := e.lookup(fn)
	if s == nil {
		return opErr(op, fn, errNotFound(fn))
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	switch {
	case e.closed.Load():
		s.mu.Unlock()
		return opErr(op, fn, errClosed())
	case !s.rec.configured || s.removed:
		s.mu.Unlock()
		return opErr(op, fn, errNotFound(fn))
	}
	cur := s.rec
	cur.w = cur.w.clone()
	s.writing = true
	s.mu.Unlock()

	next := cur
	wk, err := plan(cur, &next)
	var m uint64
	if err == nil && wk != noChange {
		m, err = e.persist(s, &next, wk)
	}
	s.install(&next, wk, m, err)
	if err != nil {
		return opErr(op, fn, err)
	}
	return nil
}

// ---- API ----

// Configure creates or updates fn's parameters (deploy/update). Learned
// weights and the pool are kept when only parameters change (the horizon
// resizes the weights); a strategy change resets them, and the old pool is
// handed to the caller for deletion in the next OnStart's Plan.Pruned (or by
// Reset/Remove). A changed non-zero seed restarts the random sequence.
// Configuring a function whose records were unreadable at Open repairs it,
// keeping whatever was readable.
func (e *Engine) Configure(ctx context.Context, fn string, cfg Config) error {
	if err := e.precheck(ctx, fn); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	for {
		s, err := e.stateFor(fn)
		if err != nil {
			return opErr("configure", fn, err)
		}
		if retry, err := e.configure(s, cfg); !retry {
			return err
		}
	}
}

// stateFor returns fn's state, creating an unconfigured one.
func (e *Engine) stateFor(fn string) (*fnState, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Load() {
		return nil, errClosed()
	}
	s := e.fns[fn]
	if s == nil {
		s = &fnState{name: fn}
		e.fns[fn] = s
	}
	return s, nil
}

// configure is Configure on one state; retry means a concurrent Remove
// detached it and Configure must start over on a fresh one.
func (e *Engine) configure(s *fnState, cfg Config) (retry bool, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.removed {
		s.mu.Unlock()
		return true, nil
	}
	if e.closed.Load() {
		s.mu.Unlock()
		return false, opErr("configure", s.name, errClosed())
	}
	cur := s.rec
	s.writing = true
	s.mu.Unlock()

	next := cur
	next.cfg, next.configured = cfg, true
	wk := keepWeights
	if cur.configured && cur.cfg.Strategy != cfg.Strategy {
		next.trash = append(slices.Clip(cur.trash), cur.pool...)
		next.pool = nil
		next.w, wk = newWeights(cfg), replaceWeights
	} else if !cur.configured || cur.w.kind != newWeights(cfg).kind || cur.w.m != cfg.Horizon {
		// OnRequest writes the live weights under s.mu: copy them there.
		s.mu.Lock()
		live := s.rec.w.clone()
		s.mu.Unlock()
		next.w, _ = live.fitted(cfg)
		wk = replaceWeights
	}
	if !cur.seeded || (cfg.Seed != 0 && (!cur.configured || cfg.Seed != cur.cfg.Seed)) {
		next.seed, next.calls, next.seeded = cfg.Seed, 0, true
		if next.seed == 0 {
			next.seed = deriveSeed(s.name, e.now().UnixNano())
		}
	}
	m, err := e.persist(s, &next, wk)
	s.install(&next, wk, m, err)
	if err != nil {
		return false, opErr("configure", s.name, err)
	}
	return false, nil
}

// OnStart plans a new worker of fn: which snapshot to restore (or a cold
// start) and at which request to checkpoint it. Over-capacity pruning happens
// here; Plan.Pruned lists the snapshots the caller must delete.
func (e *Engine) OnStart(ctx context.Context, fn string, workerID string) (Plan, error) {
	var plan Plan
	err := e.writeThrough(ctx, fn, "start", func(cur record, next *record) (writeKind, error) {
		plan = Plan{Worker: Worker{ID: workerID}, Pruned: cur.trash}
		cfg, w, pool := cur.cfg, cur.w, cur.pool
		rng := e.newRand(fn, cur.seed, cur.calls)
		next.calls = cur.calls + 1

		choice, kept, pruned := -1, pool, []Snapshot(nil)
		switch cfg.Strategy {
		case StrategyCold:
			kept, pruned = nil, pool // nothing belongs in a cold pool
		case StrategyFixed:
			choice = fixedChoose(pool, cfg.CheckpointAt, rng)
		case StrategyRequestCentric:
			if len(pool) > cfg.PoolCapacity {
				scores := make([]float64, len(pool))
				for i, s := range pool {
					scores[i] = rcScore(w.v, s.RequestNumber, cfg.window())
				}
				kept, pruned = rcPrune(pool, scores, cfg.PoolCapacity, cfg.P, cfg.Gamma, rng)
			}
			choice = rcChoose(w.v, kept, cfg.window(), rng)
		case StrategyBandit:
			d := banditPlan(cfg, w.bandit(), pool, e.banditMemory(fn), rng)
			choice, plan.Worker.CheckpointAt, kept, pruned = d.choice, d.checkpointAt, d.kept, d.pruned
			if d.explored {
				e.rememberExplored(fn)
			}
		}
		if choice >= 0 {
			s := kept[choice]
			plan.Restore = &s
			plan.Worker.Lineage = s.RequestNumber
			plan.Worker.Snapshot = s.Key
		}
		r := plan.Worker.Lineage
		switch cfg.Strategy {
		case StrategyFixed:
			plan.Worker.CheckpointAt = fixedCheckpointAt(r, cfg.CheckpointAt, cfg.EvictAfter)
		case StrategyRequestCentric:
			plan.Worker.CheckpointAt = rcCheckpointAt(w.v, r, cfg.window(), rng)
		}
		plan.Pruned = append(slices.Clip(plan.Pruned), pruned...)
		next.pool, next.trash = kept, nil
		if plan.Restore != nil {
			next.c.Restores++
		} else {
			next.c.ColdStarts++
		}
		return keepWeights, nil
	})
	if err != nil {
		return Plan{}, err
	}
	return plan, nil
}

// OnRequest records that w served one request in latency, updates w
// (Lineage++, Served++) and fn's weights, and says whether w must be
// checkpointed now and whether it is due for eviction. It only touches
// memory: the background flusher persists the weights. w is only modified
// when the observation was recorded.
func (e *Engine) OnRequest(ctx context.Context, fn string, w *Worker, latency time.Duration) (Action, error) {
	if w == nil || latency < 0 {
		return Action{}, fmt.Errorf("orchestrator: request on %q: nil worker or negative latency: %w", fn, errdefs.ErrInvalid)
	}
	if err := e.precheck(ctx, fn); err != nil {
		return Action{}, err
	}
	s := e.lookup(fn)
	if s == nil {
		return Action{}, opErr("request on", fn, errNotFound(fn))
	}
	us := float64(latency) / float64(time.Microsecond)
	nw := *w
	nw.Lineage++
	nw.Served++

	s.mu.Lock()
	switch {
	case e.closed.Load():
		s.mu.Unlock()
		return Action{}, opErr("request on", fn, errClosed())
	case !s.rec.configured || s.removed:
		s.mu.Unlock()
		return Action{}, opErr("request on", fn, errNotFound(fn))
	}
	cfg, wt := &s.rec.cfg, s.rec.w
	if wt.kind == kindBandit {
		banditObserve(wt.bandit(), w.Lineage, w.Served, w.Snapshot != "", us)
	} else {
		rcUpdate(wt.v, nw.Lineage, us, cfg.Eps)
	}
	s.mutations++
	act := Action{
		Checkpoint: nw.CheckpointAt > 0 && nw.Lineage == nw.CheckpointAt,
		// The horizon only evicts in the evaluation mode (E > 0): with E = 0
		// eviction is scale-down's business, and killing warm workers every M
		// requests would defeat the purpose of the engine.
		Evict: cfg.EvictAfter > 0 && (nw.Served >= cfg.EvictAfter || nw.Lineage >= cfg.Horizon),
	}
	if act.Checkpoint && cfg.Strategy == StrategyBandit {
		// Only bandit plans around checkpoints in flight. Expired entries
		// go here too, so a report that never comes cannot make the list
		// grow.
		now := e.now()
		s.forgetExpired(now)
		s.pending = append(s.pending, pendingCheckpoint{requestNumber: nw.Lineage, since: now, seen: s.mutations})
	}
	s.mu.Unlock()
	*w = nw
	return act, nil
}

// Register adds a snapshot that was taken on the engine's request to fn's
// pool and counts a checkpoint. Under the cold strategy (the strategy
// changed while the checkpoint ran) the snapshot goes straight to the trash
// and is handed back for deletion by the next OnStart.
func (e *Engine) Register(ctx context.Context, fn string, s Snapshot) error {
	if s.Key == "" || s.RequestNumber < 0 || s.SizeBytes < 0 {
		return fmt.Errorf("orchestrator: register on %q: snapshot needs a key and non-negative request number and size: %w", fn, errdefs.ErrInvalid)
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = e.now()
	}
	// Without the monotonic reading, the snapshot in memory is the one a
	// reopened engine decodes from the file.
	s.CreatedAt = s.CreatedAt.Round(0)
	// Whatever the outcome, this checkpoint is no longer in flight.
	e.settlePending(fn, true, func(p pendingCheckpoint) bool { return p.requestNumber == s.RequestNumber })
	return e.writeThrough(ctx, fn, "register on", func(cur record, next *record) (writeKind, error) {
		for _, list := range [...][]Snapshot{cur.pool, cur.trash} {
			for _, p := range list {
				if p.Key == s.Key {
					return noChange, fmt.Errorf("snapshot %q: %w", s.Key, errdefs.ErrAlreadyExists)
				}
			}
		}
		if cur.cfg.Strategy == StrategyCold {
			next.trash = append(slices.Clip(cur.trash), s)
		} else {
			next.pool = append(slices.Clip(cur.pool), s)
		}
		next.c.Checkpoints++
		return keepWeights, nil
	})
}

// CheckpointFailed counts a checkpoint the caller could not take.
func (e *Engine) CheckpointFailed(ctx context.Context, fn string) error {
	// The caller does not say which one failed: the oldest in flight is the
	// likeliest, and an error here only costs one duplicate snapshot or one
	// skipped checkpoint until pendingTTL.
	e.settlePending(fn, false, func(pendingCheckpoint) bool { return true })
	return e.writeThrough(ctx, fn, "count on", func(_ record, next *record) (writeKind, error) {
		next.c.FailedCheckpoints++
		return keepWeights, nil
	})
}

// startedCold turns one counted restore into a cold start; it keeps
// ColdStarts + Restores equal to the number of starts even if counters were
// reset underneath.
func (c *counters) startedCold() {
	if c.Restores > 0 {
		c.Restores--
		c.ColdStarts++
	}
}

// StartedCold records that a start OnStart planned as a restore became a
// cold start for a transient reason (the snapshot store did not answer):
// the snapshot stays in the pool, and the start counts as cold.
func (e *Engine) StartedCold(ctx context.Context, fn string) error {
	return e.writeThrough(ctx, fn, "count on", func(_ record, next *record) (writeKind, error) {
		next.c.startedCold()
		return keepWeights, nil
	})
}

// Forget removes a snapshot that failed to restore (it is proven bad) from
// fn's pool, counts a failed restore, and counts the start as the cold start
// it became. A key no longer in the pool (pruned meanwhile) is not an error:
// the restore still failed.
func (e *Engine) Forget(ctx context.Context, fn string, key string) error {
	return e.writeThrough(ctx, fn, "forget on", func(cur record, next *record) (writeKind, error) {
		next.pool = slices.DeleteFunc(slices.Clone(cur.pool), func(s Snapshot) bool { return s.Key == key })
		next.c.FailedRestores++
		next.c.startedCold()
		return keepWeights, nil
	})
}

// Inherit copies what function from has learned into function to, as a
// prior: when a function is updated, its new version (a new key) starts
// from the old version's warm-up curve instead of from nothing. It only
// acts when to has observed nothing yet and both learn the same kind of
// weights; pool, trash and counters are not copied. to must be configured;
// a missing from is a no-op.
func (e *Engine) Inherit(ctx context.Context, from, to string) error {
	if err := checkFn(from); err != nil {
		return err
	}
	return e.writeThrough(ctx, to, "inherit into", func(cur record, next *record) (writeKind, error) {
		if from == to || !cur.w.blank() {
			return noChange, nil
		}
		src := e.lookup(from)
		if src == nil {
			return noChange, nil
		}
		src.mu.Lock()
		ok := src.rec.configured && !src.removed && src.rec.w.kind == cur.w.kind
		var prior weights
		if ok {
			prior = src.rec.w.clone()
		}
		src.mu.Unlock()
		if !ok || prior.blank() {
			return noChange, nil
		}
		next.w = prior.resized(cur.cfg.Horizon)
		return replaceWeights, nil
	})
}

// Reset wipes fn's weights and pool and returns the snapshots (pool and any
// not yet handed back) for the caller to delete. Counters are kept: they are
// monotonic metrics.
func (e *Engine) Reset(ctx context.Context, fn string) ([]Snapshot, error) {
	var out []Snapshot
	err := e.writeThrough(ctx, fn, "reset", func(cur record, next *record) (writeKind, error) {
		out = append(slices.Clone(cur.trash), cur.pool...)
		next.pool, next.trash = nil, nil
		next.w = newWeights(cur.cfg)
		return replaceWeights, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Remove drops everything about fn (function deleted) and returns its
// snapshots for the caller to delete. It also removes a function whose
// records were unreadable at Open.
func (e *Engine) Remove(ctx context.Context, fn string) ([]Snapshot, error) {
	if err := e.precheck(ctx, fn); err != nil {
		return nil, err
	}
	s := e.lookup(fn)
	if s == nil {
		return nil, opErr("remove", fn, errNotFound(fn))
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	switch {
	case e.closed.Load():
		s.mu.Unlock()
		return nil, opErr("remove", fn, errClosed())
	case s.removed || !s.onDisk:
		s.mu.Unlock()
		return nil, opErr("remove", fn, errNotFound(fn))
	}
	out := append(slices.Clone(s.rec.pool), s.rec.trash...)
	s.writing = true
	s.mu.Unlock()

	err := e.db.Update(func(tx *bbolt.Tx) error {
		root := tx.Bucket(rootBucket)
		if root == nil {
			return nil
		}
		if err := root.DeleteBucket([]byte(fn)); err != nil && !errors.Is(err, bbolt.ErrBucketNotFound) {
			return err
		}
		return nil
	})
	s.mu.Lock()
	s.writing = false
	if err == nil {
		s.removed, s.onDisk, s.rec.configured = true, false, false
	}
	s.mu.Unlock()
	if err != nil {
		return nil, opErr("remove", fn, err)
	}
	e.mu.Lock()
	if e.fns[fn] == s {
		delete(e.fns, fn)
	}
	e.mu.Unlock()
	return out, nil
}

// PoolEntry is one snapshot as shown by Inspect. Score is higher-is-better:
// request-centric's window score (mean of 1e6/(w+1)), or for bandit the
// expected requests per second, 1e6 / expected mean latency in µs.
type PoolEntry struct {
	Key           string  `json:"key"`
	RequestNumber int     `json:"requestNumber"`
	SizeBytes     int64   `json:"sizeBytes"`
	Score         float64 `json:"score"`
}

// State is a read-only view of one function.
type State struct {
	Strategy          string      `json:"strategy"`
	Config            Config      `json:"config"`
	Pool              []PoolEntry `json:"pool"`
	Weights           []float64   `json:"weights"` // latency estimate (µs) per lineage request number - 1; 0 = unobserved
	ColdStarts        uint64      `json:"coldStarts"`
	Restores          uint64      `json:"restores"`
	Checkpoints       uint64      `json:"checkpoints"`
	FailedRestores    uint64      `json:"failedRestores"`
	FailedCheckpoints uint64      `json:"failedCheckpoints"`
}

// Inspect returns fn's state without modifying it.
func (e *Engine) Inspect(ctx context.Context, fn string) (State, error) {
	if err := e.precheck(ctx, fn); err != nil {
		return State{}, err
	}
	s := e.lookup(fn)
	if s == nil {
		return State{}, opErr("inspect", fn, errNotFound(fn))
	}
	s.mu.Lock()
	if !s.rec.configured || s.removed {
		s.mu.Unlock()
		return State{}, opErr("inspect", fn, errNotFound(fn))
	}
	r := s.rec
	w := r.w.clone()
	s.mu.Unlock()

	cfg, c := r.cfg, r.c
	st := State{Strategy: cfg.Strategy, Config: cfg, Pool: []PoolEntry{},
		ColdStarts: c.ColdStarts, Restores: c.Restores, Checkpoints: c.Checkpoints,
		FailedRestores: c.FailedRestores, FailedCheckpoints: c.FailedCheckpoints}
	var mean banditCurve
	if w.kind == kindBandit {
		st.Weights = append([]float64(nil), w.bandit().warm...)
		mean = banditSample(w.bandit(), nil, false)
	} else {
		st.Weights = w.v
	}
	for _, s := range r.pool {
		pe := PoolEntry{Key: s.Key, RequestNumber: s.RequestNumber, SizeBytes: s.SizeBytes}
		if w.kind == kindBandit {
			if c := mean.cost(cfg, s.RequestNumber, false); c > 0 && !math.IsInf(c, 0) {
				pe.Score = 1e6 / c
			}
		} else {
			pe.Score = rcScore(w.v, s.RequestNumber, cfg.window())
		}
		st.Pool = append(st.Pool, pe)
	}
	return st, nil
}

// Functions lists, in byte order, the configured functions and those whose
// bucket is in the file even if unreadable, so a caller can Remove the keys
// of versions that are gone.
func (e *Engine) Functions(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if e.closed.Load() {
		return nil, fmt.Errorf("orchestrator: list functions: %w", errClosed())
	}
	seen := map[string]bool{}
	e.mu.RLock()
	for fn, s := range e.fns {
		s.mu.Lock()
		if s.rec.configured && !s.removed {
			seen[fn] = true
		}
		s.mu.Unlock()
	}
	e.mu.RUnlock()
	err := e.db.View(func(tx *bbolt.Tx) error {
		root := tx.Bucket(rootBucket)
		if root == nil {
			return errors.New("engine bucket missing")
		}
		return root.ForEachBucket(func(k []byte) error {
			seen[string(k)] = true
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("orchestrator: list functions: %w", err)
	}
	out := slices.Collect(maps.Keys(seen))
	slices.Sort(out)
	return out, nil
}

// pendingCheckpoint is a checkpoint OnRequest asked for that has been
// neither registered nor reported failed yet: the dump and the upload take
// hundreds of ms, and the successor of an evicted worker is planned before
// its predecessor's snapshot is in the pool.
type pendingCheckpoint struct {
	requestNumber int
	since         time.Time
	seen          uint64 // the function's observation count when it was asked for
}

// pendingTTL forgets a checkpoint whose outcome never came, so a lost
// report cannot stop checkpoints for long. It is longer than a checkpoint
// may take (the provider gives one 2 minutes).
const pendingTTL = 3 * time.Minute

// forgetExpired drops the checkpoints in flight older than pendingTTL; the
// caller holds s.mu.
func (s *fnState) forgetExpired(now time.Time) {
	s.pending = slices.DeleteFunc(s.pending, func(p pendingCheckpoint) bool { return now.Sub(p.since) > pendingTTL })
}

// banditMemory is what fn's bandit plans from besides its record: the
// request numbers of its checkpoints in flight (dropping the expired), the
// learned registration lag (how many requests the function served, rounded
// up, between a checkpoint's request and its registration; -1 before the
// first registration), and whether exploration has ended. All of it is
// memory only on purpose: after a restart no checkpoint of the previous
// process can still register, the lag is relearned at the first one, and
// convergence is recomputed from the curve.
func (e *Engine) banditMemory(fn string) banditMemory {
	mem := banditMemory{lag: -1}
	s := e.lookup(fn)
	if s == nil {
		return mem
	}
	now := e.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgetExpired(now)
	mem.pending = make([]int, len(s.pending))
	for i, p := range s.pending {
		mem.pending[i] = p.requestNumber
	}
	if s.lagN > 0 {
		mem.lag = int(math.Ceil(s.lag))
	}
	mem.explored = s.explored
	return mem
}

// rememberExplored records that fn's exploration has ended. Only OnStart
// calls it, under fn's write lock, so weights replaced by another write
// (which forget it) cannot interleave.
func (e *Engine) rememberExplored(fn string) {
	if s := e.lookup(fn); s != nil {
		s.mu.Lock()
		s.explored = true
		s.mu.Unlock()
	}
}

// lagAlpha is the EWMA factor of the registration lag.
const lagAlpha = 0.3

// settlePending removes the oldest of fn's checkpoints in flight that
// match; registered: it is in the pool now, and its lag is learned.
func (e *Engine) settlePending(fn string, registered bool, match func(pendingCheckpoint) bool) {
	s := e.lookup(fn)
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.pending, match)
	if i < 0 {
		return
	}
	if registered {
		lag := float64(s.mutations - s.pending[i].seen)
		if s.lagN == 0 {
			s.lag = lag
		} else {
			s.lag += lagAlpha * (lag - s.lag)
		}
		s.lagN++
	}
	s.pending = slices.Delete(s.pending, i, i+1)
}

package orchestrator

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
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

// WithBatch makes OnRequest commit through bbolt's db.Batch, which coalesces
// concurrent callers into one transaction and one fsync. It raises
// throughput when many workers report at once, at the price of up to
// db.MaxBatchDelay (10 ms by default) of latency for a lone caller; use it
// when OnRequest runs off the request's critical path.
func WithBatch() Option { return func(e *Engine) { e.batch = true } }

// Engine is the orchestration engine over one bbolt file. Its methods are
// safe for concurrent use; it holds no state outside bbolt.
type Engine struct {
	db      *bbolt.DB
	newRand func(fn string, seed int64, call uint64) *rand.Rand
	now     func() time.Time
	batch   bool
}

// Bucket layout: one top-level bucket, one nested bucket per function, keys
// split by how often they are written so OnRequest rewrites only the weights.
var (
	rootBucket = []byte("pronghorn.orchestrator")
	keyConfig  = []byte("config")   // binary Config
	keyRand    = []byte("rand")     // effective seed, OnStart call counter
	keyWeights = []byte("weights")  // kind byte + float64s (hot: every OnRequest)
	keyPool    = []byte("pool")     // JSON []Snapshot
	keyTrash   = []byte("trash")    // JSON []Snapshot awaiting deletion by the caller
	keyCount   = []byte("counters") // 5 x uint64
)

// Open creates the engine's bucket in db if needed.
func Open(db *bbolt.DB, opts ...Option) (*Engine, error) {
	if db == nil {
		return nil, fmt.Errorf("orchestrator: nil bbolt DB: %w", errdefs.ErrInvalid)
	}
	e := &Engine{db: db, newRand: defaultRand, now: time.Now}
	for _, o := range opts {
		o(e)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(rootBucket)
		return err
	}); err != nil {
		return nil, fmt.Errorf("orchestrator: create bucket: %w", err)
	}
	return e, nil
}

func defaultRand(fn string, seed int64, call uint64) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(fn))
	return rand.New(rand.NewPCG(uint64(seed), h.Sum64()^(call*0x9e3779b97f4a7c15)))
}

func errNotFound(fn string) error {
	return fmt.Errorf("function %q not configured: %w", fn, errdefs.ErrNotFound)
}

func checkFn(fn string) error {
	if fn == "" {
		return fmt.Errorf("orchestrator: empty function name: %w", errdefs.ErrInvalid)
	}
	return nil
}

// fnBucket returns fn's bucket or ErrNotFound.
// inFn runs f on fn's bucket in one transaction (read-write through
// commit, or read-only through db.View), after the checks every method
// shares, and names the operation in the error.
func (e *Engine) inFn(ctx context.Context, fn, op string, commit func(func(*bbolt.Tx) error) error, f func(b *bbolt.Bucket) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkFn(fn); err != nil {
		return err
	}
	err := commit(func(tx *bbolt.Tx) error {
		b, err := fnBucket(tx, fn)
		if err != nil {
			return err
		}
		return f(b)
	})
	if err != nil {
		return fmt.Errorf("orchestrator: %s %q: %w", op, fn, err)
	}
	return nil
}

// loadPools reads fn's pool and the snapshots waiting to be handed back.
func loadPools(b *bbolt.Bucket) (pool, trash []Snapshot, err error) {
	if pool, err = loadSnapshots(b, keyPool); err != nil {
		return nil, nil, err
	}
	if trash, err = loadSnapshots(b, keyTrash); err != nil {
		return nil, nil, err
	}
	return pool, trash, nil
}

func fnBucket(tx *bbolt.Tx, fn string) (*bbolt.Bucket, error) {
	root := tx.Bucket(rootBucket)
	if root == nil {
		return nil, errNotFound(fn)
	}
	b := root.Bucket([]byte(fn))
	if b == nil {
		return nil, errNotFound(fn)
	}
	return b, nil
}

// ---- records ----

type counters struct {
	ColdStarts, Restores, Checkpoints, FailedRestores, FailedCheckpoints uint64
}

func loadCounters(b *bbolt.Bucket) counters {
	var c counters
	v := b.Get(keyCount)
	if len(v) != 40 {
		return c
	}
	c.ColdStarts = binary.LittleEndian.Uint64(v[0:])
	c.Restores = binary.LittleEndian.Uint64(v[8:])
	c.Checkpoints = binary.LittleEndian.Uint64(v[16:])
	c.FailedRestores = binary.LittleEndian.Uint64(v[24:])
	c.FailedCheckpoints = binary.LittleEndian.Uint64(v[32:])
	return c
}

func putCounters(b *bbolt.Bucket, c counters) error {
	v := make([]byte, 0, 40)
	for _, x := range []uint64{c.ColdStarts, c.Restores, c.Checkpoints, c.FailedRestores, c.FailedCheckpoints} {
		v = binary.LittleEndian.AppendUint64(v, x)
	}
	return b.Put(keyCount, v)
}

func updateCounters(b *bbolt.Bucket, f func(*counters)) error {
	c := loadCounters(b)
	f(&c)
	return putCounters(b, c)
}

func loadConfig(b *bbolt.Bucket) (Config, error) {
	return unmarshalConfig(b.Get(keyConfig))
}

func loadSnapshots(b *bbolt.Bucket, key []byte) ([]Snapshot, error) {
	v := b.Get(key)
	if len(v) == 0 {
		return nil, nil
	}
	var s []Snapshot
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, fmt.Errorf("orchestrator: corrupt %s record: %w", key, err)
	}
	return s, nil
}

func putSnapshots(b *bbolt.Bucket, key []byte, s []Snapshot) error {
	if len(s) == 0 {
		return b.Delete(key)
	}
	v, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return b.Put(key, v)
}

// weights is the learned model: for cold, fixed and request-centric the
// artifact's M EWMA weights (tracked for all three so inspection shows the
// warm-up curve); for bandit four arrays of M plus banditScalars.
type weights struct {
	kind byte
	m    int
	v    []float64
}

const (
	kindEWMA   byte = 1
	kindBandit byte = 2
)

func newWeights(cfg Config) weights {
	if cfg.Strategy == StrategyBandit {
		return weights{kind: kindBandit, m: cfg.Horizon, v: make([]float64, 4*cfg.Horizon+banditScalars)}
	}
	return weights{kind: kindEWMA, m: cfg.Horizon, v: make([]float64, cfg.Horizon)}
}

func (w weights) bandit() banditView {
	m := w.m
	return banditView{m: m, warm: w.v[:m], warmN: w.v[m : 2*m], first: w.v[2*m : 3*m], firstN: w.v[3*m : 4*m], v: w.v}
}

// resized keeps what was learned for request numbers below the new horizon.
func (w weights) resized(m int) weights {
	if m == w.m {
		return w
	}
	n := weights{kind: w.kind, m: m}
	if w.kind == kindBandit {
		n.v = make([]float64, 4*m+banditScalars)
		for seg := range 4 {
			copy(n.v[seg*m:seg*m+m], w.v[seg*w.m:seg*w.m+min(m, w.m)])
		}
		copy(n.v[4*m:], w.v[4*w.m:])
		return n
	}
	n.v = make([]float64, m)
	copy(n.v, w.v)
	return n
}

func loadWeights(b *bbolt.Bucket, cfg Config) (weights, error) {
	v := b.Get(keyWeights)
	if len(v) < 1 || (len(v)-1)%8 != 0 {
		return newWeights(cfg), nil
	}
	n := (len(v) - 1) / 8
	w := weights{kind: v[0], v: make([]float64, n)}
	for i := range w.v {
		w.v[i] = math.Float64frombits(binary.LittleEndian.Uint64(v[1+8*i:]))
	}
	switch {
	case w.kind == kindEWMA:
		w.m = n
	case w.kind == kindBandit && n >= banditScalars && (n-banditScalars)%4 == 0:
		w.m = (n - banditScalars) / 4
	default:
		return weights{}, fmt.Errorf("orchestrator: corrupt weights record (kind %d, %d values)", w.kind, n)
	}
	if want := newWeights(cfg).kind; want != w.kind {
		return newWeights(cfg), nil // strategy changed under a running worker
	}
	return w.resized(cfg.Horizon), nil
}

func putWeights(b *bbolt.Bucket, w weights) error {
	buf := make([]byte, 1+8*len(w.v))
	buf[0] = w.kind
	for i, x := range w.v {
		binary.LittleEndian.PutUint64(buf[1+8*i:], math.Float64bits(x))
	}
	return b.Put(keyWeights, buf)
}

func loadRand(b *bbolt.Bucket) (seed int64, calls uint64, ok bool) {
	v := b.Get(keyRand)
	if len(v) != 16 {
		return 0, 0, false
	}
	return int64(binary.LittleEndian.Uint64(v)), binary.LittleEndian.Uint64(v[8:]), true
}

func putRand(b *bbolt.Bucket, seed int64, calls uint64) error {
	v := binary.LittleEndian.AppendUint64(make([]byte, 0, 16), uint64(seed))
	return b.Put(keyRand, binary.LittleEndian.AppendUint64(v, calls))
}

// ---- API ----

// Configure creates or updates fn's parameters (deploy/update). Learned
// weights and the pool are kept when only parameters change (the horizon
// resizes the weights); a strategy change resets them, and the old pool is
// handed to the caller for deletion in the next OnStart's Plan.Pruned (or by
// Reset/Remove). A changed non-zero seed restarts the random sequence.
func (e *Engine) Configure(ctx context.Context, fn string, cfg Config) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkFn(fn); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	return e.db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.Bucket(rootBucket).CreateBucketIfNotExists([]byte(fn))
		if err != nil {
			return fmt.Errorf("orchestrator: create bucket for %q: %w", fn, err)
		}
		old, oldErr := loadConfig(b)
		fresh := b.Get(keyConfig) == nil
		if !fresh && oldErr == nil && old.Strategy != cfg.Strategy {
			if err := resetFn(b, cfg); err != nil {
				return err
			}
		} else {
			w, err := loadWeights(b, cfg)
			if err != nil {
				return err
			}
			if err := putWeights(b, w); err != nil {
				return err
			}
		}
		if _, _, ok := loadRand(b); !ok || (cfg.Seed != 0 && (oldErr != nil || cfg.Seed != old.Seed)) {
			seed := cfg.Seed
			if seed == 0 {
				h := fnv.New64a()
				h.Write([]byte(fn))
				seed = e.now().UnixNano() ^ int64(h.Sum64()>>1)
			}
			if err := putRand(b, seed, 0); err != nil {
				return err
			}
		}
		return b.Put(keyConfig, cfg.marshalBinary())
	})
}

// resetFn wipes fn's weights and moves its pool to the trash.
func resetFn(b *bbolt.Bucket, cfg Config) error {
	pool, err := loadSnapshots(b, keyPool)
	if err != nil {
		return err
	}
	trash, err := loadSnapshots(b, keyTrash)
	if err != nil {
		return err
	}
	if err := putSnapshots(b, keyTrash, append(trash, pool...)); err != nil {
		return err
	}
	if err := b.Delete(keyPool); err != nil {
		return err
	}
	return putWeights(b, newWeights(cfg))
}

// OnStart plans a new worker of fn: which snapshot to restore (or a cold
// start) and at which request to checkpoint it. Over-capacity pruning happens
// here; Plan.Pruned lists the snapshots the caller must delete.
func (e *Engine) OnStart(ctx context.Context, fn string, workerID string) (Plan, error) {
	var plan Plan
	err := e.inFn(ctx, fn, "start", e.db.Update, func(b *bbolt.Bucket) error {
		plan = Plan{Worker: Worker{ID: workerID}}
		cfg, err := loadConfig(b)
		if err != nil {
			return err
		}
		seed, calls, _ := loadRand(b)
		rng := e.newRand(fn, seed, calls)
		if err := putRand(b, seed, calls+1); err != nil {
			return err
		}
		pool, trash, err := loadPools(b)
		if err != nil {
			return err
		}
		plan.Pruned = trash
		w, err := loadWeights(b, cfg)
		if err != nil {
			return err
		}

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
			choice, plan.Worker.CheckpointAt, kept, pruned = banditPlan(cfg, w.bandit(), pool, rng)
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
		plan.Pruned = append(plan.Pruned, pruned...)
		if len(pruned) > 0 {
			if err := putSnapshots(b, keyPool, kept); err != nil {
				return err
			}
		}
		if len(trash) > 0 {
			if err := b.Delete(keyTrash); err != nil {
				return err
			}
		}
		return updateCounters(b, func(c *counters) {
			if plan.Restore != nil {
				c.Restores++
			} else {
				c.ColdStarts++
			}
		})
	})
	if err != nil {
		return Plan{}, err
	}
	return plan, nil
}

// OnRequest records that w served one request in latency, updates w
// (Lineage++, Served++) and fn's weights, and says whether w must be
// checkpointed now and whether it is due for eviction. w is only modified
// when the update committed.
func (e *Engine) OnRequest(ctx context.Context, fn string, w *Worker, latency time.Duration) (Action, error) {
	if w == nil || latency < 0 {
		return Action{}, fmt.Errorf("orchestrator: request on %q: nil worker or negative latency: %w", fn, errdefs.ErrInvalid)
	}
	us := float64(latency) / float64(time.Microsecond)
	var act Action
	var nw Worker
	commit := e.db.Update
	if e.batch {
		commit = e.db.Batch
	}
	err := e.inFn(ctx, fn, "request on", commit, func(b *bbolt.Bucket) error {
		// Recomputed from *w on every attempt: db.Batch may run this twice.
		nw, act = *w, Action{}
		cfg, err := loadConfig(b)
		if err != nil {
			return err
		}
		wt, err := loadWeights(b, cfg)
		if err != nil {
			return err
		}
		nw.Lineage++
		nw.Served++
		if wt.kind == kindBandit {
			banditObserve(wt.bandit(), w.Lineage, w.Served, w.Snapshot != "", us)
		} else {
			rcUpdate(wt.v, nw.Lineage, us, cfg.Eps)
		}
		if err := putWeights(b, wt); err != nil {
			return err
		}
		act.Checkpoint = nw.CheckpointAt > 0 && nw.Lineage == nw.CheckpointAt
		// The horizon only evicts in the evaluation mode (E > 0): with E = 0
		// eviction is scale-down's business, and killing warm workers every M
		// requests would defeat the purpose of the engine.
		act.Evict = cfg.EvictAfter > 0 && (nw.Served >= cfg.EvictAfter || nw.Lineage >= cfg.Horizon)
		return nil
	})
	if err != nil {
		return Action{}, err
	}
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
	return e.inFn(ctx, fn, "register on", e.db.Update, func(b *bbolt.Bucket) error {
		cfg, err := loadConfig(b)
		if err != nil {
			return err
		}
		pool, trash, err := loadPools(b)
		if err != nil {
			return err
		}
		for _, p := range append(pool, trash...) {
			if p.Key == s.Key {
				return fmt.Errorf("snapshot %q: %w", s.Key, errdefs.ErrAlreadyExists)
			}
		}
		if cfg.Strategy == StrategyCold {
			err = putSnapshots(b, keyTrash, append(trash, s))
		} else {
			err = putSnapshots(b, keyPool, append(pool, s))
		}
		if err != nil {
			return err
		}
		return updateCounters(b, func(c *counters) { c.Checkpoints++ })
	})
}

// CheckpointFailed counts a checkpoint the caller could not take.
func (e *Engine) CheckpointFailed(ctx context.Context, fn string) error {
	return e.count(ctx, fn, func(c *counters) { c.FailedCheckpoints++ })
}

func (e *Engine) count(ctx context.Context, fn string, f func(*counters)) error {
	return e.inFn(ctx, fn, "count on", e.db.Update, func(b *bbolt.Bucket) error { return updateCounters(b, f) })
}

// Forget removes a snapshot that failed to restore from fn's pool and counts
// a failed restore. A key no longer in the pool (pruned meanwhile) is not an
// error: the restore still failed.
func (e *Engine) Forget(ctx context.Context, fn string, key string) error {
	return e.inFn(ctx, fn, "forget on", e.db.Update, func(b *bbolt.Bucket) error {
		pool, err := loadSnapshots(b, keyPool)
		if err != nil {
			return err
		}
		kept := pool[:0:0]
		for _, s := range pool {
			if s.Key != key {
				kept = append(kept, s)
			}
		}
		if len(kept) != len(pool) {
			if err := putSnapshots(b, keyPool, kept); err != nil {
				return err
			}
		}
		return updateCounters(b, func(c *counters) { c.FailedRestores++ })
	})
}

// Reset wipes fn's weights and pool and returns the snapshots (pool and any
// not yet handed back) for the caller to delete. Counters are kept: they are
// monotonic metrics.
func (e *Engine) Reset(ctx context.Context, fn string) ([]Snapshot, error) {
	var out []Snapshot
	err := e.inFn(ctx, fn, "reset", e.db.Update, func(b *bbolt.Bucket) error {
		cfg, err := loadConfig(b)
		if err != nil {
			return err
		}
		if err := resetFn(b, cfg); err != nil {
			return err
		}
		if out, err = loadSnapshots(b, keyTrash); err != nil {
			return err
		}
		return b.Delete(keyTrash)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Remove drops everything about fn (function deleted) and returns its
// snapshots for the caller to delete.
func (e *Engine) Remove(ctx context.Context, fn string) ([]Snapshot, error) {
	var out []Snapshot
	err := e.inFn(ctx, fn, "remove", e.db.Update, func(b *bbolt.Bucket) error {
		pool, trash, err := loadPools(b)
		if err != nil {
			return err
		}
		out = append(pool, trash...)
		return b.Tx().Bucket(rootBucket).DeleteBucket([]byte(fn))
	})
	if err != nil {
		return nil, err
	}
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
	var st State
	err := e.inFn(ctx, fn, "inspect", e.db.View, func(b *bbolt.Bucket) error {
		cfg, err := loadConfig(b)
		if err != nil {
			return err
		}
		pool, err := loadSnapshots(b, keyPool)
		if err != nil {
			return err
		}
		w, err := loadWeights(b, cfg)
		if err != nil {
			return err
		}
		c := loadCounters(b)
		st = State{Strategy: cfg.Strategy, Config: cfg, Pool: []PoolEntry{},
			ColdStarts: c.ColdStarts, Restores: c.Restores, Checkpoints: c.Checkpoints,
			FailedRestores: c.FailedRestores, FailedCheckpoints: c.FailedCheckpoints}
		var mean banditCurve
		if w.kind == kindBandit {
			st.Weights = append([]float64(nil), w.bandit().warm...)
			mean = banditSample(w.bandit(), nil)
		} else {
			st.Weights = append([]float64(nil), w.v...)
		}
		for _, s := range pool {
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
		return nil
	})
	if err != nil {
		return State{}, err
	}
	return st, nil
}

// Functions lists the configured functions in byte order.
func (e *Engine) Functions(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []string
	err := e.db.View(func(tx *bbolt.Tx) error {
		root := tx.Bucket(rootBucket)
		if root == nil {
			return errors.New("engine bucket missing")
		}
		return root.ForEach(func(k, v []byte) error {
			if v == nil { // nested bucket
				out = append(out, string(k))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("orchestrator: list functions: %w", err)
	}
	return out, nil
}

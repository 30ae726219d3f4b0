package orchestrator

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// This file holds the engine's working state and how it reaches bbolt.
//
// Learning happens on every request, so it lives in memory and reaches the
// file in one transaction per flush interval for all functions. Everything
// whose loss would leak or resurrect a snapshot (pool, trash, checkpoint
// registrations), or replay a random decision (the OnStart counter), is
// written through by the operation that changes it, before the operation
// returns.

// Bucket layout: one top-level bucket, one nested bucket per function, keys
// split by how often they are written so a flush rewrites only the weights.
var (
	rootBucket = []byte("pronghorn.orchestrator")
	keyConfig  = []byte("config")   // binary Config
	keyRand    = []byte("rand")     // effective seed, OnStart call counter
	keyWeights = []byte("weights")  // kind byte + float64s (hot: every flush)
	keyPool    = []byte("pool")     // JSON []Snapshot
	keyTrash   = []byte("trash")    // JSON []Snapshot awaiting deletion by the caller
	keyCount   = []byte("counters") // 5 x uint64
)

// record is one function's durable state. Slices other than w.v are never
// modified in place once installed (operations build new ones), so a
// shallow copy is a consistent snapshot; w.v is updated in place by
// OnRequest under fnState.mu.
type record struct {
	configured bool // cfg is valid; false for a function whose config record is unreadable
	seeded     bool // seed and calls are valid
	cfg        Config
	w          weights
	pool       []Snapshot
	trash      []Snapshot
	c          counters
	seed       int64
	calls      uint64
}

// fnState is one function's working state.
//
// Lock order: wmu, then mu; the bbolt writer lock, then mu. mu is a leaf:
// nothing is acquired, and no I/O is done, while holding it, which is what
// lets OnRequest stay off the disk entirely.
type fnState struct {
	name string

	// wmu serialises the write-through operations on this function and is
	// held across their commit, so each plans from the previous one's result
	// without holding mu while bbolt syncs.
	wmu sync.Mutex

	mu  sync.Mutex
	rec record
	// onDisk: the function's bucket exists. removed: Remove detached this
	// state from Engine.fns; a caller still holding it must not use it.
	onDisk, removed bool
	// writing: a write-through has taken its snapshot and not yet installed
	// its result. The flusher skips such a function: the write-through
	// persists the weights itself, and a flush committed after it but
	// before its install could put back weights it replaced.
	writing bool
	// mutations counts observations; persisted is the count the weights on
	// disk reflect. They differ when the function needs a flush.
	mutations, persisted uint64
	// pending: checkpoints asked for and not yet registered or failed, in
	// the order asked; lag: the learned registration lag, in requests, from
	// lagN registrations; explored: bandit exploration has ended on the
	// current weights. Never persisted (see banditMemory).
	pending  []pendingCheckpoint
	lag      float64
	lagN     uint64
	explored bool
}

func (s *fnState) needsFlush() bool {
	return s.rec.configured && s.onDisk && !s.removed && !s.writing && s.mutations != s.persisted
}

// writeKind tells persist what a write-through did to the weights.
type writeKind int

const (
	keepWeights    writeKind = iota // weights unchanged: persist the live ones
	replaceWeights                  // next.w replaces them (reset, resize, inherit)
	noChange                        // nothing to write
)

// ---- codecs ----

type counters struct {
	ColdStarts, Restores, Checkpoints, FailedRestores, FailedCheckpoints uint64
}

const countersLen = 40

func (c counters) marshal() []byte {
	v := make([]byte, 0, countersLen)
	for _, x := range [...]uint64{c.ColdStarts, c.Restores, c.Checkpoints, c.FailedRestores, c.FailedCheckpoints} {
		v = binary.LittleEndian.AppendUint64(v, x)
	}
	return v
}

func unmarshalCounters(v []byte) (counters, error) {
	if len(v) != countersLen {
		return counters{}, fmt.Errorf("corrupt counters record (%d bytes)", len(v))
	}
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(v[8*i:]) }
	return counters{u(0), u(1), u(2), u(3), u(4)}, nil
}

func marshalRand(seed int64, calls uint64) []byte {
	v := binary.LittleEndian.AppendUint64(make([]byte, 0, 16), uint64(seed))
	return binary.LittleEndian.AppendUint64(v, calls)
}

func unmarshalRand(v []byte) (seed int64, calls uint64, err error) {
	if len(v) != 16 {
		return 0, 0, fmt.Errorf("corrupt rand record (%d bytes)", len(v))
	}
	return int64(binary.LittleEndian.Uint64(v)), binary.LittleEndian.Uint64(v[8:]), nil
}

func marshalSnapshots(s []Snapshot) ([]byte, error) {
	if len(s) == 0 {
		return nil, nil
	}
	return json.Marshal(s)
}

func unmarshalSnapshots(key, v []byte) ([]Snapshot, error) {
	if len(v) == 0 {
		return nil, nil
	}
	var s []Snapshot
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, fmt.Errorf("corrupt %s record: %w", key, err)
	}
	return s, nil
}

// weights is the learned model: for cold, fixed and request-centric the
// artifact's M EWMA weights (tracked for all three so inspection shows the
// warm-up curve); for bandit four arrays of M plus banditScalars. The zero
// value (kind 0) means none.
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

func (w weights) clone() weights {
	w.v = append([]float64(nil), w.v...)
	return w
}

// blank reports whether nothing has been observed: every estimate and
// count starts at 0 and the first observation makes one non-zero.
func (w weights) blank() bool {
	for _, x := range w.v {
		if x != 0 {
			return false
		}
	}
	return true
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

// fitted returns w shaped for cfg, and whether that kept what w had learned
// (false: w was empty or of the other kind, and fresh weights are returned).
func (w weights) fitted(cfg Config) (weights, bool) {
	if w.kind != newWeights(cfg).kind {
		return newWeights(cfg), false
	}
	return w.resized(cfg.Horizon), true
}

func (w weights) marshal() []byte {
	buf := make([]byte, 1+8*len(w.v))
	buf[0] = w.kind
	for i, x := range w.v {
		binary.LittleEndian.PutUint64(buf[1+8*i:], math.Float64bits(x))
	}
	return buf
}

func unmarshalWeights(v []byte) (weights, error) {
	if len(v) < 1 || (len(v)-1)%8 != 0 {
		return weights{}, fmt.Errorf("corrupt weights record (%d bytes)", len(v))
	}
	n := (len(v) - 1) / 8
	w := weights{kind: v[0], v: make([]float64, n)}
	for i := range w.v {
		w.v[i] = math.Float64frombits(binary.LittleEndian.Uint64(v[1+8*i:]))
	}
	switch {
	case w.kind == kindEWMA && n >= 2:
		w.m = n
	case w.kind == kindBandit && n >= banditScalars && (n-banditScalars)%4 == 0:
		w.m = (n - banditScalars) / 4
	default:
		return weights{}, fmt.Errorf("corrupt weights record (kind %d, %d values)", w.kind, n)
	}
	return w, nil
}

// deriveSeed is the effective seed of a function configured with seed 0.
func deriveSeed(fn string, now int64) int64 {
	h := fnv.New64a()
	h.Write([]byte(fn))
	return now ^ int64(h.Sum64()>>1)
}

// ---- loading ----

// load reads every function's record. A piece that does not decode is
// logged and reset, never fatal: the provider must start with whatever is
// readable, and the next write-through of that function rewrites it.
func (e *Engine) load(tx *bbolt.Tx) error {
	root := tx.Bucket(rootBucket)
	return root.ForEachBucket(func(k []byte) error {
		fn := string(k)
		e.fns[fn] = e.decode(fn, root.Bucket(k))
		return nil
	})
}

func (e *Engine) decode(fn string, b *bbolt.Bucket) *fnState {
	s := &fnState{name: fn, onDisk: true}
	r := &s.rec
	bad := func(piece, consequence string, err error) {
		e.log.Warn("orchestrator: unreadable record at open", "function", fn, "record", piece, "action", consequence, "err", err)
	}

	if v := b.Get(keyConfig); v == nil {
		bad("config", "unconfigured until the next Configure", errors.New("missing"))
	} else if cfg, err := unmarshalConfig(v); err != nil {
		bad("config", "unconfigured until the next Configure", err)
	} else if err := cfg.Validate(); err != nil {
		bad("config", "unconfigured until the next Configure", err)
	} else {
		r.cfg, r.configured = cfg, true
	}

	if v := b.Get(keyRand); v != nil {
		seed, calls, err := unmarshalRand(v)
		if err != nil {
			bad("rand", "random sequence restarted", err)
		} else {
			r.seed, r.calls, r.seeded = seed, calls, true
		}
	}
	if !r.seeded && r.configured {
		r.seed = r.cfg.Seed
		if r.seed == 0 {
			r.seed = deriveSeed(fn, e.now().UnixNano())
		}
		r.seeded = true
	}

	var err error
	if r.pool, err = unmarshalSnapshots(keyPool, b.Get(keyPool)); err != nil {
		bad("pool", "pool emptied; its snapshots are no longer tracked", err)
	}
	if r.trash, err = unmarshalSnapshots(keyTrash, b.Get(keyTrash)); err != nil {
		bad("trash", "snapshots awaiting deletion are no longer tracked", err)
	}
	if v := b.Get(keyCount); v != nil {
		if r.c, err = unmarshalCounters(v); err != nil {
			bad("counters", "counters restarted from 0", err)
		}
	}

	if v := b.Get(keyWeights); v != nil {
		if r.w, err = unmarshalWeights(v); err != nil {
			bad("weights", "learning restarted", err)
		}
	}
	if r.configured {
		w, kept := r.w.fitted(r.cfg)
		if !kept && r.w.kind != 0 {
			bad("weights", "learning restarted", fmt.Errorf("weights of kind %d do not match strategy %s", r.w.kind, r.cfg.Strategy))
		}
		r.w = w
	}
	return s
}

// ---- writing ----

// persist commits next as fn's whole record in one transaction. With
// keepWeights the live weights are encoded inside the transaction, so
// flushes and write-throughs reach the file in the order their weights were
// read; it returns the observation count they reflect.
func (e *Engine) persist(s *fnState, next *record, wk writeKind) (uint64, error) {
	var m uint64
	err := e.db.Update(func(tx *bbolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(rootBucket)
		if err != nil {
			return err
		}
		b, err := root.CreateBucketIfNotExists([]byte(s.name))
		if err != nil {
			return err
		}
		var wbuf []byte
		if wk == replaceWeights {
			wbuf = next.w.marshal()
		} else {
			s.mu.Lock()
			wbuf, m = s.rec.w.marshal(), s.mutations
			s.mu.Unlock()
		}
		pool, err := marshalSnapshots(next.pool)
		if err != nil {
			return err
		}
		trash, err := marshalSnapshots(next.trash)
		if err != nil {
			return err
		}
		for _, kv := range [...]struct {
			k, v []byte
		}{
			{keyConfig, next.cfg.marshalBinary()},
			{keyRand, marshalRand(next.seed, next.calls)},
			{keyWeights, wbuf},
			{keyPool, pool},
			{keyTrash, trash},
			{keyCount, next.c.marshal()},
		} {
			if kv.v == nil {
				err = b.Delete(kv.k)
			} else {
				err = b.Put(kv.k, kv.v)
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", kv.k, err)
			}
		}
		return nil
	})
	return m, err
}

// install makes a committed next the live record (or, on err, only ends
// the write). With keepWeights the live weights stay: observations made
// during the commit went into them and are flushed later.
func (s *fnState) install(next *record, wk writeKind, m uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writing = false
	if err != nil || wk == noChange {
		return
	}
	w := s.rec.w
	if wk == replaceWeights {
		// Observations made on the old weights during the commit are
		// dropped with them.
		w = next.w
		s.persisted = s.mutations
		s.explored = false
	} else {
		s.persisted = max(s.persisted, m)
	}
	s.rec = *next
	s.rec.w = w
	s.onDisk = true
}

// flush writes the weights of every function observed since its last
// write, in one transaction.
func (e *Engine) flush() error {
	var dirty []*fnState
	for _, s := range e.states() {
		s.mu.Lock()
		if s.needsFlush() {
			dirty = append(dirty, s)
		}
		s.mu.Unlock()
	}
	if len(dirty) == 0 {
		return nil
	}
	type written struct {
		s *fnState
		m uint64
	}
	var done []written
	err := e.db.Update(func(tx *bbolt.Tx) error {
		done = done[:0]
		root := tx.Bucket(rootBucket)
		if root == nil {
			return errors.New("engine bucket missing")
		}
		for _, s := range dirty {
			s.mu.Lock()
			if !s.needsFlush() { // removed or being written through meanwhile
				s.mu.Unlock()
				continue
			}
			buf, m := s.rec.w.marshal(), s.mutations
			s.mu.Unlock()
			b := root.Bucket([]byte(s.name))
			if b == nil {
				continue // never recreate a bucket behind Remove's back
			}
			if err := b.Put(keyWeights, buf); err != nil {
				return fmt.Errorf("%q: %w", s.name, err)
			}
			done = append(done, written{s, m})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("orchestrator: flush weights of %d functions: %w", len(dirty), err)
	}
	for _, d := range done {
		d.s.mu.Lock()
		d.s.persisted = max(d.s.persisted, d.m)
		d.s.mu.Unlock()
	}
	return nil
}

func (e *Engine) runFlusher() {
	defer e.flusher.Done()
	t := time.NewTicker(e.flushEvery)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			if err := e.flush(); err != nil {
				e.log.Error("orchestrator: learned weights not saved, retrying next interval", "err", err)
			}
			if e.afterFlush != nil {
				e.afterFlush()
			}
		}
	}
}

package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// openOn opens an Engine on an existing DB and closes it at cleanup.
func openOn(t testing.TB, db *bbolt.DB, opts ...Option) *Engine {
	t.Helper()
	e, err := Open(db, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeEngine(t, e) })
	return e
}

// diskWeights reads fn's weights straight from the file.
func diskWeights(t testing.TB, db *bbolt.DB, fn string) []float64 {
	t.Helper()
	var w weights
	err := db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(rootBucket).Bucket([]byte(fn))
		if b == nil {
			return fmt.Errorf("no bucket for %q", fn)
		}
		var err error
		w, err = unmarshalWeights(b.Get(keyWeights))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return w.v
}

func mustInspect(t testing.TB, e *Engine, fn string) State {
	t.Helper()
	st, err := e.Inspect(context.Background(), fn)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// syncBuffer is a log sink the flusher goroutine may write to.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Write-throughs are visible to a second Engine on the same file at once,
// without Close; learning is not until a write-through or a flush.
func TestWriteThroughDurableWithoutClose(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	e := openOn(t, db, WithFlushInterval(time.Hour))
	mustConfigure(t, e, "f", cfgOf(StrategyRequestCentric, 0))
	w := Worker{}
	for range 3 {
		if _, err := e.OnRequest(ctx, "f", &w, 2*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if got := mustInspect(t, openOn(t, db), "f").Weights; got[0] != 0 {
		t.Fatalf("OnRequest reached the file before any flush: %v", got[:3])
	}

	if err := e.Register(ctx, "f", Snapshot{Key: "a", RequestNumber: 3, SizeBytes: 7}); err != nil {
		t.Fatal(err)
	}
	other := mustInspect(t, openOn(t, db), "f")
	if len(other.Pool) != 1 || other.Pool[0].Key != "a" || other.Checkpoints != 1 {
		t.Fatalf("registration not durable: %+v", other)
	}
	// The write-through carried the weights learned so far.
	if want := mustInspect(t, e, "f"); fmt.Sprint(want) != fmt.Sprint(other) {
		t.Fatalf("write-through state differs from memory:\n%+v\n%+v", want, other)
	}

	// The OnStart counter is durable: a second engine continues the same
	// random sequence rather than replaying it.
	p1, err := e.OnStart(ctx, "f", "w1")
	if err != nil {
		t.Fatal(err)
	}
	e2 := openOn(t, db)
	p2, err := e2.OnStart(ctx, "f", "w2")
	if err != nil {
		t.Fatal(err)
	}
	p1b, _ := e.OnStart(ctx, "f", "w2")
	if p2.Worker != p1b.Worker || (p2.Restore == nil) != (p1b.Restore == nil) || (p2.Restore != nil && p2.Restore.Key != p1b.Restore.Key) {
		t.Fatalf("second engine did not continue the sequence: %+v vs %+v (first %+v)", p2, p1b, p1)
	}
}

func TestWeightsFlushedAcrossCloseOpen(t *testing.T) {
	ctx := context.Background()
	for _, strategy := range []string{StrategyRequestCentric, StrategyBandit} {
		t.Run(strategy, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "e.db")
			db := openDB(t, path, false)
			e, err := Open(db, WithFlushInterval(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			mustConfigure(t, e, "f", cfgOf(strategy, 5))
			w := Worker{}
			for i := range 40 {
				if i%5 == 0 {
					w = Worker{}
				}
				e.OnRequest(ctx, "f", &w, time.Duration(3000-100*w.Lineage)*time.Microsecond)
			}
			before := mustInspect(t, e, "f")
			if before.Weights[1] == 0 { // request 1 is never warm: look at 2
				t.Fatal("nothing learned")
			}
			closeEngine(t, e)
			db.Close()

			db = openDB(t, path, false)
			defer db.Close()
			after := mustInspect(t, openOn(t, db), "f")
			if fmt.Sprint(before) != fmt.Sprint(after) {
				t.Fatalf("learning lost across Close/Open:\n%+v\n%+v", before, after)
			}
		})
	}
}

func TestFlushIntervalHonoured(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)

	// A flush stalled in afterFlush lets the test line up dirty functions
	// and then watch one flush write all of them.
	entered, gate := make(chan struct{}, 1), make(chan struct{})
	e := openOn(t, db, WithFlushInterval(10*time.Millisecond), withAfterFlush(func() {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
	}))
	fns := []string{"a", "b", "c"}
	for _, fn := range fns {
		mustConfigure(t, e, fn, cfgOf(StrategyRequestCentric, 0))
	}
	<-entered // the flusher is parked after a tick
	for _, fn := range fns {
		w := Worker{}
		e.OnRequest(ctx, fn, &w, 4*time.Millisecond)
		if got := diskWeights(t, db, fn); got[0] != 0 {
			t.Fatalf("%s: weights on disk before a flush: %v", fn, got[:2])
		}
	}
	gate <- struct{}{} // release the parked call
	<-entered          // the next flush has run
	for _, fn := range fns {
		if got := diskWeights(t, db, fn); got[0] != 4000 {
			t.Fatalf("%s: one flush did not write every dirty function: %v", fn, got[:2])
		}
	}
	close(gate)

	// With a long interval nothing reaches the file on its own.
	db2, _ := newDB(t)
	slow := openOn(t, db2, WithFlushInterval(time.Hour))
	mustConfigure(t, slow, "f", cfgOf(StrategyRequestCentric, 0))
	w := Worker{}
	slow.OnRequest(ctx, "f", &w, 4*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	if got := diskWeights(t, db2, "f"); got[0] != 0 {
		t.Fatalf("flushed before the interval: %v", got[:2])
	}
}

func TestCloseWaitsForFlusherAndFailsLaterCalls(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	entered, gate := make(chan struct{}, 1), make(chan struct{})
	e, err := Open(db, WithFlushInterval(time.Millisecond), withAfterFlush(func() {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
	}))
	if err != nil {
		t.Fatal(err)
	}
	mustConfigure(t, e, "f", cfgOf(StrategyBandit, 0))
	w := Worker{}
	e.OnRequest(ctx, "f", &w, time.Millisecond)
	<-entered

	closed := make(chan error, 1)
	go func() { closed <- e.Close(ctx) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while the flusher was still running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if got := diskWeights(t, db, "f"); got[4*100+scColdN] != 1 {
		t.Fatal("final flush did not write the observation")
	}
	if err := e.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	unavailable := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("%s after Close: %v, want ErrUnavailable", name, err)
		}
	}
	_, err = e.OnRequest(ctx, "f", &w, time.Millisecond)
	unavailable("OnRequest", err)
	_, err = e.OnStart(ctx, "f", "w")
	unavailable("OnStart", err)
	unavailable("Configure", e.Configure(ctx, "g", cfgOf(StrategyCold, 0)))
	unavailable("Register", e.Register(ctx, "f", Snapshot{Key: "k"}))
	unavailable("Forget", e.Forget(ctx, "f", "k"))
	unavailable("StartedCold", e.StartedCold(ctx, "f"))
	unavailable("Inherit", e.Inherit(ctx, "g", "f"))
	_, err = e.Inspect(ctx, "f")
	unavailable("Inspect", err)
	_, err = e.Functions(ctx)
	unavailable("Functions", err)
	_, err = e.Remove(ctx, "f")
	unavailable("Remove", err)
}

func TestCorruptRecordsSkippedAtOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "e.db")
	db := openDB(t, path, true)
	defer db.Close()
	e, _ := Open(db)
	for fn, s := range map[string]string{"pool": StrategyRequestCentric, "config": StrategyBandit, "weights": StrategyBandit, "fine": StrategyFixed} {
		mustConfigure(t, e, fn, cfgOf(s, 4))
		if err := e.Register(ctx, fn, Snapshot{Key: fn + "/s", RequestNumber: 2}); err != nil {
			t.Fatal(err)
		}
		w := Worker{}
		e.OnRequest(ctx, fn, &w, time.Millisecond) // cold first request
		e.OnRequest(ctx, fn, &w, time.Millisecond) // warm: Weights[1]
	}
	fine := mustInspect(t, e, "fine")
	closeEngine(t, e)
	put := func(fn string, key []byte, v []byte) {
		t.Helper()
		if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(rootBucket).Bucket([]byte(fn)).Put(key, v) }); err != nil {
			t.Fatal(err)
		}
	}
	put("pool", keyPool, []byte("{not json"))
	put("config", keyConfig, []byte{9, 9, 9})
	put("weights", keyWeights, []byte{kindBandit, 1, 2})
	put("weights", keyCount, []byte{1})
	put("weights", keyRand, []byte{1})

	var logs syncBuffer
	e, err := Open(db, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatalf("corrupt records stopped Open: %v", err)
	}
	defer closeEngine(t, e)
	for _, want := range []string{"function=pool record=pool", "function=config record=config", "function=weights record=weights", "function=weights record=counters", "function=weights record=rand"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no log for %q in:\n%s", want, logs.String())
		}
	}

	if got := mustInspect(t, e, "fine"); fmt.Sprint(got) != fmt.Sprint(fine) {
		t.Fatalf("a healthy function changed:\n%+v\n%+v", fine, got)
	}
	if st := mustInspect(t, e, "pool"); len(st.Pool) != 0 || st.Weights[1] == 0 || st.Checkpoints != 1 {
		t.Fatalf("unreadable pool: want it empty and the rest kept: %+v", st)
	}
	if st := mustInspect(t, e, "weights"); len(st.Pool) != 1 || !slices.Equal(st.Weights, make([]float64, 100)) || st.Checkpoints != 0 {
		t.Fatalf("unreadable weights and counters: want them reset and the pool kept: %+v", st)
	}
	if _, err := e.OnStart(ctx, "weights", "w"); err != nil {
		t.Fatalf("function with a reset rand record: %v", err)
	}

	// An unreadable config leaves the function unconfigured but listed, and
	// the next Configure (the provider's restore at start) repairs it.
	if _, err := e.OnStart(ctx, "config", "w"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("OnStart on an unconfigured function: %v", err)
	}
	if fns, _ := e.Functions(ctx); strings.Join(fns, ",") != "config,fine,pool,weights" {
		t.Fatalf("functions %v", fns)
	}
	mustConfigure(t, e, "config", cfgOf(StrategyBandit, 4))
	st := mustInspect(t, e, "config")
	if len(st.Pool) != 1 || st.Checkpoints != 1 || st.Weights[1] == 0 {
		t.Fatalf("repair lost what was readable: %+v", st)
	}
}

func TestRemoveUnreadableFunction(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	e := openOn(t, db)
	mustConfigure(t, e, "f", cfgOf(StrategyRequestCentric, 4))
	e.Register(ctx, "f", Snapshot{Key: "s", RequestNumber: 1})
	db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(rootBucket).Bucket([]byte("f")).Delete(keyConfig) })
	e2 := openOn(t, db, WithLogger(slog.New(slog.DiscardHandler)))
	got, err := e2.Remove(ctx, "f")
	if err != nil || len(got) != 1 || got[0].Key != "s" {
		t.Fatalf("remove returned %v, %v", got, err)
	}
	if fns, _ := e2.Functions(ctx); len(fns) != 0 {
		t.Fatalf("functions after remove: %v", fns)
	}
	// Configure after Remove starts from nothing.
	mustConfigure(t, e2, "f", cfgOf(StrategyRequestCentric, 4))
	if st := mustInspect(t, e2, "f"); len(st.Pool) != 0 || st.Checkpoints != 0 {
		t.Fatalf("state survived remove: %+v", st)
	}
}

func TestStartedColdAndForgetCounts(t *testing.T) {
	ctx := context.Background()
	e, _, _ := newEngine(t)
	c := cfgOf(StrategyFixed, 0)
	mustConfigure(t, e, "f", c)
	if err := e.Register(ctx, "f", Snapshot{Key: "s", RequestNumber: 1}); err != nil {
		t.Fatal(err)
	}
	plan, _ := e.OnStart(ctx, "f", "w")
	if plan.Restore == nil {
		t.Fatal("fixed(1) with a snapshot at 1 did not restore")
	}
	if err := e.StartedCold(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	st := mustInspect(t, e, "f")
	if st.Restores != 0 || st.ColdStarts != 1 || len(st.Pool) != 1 || st.FailedRestores != 0 {
		t.Fatalf("after StartedCold: %+v", st)
	}
	e.OnStart(ctx, "f", "w")
	if err := e.Forget(ctx, "f", "s"); err != nil {
		t.Fatal(err)
	}
	st = mustInspect(t, e, "f")
	if st.Restores != 0 || st.ColdStarts != 2 || len(st.Pool) != 0 || st.FailedRestores != 1 {
		t.Fatalf("after Forget: %+v", st)
	}
	// Nothing left to move: the counters never underflow.
	if err := e.StartedCold(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	if st = mustInspect(t, e, "f"); st.Restores != 0 || st.ColdStarts != 2 {
		t.Fatalf("after a StartedCold without a restore: %+v", st)
	}
	if err := e.StartedCold(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("StartedCold on unknown: %v", err)
	}
}

func TestInherit(t *testing.T) {
	ctx := context.Background()
	db, _ := newDB(t)
	e := openOn(t, db, WithFlushInterval(time.Hour))
	old := cfgOf(StrategyBandit, 0)
	mustConfigure(t, e, "f@1", old)
	e.Register(ctx, "f@1", Snapshot{Key: "s", RequestNumber: 2})
	e.OnStart(ctx, "f@1", "w")
	w := Worker{}
	for range 5 {
		e.OnRequest(ctx, "f@1", &w, time.Duration(5000-500*w.Lineage)*time.Microsecond)
	}
	learned := mustInspect(t, e, "f@1")

	next := old
	next.Horizon = 50
	mustConfigure(t, e, "f@2", next)
	if err := e.Inherit(ctx, "f@1", "f@2"); err != nil {
		t.Fatal(err)
	}
	st := mustInspect(t, e, "f@2")
	if !slices.Equal(st.Weights, learned.Weights[:50]) {
		t.Fatalf("prior not copied (resized to M=50):\n%v\n%v", st.Weights[:6], learned.Weights[:6])
	}
	if len(st.Pool) != 0 || st.Checkpoints != 0 || st.Restores+st.ColdStarts != 0 {
		t.Fatalf("pool or counters copied: %+v", st)
	}
	// Written through: another engine sees the prior without a flush.
	if got := mustInspect(t, openOn(t, db), "f@2"); !slices.Equal(got.Weights, st.Weights) {
		t.Fatal("inherited prior not durable")
	}

	// Once the target has learned, or when kinds differ, or the source is
	// missing, Inherit changes nothing.
	w2 := Worker{}
	e.OnRequest(ctx, "f@2", &w2, time.Millisecond)
	before := mustInspect(t, e, "f@2")
	mustConfigure(t, e, "rc", cfgOf(StrategyRequestCentric, 0))
	for _, tc := range []struct{ from, to string }{{"f@1", "f@2"}, {"f@1", "rc"}, {"gone", "rc"}, {"rc", "rc"}} {
		if err := e.Inherit(ctx, tc.from, tc.to); err != nil {
			t.Fatalf("Inherit(%s, %s): %v", tc.from, tc.to, err)
		}
	}
	if got := mustInspect(t, e, "f@2"); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatal("Inherit overwrote a target that had already learned")
	}
	if got := mustInspect(t, e, "rc"); !slices.Equal(got.Weights, make([]float64, 100)) {
		t.Fatal("Inherit copied weights of another kind")
	}
	if err := e.Inherit(ctx, "f@1", "missing"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Inherit into an unconfigured function: %v", err)
	}
}

func TestOnRequestDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	for _, strategy := range []string{StrategyRequestCentric, StrategyBandit} {
		e, _, _ := newEngine(t)
		mustConfigure(t, e, "f", cfgOf(strategy, 0))
		w := Worker{}
		allocs := testing.AllocsPerRun(1000, func() {
			if w.Lineage >= 99 {
				w = Worker{}
			}
			e.OnRequest(ctx, "f", &w, time.Millisecond)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per OnRequest", strategy, allocs)
		}
	}
}

// TestConcurrentFlushConsistency runs every kind of call at once with a
// flusher firing every millisecond, then checks that what Close leaves in
// the file is exactly what the engine held in memory.
func TestConcurrentFlushConsistency(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "e.db")
	db := openDB(t, path, true)
	defer db.Close()
	e, err := Open(db, WithFlushInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	fns := []string{"a", "b", "c", "d"}
	for i, fn := range fns {
		mustConfigure(t, e, fn, cfgOf(Strategies()[i], 3))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			fn := fns[g%len(fns)]
			for k := range 30 {
				plan, err := e.OnStart(ctx, fn, fmt.Sprint(g, "-", k))
				if err != nil {
					t.Error(err)
					return
				}
				if plan.Restore != nil && k%7 == 0 {
					e.StartedCold(ctx, fn)
				}
				w := plan.Worker
				for {
					act, err := e.OnRequest(ctx, fn, &w, time.Duration(500+g*10+w.Lineage)*time.Microsecond)
					if err != nil {
						t.Error(err)
						return
					}
					if act.Checkpoint {
						key := fmt.Sprint(fn, g, k, w.Lineage)
						if err := e.Register(ctx, fn, Snapshot{Key: key, RequestNumber: w.Lineage}); err != nil {
							t.Error(err)
							return
						}
						if k%5 == 0 {
							e.Forget(ctx, fn, key)
						}
					}
					if act.Evict {
						break
					}
				}
			}
		})
	}
	// Parameter changes (with resizes) and readers race the workers.
	wg.Go(func() {
		for i := range 20 {
			c := cfgOf(StrategyRequestCentric, 3)
			c.Horizon = 60 + 20*(i%3)
			if err := e.Configure(ctx, "c", c); err != nil {
				t.Error(err)
			}
			e.Inspect(ctx, "d")
			e.Functions(ctx)
			if err := e.Inherit(ctx, "a", "b"); err != nil {
				t.Error(err)
			}
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	before := map[string]State{}
	for _, fn := range fns {
		before[fn] = mustInspect(t, e, fn)
	}
	closeEngine(t, e)
	e2 := openOn(t, db)
	for _, fn := range fns {
		if got := mustInspect(t, e2, fn); fmt.Sprint(got) != fmt.Sprint(before[fn]) {
			t.Errorf("%s: file differs from memory after Close:\n%+v\n%+v", fn, before[fn], got)
		}
	}
}

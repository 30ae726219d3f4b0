package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

func openDB(t testing.TB, path string, noSync bool) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: noSync})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// newDB opens a NoSync bbolt file closed at cleanup.
func newDB(t testing.TB) (*bbolt.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "engine.db")
	db := openDB(t, path, true)
	t.Cleanup(func() { db.Close() })
	return db, path
}

func newEngine(t testing.TB) (*Engine, *bbolt.DB, string) {
	t.Helper()
	db, path := newDB(t)
	e, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: the engine closes before its DB.
	t.Cleanup(func() { closeEngine(t, e) })
	return e, db, path
}

func closeEngine(t testing.TB, e *Engine) {
	t.Helper()
	if err := e.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

func cfgOf(strategy string, e int) Config {
	c := DefaultConfig()
	c.Strategy, c.EvictAfter, c.Seed = strategy, e, 42
	return c
}

func mustConfigure(t testing.TB, e *Engine, fn string, c Config) {
	t.Helper()
	if err := e.Configure(context.Background(), fn, c); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownFunction(t *testing.T) {
	e, _, _ := newEngine(t)
	ctx := context.Background()
	if _, err := e.OnStart(ctx, "nope", "w"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("OnStart: %v", err)
	}
	if _, err := e.OnRequest(ctx, "nope", &Worker{}, time.Millisecond); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("OnRequest: %v", err)
	}
	if _, err := e.Inspect(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Inspect: %v", err)
	}
	if err := e.Configure(ctx, "f", Config{Strategy: "warp"}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("Configure invalid: %v", err)
	}
	if fns, _ := e.Functions(ctx); len(fns) != 0 {
		t.Fatalf("invalid Configure stored something: %v", fns)
	}
}

func TestEviction(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		e         int
		startAt   int // snapshot request number to restore from, 0 = cold
		wantAfter int // requests until Evict
	}{
		{"at E from cold", 3, 0, 3},
		{"E=1", 1, 0, 1},
		{"at M before E", 20, 98, 2},
		{"E=0 never, not even at M", 0, 98, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _, _ := newEngine(t)
			c := cfgOf(StrategyFixed, tt.e)
			c.CheckpointAt = 200
			mustConfigure(t, e, "f", c)
			if tt.startAt > 0 {
				if err := e.Register(ctx, "f", Snapshot{Key: "s", RequestNumber: tt.startAt}); err != nil {
					t.Fatal(err)
				}
			}
			plan, err := e.OnStart(ctx, "f", "w1")
			if err != nil {
				t.Fatal(err)
			}
			w := plan.Worker
			if w.Lineage != tt.startAt {
				t.Fatalf("lineage %d, want %d", w.Lineage, tt.startAt)
			}
			for i := 1; i <= 150; i++ {
				act, err := e.OnRequest(ctx, "f", &w, time.Millisecond)
				if err != nil {
					t.Fatal(err)
				}
				if w.Served != i || w.Lineage != tt.startAt+i {
					t.Fatalf("worker %+v after %d requests", w, i)
				}
				if act.Evict {
					if i != tt.wantAfter {
						t.Fatalf("evicted after %d, want %d", i, tt.wantAfter)
					}
					return
				}
			}
			if tt.wantAfter >= 0 {
				t.Fatal("never evicted")
			}
		})
	}
}

func TestFixedEngine(t *testing.T) {
	ctx := context.Background()
	e, _, _ := newEngine(t)
	c := cfgOf(StrategyFixed, 2)
	c.CheckpointAt = 5
	mustConfigure(t, e, "f", c)
	plan, _ := e.OnStart(ctx, "f", "w")
	if plan.Restore != nil || plan.Worker.CheckpointAt != 2 {
		t.Fatalf("cold plan %+v: want climb to r+E=2", plan)
	}
	w := plan.Worker
	act, _ := e.OnRequest(ctx, "f", &w, time.Millisecond)
	if act.Checkpoint {
		t.Fatal("checkpoint at 1")
	}
	act, _ = e.OnRequest(ctx, "f", &w, time.Millisecond)
	if !act.Checkpoint || w.Lineage != 2 {
		t.Fatalf("want checkpoint at lineage 2, got %+v %+v", act, w)
	}
	for _, s := range []Snapshot{{Key: "a", RequestNumber: 2}, {Key: "b", RequestNumber: 4}, {Key: "c", RequestNumber: 6}} {
		if err := e.Register(ctx, "f", s); err != nil {
			t.Fatal(err)
		}
	}
	plan, _ = e.OnStart(ctx, "f", "w2")
	if plan.Restore == nil || plan.Restore.Key != "b" || plan.Worker.Lineage != 4 || plan.Worker.CheckpointAt != 5 {
		t.Fatalf("plan %+v: want restore b (4 <= T=5) and checkpoint at T", plan)
	}
	w = plan.Worker
	if act, _ = e.OnRequest(ctx, "f", &w, time.Millisecond); !act.Checkpoint || w.Lineage != 5 {
		t.Fatalf("want checkpoint when lineage reaches T: %+v %+v", act, w)
	}
}

func TestColdNeverRestoresOrCheckpoints(t *testing.T) {
	ctx := context.Background()
	e, _, _ := newEngine(t)
	mustConfigure(t, e, "f", cfgOf(StrategyCold, 2))
	// A late Register (strategy changed mid-checkpoint) goes to the trash.
	if err := e.Register(ctx, "f", Snapshot{Key: "late", RequestNumber: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		plan, err := e.OnStart(ctx, "f", "w")
		if err != nil {
			t.Fatal(err)
		}
		if plan.Restore != nil || plan.Worker.CheckpointAt != 0 {
			t.Fatalf("cold plan %+v", plan)
		}
		if i == 0 && (len(plan.Pruned) != 1 || plan.Pruned[0].Key != "late") {
			t.Fatalf("late snapshot not handed back: %+v", plan.Pruned)
		}
		w := plan.Worker
		for range 2 {
			if act, _ := e.OnRequest(ctx, "f", &w, time.Millisecond); act.Checkpoint {
				t.Fatal("cold checkpointed")
			}
		}
	}
	st, _ := e.Inspect(ctx, "f")
	if st.ColdStarts != 5 || st.Restores != 0 || len(st.Pool) != 0 {
		t.Fatalf("state %+v", st)
	}
}

func TestRequestCentricEnginePrunesAndReturnsPruned(t *testing.T) {
	ctx := context.Background()
	e, _, _ := newEngine(t)
	c := cfgOf(StrategyRequestCentric, 4)
	c.PoolCapacity = 12
	mustConfigure(t, e, "f", c)
	for i := range 13 {
		if err := e.Register(ctx, "f", Snapshot{Key: fmt.Sprint("k", i), RequestNumber: i + 1}); err != nil {
			t.Fatal(err)
		}
	}
	plan, err := e.OnStart(ctx, "f", "w")
	if err != nil {
		t.Fatal(err)
	}
	// 13 > 12: keep round(0.4*13)=5 + round(0.1*8)=1 draw.
	st, _ := e.Inspect(ctx, "f")
	if len(st.Pool) != 6 || len(plan.Pruned) != 7 {
		t.Fatalf("pool %d pruned %d, want 6 and 7", len(st.Pool), len(plan.Pruned))
	}
	inPool := map[string]bool{}
	for _, p := range st.Pool {
		inPool[p.Key] = true
	}
	for _, p := range plan.Pruned {
		if inPool[p.Key] {
			t.Fatalf("%s both pruned and kept", p.Key)
		}
	}
	if plan.Restore != nil && !inPool[plan.Restore.Key] {
		t.Fatal("restored a pruned snapshot")
	}
	if plan.Worker.CheckpointAt <= plan.Worker.Lineage || plan.Worker.CheckpointAt > plan.Worker.Lineage+4 {
		t.Fatalf("checkpoint %d not in (r, r+E]", plan.Worker.CheckpointAt)
	}
	if len(st.Weights) != 100 {
		t.Fatalf("weights %d", len(st.Weights))
	}
}

func TestDeterministicWithSeed(t *testing.T) {
	run := func() []string {
		ctx := context.Background()
		e, _, _ := newEngine(t)
		mustConfigure(t, e, "f", cfgOf(StrategyRequestCentric, 2))
		var out []string
		n := 0
		for range 40 {
			plan, err := e.OnStart(ctx, "f", "w")
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(plan.Worker.Lineage, plan.Worker.CheckpointAt, len(plan.Pruned)))
			w := plan.Worker
			for {
				act, _ := e.OnRequest(ctx, "f", &w, time.Duration(1000+w.Lineage)*time.Microsecond)
				if act.Checkpoint {
					n++
					e.Register(ctx, "f", Snapshot{Key: fmt.Sprint(n), RequestNumber: w.Lineage})
				}
				if act.Evict {
					break
				}
			}
		}
		return out
	}
	a, b := run(), run()
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Fatalf("same seed, different decisions:\n%v\n%v", a, b)
	}
}

func TestWithRandSourceInjected(t *testing.T) {
	var calls []uint64
	path := filepath.Join(t.TempDir(), "e.db")
	db := openDB(t, path, true)
	defer db.Close()
	e, _ := Open(db, WithRandSource(func(fn string, seed int64, call uint64) *rand.Rand {
		calls = append(calls, call)
		return rand.New(rand.NewPCG(uint64(seed), call))
	}))
	defer closeEngine(t, e)
	mustConfigure(t, e, "f", cfgOf(StrategyBandit, 1))
	for range 3 {
		e.OnStart(context.Background(), "f", "w")
	}
	if fmt.Sprint(calls) != "[0 1 2]" {
		t.Fatalf("calls %v", calls)
	}
}

func TestForgetResetRemove(t *testing.T) {
	ctx := context.Background()
	e, _, _ := newEngine(t)
	mustConfigure(t, e, "f", cfgOf(StrategyRequestCentric, 4))
	for _, k := range []string{"a", "b", "c"} {
		if err := e.Register(ctx, "f", Snapshot{Key: k, RequestNumber: 3}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Register(ctx, "f", Snapshot{Key: "a", RequestNumber: 3}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := e.Register(ctx, "f", Snapshot{RequestNumber: 3}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("no key: %v", err)
	}
	if err := e.Forget(ctx, "f", "b"); err != nil {
		t.Fatal(err)
	}
	if err := e.Forget(ctx, "f", "gone"); err != nil {
		t.Fatal(err)
	}
	e.CheckpointFailed(ctx, "f")
	st, _ := e.Inspect(ctx, "f")
	if len(st.Pool) != 2 || st.FailedRestores != 2 || st.Checkpoints != 3 || st.FailedCheckpoints != 1 {
		t.Fatalf("after forget: %+v", st)
	}
	w := Worker{}
	e.OnRequest(ctx, "f", &w, time.Millisecond)
	got, err := e.Reset(ctx, "f")
	if err != nil || len(got) != 2 {
		t.Fatalf("reset returned %v, %v", got, err)
	}
	st, _ = e.Inspect(ctx, "f")
	if len(st.Pool) != 0 || st.Weights[0] != 0 || st.Checkpoints != 3 {
		t.Fatalf("after reset: %+v", st)
	}
	e.Register(ctx, "f", Snapshot{Key: "d", RequestNumber: 1})
	got, err = e.Remove(ctx, "f")
	if err != nil || len(got) != 1 || got[0].Key != "d" {
		t.Fatalf("remove returned %v, %v", got, err)
	}
	if _, err := e.Inspect(ctx, "f"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("inspect after remove: %v", err)
	}
}

func TestConfigureKeepsOrResets(t *testing.T) {
	ctx := context.Background()
	e, _, _ := newEngine(t)
	c := cfgOf(StrategyRequestCentric, 4)
	mustConfigure(t, e, "f", c)
	e.Register(ctx, "f", Snapshot{Key: "a", RequestNumber: 2})
	w := Worker{}
	e.OnRequest(ctx, "f", &w, 5*time.Millisecond)
	c.PoolCapacity, c.Horizon = 5, 50
	mustConfigure(t, e, "f", c)
	st, _ := e.Inspect(ctx, "f")
	if len(st.Pool) != 1 || st.Weights[0] != 5000 || len(st.Weights) != 50 || st.Config.PoolCapacity != 5 {
		t.Fatalf("params change lost state: %+v", st)
	}
	c.Strategy = StrategyBandit
	mustConfigure(t, e, "f", c)
	st, _ = e.Inspect(ctx, "f")
	if len(st.Pool) != 0 || st.Weights[0] != 0 || st.Strategy != StrategyBandit {
		t.Fatalf("strategy change kept state: %+v", st)
	}
	plan, _ := e.OnStart(ctx, "f", "w")
	if len(plan.Pruned) != 1 || plan.Pruned[0].Key != "a" {
		t.Fatalf("old pool not handed back for deletion: %+v", plan.Pruned)
	}
}

func TestPersistenceAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	db := openDB(t, path, false)
	e, _ := Open(db)
	mustConfigure(t, e, "ns/f", cfgOf(StrategyBandit, 4))
	mustConfigure(t, e, "ns/g", cfgOf(StrategyRequestCentric, 4))
	e.Register(ctx, "ns/f", Snapshot{Key: "a", RequestNumber: 3, SizeBytes: 10, SHA256: "ff"})
	plan, _ := e.OnStart(ctx, "ns/f", "w")
	w := plan.Worker
	e.OnRequest(ctx, "ns/f", &w, 3*time.Millisecond)
	e.OnRequest(ctx, "ns/f", &w, 2*time.Millisecond)
	before, _ := e.Inspect(ctx, "ns/f")
	// Other users of the file keep their buckets.
	db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucketIfNotExists([]byte("other")); return err })
	closeEngine(t, e)
	db.Close()

	db = openDB(t, path, false)
	defer db.Close()
	e, _ = Open(db)
	defer closeEngine(t, e)
	after, err := e.Inspect(ctx, "ns/f")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("state changed across reopen:\n%+v\n%+v", before, after)
	}
	fns, _ := e.Functions(ctx)
	if strings.Join(fns, ",") != "ns/f,ns/g" {
		t.Fatalf("functions %v", fns)
	}
}

func TestConfigFromAnnotations(t *testing.T) {
	def := DefaultConfig()
	tests := []struct {
		name    string
		ann     map[string]string
		check   func(Config) bool
		wantErr string // key named in the error
	}{
		{"none gives defaults", nil, func(c Config) bool { return c == def }, ""},
		{"all set", map[string]string{
			AnnotationStrategy: " Fixed ", AnnotationCheckpointAt: "7", AnnotationPoolCapacity: "12",
			AnnotationEvictAfter: "4", AnnotationP: "0.5", AnnotationGamma: "0.2", AnnotationEps: "0.3",
			AnnotationHorizon: "200", AnnotationSeed: "-9"},
			func(c Config) bool {
				return c == Config{Strategy: StrategyFixed, CheckpointAt: 7, PoolCapacity: 12, EvictAfter: 4,
					Horizon: 200, P: 0.5, Gamma: 0.2, Eps: 0.3, Seed: -9}
			}, ""},
		{"ours", map[string]string{AnnotationStrategy: "bandit"}, func(c Config) bool { return c.Strategy == StrategyBandit }, ""},
		{"unknown strategy", map[string]string{AnnotationStrategy: "warp"}, nil, AnnotationStrategy},
		{"non-integer", map[string]string{AnnotationPoolCapacity: "lots"}, nil, AnnotationPoolCapacity},
		{"zero capacity", map[string]string{AnnotationPoolCapacity: "0"}, nil, AnnotationPoolCapacity},
		{"negative E", map[string]string{AnnotationEvictAfter: "-1"}, nil, AnnotationEvictAfter},
		{"T zero", map[string]string{AnnotationCheckpointAt: "0"}, nil, AnnotationCheckpointAt},
		{"p > 1", map[string]string{AnnotationP: "1.5"}, nil, AnnotationP},
		{"gamma NaN", map[string]string{AnnotationGamma: "NaN"}, nil, AnnotationGamma},
		{"eps 0", map[string]string{AnnotationEps: "0"}, nil, AnnotationEps},
		{"horizon 1", map[string]string{AnnotationHorizon: "1"}, nil, AnnotationHorizon},
		{"horizon huge", map[string]string{AnnotationHorizon: "100000000"}, nil, AnnotationHorizon},
		{"seed not int", map[string]string{AnnotationSeed: "1.5"}, nil, AnnotationSeed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ConfigFromAnnotations(def, tt.ann)
			if tt.wantErr != "" {
				if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("err %v, want ErrInvalid naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(c) {
				t.Fatalf("got %+v, %v", c, err)
			}
		})
	}
}

func TestConcurrentConsistency(t *testing.T) {
	ctx := context.Background()
	e, _, _ := newEngine(t)
	fns := []string{"a", "b", "c", "d"}
	for i, fn := range fns {
		mustConfigure(t, e, fn, cfgOf(Strategies()[i], 3))
	}
	type tally struct {
		starts, registered, pruned int
	}
	var mu sync.Mutex
	tallies := map[string]*tally{}
	for _, fn := range fns {
		tallies[fn] = &tally{}
	}
	var wg sync.WaitGroup
	var seq sync.Map
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn := fns[g%len(fns)]
			for k := range 15 {
				plan, err := e.OnStart(ctx, fn, fmt.Sprint(g, "-", k))
				if err != nil {
					t.Error(err)
					return
				}
				reg := 0
				w := plan.Worker
				for {
					act, err := e.OnRequest(ctx, fn, &w, time.Duration(500+g*10+w.Lineage)*time.Microsecond)
					if err != nil {
						t.Error(err)
						return
					}
					if act.Checkpoint {
						key := fmt.Sprint(fn, g, k, w.Lineage)
						seq.Store(key, true)
						if err := e.Register(ctx, fn, Snapshot{Key: key, RequestNumber: w.Lineage}); err != nil {
							t.Error(err)
							return
						}
						reg++
					}
					if act.Evict {
						break
					}
				}
				mu.Lock()
				tl := tallies[fn]
				tl.starts++
				tl.registered += reg
				tl.pruned += len(plan.Pruned)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, fn := range fns {
		st, err := e.Inspect(ctx, fn)
		if err != nil {
			t.Fatal(err)
		}
		tl := tallies[fn]
		if int(st.ColdStarts+st.Restores) != tl.starts {
			t.Errorf("%s: cold %d + restores %d != starts %d", fn, st.ColdStarts, st.Restores, tl.starts)
		}
		if int(st.Checkpoints) != tl.registered {
			t.Errorf("%s: checkpoints %d != registered %d", fn, st.Checkpoints, tl.registered)
		}
		// Pool = registered - handed back (the cold strategy trashes late
		// registrations, handed back on the next OnStart or still pending).
		if fn != "a" && len(st.Pool) != tl.registered-tl.pruned {
			t.Errorf("%s: pool %d != registered %d - pruned %d", fn, len(st.Pool), tl.registered, tl.pruned)
		}
	}
}

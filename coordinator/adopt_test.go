package coordinator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// restarted is a second coordinator over e's state file, engine and store,
// as a restarted provider opens them: it knows nothing of e's workers.
func (e *env) restarted() *Coordinator {
	e.t.Helper()
	c, err := New(e.c.deletes.db, Config{Engine: e.engine, Store: e.store, WorkDir: e.t.TempDir(), DeleteRetry: 50 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// Workers an earlier provider planned are adopted where they stand: the
// engine counts on from their lineage, checkpoints at their planned
// request only if it is ahead, and evicts by count from their real calls.
func TestAdoptPlacesWorkerOnItsLineage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		lineage   Lineage // Version filled in
		evictNow  bool    // due at adoption
		calls     int     // observed after adoption
		wantDumps int32
		wantAt    int // request number of the checkpoint, if one
		wantEvict int // the call (1-based) whose Observe says evict; 0 none
	}{
		{name: "cold, checkpoint ahead", lineage: Lineage{Served: 1, CheckpointAt: 3}, calls: 4, wantDumps: 1, wantAt: 3, wantEvict: 4},
		{name: "cold, checkpoint reached unwatched", lineage: Lineage{Served: 3, CheckpointAt: 3}, calls: 2, wantEvict: 2},
		{name: "cold, checkpoint behind", lineage: Lineage{Served: 4, CheckpointAt: 3}, calls: 1, wantEvict: 1},
		{name: "restored, checkpoint ahead", lineage: Lineage{Start: 2, Snapshot: "ns/fn/v/r00002-old", Served: 0, CheckpointAt: 3}, calls: 1, wantDumps: 1, wantAt: 3},
		{name: "restored, no checkpoint planned", lineage: Lineage{Start: 3, Snapshot: "ns/fn/v/r00003-old", Served: 2}, calls: 3, wantEvict: 3},
		{name: "due already", lineage: Lineage{Served: 5, CheckpointAt: 3}, evictNow: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			f := e.c.Function("ns", "fn")
			spec := e.spec("1")
			spec.Annotations = map[string]string{"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "3", "com.pronghorn.evict-after": "5"}
			// The version the worker was planned under, by the first
			// provider.
			planned, _ := e.c.Start(t.Context(), f, "planner", spec)
			l := tc.lineage
			l.Version = planned.Version()

			c := e.restarted()
			dump := &fakeDump{}
			spec.Dumper = dump
			w, evict, err := c.Adopt(t.Context(), c.Function("ns", "fn"), "w", spec, l)
			if err != nil {
				t.Fatal(err)
			}
			if evict != tc.evictNow || w.Key() != planned.Key() || w.Served() != l.Served {
				t.Fatalf("adopted: evict %v, key %s (planned %s), served %d", evict, w.Key(), planned.Key(), w.Served())
			}
			evictedAt := 0
			for i := 1; i <= tc.calls; i++ {
				if c.Observe(w, Outcome{Latency: time.Millisecond}) && evictedAt == 0 {
					evictedAt = i
				}
				eventually(t, "the checkpoint", func() bool { return !w.Checkpointing() })
			}
			if evictedAt != tc.wantEvict {
				t.Errorf("evicted at call %d after adoption, want %d", evictedAt, tc.wantEvict)
			}
			pool := e.pool(w.Key())
			if dump.n.Load() != tc.wantDumps || int32(len(pool)) != tc.wantDumps {
				t.Fatalf("%d dumps, pool %+v; want %d", dump.n.Load(), pool, tc.wantDumps)
			}
			if tc.wantDumps > 0 && (pool[0].RequestNumber != tc.wantAt || !strings.HasSuffix(pool[0].Key, "-w")) {
				t.Errorf("snapshot %+v, want request %d of worker w", pool[0], tc.wantAt)
			}
			st, _ := e.engine.Inspect(t.Context(), w.Key())
			if st.ColdStarts+st.Restores != 1 {
				t.Errorf("adoption counted as a start: %d cold, %d restores", st.ColdStarts, st.Restores)
			}
		})
	}
}

// What cannot be adopted says why and takes no part.
func TestAdoptRefuses(t *testing.T) {
	e := newEnv(t)
	f := e.c.Function("ns", "fn")
	planned, _ := e.c.Start(t.Context(), f, "planner", e.spec("1"))
	for _, tc := range []struct {
		name    string
		spec    Spec
		lineage Lineage
		want    string
		is      error
	}{
		{name: "never planned", spec: e.spec("1"), lineage: Lineage{Served: 1}, want: "not planned"},
		{name: "other version", spec: e.spec("2"), lineage: Lineage{Version: planned.Version(), Served: 1}, is: ErrOtherVersion},
		{name: "negative count", spec: e.spec("1"), lineage: Lineage{Version: planned.Version(), Served: -1}, is: errdefs.ErrInvalid},
		{name: "no way to checkpoint", spec: Spec{Version: e.spec("1").Version}, lineage: Lineage{Version: planned.Version()}, want: "cannot be checkpointed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.restarted()
			w, _, err := c.Adopt(t.Context(), c.Function("ns", "fn"), "w", tc.spec, tc.lineage)
			if err == nil || w != nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Adopt = %v, %v; want an error (%v, %q)", w, err, tc.is, tc.want)
			}
		})
	}
}

// After a restart, the version of an adopted worker is current: its
// leaving (evicted after its checkpoint) must not take the snapshot its
// replacement is to restore.
func TestAdoptedVersionSurvivesItsWorker(t *testing.T) {
	e := newEnv(t)
	f := e.c.Function("ns", "fn")
	planned, _ := e.c.Start(t.Context(), f, "w", e.spec("1"))
	l := Lineage{Version: planned.Version(), Served: 1, CheckpointAt: planned.CheckpointAt()}
	if l.CheckpointAt != 2 {
		t.Fatalf("planned checkpoint at %d, want 2", l.CheckpointAt)
	}

	c := e.restarted()
	f = c.Function("ns", "fn")
	w, _, err := c.Adopt(t.Context(), f, "w", e.spec("1"), l)
	if err != nil {
		t.Fatal(err)
	}
	c.Observe(w, Outcome{Latency: time.Millisecond})
	eventually(t, "the checkpoint", func() bool { return !w.Checkpointing() })
	pool := e.pool(w.Key())
	if len(pool) != 1 || pool[0].RequestNumber != 2 {
		t.Fatalf("pool after the adopted worker's 2nd request: %+v", pool)
	}
	c.Gone(w)
	time.Sleep(50 * time.Millisecond) // a wrongful collection deletes in the background
	if len(e.pool(w.Key())) != 1 || !e.stored(pool[0].Key) {
		t.Fatal("the adopted worker's leaving took its version's snapshot")
	}
	next, restore := c.Start(t.Context(), f, "next", e.spec("1"))
	if restore == nil || restore.Key != pool[0].Key || next.Key() != w.Key() {
		t.Fatalf("the replacement restores %v, want %s", restore, pool[0].Key)
	}
}

package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	bolt "go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// These tests run the whole life cycle with a real engine, a real bbolt
// file and a real directory store; only the dump is faked (it writes
// files where CRIU would). The CRIU path is covered by the local backend's
// and the end-to-end tests.

// fakeDump writes a small image set, as CRIU would, and counts dumps.
type fakeDump struct {
	n    atomic.Int32
	fail error
}

func (d *fakeDump) Dump(ctx context.Context, dir string) (DumpResult, error) {
	d.n.Add(1)
	if d.fail != nil {
		return DumpResult{}, d.fail
	}
	for _, name := range []string{"inventory.img", "pages-1.img"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("image "+name), 0o600); err != nil {
			return DumpResult{}, err
		}
	}
	return DumpResult{ImageBytes: 42, DumpTime: time.Millisecond}, nil
}

// countingStore counts Gets and Deletes and can fail them.
type countingStore struct {
	snapshot.Store
	gets, deletes atomic.Int32
	fail          atomic.Pointer[error]
	refuseDeletes atomic.Bool
}

func (s *countingStore) Delete(ctx context.Context, key string) error {
	s.deletes.Add(1)
	if s.refuseDeletes.Load() {
		return fmt.Errorf("delete: connection reset: %w", errdefs.ErrUnavailable)
	}
	return s.Store.Delete(ctx, key)
}

func (s *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, snapshot.Manifest, error) {
	s.gets.Add(1)
	if err := s.fail.Load(); err != nil {
		return nil, snapshot.Manifest{}, *err
	}
	return s.Store.Get(ctx, key)
}

type env struct {
	t      *testing.T
	c      *Coordinator
	engine *orchestrator.Engine
	store  *countingStore
	work   string
	fnDir  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := orchestrator.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := snapshot.NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, engine: engine, store: &countingStore{Store: dir}, work: t.TempDir(), fnDir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(e.fnDir, "index.js"), []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.c, err = New(db, Config{Engine: engine, Store: e.store, WorkDir: e.work, DeleteRetry: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := e.c.Close(ctx); err != nil {
			t.Error(err)
		}
		_ = engine.Close(ctx)
		db.Close()
	})
	return e
}

// spec is a fixed(2) worker of the function in fnDir with env release,
// checkpointed by dump (a fake that never fails when nil).
func (e *env) spec(release string, dump ...Dumper) Spec {
	var d Dumper = &fakeDump{}
	if len(dump) > 0 {
		d = dump[0]
	}
	return Spec{
		Dumper:      d,
		Version:     VersionInputs{Dir: e.fnDir, Process: "node index.js", Env: map[string]string{"RELEASE": release}},
		Annotations: map[string]string{"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "2"},
	}
}

// serve has w serve n calls and waits for any checkpoint they caused.
func (e *env) serve(w *Worker, n int) {
	e.t.Helper()
	for range n {
		e.c.Observe(w, Outcome{Latency: time.Millisecond})
	}
	eventually(e.t, "the checkpoint to finish", func() bool { return !w.Checkpointing() })
}

func (e *env) pool(key string) []orchestrator.PoolEntry {
	e.t.Helper()
	st, err := e.engine.Inspect(context.Background(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	return st.Pool
}

func (e *env) stored(key string) bool {
	_, err := e.store.Stat(context.Background(), key)
	return err == nil
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A checkpoint taken on the engine's cue is uploaded, registered in the
// version's pool and kept as the local copy; the next worker restores it
// without a download.
func TestCheckpointThenRestore(t *testing.T) {
	e := newEnv(t)
	f := e.c.Function("ns", "fn")
	dump := &fakeDump{}
	w1, restore := e.c.Start(t.Context(), f, "w1", e.spec("1", dump))
	if restore != nil || w1.Key() == "" {
		t.Fatalf("first worker: restore %v, key %q", restore, w1.Key())
	}
	e.serve(w1, 2)
	pool := e.pool(w1.Key())
	if dump.n.Load() != 1 || len(pool) != 1 || pool[0].RequestNumber != 2 || !e.stored(pool[0].Key) {
		t.Fatalf("after 2 calls: %d dumps, pool %+v", dump.n.Load(), pool)
	}
	w2, restore := e.c.Start(t.Context(), f, "w2", e.spec("1"))
	if restore == nil || restore.Key != pool[0].Key {
		t.Fatalf("second worker restores %v, want %s", restore, pool[0].Key)
	}
	dir := e.c.LocalImages(w2, *restore)
	if b, err := os.ReadFile(filepath.Join(dir, "pages-1.img")); err != nil || string(b) != "image pages-1.img" {
		t.Fatalf("local images: %q %v", b, err)
	}
	if n := e.store.gets.Load(); n != 0 {
		t.Errorf("%d downloads of a snapshot taken here", n)
	}
}

// Workers restoring a snapshot with no local copy download it once; a
// local copy changed on disk is fetched again, and the snapshot is kept.
func TestLocalImagesDownloadOnceAndReseal(t *testing.T) {
	e := newEnv(t)
	f := e.c.Function("ns", "fn")
	w1, _ := e.c.Start(t.Context(), f, "w1", e.spec("1"))
	e.serve(w1, 2)
	key := e.pool(w1.Key())[0].Key
	if err := os.RemoveAll(e.c.cachePath(key)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	dirs := make([]string, 8)
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, restore := e.c.Start(t.Context(), f, fmt.Sprint("r", i), e.spec("1"))
			if restore != nil {
				dirs[i] = e.c.LocalImages(w, *restore)
			}
		}()
	}
	wg.Wait()
	if slices.Contains(dirs, "") {
		t.Fatalf("a worker got no images: %q", dirs)
	}
	if n := e.store.gets.Load(); n != 1 {
		t.Fatalf("8 concurrent first restores downloaded %d times", n)
	}
	pages := filepath.Join(e.c.cachePath(key), "pages-1.img")
	_ = os.Chmod(pages, 0o600)
	if err := os.WriteFile(pages, []byte("tampered"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, restore := e.c.Start(t.Context(), f, "after", e.spec("1"))
	dir := e.c.LocalImages(w, *restore)
	if b, _ := os.ReadFile(filepath.Join(dir, "pages-1.img")); string(b) != "image pages-1.img" {
		t.Fatalf("a tampered local copy was used: %q", b)
	}
	if n := e.store.gets.Load(); n != 2 || len(e.pool(w1.Key())) != 1 {
		t.Fatalf("after tampering: %d downloads, pool %v", n, e.pool(w1.Key()))
	}
}

// A store that fails transiently makes the worker start cold and keeps the
// snapshot; a missing object is proven bad and leaves pool and store.
func TestRestoreFailuresKeepOrDrop(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		keep bool
	}{
		{"store down", fmt.Errorf("dial: connection refused: %w", errdefs.ErrUnavailable), true},
		{"connection reset", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"object missing", fmt.Errorf("get: %w", errdefs.ErrNotFound), false},
		{"checksum mismatch", fmt.Errorf("get: %w", snapshot.ErrCorrupt), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			f := e.c.Function("ns", "fn")
			w1, _ := e.c.Start(t.Context(), f, "w1", e.spec("1"))
			e.serve(w1, 2)
			key := e.pool(w1.Key())[0].Key
			e.c.dropCached(key)
			e.store.fail.Store(&tc.err)
			w2, restore := e.c.Start(t.Context(), f, "w2", e.spec("1"))
			if dir := e.c.LocalImages(w2, *restore); dir != "" {
				t.Fatalf("images despite %v", tc.err)
			}
			if kept := len(e.pool(w1.Key())) == 1; kept != tc.keep {
				t.Fatalf("snapshot kept = %v, want %v", kept, tc.keep)
			}
			st, _ := e.engine.Inspect(t.Context(), w1.Key())
			if st.ColdStarts != 2 || st.Restores != 0 {
				t.Errorf("counters: %d cold, %d restores; want 2 cold", st.ColdStarts, st.Restores)
			}
			if !tc.keep {
				eventually(t, "the delete", func() bool { return !e.stored(key) })
			} else if !e.stored(key) {
				t.Fatal("a transient failure deleted the snapshot")
			}
		})
	}
}

// A new version never restores the old version's snapshots, inherits its
// learned latencies, and the old version's snapshots go once its last
// worker is gone.
func TestNewVersionStartsCleanAndOldOneIsCollected(t *testing.T) {
	e := newEnv(t)
	f := e.c.Function("ns", "fn")
	w1, _ := e.c.Start(t.Context(), f, "w1", e.spec("1"))
	e.serve(w1, 2)
	old := e.pool(w1.Key())[0].Key

	w2, restore := e.c.Start(t.Context(), f, "w2", e.spec("2"))
	if restore != nil || w2.Key() == w1.Key() {
		t.Fatalf("new version: key %s (old %s), restore %v", w2.Key(), w1.Key(), restore)
	}
	st, err := e.engine.Inspect(t.Context(), w2.Key())
	if err != nil || st.Weights[0] == 0 || len(st.Pool) != 0 {
		t.Fatalf("new version state: %+v %v; want the old weights as a prior and no pool", st, err)
	}
	if !e.stored(old) {
		t.Fatal("old snapshot deleted while a worker of its version runs")
	}
	e.c.Gone(w1)
	eventually(t, "the old version's snapshot deleted", func() bool { return !e.stored(old) })
	keys, _ := e.engine.Functions(t.Context())
	if slices.Contains(keys, w1.Key()) {
		t.Fatalf("old version still in the engine: %v", keys)
	}
	// A changed function directory is a new version too.
	if err := os.WriteFile(filepath.Join(e.fnDir, "index.js"), []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	w3, _ := e.c.Start(t.Context(), f, "w3", e.spec("2"))
	if w3.Key() == w2.Key() {
		t.Fatal("changed code, same version")
	}
}

// A function deleted and deployed again while a worker of the old one
// still runs: the old worker leaving must not take the new deployment's
// snapshots.
func TestRemoveAndRedeploy(t *testing.T) {
	e := newEnv(t)
	f := e.c.Function("ns", "fn")
	old, _ := e.c.Start(t.Context(), f, "old", e.spec("1"))
	e.c.Remove(t.Context(), f)

	f = e.c.Function("ns", "fn")
	w, _ := e.c.Start(t.Context(), f, "new", e.spec("1"))
	e.serve(w, 2)
	key := e.pool(w.Key())[0].Key
	e.c.Gone(old)
	time.Sleep(50 * time.Millisecond)
	if len(e.pool(w.Key())) != 1 || !e.stored(key) {
		t.Fatal("the old deployment's last worker took the new one's snapshot")
	}
	e.c.Gone(w)
	e.c.Remove(t.Context(), f)
	eventually(t, "the snapshot deleted with the function", func() bool { return !e.stored(key) })
}

// A failed dump is counted and leaves nothing behind; deletes the store
// refuses are retried until it accepts them.
func TestFailedCheckpointAndRetriedDelete(t *testing.T) {
	e := newEnv(t)
	f := e.c.Function("ns", "fn")
	w, _ := e.c.Start(t.Context(), f, "w", e.spec("1", &fakeDump{fail: errors.New("criu: dump failed")}))
	e.serve(w, 2)
	st, _ := e.engine.Inspect(t.Context(), w.Key())
	if st.FailedCheckpoints != 1 || len(st.Pool) != 0 || e.inProgress("fn.ns") != 0 {
		t.Fatalf("after a failed dump: %+v, %v in progress", st, e.inProgress("fn.ns"))
	}

	e.store.refuseDeletes.Store(true)
	e.c.Delete([]orchestrator.Snapshot{{Key: "ns/fn/v/r00001-x"}})
	eventually(t, "the recorded delete", func() bool {
		keys, _ := e.c.PendingDeletes()
		return slices.Contains(keys, "ns/fn/v/r00001-x") && e.store.deletes.Load() >= 2
	})
	e.store.refuseDeletes.Store(false)
	eventually(t, "the retried delete", func() bool {
		keys, _ := e.c.PendingDeletes()
		return len(keys) == 0
	})
}

// blockingDump holds a dump until released.
type blockingDump struct {
	fakeDump
	started, release chan struct{}
}

func (d *blockingDump) Dump(ctx context.Context, dir string) (DumpResult, error) {
	close(d.started)
	<-d.release
	return d.fakeDump.Dump(ctx, dir)
}

// From the engine's checkpoint decision until the dump is taken the worker
// reports Dumping, so backends send it no call that would land in a
// snapshot labelled with an earlier request; OnDumped says when it is over.
func TestDumpingFromDecisionToDump(t *testing.T) {
	e := newEnv(t)
	dump := &blockingDump{started: make(chan struct{}), release: make(chan struct{})}
	spec := e.spec("1", dump)
	var woken atomic.Int32
	spec.OnDumped = func() { woken.Add(1) }
	w, _ := e.c.Start(t.Context(), e.c.Function("ns", "fn"), "w", spec)
	e.c.Observe(w, Outcome{Latency: time.Millisecond})
	if w.Dumping() {
		t.Fatal("dumping before the planned request")
	}
	e.c.Observe(w, Outcome{Latency: time.Millisecond}) // request 2: checkpoint
	if !w.Dumping() {
		t.Fatal("not dumping right after the checkpoint decision")
	}
	<-dump.started
	if !w.Dumping() || woken.Load() != 0 {
		t.Fatal("dump running but the worker takes calls again")
	}
	st, _ := e.engine.Inspect(t.Context(), w.Key())
	if n := e.inProgress("fn.ns"); n != 1 || st.Checkpoints != 0 {
		t.Fatalf("during the dump: %v checkpoints in progress, %d counted; want 1 and 0", n, st.Checkpoints)
	}
	close(dump.release)
	eventually(t, "the dump to end", func() bool { return !w.Dumping() })
	if woken.Load() != 1 {
		t.Fatalf("OnDumped called %d times", woken.Load())
	}
	eventually(t, "the checkpoint", func() bool { return !w.Checkpointing() })
	st, _ = e.engine.Inspect(t.Context(), w.Key())
	if n := e.inProgress("fn.ns"); n != 0 || st.Checkpoints != 1 {
		t.Fatalf("after the checkpoint: %v in progress, %d counted; want 0 and 1", n, st.Checkpoints)
	}
}

// inProgress reads the checkpoints-in-progress gauge of a function.
func (e *env) inProgress(display string) float64 {
	e.t.Helper()
	var m dto.Metric
	if err := e.c.metrics.inProgress.WithLabelValues(display).Write(&m); err != nil {
		e.t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"
	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
	"github.com/pronghorn-openfaas/pronghorn/snapshot/snapshottest"
)

// snapshotEnv is a backend with the engine (in the backend's own bbolt
// file, as the provider has it) and a directory store, running the real
// sample functions under benchmarks/functions with real CRIU. criu, if
// given, replaces the CRIU binary.
func snapshotEnv(t *testing.T, runtimeBin string, criu ...string) (*env, *snapshot.DirStore, string) {
	t.Helper()
	criuPath := snapshottest.CRIU(t)
	if len(criu) > 0 {
		criuPath = criu[0]
	}
	if _, err := exec.LookPath(runtimeBin); err != nil {
		t.Skipf("needs %s for the sample function (scripts/setup.sh)", runtimeBin)
	}
	storeDir := t.TempDir()
	store, err := snapshot.NewDirStore(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	_, file, _, _ := runtime.Caller(0)
	functions := filepath.Join(filepath.Dir(filepath.Dir(file)), "benchmarks", "functions")
	e := newEnv(t, func(c *Config, db *bolt.DB) {
		engine, err := orchestrator.Open(db)
		if err != nil {
			t.Fatal(err)
		}
		c.FunctionsDir = functions
		c.Engine, c.Store, c.CRIUPath = engine, store, criuPath
		c.ReadyTimeout = 30 * time.Second
	})
	return e, store, storeDir
}

// inspect returns the engine's state of c's current version.
func (e *env) inspect() orchestrator.State {
	e.t.Helper()
	key := e.engineKey("c")
	st, err := e.b.cfg.Engine.Inspect(context.Background(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// engineKey is the engine key a worker of name starting now would have.
func (e *env) engineKey(name string) string {
	e.t.Helper()
	f, err := e.b.function("openfaas-fn", name)
	if err != nil {
		e.t.Fatal(err)
	}
	f.mu.Lock()
	in, err := e.b.versionInputsLocked(f)
	f.mu.Unlock()
	if err != nil {
		e.t.Fatal(err)
	}
	key, err := e.b.coord.CurrentKey(f.snap, in)
	if err != nil {
		e.t.Fatal(err)
	}
	return key
}

// histogramCount is how many observations the backend's histogram name
// holds, over all functions.
func (e *env) histogramCount(name string) uint64 {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(e.b.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}

// dropLocalCopy removes the local copy of snapshot key's images, as a
// restart or a disk clean-up would.
func (e *env) dropLocalCopy(key string) {
	e.t.Helper()
	if err := os.RemoveAll(e.cachedImages(key)); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) cachedImages(key string) string {
	return filepath.Join(e.dataDir, "work", "images", filepath.FromSlash(key))
}

// deployCounter deploys the sample function image as "c" with the given
// com.pronghorn.* annotations (without the prefix).
func (e *env) deployCounter(image string, annotations map[string]string) {
	e.t.Helper()
	a := map[string]string{}
	for k, v := range annotations {
		a["com.pronghorn."+k] = v
	}
	if err := e.b.Deploy(context.Background(), types.FunctionDeployment{Service: "c", Image: image, Annotations: &a}); err != nil {
		e.t.Fatal(err)
	}
}

// count invokes c and returns the counter it answered with.
func (e *env) count() int {
	e.t.Helper()
	body, err := e.invoke("c")
	if err != nil {
		e.t.Fatal(err)
	}
	var r struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		e.t.Fatalf("reply %q: %v", body, err)
	}
	return r.Count
}

// A fixed(3) strategy with eviction after 5 requests: the first worker is
// checkpointed at its 3rd request and evicted after its 5th; the next worker
// restores that snapshot and so continues the counter at 4, not 1.
func TestCheckpointEvictRestore(t *testing.T) {
	for _, tc := range []struct{ image, bin, needs string }{
		{"counter-pypy", "pypy3", ""},
		{"counter-jvm", "java", "Handler.class"},
		{"counter-node", "node", ""},
	} {
		t.Run(tc.image, func(t *testing.T) {
			e, _, _ := snapshotEnv(t, tc.bin)
			if tc.needs != "" {
				if _, err := os.Stat(filepath.Join(e.b.cfg.FunctionsDir, tc.image, tc.needs)); err != nil {
					t.Skipf("%s not built (scripts/setup.sh compiles it): %v", tc.needs, err)
				}
			}
			e.deployCounter(tc.image, map[string]string{"strategy": "fixed", "checkpoint-at": "3", "evict-after": "5"})
			for want := 1; want <= 5; want++ {
				if got := e.count(); got != want {
					t.Fatalf("request %d: count %d", want, got)
				}
				if want == 3 {
					eventually(t, "the checkpoint", func() bool { st := e.inspect(); return st.Checkpoints+st.FailedCheckpoints > 0 })
				}
			}
			if st := e.inspect(); st.Checkpoints != 1 || len(st.Pool) != 1 || st.Pool[0].RequestNumber != 3 {
				t.Fatalf("after checkpoint: %+v", st)
			}
			// The 6th request goes to the replacement, restored at request 3.
			if got := e.count(); got != 4 {
				t.Fatalf("restored worker answered count %d, want 4", got)
			}
			if st := e.inspect(); st.Restores != 1 || st.FailedRestores != 0 {
				t.Errorf("counters: %+v", st)
			}
			// The images came from the checkpoint's own dump, kept locally:
			// nothing was downloaded.
			if n := e.histogramCount("pronghorn_download_seconds"); n != 0 {
				t.Errorf("%d downloads for a snapshot taken on this machine", n)
			}
		})
	}
}

// The engine's pool and weights live in the provider's bbolt file: after a
// restart the function's replica comes back restored from its snapshot.
func TestRestartKeepsPool(t *testing.T) {
	e, _, _ := snapshotEnv(t, "node")
	e.deployCounter("counter-node", map[string]string{"strategy": "fixed", "checkpoint-at": "2"})
	e.count()
	e.count()
	eventually(t, "the checkpoint", func() bool { return e.inspect().Checkpoints == 1 })
	before := e.inspect()
	e.close()
	e.open()
	after := e.inspect()
	if len(after.Pool) != 1 || after.Pool[0].Key != before.Pool[0].Key || after.Weights[0] != before.Weights[0] {
		t.Fatalf("state lost across restart:\nbefore %+v\nafter  %+v", before, after)
	}
	if got := e.count(); got != 3 {
		t.Fatalf("replica after restart answered %d, want 3 (restored at request 2)", got)
	}
}

// Scaling out restores the same snapshot into several fresh workers at once,
// each in its own namespaces.
func TestScaleOutRestoresConcurrently(t *testing.T) {
	e, _, _ := snapshotEnv(t, "node")
	e.deployCounter("counter-node", map[string]string{"strategy": "fixed", "checkpoint-at": "2"})
	e.count()
	e.count()
	eventually(t, "the checkpoint", func() bool { return e.inspect().Checkpoints == 1 })
	if err := e.b.Scale(context.Background(), "", "c", 3); err != nil {
		t.Fatal(err)
	}
	e.waitAvailable("c", 3)
	if st := e.inspect(); st.Restores != 2 || st.FailedRestores != 0 {
		t.Fatalf("counters: %+v", st)
	}
	// Every replica continues from request 2: the original at 3, and each
	// restored one at 3 too, so no call ever sees a cold counter.
	for range 6 {
		if got := e.count(); got < 3 {
			t.Fatalf("a replica answered %d: not restored", got)
		}
	}
}

// Without a working CRIU the checkpoint fails, is counted, and the worker
// keeps serving.
func TestFailedCheckpointKeepsServing(t *testing.T) {
	e, _, _ := snapshotEnv(t, "node", "/nonexistent/criu")
	e.deployCounter("counter-node", map[string]string{"strategy": "fixed", "checkpoint-at": "1"})
	e.count()
	eventually(t, "the failed checkpoint", func() bool { return e.inspect().FailedCheckpoints == 1 })
	for want := 2; want <= 3; want++ {
		if got := e.count(); got != want {
			t.Fatalf("after a failed checkpoint: count %d, want %d", got, want)
		}
	}
	if st := e.inspect(); len(st.Pool) != 0 || st.Checkpoints != 0 {
		t.Errorf("state: %+v", st)
	}
}

// A corrupt snapshot is refused before anything is restored: the worker
// starts cold, and the snapshot leaves the pool and the store.
func TestCorruptSnapshotFallsBackToCold(t *testing.T) {
	e, store, storeDir := snapshotEnv(t, "node")
	e.deployCounter("counter-node", map[string]string{"strategy": "fixed", "checkpoint-at": "2", "evict-after": "3"})
	for i := 1; i <= 3; i++ {
		e.count()
		if i == 2 {
			eventually(t, "the checkpoint", func() bool { return e.inspect().Checkpoints > 0 })
		}
	}
	st := e.inspect()
	if len(st.Pool) != 1 {
		t.Fatalf("pool: %+v", st.Pool)
	}
	key := st.Pool[0].Key
	corruptObject(t, storeDir, key)
	// A restarted provider has no local copy of the images: its first
	// replica fetches the corrupt object.
	e.close()
	e.open()

	if got := e.count(); got != 1 {
		t.Fatalf("worker after a corrupt snapshot answered count %d, want a cold 1", got)
	}
	if st := e.inspect(); st.FailedRestores != 1 || len(st.Pool) != 0 {
		t.Errorf("after corrupt restore: %+v", st)
	}
	eventually(t, "the corrupt snapshot deleted from the store", func() bool {
		_, err := store.Stat(context.Background(), key)
		return errors.Is(err, errdefs.ErrNotFound)
	})
}

// corruptObject flips a byte in the middle of the stored object.
func corruptObject(t *testing.T, root, key string) {
	t.Helper()
	var target string
	filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && info.Size() > 1024 && target == "" {
			target = path
		}
		return nil
	})
	if target == "" {
		t.Fatalf("no object file for %s", key)
	}
	f, err := os.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Stat()
	b := make([]byte, 1)
	off := info.Size() / 2
	f.ReadAt(b, off)
	b[0] ^= 0xff
	f.WriteAt(b, off)
}

// With E=1 every worker serves one call and is retired right away; the
// checkpoint the engine asks for on that call must still be taken before the
// worker stops (fixed(1) snapshots the first request). The worker replacing
// it is planned at once, so it may still start cold; the ones after it
// restore the snapshot.
func TestEvictEveryRequestStillCheckpoints(t *testing.T) {
	e, _, _ := snapshotEnv(t, "node")
	e.deployCounter("counter-node", map[string]string{"strategy": "fixed", "checkpoint-at": "1", "evict-after": "1"})
	if got := e.count(); got != 1 {
		t.Fatalf("first call: %d", got)
	}
	eventually(t, "the checkpoint", func() bool { st := e.inspect(); return st.Checkpoints+st.FailedCheckpoints > 0 })
	if st := e.inspect(); st.Checkpoints != 1 || st.FailedCheckpoints != 0 || st.Weights[0] <= 0 {
		t.Fatalf("checkpoint of an evicted worker: %+v", st)
	}
	e.count() // served by the replacement planned before the snapshot existed
	for i := 0; i < 3; i++ {
		if got := e.count(); got != 2 {
			t.Fatalf("call %d: %d, want 2 (restored at request 1)", i+3, got)
		}
	}
	if st := e.inspect(); st.Restores < 3 || st.FailedCheckpoints != 0 {
		t.Errorf("counters: %+v", st)
	}
}

// flakyStore is a store that can be switched off, like a MinIO that stops
// answering.
type flakyStore struct {
	snapshot.Store
	down atomic.Bool
}

func (s *flakyStore) Get(ctx context.Context, key string) (io.ReadCloser, snapshot.Manifest, error) {
	if s.down.Load() {
		return nil, snapshot.Manifest{}, fmt.Errorf("store: %w", errdefs.ErrUnavailable)
	}
	return s.Store.Get(ctx, key)
}

// A store that does not answer makes a worker start cold, but the snapshot
// is not bad: it stays in the pool and serves once the store is back.
func TestUnavailableStoreKeepsThePool(t *testing.T) {
	e, store, _ := snapshotEnv(t, "node")
	flaky := &flakyStore{Store: store}
	tune := e.tune
	e.tune = func(c *Config, db *bolt.DB) { tune(c, db); c.Store = flaky }
	e.close()
	e.open()
	e.deployCounter("counter-node", map[string]string{"strategy": "fixed", "checkpoint-at": "2", "evict-after": "3"})
	for i := 1; i <= 3; i++ {
		e.count()
		if i == 2 {
			eventually(t, "the checkpoint", func() bool { return e.inspect().Checkpoints == 1 })
		}
	}
	key := e.inspect().Pool[0].Key
	flaky.down.Store(true)
	e.dropLocalCopy(key) // force the next restore to fetch from the store
	// The worker replacing the evicted one may already have been planned
	// while the store was up; serve it out, then the next one is cold.
	cold := false
	for i := 0; i < 4 && !cold; i++ {
		cold = e.count() == 1
	}
	if !cold {
		t.Fatal("no cold start while the store was down")
	}
	if st := e.inspect(); len(st.Pool) != 1 || st.FailedRestores != 0 {
		t.Fatalf("a store outage cost the pool: %+v", st)
	}
	flaky.down.Store(false)
	restores := e.inspect().Restores
	if e.count() != 2 || e.count() != 3 { // the cold worker's last two calls; then it is evicted
		t.Fatal("cold worker miscounted")
	}
	if got := e.count(); got != 3 || e.inspect().Restores != restores+1 {
		t.Fatalf("after the store came back: count %d, restores %d→%d; want a restore at request 2", got, restores, e.inspect().Restores)
	}
}

// After an update that changes the function, new workers never restore a
// snapshot of the old version: they start cold (or from the new version's
// own snapshots), and the old version's snapshots leave the store once no
// worker of it is left. An update that changes nothing keeps the pool.
func TestUpdateNeverRestoresOldVersion(t *testing.T) {
	e, store, _ := snapshotEnv(t, "node")
	annotations := map[string]string{"com.pronghorn.strategy": "fixed", "com.pronghorn.checkpoint-at": "2", "com.pronghorn.evict-after": "3"}
	req := types.FunctionDeployment{Service: "c", Image: "counter-node", Annotations: &annotations, EnvVars: map[string]string{"V": "1"}}
	if err := e.b.Deploy(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		e.count()
		if i == 2 {
			eventually(t, "the checkpoint", func() bool { return e.inspect().Checkpoints == 1 })
		}
	}
	v1 := e.engineKey("c")
	old := e.inspect().Pool[0].Key

	// Same definition again: same version, the pool still serves.
	if err := e.b.Update(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if e.engineKey("c") != v1 {
		t.Fatal("an update that changes nothing changed the version")
	}
	for range 4 {
		if got := e.count(); got < 3 {
			t.Fatalf("after an update that changes nothing a worker answered %d: not restored", got)
		}
	}

	req.EnvVars = map[string]string{"V": "2"}
	if err := e.b.Update(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	v2 := e.engineKey("c")
	if v2 == v1 {
		t.Fatal("new environment, same version")
	}
	// Serve out any worker of v1 still in rotation; the first v2 worker is cold.
	eventually(t, "a cold v2 worker", func() bool { return e.count() == 1 })
	if f, _ := e.b.function("openfaas-fn", "c"); true {
		f.mu.Lock()
		for _, w := range f.workers {
			if key := w.snap.Load().Key(); w.ready.Load() && !w.retiring.Load() && key != v2 {
				t.Errorf("worker %s of version %s still serving after the update", w.id, key)
			}
		}
		f.mu.Unlock()
	}
	eventually(t, "the old version's snapshot deleted", func() bool {
		_, err := store.Stat(context.Background(), old)
		return errors.Is(err, errdefs.ErrNotFound)
	})
	keys, err := e.b.cfg.Engine.Functions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k == v1 {
			t.Errorf("engine still holds the old version %s", k)
		}
	}
	for _, p := range e.inspect().Pool {
		if !strings.Contains(p.Key, strings.TrimPrefix(v2, "openfaas-fn/c@")) {
			t.Errorf("v2 pool holds %s", p.Key)
		}
	}
}

// Several workers restoring a snapshot that is not cached locally fetch it
// from the store once; a cached copy that was changed on disk is noticed
// before a restore and fetched again, and the restore still continues the
// counter.
func TestImageCacheSingleFlightAndSeal(t *testing.T) {
	e, _, _ := snapshotEnv(t, "node")
	e.deployCounter("counter-node", map[string]string{"strategy": "fixed", "checkpoint-at": "2"})
	e.count()
	e.count()
	eventually(t, "the checkpoint", func() bool { return e.inspect().Checkpoints == 1 })
	key := e.inspect().Pool[0].Key
	e.dropLocalCopy(key) // as after a restart
	if err := e.b.Scale(context.Background(), "", "c", 4); err != nil {
		t.Fatal(err)
	}
	e.waitAvailable("c", 4)
	downloads := func() uint64 { return e.histogramCount("pronghorn_download_seconds") }
	if n := downloads(); n != 1 {
		t.Fatalf("3 concurrent restores downloaded %d times, want once", n)
	}

	// Tamper with the cached pages: the next restore must not use them.
	entries, err := os.ReadDir(e.cachedImages(key))
	if err != nil {
		t.Fatal(err)
	}
	var pages string
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), "pages-") {
			pages = filepath.Join(e.cachedImages(key), en.Name())
		}
	}
	if pages == "" {
		t.Fatal("no pages image in the cache")
	}
	_ = os.Chmod(pages, 0o600)
	if err := os.WriteFile(pages, []byte("attacker's memory"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Scale(context.Background(), "", "c", 5); err != nil {
		t.Fatal(err)
	}
	e.waitAvailable("c", 5)
	if n := downloads(); n != 2 {
		t.Fatalf("after tampering: %d downloads, want 2 (the changed copy refetched)", n)
	}
	if st := e.inspect(); st.FailedRestores != 0 || len(st.Pool) != 1 {
		t.Fatalf("a tampered cache cost the snapshot: %+v", st)
	}
	for range 10 {
		if got := e.count(); got < 3 {
			t.Fatalf("a replica answered %d: not restored", got)
		}
	}
}

// failingDeletes is a store whose deletes fail until it is healed.
type failingDeletes struct {
	snapshot.Store
	broken atomic.Bool
}

func (s *failingDeletes) Delete(ctx context.Context, key string) error {
	if s.broken.Load() {
		return fmt.Errorf("delete %s: connection reset by peer: %w", key, errdefs.ErrUnavailable)
	}
	return s.Store.Delete(ctx, key)
}

// A delete the store refuses is recorded and retried until it succeeds,
// across a provider restart, so no orphan object is left.
func TestSnapshotDeletesAreRetried(t *testing.T) {
	e, store, _ := snapshotEnv(t, "node")
	failing := &failingDeletes{Store: store}
	failing.broken.Store(true)
	tune := e.tune
	e.tune = func(c *Config, db *bolt.DB) {
		tune(c, db)
		c.Store = failing
		c.DeleteRetryInterval = 100 * time.Millisecond
	}
	e.close()
	e.open()
	e.deployCounter("counter-node", map[string]string{"strategy": "fixed", "checkpoint-at": "1"})
	e.count()
	eventually(t, "the checkpoint", func() bool { return e.inspect().Checkpoints == 1 })
	key := e.inspect().Pool[0].Key
	if err := e.b.Delete(context.Background(), "", "c"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the delete recorded", func() bool {
		keys, err := e.b.coord.PendingDeletes()
		return err == nil && slices.Contains(keys, key)
	})
	time.Sleep(300 * time.Millisecond) // a few failed retries
	if _, err := store.Stat(context.Background(), key); err != nil {
		t.Fatalf("the object went although every delete failed: %v", err)
	}
	e.close()
	failing.broken.Store(false)
	e.open()
	eventually(t, "the retried delete", func() bool {
		_, err := store.Stat(context.Background(), key)
		keys, _ := e.b.coord.PendingDeletes()
		return errors.Is(err, errdefs.ErrNotFound) && len(keys) == 0
	})
}

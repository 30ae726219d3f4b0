package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/handlers"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// In local mode the provider moves snapshot images and the agents only run
// CRIU: a worker's network namespace cannot reach a store on the host's
// loopback, and store credentials never enter a worker. Images pass through
// the work directory on the shared filesystem.
//
// A snapshot leaves the pool only when it is proven bad (checksum mismatch,
// CRIU rejecting the image, object missing); any other failure to use it
// (store down, disk full, a timeout) starts the worker cold and keeps it.

// snapshotTimeout bounds one checkpoint or download.
const snapshotTimeout = 2 * time.Minute

func (b *Backend) snapshotsEnabled() bool { return b.cfg.Engine != nil && b.cfg.Store != nil }

// engineConfig resolves a deployment's strategy from its annotations.
func (b *Backend) engineConfig(annotations *map[string]string) (orchestrator.Config, error) {
	var a map[string]string
	if annotations != nil {
		a = *annotations
	}
	return orchestrator.ConfigFromAnnotations(b.cfg.EngineDefaults, a)
}

// engineFor sets w.engKey, naming w's version in the engine, and makes
// sure the engine knows that version, with the previous version's learned
// curve as a prior. w.engKey stays "" when w takes no part in snapshots
// (they are disabled, or its version cannot be computed).
func (b *Backend) engineFor(f *function, w *worker, in versionInputs, gen, seq uint64, annotations *map[string]string) {
	if !b.snapshotsEnabled() {
		return
	}
	version, err := b.digests.version(in)
	if err != nil {
		w.out.write("snapshots off for this replica: " + err.Error())
		b.log.Warn("function version", "function", f.display, "err", err)
		return
	}
	key := engineKey(f.key, version)
	f.mu.Lock()
	if f.deleted {
		f.mu.Unlock()
		return
	}
	prev := f.current
	if seq > f.currentSeq {
		f.current, f.currentSeq = key, seq
	}
	configured := f.configured[key] == gen+1
	w.engKey = key
	f.mu.Unlock()
	if !configured {
		ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
		defer cancel()
		cfg, err := b.engineConfig(annotations)
		if err == nil {
			err = b.cfg.Engine.Configure(ctx, key, cfg)
		}
		if err != nil {
			b.log.Error("engine: configure", "function", f.display, "version", version, "err", err)
			f.mu.Lock()
			w.engKey = ""
			f.mu.Unlock()
			return
		}
		if prev == "" {
			prev = b.anyOtherVersion(ctx, f, key) // first start since the provider started
		}
		if prev != "" && prev != key {
			if err := b.cfg.Engine.Inherit(ctx, prev, key); err != nil {
				b.log.Warn("engine: inherit weights", "function", f.display, "from", prev, "to", key, "err", err)
			}
		}
		f.mu.Lock()
		f.configured[key] = gen + 1
		f.mu.Unlock()
	}
	if prev != key {
		b.log.Info("function version", "function", f.display, "version", version)
		b.collectVersions(f)
	}
}

// anyOtherVersion returns an engine key of f other than key, or "".
func (b *Backend) anyOtherVersion(ctx context.Context, f *function, key string) string {
	keys, err := b.cfg.Engine.Functions(ctx)
	if err != nil {
		return ""
	}
	for _, k := range keys {
		if _, ours := versionOf(f.key, k); ours && k != key {
			return k
		}
	}
	return ""
}

// collectVersions removes from the engine, the store and the image cache
// every version of f that is neither current nor run by a worker: a
// snapshot of an old version must never be restored again.
func (b *Backend) collectVersions(f *function) {
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	keys, err := b.cfg.Engine.Functions(ctx)
	if err != nil {
		b.log.Error("engine: list versions", "err", err)
		return
	}
	f.mu.Lock()
	live := map[string]bool{}
	if !f.deleted && f.current != "" {
		live[f.current] = true
	}
	for _, w := range f.workers {
		if w.engKey != "" {
			live[w.engKey] = true
		}
	}
	var stale []string
	for _, k := range keys {
		if _, ours := versionOf(f.key, k); ours && !live[k] {
			stale = append(stale, k)
			delete(f.configured, k)
		}
	}
	f.mu.Unlock()
	for _, k := range stale {
		b.removeEngineKey(ctx, k)
	}
}

// removeEngineKey drops one engine entry and the snapshots of its pool.
func (b *Backend) removeEngineKey(ctx context.Context, key string) {
	pool, err := b.cfg.Engine.Remove(ctx, key)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		b.log.Error("engine: remove version", "key", key, "err", err)
		return
	}
	b.deleteSnapshots(pool)
	b.log.Info("old version's snapshots dropped", "key", key, "snapshots", len(pool))
}

// plan asks the engine how w starts and, for a restore, fetches the
// snapshot's verified images. It returns the snapshot key and the image
// directory, or empty strings for a cold start.
func (b *Backend) plan(ctx context.Context, f *function, w *worker) (key, dir string) {
	w.eng = orchestrator.Worker{ID: w.id}
	if w.engKey == "" {
		return "", ""
	}
	// A replacement is planned the moment a worker is evicted, often while
	// that worker is still being checkpointed on the engine's cue. Waiting
	// for that snapshot would put the whole dump and upload on the next
	// call's critical path, so the plan uses the pool as it is.
	p, err := b.cfg.Engine.OnStart(ctx, w.engKey, w.id)
	if err != nil {
		b.log.Error("engine: plan start", "function", f.display, "err", err)
		return "", ""
	}
	w.eng = p.Worker
	b.deleteSnapshots(p.Pruned)
	if p.Restore == nil {
		return "", ""
	}
	dir, err = b.cachedImages(f, *p.Restore)
	if err != nil {
		b.restoreFailed(f, w, p.Restore.Key, err, snapshot.ProvenBad(err))
		return "", ""
	}
	return p.Restore.Key, dir
}

// cachedImages returns a directory with the verified, unpacked images of
// snapshot s. Images are kept while the snapshot is in the pool: a restore
// then costs only CRIU's own time, and CRIU only reads them, so any number
// of workers restore from one copy. Concurrent first uses download once.
func (b *Backend) cachedImages(f *function, s orchestrator.Snapshot) (string, error) {
	dir := b.cachePath(s.Key)
	b.cacheMu.Lock()
	seal, ok := b.seals[s.Key]
	b.cacheMu.Unlock()
	if ok {
		err := seal.Verify(dir)
		if err == nil {
			return dir, nil
		}
		// The local copy changed under us; the stored object is not at
		// fault, so fetch it again.
		b.log.Warn("cached snapshot images changed, downloading again", "snapshot", s.Key, "err", err)
		b.dropCached(s.Key)
	}
	_, err, _ := b.downloads.Do(s.Key, func() (any, error) { return nil, b.download(f, s) })
	if err != nil {
		return "", err
	}
	return dir, nil
}

func (b *Backend) download(f *function, s orchestrator.Snapshot) error {
	dir := b.cachePath(s.Key)
	b.cacheMu.Lock()
	_, ok := b.seals[s.Key]
	b.cacheMu.Unlock()
	if ok {
		return nil // another caller of this flight's key finished just before
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".download-*")
	if err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	start := time.Now()
	m, err := snapshot.Download(ctx, b.cfg.Store, s.Key, tmp)
	if err == nil && s.SHA256 != "" && m.SHA256 != s.SHA256 {
		err = fmt.Errorf("download %s: %w: stored checksum %s, registered %s", s.Key, snapshot.ErrCorrupt, m.SHA256, s.SHA256)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	b.metrics.download.WithLabelValues(f.display).Observe(time.Since(start).Seconds())
	b.metrics.transferred.WithLabelValues(f.display, "download").Add(float64(m.PackedBytes))
	return b.adoptImages(s.Key, tmp)
}

// adoptImages moves a complete image directory to key's cache entry and
// seals it, so a later change to it is noticed before a restore.
func (b *Backend) adoptImages(key, from string) error {
	dir := b.cachePath(key)
	b.dropCached(key)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		_ = os.RemoveAll(from)
		return fmt.Errorf("image cache: %w", err)
	}
	if err := os.Rename(from, dir); err != nil {
		_ = os.RemoveAll(from)
		return fmt.Errorf("image cache: %w", err)
	}
	seal, err := snapshot.SealDir(dir)
	if err != nil {
		b.dropCached(key)
		return fmt.Errorf("image cache: %w", err)
	}
	b.cacheMu.Lock()
	b.seals[key] = seal
	b.cacheMu.Unlock()
	return nil
}

// cachePath is where snapshot key's images are cached; keys are made of
// plain path segments (snapshot.Store validates them).
func (b *Backend) cachePath(key string) string {
	return filepath.Join(b.workDir, "images", filepath.FromSlash(key))
}

func (b *Backend) dropCached(key string) {
	b.cacheMu.Lock()
	delete(b.seals, key)
	b.cacheMu.Unlock()
	dir := b.cachePath(key)
	_ = os.Chmod(dir, 0o700) // sealed directories are read-only
	_ = os.RemoveAll(dir)
}

// restoreFailed turns w into the cold start it now is. A snapshot proven
// bad leaves the pool and the store; any other failure keeps it for the
// next worker.
func (b *Backend) restoreFailed(f *function, w *worker, key string, cause error, provenBad bool) {
	w.engMu.Lock()
	w.eng.Lineage, w.eng.Snapshot = 0, ""
	w.engMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	if !provenBad {
		w.out.write(fmt.Sprintf("snapshot %s not usable now, starting cold: %v", key, cause))
		b.log.Warn("restore not possible now, cold start", "function", f.display, "snapshot", key, "err", cause)
		if err := b.cfg.Engine.StartedCold(ctx, w.engKey); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			b.log.Error("engine: count cold start", "err", err)
		}
		return
	}
	w.out.write(fmt.Sprintf("snapshot %s is bad, dropped; starting cold: %v", key, cause))
	b.log.Warn("bad snapshot dropped, cold start", "function", f.display, "snapshot", key, "err", cause)
	if err := b.cfg.Engine.Forget(ctx, w.engKey, key); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		b.log.Error("engine: forget snapshot", "snapshot", key, "err", err)
	}
	b.deleteSnapshots([]orchestrator.Snapshot{{Key: key}})
}

// released records a finished call with the engine, in call order per
// worker, and acts on its answer: a checkpoint runs in the background; an
// eviction retires the worker after its calls finish.
func (b *Backend) released(f *function, w *worker, o handlers.Outcome) {
	evict := false
	if w.engKey != "" && o.Err == nil && o.StatusCode < 500 {
		latency := o.Upstream
		if latency <= 0 {
			latency = o.Total
		}
		w.engMu.Lock()
		act, err := b.cfg.Engine.OnRequest(context.Background(), w.engKey, &w.eng, latency)
		lineage := w.eng.Lineage
		w.engMu.Unlock()
		if err != nil {
			b.log.Error("engine: request", "function", f.display, "err", err)
		}
		if act.Checkpoint && !w.exited() && w.checkpoints.CompareAndSwap(0, 1) {
			if !b.goTracked(func() { b.checkpoint(f, w, lineage) }) {
				w.checkpoints.Store(0)
			}
		}
		evict = act.Evict
	}
	// The count is enforced here too, so a worker never serves more than
	// evict-after calls even when they arrive back to back.
	if e := f.evictAfter.Load(); evict || (e > 0 && w.served.Load() >= e) {
		f.mu.Lock()
		b.retire(w)
		b.reconcileLocked(f)
		f.mu.Unlock()
	}
}

// checkpoint snapshots w at lineage request number lineage: the agent dumps
// into the work directory, the provider packs and uploads, the engine adds
// the snapshot to the pool of w's version. A failure leaves w serving.
func (b *Backend) checkpoint(f *function, w *worker, lineage int) {
	defer w.checkpoints.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	version, _ := versionOf(f.key, w.engKey)
	key := fmt.Sprintf("%s/%s/%s/r%05d-%s", f.namespace, f.name, version, lineage, w.id)
	dir := filepath.Join(b.workDir, fmt.Sprintf("%s-dump-%d", w.id, lineage))
	defer os.RemoveAll(dir)
	fail := func(err error) {
		w.out.write(fmt.Sprintf("checkpoint at request %d failed: %v", lineage, err))
		b.log.Warn("checkpoint failed", "function", f.display, "worker", w.id, "request", lineage, "err", err)
		if err := b.cfg.Engine.CheckpointFailed(ctx, w.engKey); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			b.log.Error("engine: count failed checkpoint", "err", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fail(err)
		return
	}
	res, err := w.checkpoint(ctx, dir)
	if err != nil {
		fail(err)
		return
	}
	f.mu.Lock()
	runtime := f.rec.Runtime
	f.mu.Unlock()
	m, err := snapshot.Upload(ctx, b.cfg.Store, key, dir, snapshot.Manifest{
		Function: f.display, Runtime: runtime, RequestNumber: lineage,
		RawBytes: res.ImageBytes, DumpTime: res.DumpTime,
	})
	if err != nil {
		fail(fmt.Errorf("upload: %w", err))
		return
	}
	// The dump is the images a restore would unpack: keep it as the cache
	// entry, so the first restore of this snapshot downloads nothing.
	if err := b.adoptImages(key, dir); err != nil {
		b.log.Warn("snapshot not cached locally", "snapshot", key, "err", err)
	}
	err = b.cfg.Engine.Register(ctx, w.engKey, orchestrator.Snapshot{
		Key: key, RequestNumber: lineage, SizeBytes: m.PackedBytes, SHA256: m.SHA256, CreatedAt: m.CreatedAt,
	})
	if err != nil {
		// The function or this version went away meanwhile: the image has
		// no owner.
		b.deleteSnapshots([]orchestrator.Snapshot{{Key: key}})
		b.log.Warn("snapshot not registered", "function", f.display, "snapshot", key, "err", err)
		return
	}
	b.metrics.dump.WithLabelValues(f.display).Observe(res.DumpTime.Seconds())
	b.metrics.upload.WithLabelValues(f.display).Observe(m.UploadTime.Seconds())
	b.metrics.packedBytes.WithLabelValues(f.display).Set(float64(m.PackedBytes))
	b.metrics.rawBytes.WithLabelValues(f.display).Set(float64(m.RawBytes))
	b.metrics.transferred.WithLabelValues(f.display, "upload").Add(float64(m.PackedBytes))
	w.out.write(fmt.Sprintf("checkpoint at request %d: %d bytes packed (%d raw), dump %s, upload %s",
		lineage, m.PackedBytes, m.RawBytes, res.DumpTime.Round(time.Millisecond), m.UploadTime.Round(time.Millisecond)))
	b.log.Info("checkpoint", "function", f.display, "snapshot", key, "request", lineage,
		"packed", m.PackedBytes, "raw", m.RawBytes, "dump", res.DumpTime, "frozen", res.FrozenTime, "upload", m.UploadTime)
}

// Inspect reports the engine's state of a function's current version.
func (b *Backend) Inspect(ctx context.Context, namespace, name string) (any, error) {
	f, err := b.function(b.namespace(namespace), name)
	if err != nil {
		return nil, err
	}
	if !b.snapshotsEnabled() {
		return nil, fmt.Errorf("snapshots are disabled: %w", errdefs.ErrNotFound)
	}
	key, err := b.currentEngineKey(ctx, f)
	if err != nil {
		return nil, err
	}
	st, err := b.cfg.Engine.Inspect(ctx, key)
	if err != nil {
		return nil, err
	}
	version, _ := versionOf(f.key, key)
	return struct {
		Version string `json:"version"`
		orchestrator.State
	}{version, st}, nil
}

// currentEngineKey is the engine key the next worker of f would use.
func (b *Backend) currentEngineKey(ctx context.Context, f *function) (string, error) {
	f.mu.Lock()
	in, err := b.versionInputsLocked(f)
	f.mu.Unlock()
	if err != nil {
		return "", err
	}
	version, err := b.digests.version(in)
	if err != nil {
		return "", err
	}
	return engineKey(f.key, version), nil
}

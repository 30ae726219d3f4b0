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

// plan asks the engine how w starts and, for a restore, downloads and
// verifies the snapshot. It returns the snapshot key and the unpacked image
// directory, or empty strings for a cold start.
func (b *Backend) plan(ctx context.Context, f *function, w *worker) (key, dir string) {
	w.eng = orchestrator.Worker{ID: w.id}
	if !b.snapshotsEnabled() {
		return "", ""
	}
	// A replacement is planned the moment a worker is evicted, often while
	// that worker is still being checkpointed on the engine's cue. Waiting
	// for that snapshot would put the whole dump and upload on the next
	// call's critical path, so the plan uses the pool as it is.
	p, err := b.cfg.Engine.OnStart(ctx, f.key, w.id)
	if err != nil {
		b.log.Error("engine: plan start", "function", f.display, "err", err)
		return "", ""
	}
	w.eng = p.Worker
	b.deleteSnapshots(p.Pruned)
	if p.Restore == nil {
		return "", ""
	}
	dir, err = b.cachedImages(ctx, f, *p.Restore)
	if errors.Is(err, errdefs.ErrUnavailable) {
		// The store is down, the snapshot is not bad: keep it for later.
		w.out.write(fmt.Sprintf("snapshot store unavailable, starting cold: %v", err))
		b.log.Warn("snapshot store unavailable, cold start", "function", f.display, "snapshot", p.Restore.Key, "err", err)
		w.engMu.Lock()
		w.eng.Lineage, w.eng.Snapshot = 0, ""
		w.engMu.Unlock()
		return "", ""
	}
	if err != nil {
		b.snapshotFailed(f, w, p.Restore.Key, err)
		return "", ""
	}
	return p.Restore.Key, dir
}

// cachedImages returns a directory with the verified, unpacked images of
// snapshot s, downloading them on first use. Images are kept while the
// snapshot is in the pool: a restore then costs only CRIU's own time, and
// CRIU only reads them, so any number of workers can restore from one copy.
func (b *Backend) cachedImages(ctx context.Context, f *function, s orchestrator.Snapshot) (string, error) {
	dir := b.cachePath(s.Key)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".download-*")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	start := time.Now()
	m, err := snapshot.Download(ctx, b.cfg.Store, s.Key, tmp)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	b.metrics.download.WithLabelValues(f.display).Observe(time.Since(start).Seconds())
	b.metrics.transferred.WithLabelValues(f.display, "download").Add(float64(m.PackedBytes))
	// Only a complete, verified copy ever appears under the cache name. If
	// another worker got there first, use its copy.
	if err := os.Rename(tmp, dir); err != nil {
		_ = os.RemoveAll(tmp)
		if _, serr := os.Stat(dir); serr != nil {
			return "", err
		}
	}
	return dir, nil
}

// cachePath is where snapshot key's images are cached; keys are made of
// plain path segments (snapshot.Store validates them).
func (b *Backend) cachePath(key string) string {
	return filepath.Join(b.workDir, "images", filepath.FromSlash(key))
}

func (b *Backend) dropCached(key string) {
	_ = os.RemoveAll(b.cachePath(key))
}

// snapshotFailed drops a snapshot that could not be restored, from the pool
// and the store, and turns w into the cold start it now is.
func (b *Backend) snapshotFailed(f *function, w *worker, key string, cause error) {
	w.out.write(fmt.Sprintf("snapshot %s unusable, starting cold: %v", key, cause))
	b.log.Warn("restore failed, cold start", "function", f.display, "snapshot", key, "err", cause)
	w.engMu.Lock()
	w.eng.Lineage, w.eng.Snapshot = 0, ""
	w.engMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	if err := b.cfg.Engine.Forget(ctx, f.key, key); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		b.log.Error("engine: forget snapshot", "snapshot", key, "err", err)
	}
	b.dropCached(key)
	if err := b.cfg.Store.Delete(ctx, key); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		b.log.Error("delete bad snapshot", "snapshot", key, "err", err)
	}
}

func (b *Backend) deleteSnapshots(snaps []orchestrator.Snapshot) {
	if len(snaps) == 0 {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
		defer cancel()
		for _, s := range snaps {
			b.dropCached(s.Key)
			if err := b.cfg.Store.Delete(ctx, s.Key); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				b.log.Error("delete pruned snapshot", "snapshot", s.Key, "err", err)
			}
		}
	}()
}

// outcomeQueue is how many finished calls of one worker may wait for the
// engine before further ones are dropped from its learning.
const outcomeQueue = 1024

// released records a finished call. The engine's bookkeeping (a bbolt
// transaction with an fsync) runs on the worker's own goroutine, in call
// order, so neither this call's connection nor the next call waits for it.
// Only the eviction count is enforced here, so a worker never serves more
// than evict-after calls even when they arrive back to back.
func (b *Backend) released(f *function, w *worker, o handlers.Outcome) {
	if !b.snapshotsEnabled() || o.Err != nil || o.StatusCode >= 500 {
		return
	}
	// Counted before the eviction below: a retiring worker waits for its
	// queued calls, since the engine may ask to checkpoint it on the last one.
	w.pending.Add(1)
	select {
	case w.outcomes <- o:
	default:
		w.pending.Add(-1)
		b.log.Warn("engine queue full, call not learned from", "function", f.display, "worker", w.id)
	}
	if e := f.evictAfter.Load(); e > 0 && w.served.Load() >= e {
		f.mu.Lock()
		b.retire(w)
		b.reconcileLocked(f)
		f.mu.Unlock()
	}
}

// learn feeds w's finished calls to the engine until w exits; what is still
// queued then is learned from too.
func (b *Backend) learn(f *function, w *worker) {
	for {
		select {
		case o := <-w.outcomes:
			b.afterRequest(f, w, o)
			w.pending.Add(-1)
		case <-w.done:
			for {
				select {
				case o := <-w.outcomes:
					b.afterRequest(f, w, o)
					w.pending.Add(-1)
				default:
					return
				}
			}
		}
	}
}

// afterRequest feeds one call's latency to the engine and acts on its
// answer: a checkpoint runs in the background; an eviction retires the
// worker after its calls finish.
func (b *Backend) afterRequest(f *function, w *worker, o handlers.Outcome) {
	latency := o.Upstream
	if latency <= 0 {
		latency = o.Total
	}
	w.engMu.Lock()
	act, err := b.cfg.Engine.OnRequest(context.Background(), f.key, &w.eng, latency)
	lineage := w.eng.Lineage
	w.engMu.Unlock()
	if err != nil {
		b.log.Error("engine: request", "function", f.display, "err", err)
		return
	}
	if act.Checkpoint && !w.exited() && w.checkpoints.CompareAndSwap(0, 1) {
		go b.checkpoint(f, w, lineage)
	}
	if act.Evict {
		f.mu.Lock()
		b.retire(w)
		b.reconcileLocked(f)
		f.mu.Unlock()
	}
}

// checkpoint snapshots w at lineage request number lineage: the agent dumps
// into the work directory, the provider packs and uploads, the engine adds
// the snapshot to the pool. A failure leaves the worker serving.
func (b *Backend) checkpoint(f *function, w *worker, lineage int) {
	defer w.checkpoints.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	key := fmt.Sprintf("%s/%s/r%05d-%s", f.namespace, f.name, lineage, w.id)
	dir := filepath.Join(b.workDir, fmt.Sprintf("%s-dump-%d", w.id, lineage))
	defer os.RemoveAll(dir)
	fail := func(err error) {
		w.out.write(fmt.Sprintf("checkpoint at request %d failed: %v", lineage, err))
		b.log.Warn("checkpoint failed", "function", f.display, "worker", w.id, "request", lineage, "err", err)
		if err := b.cfg.Engine.CheckpointFailed(ctx, f.key); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
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
	if err := os.MkdirAll(filepath.Dir(b.cachePath(key)), 0o700); err == nil {
		_ = os.Rename(dir, b.cachePath(key))
	}
	err = b.cfg.Engine.Register(ctx, f.key, orchestrator.Snapshot{
		Key: key, RequestNumber: lineage, SizeBytes: m.PackedBytes, SHA256: m.SHA256, CreatedAt: m.CreatedAt,
	})
	if err != nil {
		// The function went away meanwhile: the image has no owner.
		b.dropCached(key)
		_ = b.cfg.Store.Delete(ctx, key)
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

// Inspect reports the engine's state of a function.
func (b *Backend) Inspect(ctx context.Context, namespace, name string) (any, error) {
	f, err := b.function(b.namespace(namespace), name)
	if err != nil {
		return nil, err
	}
	if b.cfg.Engine == nil {
		return nil, fmt.Errorf("snapshots are disabled: %w", errdefs.ErrNotFound)
	}
	return b.cfg.Engine.Inspect(ctx, f.key)
}

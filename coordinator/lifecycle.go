package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// A snapshot leaves the pool only when it is proven bad (checksum mismatch,
// CRIU rejecting the image, object missing); any other failure to use it
// (store down, disk full, a timeout) starts the worker cold and keeps it.

// Spec is what a new worker starts from.
type Spec struct {
	Version     VersionInputs
	Annotations map[string]string
	// Generation is the function's configuration generation: a worker of
	// a new one configures the engine again (annotations may differ).
	Generation uint64
	// Logf writes a line into the worker's own log, for its operator.
	Logf func(format string, args ...any)
	// How the worker is checkpointed: a Dumper dumps into a directory on
	// the provider's filesystem and the coordinator uploads; an Uploader
	// (a pod, which never holds store credentials) packs and uploads
	// itself to a presigned URL. Without either, or an Uploader over a
	// store that cannot presign, the worker takes no part in snapshots.
	Dumper   Dumper
	Uploader Uploader
	// OnDumped, if set, is called when a dump of the worker has been taken
	// (or failed): the worker takes calls again (see Worker.Dumping).
	OnDumped func()
}

// Start plans a new worker of f: its version, and the engine's choice of a
// snapshot to restore (nil: cold). The worker must be handed to Gone when
// it has exited.
func (c *Coordinator) Start(ctx context.Context, f *Function, workerID string, spec Spec) (*Worker, *orchestrator.Snapshot) {
	w := newWorker(f, workerID, spec)
	f.mu.Lock()
	f.starts++
	seq := f.starts
	f.mu.Unlock()
	if !c.Enabled() || !c.canCheckpoint(w) {
		return w, nil
	}
	key, ok := c.version(ctx, f, w, spec, seq)
	if !ok {
		return w, nil
	}
	// A replacement is planned the moment a worker is evicted, often while
	// that worker is still being checkpointed on the engine's cue. Waiting
	// for that snapshot would put the whole dump and upload on the next
	// call's critical path, so the plan uses the pool as it is.
	p, err := c.cfg.Engine.OnStart(ctx, key, workerID)
	if err != nil {
		c.log.Error("engine: plan start", "function", f.display, "err", err)
		return w, nil
	}
	w.eng = p.Worker
	c.Delete(p.Pruned)
	return w, p.Restore
}

// newWorker is a worker of f that takes no part in snapshots yet.
func newWorker(f *Function, workerID string, spec Spec) *Worker {
	w := &Worker{id: workerID, fn: f, runtime: spec.Version.Runtime, logf: spec.Logf,
		dumper: spec.Dumper, uploader: spec.Uploader, onDumped: spec.OnDumped, eng: orchestrator.Worker{ID: workerID}}
	if w.logf == nil {
		w.logf = func(string, ...any) {}
	}
	return w
}

// canCheckpoint reports whether w can be snapshotted with this store.
func (c *Coordinator) canCheckpoint(w *Worker) bool {
	if w.uploader != nil {
		_, ok := c.cfg.Store.(snapshot.Presigner)
		return ok
	}
	return w.dumper != nil
}

// version sets w's engine key and makes sure the engine knows that
// version, with the previous version's learned curve as a prior. seq
// orders starts; an adopted worker (seq 0) started before any of them, so
// it makes its version current only while no start has named one.
func (c *Coordinator) version(ctx context.Context, f *Function, w *Worker, spec Spec, seq uint64) (string, bool) {
	v, err := c.digests.version(spec.Version)
	if err != nil {
		w.logf("snapshots off for this replica: %v", err)
		c.log.Warn("function version unknown, snapshots off for this worker", "function", f.display, "err", err)
		return "", false
	}
	key := EngineKey(f.key, v)
	f.mu.Lock()
	if f.removed {
		f.mu.Unlock()
		return "", false
	}
	prev := f.current
	// Without a current version, the version of a worker adopted after a
	// restart would count as stale: its last worker leaving would take
	// its snapshots, the ones its replacement is to restore.
	if seq > f.currentSeq || f.current == "" {
		f.current, f.currentSeq = key, seq
	}
	configured := f.configured[key] == spec.Generation+1
	w.key = key
	f.live[key]++
	f.mu.Unlock()
	if !configured {
		cfg, err := c.EngineConfig(spec.Annotations)
		if err == nil {
			err = c.cfg.Engine.Configure(ctx, key, cfg)
		}
		if err != nil {
			c.log.Error("engine: configure", "function", f.display, "version", v, "err", err)
			f.mu.Lock()
			w.key = ""
			f.live[key]--
			f.mu.Unlock()
			return "", false
		}
		if prev == "" {
			prev = c.anyOtherVersion(ctx, f, key) // first start since the provider started
		}
		if prev != "" && prev != key {
			if err := c.cfg.Engine.Inherit(ctx, prev, key); err != nil {
				c.log.Warn("engine: inherit weights", "function", f.display, "from", prev, "to", key, "err", err)
			}
		}
		f.mu.Lock()
		f.configured[key] = spec.Generation + 1
		f.mu.Unlock()
	}
	if prev != key {
		c.log.Info("function version", "function", f.display, "version", v)
		c.collectVersions(ctx, f)
	}
	return key, true
}

// anyOtherVersion returns an engine key of f other than key, or "".
func (c *Coordinator) anyOtherVersion(ctx context.Context, f *Function, key string) string {
	keys, err := c.cfg.Engine.Functions(ctx)
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
// every version of f that is neither current nor held by a worker: a
// snapshot of an old version must never be restored again.
func (c *Coordinator) collectVersions(ctx context.Context, f *Function) {
	keys, err := c.cfg.Engine.Functions(ctx)
	if err != nil {
		c.log.Error("engine: list versions", "err", err)
		return
	}
	f.mu.Lock()
	var stale []string
	for _, k := range keys {
		if _, ours := versionOf(f.key, k); !ours || f.live[k] > 0 || (k == f.current && !f.removed) {
			continue
		}
		stale = append(stale, k)
		delete(f.configured, k)
	}
	f.mu.Unlock()
	for _, k := range stale {
		c.removeKey(ctx, k)
	}
}

// removeKey drops one engine entry and the snapshots of its pool.
func (c *Coordinator) removeKey(ctx context.Context, key string) {
	pool, err := c.cfg.Engine.Remove(ctx, key)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		c.log.Error("engine: remove version", "key", key, "err", err)
		return
	}
	c.Delete(pool)
	c.log.Info("old version's snapshots dropped", "key", key, "snapshots", len(pool))
}

// Gone records that w has exited; the last worker of a version that is no
// longer current takes that version's snapshots with it.
func (c *Coordinator) Gone(w *Worker) {
	if w.key == "" || w.gone.Swap(true) {
		return
	}
	f := w.fn
	f.mu.Lock()
	f.live[w.key]--
	if f.live[w.key] <= 0 {
		delete(f.live, w.key)
	}
	stale := f.live[w.key] == 0 && (w.key != f.current || f.removed)
	f.mu.Unlock()
	if stale {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		c.collectVersions(ctx, f)
	}
	c.forgetIfRemoved(f)
}

// forgetIfRemoved stops tracking a removed function once no worker of it
// is left.
func (c *Coordinator) forgetIfRemoved(f *Function) {
	c.fnMu.Lock()
	defer c.fnMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed && len(f.live) == 0 && c.functions[f.key] == f {
		delete(c.functions, f.key)
	}
}

// Remove forgets f (the function was deleted): every version's snapshots
// go as soon as no worker holds them.
func (c *Coordinator) Remove(ctx context.Context, f *Function) {
	f.mu.Lock()
	f.removed = true
	f.mu.Unlock()
	if c.Enabled() {
		c.collectVersions(ctx, f)
	}
	c.forgetIfRemoved(f)
}

// CollectOrphans drops the engine's entries of functions for which exists
// reports false (deleted while the provider was down, or a delete cut
// short). Call it at start, once the backend knows its functions.
func (c *Coordinator) CollectOrphans(ctx context.Context, exists func(fnKey string) bool) {
	if !c.Enabled() {
		return
	}
	keys, err := c.cfg.Engine.Functions(ctx)
	if err != nil {
		c.log.Error("engine: list functions", "err", err)
		return
	}
	for _, k := range keys {
		if !exists(fnKeyOf(k)) {
			c.removeKey(ctx, k)
		}
	}
}

// LocalImages returns a directory with the verified, unpacked images of
// snapshot s for w to restore. Images are kept while the snapshot is in the
// pool: a restore then costs only CRIU's own time, and CRIU only reads
// them, so any number of workers restore from one copy. Concurrent first
// uses download once. On failure it returns "", the worker starts cold,
// and the snapshot is dropped only if it is proven bad.
func (c *Coordinator) LocalImages(w *Worker, s orchestrator.Snapshot) string {
	dir := c.cachePath(s.Key)
	for {
		c.cacheMu.Lock()
		seal := c.seals[s.Key]
		c.cacheMu.Unlock()
		if seal == nil {
			break
		}
		err := seal.Verify(dir)
		if err == nil {
			return dir
		}
		// The local copy changed under us; the stored object is not at
		// fault, so fetch it again. Another worker may have replaced the
		// copy meanwhile: only the copy that failed is dropped.
		c.log.Warn("cached snapshot images changed, downloading again", "snapshot", s.Key, "err", err)
		if !c.dropCachedIf(s.Key, seal) {
			continue
		}
		break
	}
	_, err, _ := c.downloads.Do(s.Key, func() (any, error) { return nil, c.download(w.fn, s) })
	if err != nil {
		c.RestoreFailed(w, s.Key, err, snapshot.ProvenBad(err))
		return ""
	}
	return dir
}

func (c *Coordinator) download(f *Function, s orchestrator.Snapshot) error {
	c.cacheMu.Lock()
	cached := c.seals[s.Key] != nil
	c.cacheMu.Unlock()
	if cached {
		return nil // cached by the flight that finished just before this one
	}
	dir := c.cachePath(s.Key)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".download-*")
	if err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	start := time.Now()
	m, err := snapshot.Download(ctx, c.cfg.Store, s.Key, tmp)
	if err == nil && s.SHA256 != "" && m.SHA256 != s.SHA256 {
		err = fmt.Errorf("download %s: %w: stored checksum %s, registered %s", s.Key, snapshot.ErrCorrupt, m.SHA256, s.SHA256)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	c.metrics.download.WithLabelValues(f.display).Observe(time.Since(start).Seconds())
	c.metrics.transferred.WithLabelValues(f.display, "download").Add(float64(m.PackedBytes))
	return c.adoptImages(s.Key, tmp)
}

// adoptImages moves a complete image directory to key's cache entry and
// seals it, so a later change to it is noticed before a restore.
func (c *Coordinator) adoptImages(key, from string) error {
	dir := c.cachePath(key)
	c.dropCached(key)
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
		c.dropCached(key)
		return fmt.Errorf("image cache: %w", err)
	}
	c.cacheMu.Lock()
	c.seals[key] = &seal
	c.cacheMu.Unlock()
	return nil
}

// cachePath is where snapshot key's images are cached; keys are made of
// plain path segments (snapshot.Store validates them).
func (c *Coordinator) cachePath(key string) string {
	return filepath.Join(c.cfg.WorkDir, "images", filepath.FromSlash(key))
}

// dropCached removes key's local copy.
func (c *Coordinator) dropCached(key string) {
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	c.removeCachedLocked(key)
}

// dropCachedIf removes key's local copy if it is still the one sealed by
// seal, and reports whether it did.
func (c *Coordinator) dropCachedIf(key string, seal *snapshot.Seal) bool {
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	if c.seals[key] != seal {
		return false
	}
	c.removeCachedLocked(key)
	return true
}

func (c *Coordinator) removeCachedLocked(key string) {
	delete(c.seals, key)
	dir := c.cachePath(key)
	_ = os.Chmod(dir, 0o700) // sealed directories are read-only
	_ = os.RemoveAll(dir)
}

// Restored records a restore that worked.
func (c *Coordinator) Restored(w *Worker, took time.Duration) {
	c.metrics.restore.WithLabelValues(w.fn.display).Observe(took.Seconds())
}

// RestoreFailed turns w into the cold start it now is. A snapshot proven
// bad leaves the pool and the store; any other failure keeps it for the
// next worker.
func (c *Coordinator) RestoreFailed(w *Worker, key string, cause error, provenBad bool) {
	w.mu.Lock()
	w.eng.Lineage, w.eng.Snapshot = 0, ""
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if !provenBad {
		w.logf("snapshot %s not usable now, starting cold: %v", key, cause)
		c.log.Warn("restore not possible now, cold start", "function", w.fn.display, "snapshot", key, "err", cause)
		if err := c.cfg.Engine.StartedCold(ctx, w.key); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			c.log.Error("engine: count cold start", "err", err)
		}
		return
	}
	w.logf("snapshot %s is bad, dropped; starting cold: %v", key, cause)
	c.log.Warn("bad snapshot dropped, cold start", "function", w.fn.display, "snapshot", key, "err", cause)
	if err := c.cfg.Engine.Forget(ctx, w.key, key); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		c.log.Error("engine: forget snapshot", "snapshot", key, "err", err)
	}
	c.Delete([]orchestrator.Snapshot{{Key: key}})
}

// dumped ends the dumping phase and wakes the backend's waiting calls.
func (w *Worker) dumped() {
	if w.dumping.Swap(false) && w.onDumped != nil {
		w.onDumped()
	}
}

// Outcome is one finished call as the engine learns from it.
type Outcome struct {
	Latency time.Duration
	Failed  bool // a 5xx or no answer: not learned from
}

// Observe feeds one finished call of w to the engine, in call order, and
// returns whether w is due for eviction. A checkpoint the engine asks for
// runs in the background.
func (c *Coordinator) Observe(w *Worker, o Outcome) (evict bool) {
	if w.key == "" || o.Failed {
		return false
	}
	w.mu.Lock()
	act, err := c.cfg.Engine.OnRequest(context.Background(), w.key, &w.eng, o.Latency)
	lineage := w.eng.Lineage
	w.mu.Unlock()
	if err != nil {
		c.log.Error("engine: request", "function", w.fn.display, "err", err)
		return false
	}
	if act.Checkpoint && w.checkpointing.CompareAndSwap(false, true) {
		w.dumping.Store(true)
		if !c.goTracked(func() { c.checkpoint(w, lineage) }) {
			w.dumped()
			w.checkpointing.Store(false)
		}
	}
	return act.Evict
}

// Dumper checkpoints a running worker's function into a directory on the
// provider's filesystem, leaving it running.
type Dumper interface {
	Dump(ctx context.Context, dir string) (DumpResult, error)
}

// DumpResult is what a dump measured.
type DumpResult struct {
	ImageBytes int64
	DumpTime   time.Duration
	FrozenTime time.Duration
}

// Uploader checkpoints a running worker's function, leaving it running,
// and uploads the packed images to put itself.
type Uploader interface {
	DumpAndUpload(ctx context.Context, put *url.URL) (Upload, error)
}

// Upload is what a worker reports of a dump it packed and uploaded.
type Upload struct {
	DumpResult
	PackedBytes int64
	SHA256      string
}

// checkpoint snapshots w at lineage request number lineage: the worker
// dumps into the work directory, the coordinator packs and uploads, the
// engine adds the snapshot to the pool of w's version. A failure leaves
// the worker serving.
func (c *Coordinator) checkpoint(w *Worker, lineage int) {
	defer w.checkpointing.Store(false)
	f := w.fn
	inProgress := c.metrics.inProgress.WithLabelValues(f.display)
	inProgress.Inc()
	defer inProgress.Dec()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	version, _ := versionOf(f.key, w.key)
	key := fmt.Sprintf("%s/%s/r%05d-%s", f.key, version, lineage, w.id)
	fail := func(err error) {
		w.logf("checkpoint at request %d failed: %v", lineage, err)
		c.log.Warn("checkpoint failed", "function", f.display, "worker", w.id, "request", lineage, "err", err)
		if err := c.cfg.Engine.CheckpointFailed(ctx, w.key); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			c.log.Error("engine: count failed checkpoint", "err", err)
		}
	}
	manifest := snapshot.Manifest{Function: f.display, Runtime: w.runtime, RequestNumber: lineage}
	var m snapshot.Manifest
	var res DumpResult
	var err error
	if w.uploader != nil {
		m, res, err = c.checkpointRemote(ctx, w, key, manifest)
	} else {
		m, res, err = c.checkpointLocal(ctx, w, key, lineage, manifest)
	}
	w.dumped() // a no-op when the local path already said so
	if err != nil {
		fail(err)
		return
	}
	err = c.cfg.Engine.Register(ctx, w.key, orchestrator.Snapshot{
		Key: key, RequestNumber: lineage, SizeBytes: m.PackedBytes, SHA256: m.SHA256, CreatedAt: m.CreatedAt,
	})
	if err != nil {
		// The function or this version went away meanwhile: the image has
		// no owner.
		c.Delete([]orchestrator.Snapshot{{Key: key}})
		c.log.Warn("snapshot not registered", "function", f.display, "snapshot", key, "err", err)
		return
	}
	c.metrics.dump.WithLabelValues(f.display).Observe(res.DumpTime.Seconds())
	c.metrics.upload.WithLabelValues(f.display).Observe(m.UploadTime.Seconds())
	c.metrics.packedBytes.WithLabelValues(f.display).Set(float64(m.PackedBytes))
	c.metrics.rawBytes.WithLabelValues(f.display).Set(float64(m.RawBytes))
	c.metrics.transferred.WithLabelValues(f.display, "upload").Add(float64(m.PackedBytes))
	w.logf("checkpoint at request %d: %d bytes packed (%d raw), dump %s, upload %s",
		lineage, m.PackedBytes, m.RawBytes, res.DumpTime.Round(time.Millisecond), m.UploadTime.Round(time.Millisecond))
	c.log.Info("checkpoint", "function", f.display, "snapshot", key, "request", lineage,
		"packed", m.PackedBytes, "raw", m.RawBytes, "dump", res.DumpTime, "frozen", res.FrozenTime, "upload", m.UploadTime)
}

// checkpointLocal has the worker dump into the work directory, then packs
// and uploads the images.
func (c *Coordinator) checkpointLocal(ctx context.Context, w *Worker, key string, lineage int, m snapshot.Manifest) (snapshot.Manifest, DumpResult, error) {
	dir := filepath.Join(c.cfg.WorkDir, fmt.Sprintf("%s-dump-%d", w.id, lineage))
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return m, DumpResult{}, err
	}
	res, err := w.dumper.Dump(ctx, dir)
	w.dumped() // the upload need not hold calls back
	if err != nil {
		return m, res, err
	}
	m.RawBytes, m.DumpTime = res.ImageBytes, res.DumpTime
	m, err = snapshot.Upload(ctx, c.cfg.Store, key, dir, m)
	if err != nil {
		return m, res, fmt.Errorf("upload: %w", err)
	}
	// The dump is the images a restore would unpack: keep it as the cache
	// entry, so the first restore of this snapshot downloads nothing.
	if err := c.adoptImages(key, dir); err != nil {
		c.log.Warn("snapshot not cached locally", "snapshot", key, "err", err)
	}
	return m, res, nil
}

// checkpointRemote hands the worker a presigned URL for exactly this
// snapshot's object, then records the manifest of what it uploaded.
func (c *Coordinator) checkpointRemote(ctx context.Context, w *Worker, key string, m snapshot.Manifest) (snapshot.Manifest, DumpResult, error) {
	presigner := c.cfg.Store.(snapshot.Presigner) // checked at Start
	put, err := presigner.PresignPut(ctx, key, Timeout)
	if err != nil {
		return m, DumpResult{}, fmt.Errorf("presign upload: %w", err)
	}
	start := time.Now()
	up, err := w.uploader.DumpAndUpload(ctx, put)
	if err != nil {
		return m, up.DumpResult, err
	}
	m.RawBytes, m.DumpTime, m.PackedBytes, m.SHA256 = up.ImageBytes, up.DumpTime, up.PackedBytes, up.SHA256
	m, err = presigner.Commit(ctx, key, m)
	if err != nil {
		return m, up.DumpResult, fmt.Errorf("commit upload: %w", err)
	}
	m.UploadTime = time.Since(start) - up.DumpTime
	return m, up.DumpResult, nil
}

// RemoteImage is a snapshot a worker fetches itself, through a presigned
// URL, and verifies against the checksum registered for it.
type RemoteImage struct {
	URL    *url.URL
	SHA256 string
	Size   int64
	Key    string
}

// RemoteImages returns what w needs to fetch snapshot s itself. On failure
// w starts cold and the snapshot is kept: the store could not presign now.
func (c *Coordinator) RemoteImages(ctx context.Context, w *Worker, s orchestrator.Snapshot) (RemoteImage, bool) {
	presigner, ok := c.cfg.Store.(snapshot.Presigner)
	if !ok {
		c.RestoreFailed(w, s.Key, errors.New("the snapshot store cannot presign URLs"), false)
		return RemoteImage{}, false
	}
	get, err := presigner.PresignGet(ctx, s.Key, Timeout)
	if err != nil {
		c.RestoreFailed(w, s.Key, fmt.Errorf("presign download: %w", err), snapshot.ProvenBad(err))
		return RemoteImage{}, false
	}
	c.metrics.transferred.WithLabelValues(w.fn.display, "download").Add(float64(s.SizeBytes))
	return RemoteImage{URL: get, SHA256: s.SHA256, Size: s.SizeBytes, Key: s.Key}, true
}

// CurrentKey is the engine key a worker of f starting with in would use.
func (c *Coordinator) CurrentKey(f *Function, in VersionInputs) (string, error) {
	v, err := c.digests.version(in)
	if err != nil {
		return "", err
	}
	return EngineKey(f.key, v), nil
}

// State is a function's engine state with the version it is for.
type State struct {
	Version string `json:"version"`
	orchestrator.State
}

// Inspect reports the engine's state of f's version for in.
func (c *Coordinator) Inspect(ctx context.Context, f *Function, in VersionInputs) (State, error) {
	if !c.Enabled() {
		return State{}, fmt.Errorf("snapshots are disabled: %w", errdefs.ErrNotFound)
	}
	key, err := c.CurrentKey(f, in)
	if err != nil {
		return State{}, err
	}
	st, err := c.cfg.Engine.Inspect(ctx, key)
	if err != nil {
		return State{}, err
	}
	version, _ := versionOf(f.key, key)
	return State{Version: version, State: st}, nil
}

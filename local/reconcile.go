package local

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/agent"
	"github.com/pronghorn-openfaas/pronghorn/coordinator"
)

const maxRestartBackoff = 30 * time.Second

// reconcileLocked moves f's workers towards what is desired: the stored
// replica count of the current generation, no workers once deleted. Workers
// of an older generation keep serving until enough new ones are ready.
// Callers hold f.mu.
func (b *Backend) reconcileLocked(f *function) {
	defer f.refreshReadyLocked()
	desired := int(f.rec.Replicas)
	if b.closed.Load() {
		// Shutting down: workers stop, and none replace them.
		return
	}
	if f.deleted {
		desired = 0
	}
	var current, old []*worker
	for _, w := range f.workers {
		switch {
		case w.retiring.Load():
		case w.generation == f.generation && !f.deleted:
			current = append(current, w)
		default:
			old = append(old, w)
		}
	}
	// Retire surplus, the ones not yet ready first.
	if surplus := len(current) - desired; surplus > 0 {
		sort.SliceStable(current, func(i, j int) bool { return !current[i].ready.Load() && current[j].ready.Load() })
		for _, w := range current[:surplus] {
			b.retire(w)
		}
		current = current[surplus:]
	}
	if missing := desired - len(current); missing > 0 {
		if wait := time.Until(f.retryAt); wait > 0 {
			b.retryLater(f, wait)
		} else {
			for range missing {
				if w := b.spawn(f); w != nil {
					current = append(current, w)
				}
			}
		}
	}
	if countReady(current) >= desired {
		for _, w := range old {
			b.retire(w)
		}
	}
}

func countReady(ws []*worker) int {
	n := 0
	for _, w := range ws {
		if w.ready.Load() {
			n++
		}
	}
	return n
}

func (b *Backend) retryLater(f *function, wait time.Duration) {
	if f.retryTimer != nil {
		return
	}
	f.retryTimer = time.AfterFunc(wait, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.retryTimer = nil
		b.reconcileLocked(f)
	})
}

// retire takes w out of rotation and stops it once its calls are done.
func (b *Backend) retire(w *worker) {
	if w.retiring.Swap(true) {
		return
	}
	w.ready.Store(false)
	stop := func() {
		deadline := time.Now().Add(b.cfg.StopGrace)
		// Let calls finish, the engine hear about them, and a checkpoint of
		// this worker complete: an evicted worker is often the one the
		// engine wants snapshotted.
		for (w.inflight.Load() > 0 || w.checkpointing()) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		w.stop(time.Until(deadline) + time.Second)
	}
	if !b.goTracked(stop) {
		go w.stop(b.cfg.StopGrace) // Close is stopping every worker anyway
	}
}

// spawn adds one worker of f's current generation and starts it in the
// background (a restore fetches its snapshot first). Callers hold f.mu.
func (b *Backend) spawn(f *function) *worker {
	out := lineWriter{book: b.logs, fn: f.key, name: f.name, namespace: f.namespace, instance: newWorkerID()}
	secrets, err := b.store.secretValues(f.namespace, f.rec.Deployment.Secrets)
	if err != nil {
		out.write("cannot start replica: " + err.Error())
		b.noteFailureLocked(f, err.Error())
		return nil
	}
	spec := f.spec
	spec.Secrets = secrets
	spec.Function = f.display
	spec.CRIUPath = b.cfg.CRIUPath
	w := newWorker(b.runDir, f.generation, out)
	snapSpec := b.snapSpec(f, w, spec, out)
	f.workers[w.id] = w
	if !b.goTracked(func() { b.run(f, w, spec, snapSpec) }) {
		delete(f.workers, w.id)
		w.abandon(errRetiredBeforeStart)
		return nil
	}
	return w
}

// run is one worker's life: plan (restore or cold), start, wait until ready,
// wait until it exits; f is reconciled after each step.
func (b *Backend) run(f *function, w *worker, spec agent.Config, snapSpec coordinator.Spec) {
	snap, restore := b.coord.Start(context.Background(), f.snap, w.id, snapSpec)
	w.snap.Store(snap)
	defer b.coord.Gone(snap)
	var restoreKey string
	if restore != nil {
		if spec.RestoreDir = b.coord.LocalImages(snap, *restore); spec.RestoreDir != "" {
			restoreKey = restore.Key
		}
	}
	if err := w.start(b, spec, snapSpec.Version.Limits); err != nil {
		w.abandon(err)
		f.mu.Lock()
		delete(f.workers, w.id)
		if !errors.Is(err, errRetiredBeforeStart) {
			w.out.write("cannot start replica: " + err.Error())
			b.log.Error("start worker", "function", f.display, "err", err)
			b.noteFailureLocked(f, err.Error())
		}
		b.reconcileLocked(f)
		f.mu.Unlock()
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ReadyTimeout+5*time.Second)
	st, startErr := w.waitReady(ctx)
	cancel()
	retiredEarly := w.retiring.Load()
	failed := startErr != nil && !retiredEarly
	if startErr == nil && restoreKey != "" {
		if st.Restored {
			b.coord.Restored(snap, st.RestoreTime)
		} else {
			b.coord.RestoreFailed(snap, restoreKey, errors.New(st.RestoreError), st.RestoreCorrupt)
		}
	}
	switch {
	case retiredEarly:
	case startErr == nil:
		w.ready.Store(true)
		f.mu.Lock()
		f.failures, f.retryAt, f.lastFailure = 0, time.Time{}, ""
		b.reconcileLocked(f)
		f.mu.Unlock()
	default:
		w.out.write("replica not ready: " + startErr.Error())
		w.stop(time.Second)
	}

	<-w.done
	f.mu.Lock()
	delete(f.workers, w.id)
	if failed || !w.retiring.Load() {
		f.restarts++
		b.restarts.WithLabelValues(f.display).Inc()
		reason := "replica exited: " + w.exitReason()
		f.lastExit = time.Now().UTC().Format(time.RFC3339) + " " + reason
		if failed {
			b.noteFailureLocked(f, reason)
		}
		w.out.write(reason)
		b.log.Warn("worker exited", "function", f.display, "worker", w.id, "err", w.exitErr, "restarts", f.restarts)
	}
	b.reconcileLocked(f)
	f.mu.Unlock()
}

// noteFailureLocked backs off restarts of a function whose replicas die
// before they serve, so a broken function does not spin the machine, and
// tells waiting invocations why.
func (b *Backend) noteFailureLocked(f *function, reason string) {
	f.failures++
	f.lastFailure = reason
	f.changed.Notify()
	backoff := time.Duration(250<<min(f.failures, 8)) * time.Millisecond
	f.retryAt = time.Now().Add(min(backoff, maxRestartBackoff))
}

// killOrphans stops agents of an earlier provider that used the same run
// directory. Pdeathsig normally takes them down with the provider; this
// covers the rest (e.g. a provider killed while a worker was being cloned).
func killOrphans(runDir string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	marker := []byte("\x00--run-dir\x00" + filepath.Clean(runDir) + "\x00")
	killed := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, marker) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed++
		}
	}
	return killed
}

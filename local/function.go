package local

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/agent"
	"github.com/pronghorn-openfaas/pronghorn/coordinator"
	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/provider"
)

// function is the live side of one deployed function: its replicas and the
// bookkeeping the status API reports.
type function struct {
	key       string // namespace/name
	name      string
	namespace string
	display   string // name.namespace, as OpenFaaS names functions in metrics and logs

	invocations atomic.Int64
	evictAfter  atomic.Int64              // the engine's E; 0 = no eviction by count
	ready       atomic.Pointer[[]*worker] // ready, non-retiring workers; read lock-free on the invoke path
	rr          atomic.Uint64

	mu          sync.Mutex
	rec         record
	spec        agent.Config
	generation  uint64 // bumped on update: older workers are replaced once new ones are ready
	workers     map[string]*worker
	deleted     bool
	restarts    int
	failures    int       // consecutive workers that died before becoming ready
	lastFailure string    // why the last of them died
	lastExit    string    // why the last replica that exited on its own did
	retryAt     time.Time // no new worker before this, after failures
	// changed wakes invocations waiting for a replica whenever a worker
	// becomes ready or fails to.
	changed    provider.Signal
	retryTimer *time.Timer

	// snap is the function as the snapshot coordinator tracks it.
	snap *coordinator.Function
}

func newFunction(rec record, spec agent.Config, snap *coordinator.Function) *function {
	ns, name := rec.Deployment.Namespace, rec.Deployment.Service
	f := &function{
		key: ns + "/" + name, name: name, namespace: ns, display: name + "." + ns,
		rec: rec, spec: spec, workers: map[string]*worker{},
		snap: snap,
	}
	f.ready.Store(&[]*worker{})
	return f
}

// pick returns a ready worker, or nil. A worker about to be dumped is
// passed over: a call it served now would end up in a snapshot labelled
// with an earlier request number.
func (f *function) pick() *worker {
	w, ok := provider.PickLeastBusy(*f.ready.Load(), &f.rr, func(w *worker) int64 {
		if w.dumping() {
			return math.MaxInt64
		}
		return w.inflight.Load()
	})
	if !ok || w.dumping() {
		return nil
	}
	return w
}

// refreshReadyLocked republishes the ready set and wakes invocations waiting
// for a replica. Callers hold f.mu.
func (f *function) refreshReadyLocked() {
	ready := make([]*worker, 0, len(f.workers))
	for _, w := range f.workers {
		if w.ready.Load() && !w.retiring.Load() {
			ready = append(ready, w)
		}
	}
	f.ready.Store(&ready)
	if len(ready) > 0 {
		f.changed.Notify()
	}
}

// errCrashLoop is why an invocation stopped waiting for a replica.
var errCrashLoop = errors.New("replicas keep failing to start")

// waitReady blocks until a worker is ready, ctx ends, or crashLoop workers
// in a row have died before becoming ready.
func (f *function) waitReady(ctx context.Context, crashLoop int) (*worker, error) {
	return provider.WaitFor(ctx, &f.changed, func() (*worker, bool, error) {
		if w := f.pick(); w != nil {
			return w, true, nil
		}
		f.mu.Lock()
		failures, why, deleted := f.failures, f.lastFailure, f.deleted
		f.mu.Unlock()
		switch {
		case deleted:
			return nil, false, fmt.Errorf("function %s: %w", f.display, errdefs.ErrNotFound)
		case failures >= crashLoop:
			return nil, false, fmt.Errorf("%w (%d in a row), last: %s: %w", errCrashLoop, failures, why, errdefs.ErrUnavailable)
		}
		return nil, false, nil
	})
}

func (f *function) desiredReplicas() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rec.Replicas
}

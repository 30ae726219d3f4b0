package local

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/agent"
	"github.com/pronghorn-openfaas/pronghorn/coordinator"
	"github.com/pronghorn-openfaas/pronghorn/errdefs"
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
	retryAt     time.Time // no new worker before this, after failures
	// readyCh is closed and replaced whenever a worker becomes ready or
	// fails to, waking invocations that wait for one.
	readyCh    chan struct{}
	retryTimer *time.Timer

	// snap is the function as the snapshot coordinator tracks it.
	snap *coordinator.Function
}

func newFunction(rec record, spec agent.Config, snap *coordinator.Function) *function {
	ns, name := rec.Deployment.Namespace, rec.Deployment.Service
	f := &function{
		key: ns + "/" + name, name: name, namespace: ns, display: name + "." + ns,
		rec: rec, spec: spec, workers: map[string]*worker{}, readyCh: make(chan struct{}),
		snap: snap,
	}
	f.ready.Store(&[]*worker{})
	return f
}

// pick returns a ready worker, round robin, preferring one with no call in
// flight so a slow call does not queue others behind it.
func (f *function) pick() *worker {
	ready := *f.ready.Load()
	n := len(ready)
	if n == 0 {
		return nil
	}
	start := int(f.rr.Add(1) % uint64(n))
	best := ready[start]
	for i := 0; i < n && best.inflight.Load() > 0; i++ {
		w := ready[(start+i)%n]
		if w.inflight.Load() < best.inflight.Load() {
			best = w
		}
	}
	return best
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
		f.wakeLocked()
	}
}

func (f *function) wakeLocked() {
	close(f.readyCh)
	f.readyCh = make(chan struct{})
}

// errCrashLoop is why an invocation stopped waiting for a replica.
var errCrashLoop = errors.New("replicas keep failing to start")

// waitReady blocks until a worker is ready, ctx ends, or crashLoop workers
// in a row have died before becoming ready.
func (f *function) waitReady(ctx context.Context, crashLoop int) (*worker, error) {
	for {
		if w := f.pick(); w != nil {
			return w, nil
		}
		f.mu.Lock()
		ch := f.readyCh
		failures, why, deleted := f.failures, f.lastFailure, f.deleted
		f.mu.Unlock()
		if deleted {
			return nil, fmt.Errorf("function %s: %w", f.display, errdefs.ErrNotFound)
		}
		if w := f.pick(); w != nil {
			return w, nil
		}
		if failures >= crashLoop {
			return nil, fmt.Errorf("%w (%d in a row), last: %s: %w", errCrashLoop, failures, why, errdefs.ErrUnavailable)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (f *function) desiredReplicas() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rec.Replicas
}

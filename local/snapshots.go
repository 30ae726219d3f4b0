package local

import (
	"context"
	"fmt"

	"github.com/pronghorn-openfaas/pronghorn/agent"
	"github.com/pronghorn-openfaas/pronghorn/coordinator"
	"github.com/pronghorn-openfaas/pronghorn/provider"
)

// In local mode the provider moves snapshot images and the agents only run
// CRIU: a worker's network namespace cannot reach a store on the host's
// loopback, and store credentials never enter a worker. Images pass through
// the work directory on the shared filesystem; the coordinator does the
// rest of the life cycle.

// snapSpec is how the coordinator sees worker w about to start with spec;
// w is nil when only the version is wanted. Callers hold f.mu.
func (b *Backend) snapSpec(f *function, w *worker, spec agent.Config, out lineWriter) coordinator.Spec {
	d := f.rec.Deployment
	var annotations map[string]string
	if d.Annotations != nil {
		annotations = *d.Annotations
	}
	var dump coordinator.Dumper
	if w != nil {
		dump = dumper{w}
	}
	return coordinator.Spec{
		Dumper:   dump,
		OnDumped: f.changed.Notify,
		Version: coordinator.VersionInputs{
			Dir: spec.Dir, Process: spec.Process, Runtime: f.rec.Runtime, Env: spec.Env, Secrets: spec.Secrets,
			Limits: d.Limits, Requests: d.Requests, ReadOnly: d.ReadOnlyRootFilesystem,
		},
		Annotations: annotations,
		Generation:  f.generation,
		Logf:        func(format string, args ...any) { out.write(fmt.Sprintf(format, args...)) },
	}
}

// versionInputsLocked is the version a worker of f starting now would have.
func (b *Backend) versionInputsLocked(f *function) (coordinator.VersionInputs, error) {
	secrets, err := b.store.secretValues(f.namespace, f.rec.Deployment.Secrets)
	if err != nil {
		return coordinator.VersionInputs{}, err
	}
	spec := f.spec
	spec.Secrets = secrets
	return b.snapSpec(f, nil, spec, lineWriter{}).Version, nil
}

// dumper lets the coordinator checkpoint a worker through its agent.
type dumper struct{ w *worker }

func (d dumper) Dump(ctx context.Context, dir string) (coordinator.DumpResult, error) {
	res, err := d.w.checkpoint(ctx, dir)
	return coordinator.DumpResult{ImageBytes: res.ImageBytes, DumpTime: res.DumpTime, FrozenTime: res.FrozenTime}, err
}

// released hands a finished call to the coordinator, in call order per
// worker, and retires the worker when it is due for eviction.
func (b *Backend) released(f *function, w *worker, o provider.Outcome) {
	evict := false
	if snap := w.snap.Load(); snap != nil {
		latency := o.Upstream
		if latency <= 0 {
			latency = o.Total
		}
		evict = b.coord.Observe(snap, coordinator.Outcome{Latency: latency, Failed: o.Err != nil || o.StatusCode >= 500})
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

// Inspect reports the engine's state of a function's current version.
func (b *Backend) Inspect(ctx context.Context, namespace, name string) (any, error) {
	f, err := b.function(b.namespace(namespace), name)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	in, err := b.versionInputsLocked(f)
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return b.coord.Inspect(ctx, f.snap, in)
}

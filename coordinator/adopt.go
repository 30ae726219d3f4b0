package coordinator

import (
	"context"
	"errors"
	"fmt"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
)

// Adoption. Workers that outlive their provider (Kubernetes pods; local
// workers die with it) are unknown to the provider started after it: it
// planned none of their starts, so it would neither checkpoint them nor
// evict them by count until they are replaced. Adopt takes such a worker
// over where it stands, as the worker itself reports, without planning a
// start: no engine draw, no start counted, nothing pruned.

// ErrOtherVersion is a worker that runs another version than the one its
// inputs make now (say, a secret changed since it started): its memory is
// not what a snapshot of the current version may hold.
var ErrOtherVersion = errors.New("the worker runs another version of the function")

// Lineage is where a running worker stands, as it reports itself.
type Lineage struct {
	// Version is the version its start was planned under (Worker.Version
	// then); "" when its start was never planned.
	Version string
	// Start is the lineage request number its state started at: the
	// restored snapshot's, 0 for a cold start.
	Start int
	// Snapshot is the key it was restored from, "" if cold.
	Snapshot string
	// Served is how many calls it has served since it started, counted
	// as Observe counts them (answered, below 500).
	Served int
	// CheckpointAt is the lineage request number its plan checkpoints it
	// at (Worker.CheckpointAt then), 0 for none.
	CheckpointAt int
}

// Adopt makes a running worker of f, whose start an earlier provider
// planned, take part in the life cycle from where it stands: Observe goes
// on from lineage l.Start+l.Served, the checkpoint its plan asked for
// still happens if that request is ahead (one behind, or reached while no
// provider watched, is not taken again), and eviction by count counts all
// the calls it served. evict reports that it is due for eviction already.
// A worker that cannot be adopted gets an error saying why and takes no
// part: the backend leaves it serving. Hand an adopted worker to Gone when
// it has exited.
func (c *Coordinator) Adopt(ctx context.Context, f *Function, workerID string, spec Spec, l Lineage) (w *Worker, evict bool, err error) {
	w = newWorker(f, workerID, spec)
	switch {
	case !c.Enabled():
		return nil, false, fmt.Errorf("adopt %s: snapshots are off", workerID)
	case !c.canCheckpoint(w):
		return nil, false, fmt.Errorf("adopt %s: it cannot be checkpointed into this snapshot store", workerID)
	case l.Version == "":
		return nil, false, fmt.Errorf("adopt %s: its start was not planned for snapshots", workerID)
	case l.Start < 0 || l.Served < 0 || l.CheckpointAt < 0:
		return nil, false, fmt.Errorf("adopt %s: negative lineage %+v: %w", workerID, l, errdefs.ErrInvalid)
	}
	v, err := c.digests.version(spec.Version)
	if err != nil {
		return nil, false, fmt.Errorf("adopt %s: %w", workerID, err)
	}
	if v != l.Version {
		return nil, false, fmt.Errorf("adopt %s: %w: it started as version %s, its inputs make %s now", workerID, ErrOtherVersion, l.Version, v)
	}
	cfg, err := c.EngineConfig(spec.Annotations)
	if err != nil {
		return nil, false, fmt.Errorf("adopt %s: %w", workerID, err)
	}
	if _, ok := c.version(ctx, f, w, spec, 0); !ok {
		return nil, false, fmt.Errorf("adopt %s: the engine cannot take version %s (the function was deleted, or see the log)", workerID, v)
	}
	w.eng = orchestrator.Worker{ID: workerID, Lineage: l.Start + l.Served, Served: l.Served, CheckpointAt: l.CheckpointAt, Snapshot: l.Snapshot}
	// The engine's own rule (OnRequest), for calls it did not see.
	evict = cfg.EvictAfter > 0 && (l.Served >= cfg.EvictAfter || w.eng.Lineage >= cfg.Horizon)
	return w, evict, nil
}

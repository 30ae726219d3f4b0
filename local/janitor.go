package local

import (
	"context"
	"errors"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// Deleting a snapshot is durable: its key is recorded in the state file
// before the store is asked, and only a confirmed delete (or a key already
// gone) clears the record. A store that fails leaves the record for the
// janitor, which retries until it succeeds, so no orphan object is left.

// defaultDeleteRetry is how often the janitor retries failed deletes.
const defaultDeleteRetry = 30 * time.Second

// deleteSnapshots drops snaps from the image cache and, in the background,
// from the store.
func (b *Backend) deleteSnapshots(snaps []orchestrator.Snapshot) {
	if len(snaps) == 0 || b.cfg.Store == nil {
		return
	}
	keys := make([]string, 0, len(snaps))
	for _, s := range snaps {
		b.dropCached(s.Key)
		keys = append(keys, s.Key)
	}
	if err := b.store.queueDeletes(keys); err != nil {
		// Not recorded: delete now anyway, a failure is then logged only.
		b.log.Error("record snapshot deletes", "err", err)
	}
	b.goTracked(func() { b.deletePending(keys) })
}

// deletePending deletes keys from the store, clearing each confirmed one
// from the record.
func (b *Backend) deletePending(keys []string) {
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	for _, k := range keys {
		err := b.cfg.Store.Delete(ctx, k)
		if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			b.log.Warn("delete snapshot failed, will retry", "snapshot", k, "err", err)
			continue
		}
		if err := b.store.deleteDone(k); err != nil {
			b.log.Error("clear snapshot delete record", "snapshot", k, "err", err)
		}
	}
}

// janitor retries recorded deletes until Close, and first removes what a
// killed provider left half-uploaded.
func (b *Backend) janitor(stop <-chan struct{}) {
	if c, ok := b.cfg.Store.(snapshot.IncompleteCleaner); ok {
		ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
		n, err := c.CleanIncomplete(ctx)
		cancel()
		switch {
		case err != nil:
			b.log.Warn("clean partial snapshot uploads", "err", err)
		case n > 0:
			b.log.Info("removed partial snapshot uploads", "count", n)
		}
	}
	t := time.NewTicker(b.cfg.DeleteRetryInterval)
	defer t.Stop()
	for {
		keys, err := b.store.pendingDeletes()
		if err != nil {
			b.log.Error("read snapshot delete records", "err", err)
		} else if len(keys) > 0 {
			b.deletePending(keys)
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// Deleting a snapshot is durable: its key is recorded in the state file
// before the store is asked, and only a confirmed delete (or a key already
// gone) clears the record. A store that fails leaves the record for the
// janitor, which retries until it succeeds, so no orphan object is left.

// deletesBucket holds snapshot keys to delete from the store until the
// store confirms.
var deletesBucket = []byte("snapshot-deletes")

type deleteLog struct{ db *bolt.DB }

func openDeleteLog(db *bolt.DB) (*deleteLog, error) {
	if db == nil {
		return nil, fmt.Errorf("coordinator: no state file: %w", errdefs.ErrInvalid)
	}
	err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(deletesBucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("coordinator: create bucket: %w", err)
	}
	return &deleteLog{db: db}, nil
}

func (l *deleteLog) queue(keys []string) error {
	stamp := []byte(time.Now().UTC().Format(time.RFC3339))
	return l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(deletesBucket)
		for _, k := range keys {
			if err := b.Put([]byte(k), stamp); err != nil {
				return err
			}
		}
		return nil
	})
}

func (l *deleteLog) done(key string) error {
	return l.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(deletesBucket).Delete([]byte(key)) })
}

// Pending lists the deletes the store has not confirmed.
func (l *deleteLog) pending() ([]string, error) {
	var out []string
	err := l.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(deletesBucket).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// PendingDeletes lists the snapshot deletes the store has not confirmed.
func (c *Coordinator) PendingDeletes() ([]string, error) { return c.deletes.pending() }

// Delete drops snaps from the image cache and, in the background, from the
// store.
func (c *Coordinator) Delete(snaps []orchestrator.Snapshot) {
	if len(snaps) == 0 || c.cfg.Store == nil {
		return
	}
	keys := make([]string, 0, len(snaps))
	for _, s := range snaps {
		c.dropCached(s.Key)
		keys = append(keys, s.Key)
	}
	if err := c.deletes.queue(keys); err != nil {
		// Not recorded: delete now anyway; a failure is then only logged.
		c.log.Error("record snapshot deletes", "err", err)
	}
	c.goTracked(func() { c.deletePending(keys) })
}

// deletePending deletes keys from the store, clearing each confirmed one
// from the record.
func (c *Coordinator) deletePending(keys []string) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	for _, k := range keys {
		err := c.cfg.Store.Delete(ctx, k)
		if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			c.log.Warn("delete snapshot failed, will retry", "snapshot", k, "err", err)
			continue
		}
		if err := c.deletes.done(k); err != nil {
			c.log.Error("clear snapshot delete record", "snapshot", k, "err", err)
		}
	}
}

// janitor retries recorded deletes until Close, and first removes what a
// killed provider left half-uploaded.
func (c *Coordinator) janitor() {
	if cleaner, ok := c.cfg.Store.(snapshot.IncompleteCleaner); ok {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		n, err := cleaner.CleanIncomplete(ctx)
		cancel()
		switch {
		case err != nil:
			c.log.Warn("clean partial snapshot uploads", "err", err)
		case n > 0:
			c.log.Info("removed partial snapshot uploads", "count", n)
		}
	}
	t := time.NewTicker(c.cfg.DeleteRetry)
	defer t.Stop()
	for {
		keys, err := c.deletes.pending()
		if err != nil {
			c.log.Error("read snapshot delete records", "err", err)
		} else if len(keys) > 0 {
			c.deletePending(keys)
		}
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
	}
}

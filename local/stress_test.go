package local

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// Many rounds of concurrent deploy, update, scale, delete and invoke on the
// same and on different names. After each round the state file, the API
// and the running workers agree, and no agent is left without a function.
func TestConcurrentAPICallsStayConsistent(t *testing.T) {
	rounds := 12
	if testing.Short() {
		rounds = 3
	}
	e := newEnv(t, func(c *Config, _ *bolt.DB) {
		c.StopGrace = 500 * time.Millisecond
		c.ScaleFromZeroTimeout = 3 * time.Second
	})
	names := []string{"s0", "s1", "s2"}
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	for round := range rounds {
		var wg sync.WaitGroup
		for g := range 10 {
			name := names[rng.IntN(len(names))]
			op := rng.IntN(5)
			n := uint64(rng.IntN(3))
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := e.stressOp(op, name, n, round*100+g); err != nil {
					t.Errorf("round %d: %v", round, err)
				}
			}()
		}
		wg.Wait()
		e.assertConsistent(round)
		if t.Failed() {
			return
		}
	}
	t.Logf("%d rounds in %s", rounds, time.Since(start).Round(time.Millisecond))
}

// stressOp runs one API call; only the errors a racing client may see are
// acceptable.
func (e *env) stressOp(op int, name string, n uint64, seq int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	var allowed []error
	switch op {
	case 0:
		err, allowed = e.b.Deploy(ctx, deployment(name, map[string]string{"GREETING": strconv.Itoa(seq)})), []error{errdefs.ErrAlreadyExists}
	case 1:
		err, allowed = e.b.Update(ctx, deployment(name, map[string]string{"GREETING": strconv.Itoa(seq)})), []error{errdefs.ErrNotFound}
	case 2:
		err, allowed = e.b.Scale(ctx, "", name, n), []error{errdefs.ErrNotFound}
	case 3:
		err, allowed = e.b.Delete(ctx, "", name), []error{errdefs.ErrNotFound}
	case 4:
		_, err = e.invoke(name)
		allowed = []error{errdefs.ErrNotFound, errdefs.ErrUnavailable, context.DeadlineExceeded}
	}
	if err == nil || slices.ContainsFunc(allowed, func(a error) bool { return errors.Is(err, a) }) {
		return nil
	}
	return fmt.Errorf("op %d on %s: %w", op, name, err)
}

// assertConsistent checks store == API == workers once the backend has
// converged.
func (e *env) assertConsistent(round int) {
	e.t.Helper()
	recs, bad, err := e.b.store.functions()
	if err != nil || len(bad) > 0 {
		e.t.Fatalf("round %d: store: %v %v", round, err, bad)
	}
	stored := map[string]uint64{}
	for _, r := range recs {
		stored[r.Deployment.Service] = r.Replicas
	}
	listed, err := e.b.Functions(context.Background(), "")
	if err != nil {
		e.t.Fatal(err)
	}
	api := map[string]uint64{}
	for _, st := range listed {
		api[st.Name] = st.Replicas
	}
	if fmt.Sprint(stored) != fmt.Sprint(api) {
		e.t.Fatalf("round %d: store %v, API %v", round, stored, api)
	}
	var want uint64
	for _, n := range stored {
		want += n
	}
	var why string
	deadline := time.Now().Add(20 * time.Second)
	for {
		why = e.convergence(stored, want)
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("round %d: not converged: %s", round, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// convergence says what still differs from stored, or "".
func (e *env) convergence(stored map[string]uint64, want uint64) string {
	e.b.mu.RLock()
	defer e.b.mu.RUnlock()
	if len(e.b.functions) != len(stored) {
		return fmt.Sprintf("%d functions in memory, %d stored", len(e.b.functions), len(stored))
	}
	for _, f := range e.b.functions {
		f.mu.Lock()
		live, ready := 0, 0
		for _, w := range f.workers {
			if !w.exited() {
				live++
			}
			if w.ready.Load() && !w.retiring.Load() && w.generation == f.generation {
				ready++
			}
		}
		replicas := f.rec.Replicas
		f.mu.Unlock()
		if replicas != stored[f.name] {
			return fmt.Sprintf("%s: %d replicas in memory, %d stored", f.name, replicas, stored[f.name])
		}
		if uint64(live) != replicas || uint64(ready) != replicas {
			return fmt.Sprintf("%s: %d live and %d ready workers, want %d", f.name, live, ready, replicas)
		}
	}
	if n := countAgents(e.dataDir); uint64(n) != want {
		return fmt.Sprintf("%d agent processes, want %d", n, want)
	}
	return ""
}

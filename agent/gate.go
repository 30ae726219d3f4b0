package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// gate holds calls back while a checkpoint dumps the function. Unlike a
// sync.RWMutex, a checkpoint waits only a bounded time for the calls in
// flight: one long streaming call must not stall the checkpoint, and with it
// every call that arrives after it.
type gate struct {
	mu       sync.Mutex
	inflight int
	// closed is non-nil while a checkpoint holds the gate or waits for it;
	// it is closed when the gate opens again.
	closed chan struct{}
	// drained is closed when the last call in flight leaves a closing gate.
	drained chan struct{}
}

// inFlightError is a checkpoint given up because calls did not finish.
type inFlightError struct {
	n     int
	after time.Duration
}

func (e *inFlightError) Error() string {
	calls := "calls"
	if e.n == 1 {
		calls = "call"
	}
	return fmt.Sprintf("%d %s still in flight after %s", e.n, calls, e.after)
}

// enter admits a call, waiting while a checkpoint holds the gate; the call
// must leave when done.
func (g *gate) enter(ctx context.Context) error {
	for {
		g.mu.Lock()
		wait := g.closed
		if wait == nil {
			g.inflight++
			g.mu.Unlock()
			return nil
		}
		g.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inflight--
	if g.inflight == 0 && g.drained != nil {
		close(g.drained)
		g.drained = nil
	}
}

// close stops admitting calls and waits up to bound for those in flight to
// finish. If they do, the caller holds the gate until it calls open;
// otherwise the gate opens again at once, so calls go on being served, and
// the error says how many were still running.
func (g *gate) close(ctx context.Context, bound time.Duration) (open func(), err error) {
	g.mu.Lock()
	if g.closed != nil {
		g.mu.Unlock()
		return nil, errors.New("the gate is already held by a checkpoint")
	}
	opened := make(chan struct{})
	g.closed = opened
	var drained chan struct{}
	if g.inflight > 0 {
		drained = make(chan struct{})
		g.drained = drained
	}
	g.mu.Unlock()
	open = func() {
		g.mu.Lock()
		g.closed, g.drained = nil, nil
		g.mu.Unlock()
		close(opened)
	}
	if drained == nil {
		return open, nil
	}
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-drained:
		return open, nil
	case <-ctx.Done():
		open()
		return nil, fmt.Errorf("waiting for calls in flight: %w", ctx.Err())
	case <-t.C:
		g.mu.Lock()
		n := g.inflight
		g.mu.Unlock()
		if n == 0 {
			return open, nil // the last one left as the bound passed
		}
		open()
		return nil, &inFlightError{n: n, after: bound}
	}
}

package provider

import (
	"context"
	"sync"
	"sync/atomic"
)

// Both backends choose among ready replicas the same way and wait for one
// the same way; these are those two pieces.

// PickLeastBusy returns a replica from ready, round robin from the next
// start position, moving on to the first one with no call in flight (or
// else the least busy) so a slow call does not queue others behind it.
// It reports false when ready is empty.
func PickLeastBusy[R any](ready []R, next *atomic.Uint64, inflight func(R) int64) (R, bool) {
	n := len(ready)
	if n == 0 {
		var none R
		return none, false
	}
	start := int(next.Add(1) % uint64(n))
	best, load := ready[start], inflight(ready[start])
	for i := 1; i < n && load > 0; i++ {
		r := ready[(start+i)%n]
		if l := inflight(r); l < load {
			best, load = r, l
		}
	}
	return best, true
}

// Signal wakes everyone waiting for a change. The zero value is ready to
// use.
type Signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// Changed returns a channel closed at the next Notify.
func (s *Signal) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Notify wakes every waiter.
func (s *Signal) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// WaitFor calls try until it reports done, again after every change s
// signals, and gives up with ctx's error when ctx ends. try's error ends
// the wait at once.
func WaitFor[T any](ctx context.Context, s *Signal, try func() (T, bool, error)) (T, error) {
	for {
		// Taken before trying, so a change between the try and the wait
		// is not slept through.
		changed := s.Changed()
		v, done, err := try()
		if err != nil || done {
			return v, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err()
		}
	}
}

package local

import (
	"context"
	"sync"
	"time"

	"github.com/openfaas/faas-provider/logs"
)

// logBook keeps the recent log lines of every function in memory, for the
// faas-provider log API, and fans new lines out to followers.
type logBook struct {
	capacity int

	mu        sync.Mutex
	functions map[string]*logRing
}

type logRing struct {
	lines     []logs.Message // ring of capacity entries
	next      int
	full      bool
	followers map[chan logs.Message]struct{}
}

func newLogBook(capacity int) *logBook {
	return &logBook{capacity: capacity, functions: map[string]*logRing{}}
}

func (lb *logBook) ring(fn string) *logRing {
	r := lb.functions[fn]
	if r == nil {
		r = &logRing{lines: make([]logs.Message, lb.capacity), followers: map[chan logs.Message]struct{}{}}
		lb.functions[fn] = r
	}
	return r
}

// add records one line. Followers that cannot keep up lose lines rather than
// block the worker's output.
func (lb *logBook) add(fn string, m logs.Message) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	r := lb.ring(fn)
	r.lines[r.next] = m
	r.next = (r.next + 1) % len(r.lines)
	if r.next == 0 {
		r.full = true
	}
	for ch := range r.followers {
		select {
		case ch <- m:
		default:
		}
	}
}

func (lb *logBook) forget(fn string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if r := lb.functions[fn]; r != nil {
		for ch := range r.followers {
			close(ch)
		}
		delete(lb.functions, fn)
	}
}

// query answers a faas-provider log request: the stored lines matching
// since/instance, the last tail of them, then (follow) new lines until ctx
// ends.
func (lb *logBook) query(ctx context.Context, fn string, req logs.Request) <-chan logs.Message {
	lb.mu.Lock()
	r := lb.ring(fn)
	var past []logs.Message
	ordered := append(append([]logs.Message(nil), r.lines[r.next:]...), r.lines[:r.next]...)
	if !r.full {
		ordered = r.lines[:r.next]
	}
	for _, m := range ordered {
		if req.Since != nil && m.Timestamp.Before(*req.Since) {
			continue
		}
		if req.Instance != "" && m.Instance != req.Instance {
			continue
		}
		past = append(past, m)
	}
	if req.Tail > 0 && len(past) > req.Tail {
		past = past[len(past)-req.Tail:]
	}
	var live chan logs.Message
	if req.Follow {
		live = make(chan logs.Message, 256)
		r.followers[live] = struct{}{}
	}
	lb.mu.Unlock()

	out := make(chan logs.Message)
	go func() {
		defer close(out)
		if live != nil {
			defer lb.unfollow(fn, live)
		}
		for _, m := range past {
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
		if live == nil {
			return
		}
		for {
			select {
			case m, ok := <-live:
				if !ok {
					return
				}
				if req.Instance != "" && m.Instance != req.Instance {
					continue
				}
				select {
				case out <- m:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (lb *logBook) unfollow(fn string, ch chan logs.Message) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if r := lb.functions[fn]; r != nil {
		if _, ok := r.followers[ch]; ok {
			delete(r.followers, ch)
			close(ch)
		}
	}
}

// lineWriter turns a worker's output into log messages.
type lineWriter struct {
	book      *logBook
	fn        string
	name      string
	namespace string
	instance  string
}

func (w lineWriter) write(text string) {
	w.book.add(w.fn, logs.Message{
		Name: w.name, Namespace: w.namespace, Instance: w.instance,
		Timestamp: time.Now().UTC(), Text: text,
	})
}

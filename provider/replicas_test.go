package provider

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestPickLeastBusy(t *testing.T) {
	load := map[string]int64{}
	inflight := func(r string) int64 { return load[r] }
	var next atomic.Uint64
	if _, ok := PickLeastBusy(nil, &next, inflight); ok {
		t.Fatal("picked from nothing")
	}
	ready := []string{"a", "b", "c"}
	seen := map[string]int{}
	for range 30 {
		r, ok := PickLeastBusy(ready, &next, inflight)
		if !ok {
			t.Fatal("no pick")
		}
		seen[r]++
	}
	if seen["a"] != 10 || seen["b"] != 10 || seen["c"] != 10 {
		t.Fatalf("idle replicas not round robin: %v", seen)
	}
	load["a"], load["b"], load["c"] = 3, 1, 2
	for range 6 {
		if r, _ := PickLeastBusy(ready, &next, inflight); r != "b" {
			t.Fatalf("picked %s (load %d), want the least busy b", r, load[r])
		}
	}
	load["c"] = 0
	for range 6 {
		if r, _ := PickLeastBusy(ready, &next, inflight); r != "c" {
			t.Fatalf("picked %s, want the idle c", r)
		}
	}
}

func TestWaitFor(t *testing.T) {
	var s Signal
	var ready atomic.Bool
	go func() {
		time.Sleep(20 * time.Millisecond)
		ready.Store(true)
		s.Notify()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := WaitFor(ctx, &s, func() (string, bool, error) { return "r", ready.Load(), nil })
	if err != nil || got != "r" {
		t.Fatalf("WaitFor = %q, %v", got, err)
	}

	boom := errors.New("replicas keep failing")
	if _, err := WaitFor(ctx, &s, func() (string, bool, error) { return "", false, boom }); !errors.Is(err, boom) {
		t.Fatalf("try's error: %v", err)
	}

	short, cancelShort := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancelShort()
	if _, err := WaitFor(short, &s, func() (int, bool, error) { return 0, false, nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no replica ever: %v", err)
	}
}

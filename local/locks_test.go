package local

import (
	"testing"
	"time"
)

func TestNameLocks(t *testing.T) {
	n := newNameLocks()
	unlockA := n.lock("a")
	done := make(chan struct{})
	go func() {
		unlock := n.lock("b") // another name does not wait
		unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("lock of b waited for a")
	}
	got := make(chan struct{})
	go func() {
		unlock := n.lock("a")
		close(got)
		unlock()
	}()
	select {
	case <-got:
		t.Fatal("a locked twice")
	case <-time.After(50 * time.Millisecond):
	}
	unlockA()
	<-got
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.locks) != 0 {
		t.Fatalf("%d locks left behind", len(n.locks))
	}
}

package local

import "sync"

// nameLocks serialises the API's changes to one function (deploy, update,
// scale, delete) without making changes to other functions, or invocations,
// wait behind a change's fsyncs and worker starts.
type nameLocks struct {
	mu    sync.Mutex
	locks map[string]*nameLock
}

type nameLock struct {
	mu   sync.Mutex
	refs int
}

func newNameLocks() *nameLocks { return &nameLocks{locks: map[string]*nameLock{}} }

// lock takes key's lock and returns its release.
func (n *nameLocks) lock(key string) (unlock func()) {
	n.mu.Lock()
	l := n.locks[key]
	if l == nil {
		l = &nameLock{}
		n.locks[key] = l
	}
	l.refs++
	n.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		n.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(n.locks, key)
		}
		n.mu.Unlock()
	}
}

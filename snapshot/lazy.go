package snapshot

import (
	"context"
	"io"
	"sync"
)

// LazyStore opens its store on first use, and again on every use until an
// open succeeds, so a provider can start (and serve cold) while its object
// store is still down, and takes snapshots up once it answers.
//
// It is a Presigner whose methods pass through to the opened store, failing
// with errdefs.ErrInvalid when that store cannot presign: whether it can is
// only known once it opens. Wrap only a store that presigns (MinIO) if
// callers decide by a type assertion.
type LazyStore struct {
	open func(context.Context) (Store, error)

	mu    sync.Mutex
	store Store
}

// NewLazyStore returns a store that opens itself with open when needed.
func NewLazyStore(open func(context.Context) (Store, error)) *LazyStore {
	return &LazyStore{open: open}
}

var (
	_ Store             = (*LazyStore)(nil)
	_ IncompleteCleaner = (*LazyStore)(nil)
)

func (l *LazyStore) get(ctx context.Context) (Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.store != nil {
		return l.store, nil
	}
	s, err := l.open(ctx)
	if err != nil {
		return nil, err
	}
	l.store = s
	return s, nil
}

func (l *LazyStore) Put(ctx context.Context, key string, r io.Reader, m Manifest) (Manifest, error) {
	s, err := l.get(ctx)
	if err != nil {
		return Manifest{}, err
	}
	return s.Put(ctx, key, r, m)
}

func (l *LazyStore) Get(ctx context.Context, key string) (io.ReadCloser, Manifest, error) {
	s, err := l.get(ctx)
	if err != nil {
		return nil, Manifest{}, err
	}
	return s.Get(ctx, key)
}

func (l *LazyStore) Stat(ctx context.Context, key string) (Manifest, error) {
	s, err := l.get(ctx)
	if err != nil {
		return Manifest{}, err
	}
	return s.Stat(ctx, key)
}

func (l *LazyStore) Delete(ctx context.Context, key string) error {
	s, err := l.get(ctx)
	if err != nil {
		return err
	}
	return s.Delete(ctx, key)
}

func (l *LazyStore) List(ctx context.Context, prefix string) ([]Manifest, error) {
	s, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return s.List(ctx, prefix)
}

// CleanIncomplete implements IncompleteCleaner for the store once it opens.
func (l *LazyStore) CleanIncomplete(ctx context.Context) (int, error) {
	s, err := l.get(ctx)
	if err != nil {
		return 0, err
	}
	if c, ok := s.(IncompleteCleaner); ok {
		return c.CleanIncomplete(ctx)
	}
	return 0, nil
}

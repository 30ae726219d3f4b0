package handlers

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/openfaas/faas-provider/logs"
	"github.com/openfaas/faas-provider/types"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/provider"
)

// fakeBackend is an in-memory provider.Backend: functions and secrets are stored per
// namespace, logs are canned messages, and Acquire leases point at a test
// upstream. It is deliberately strict about errdefs kinds, like the real
// backends must be.
type fakeBackend struct {
	mu         sync.Mutex
	fns        map[string]map[string]types.FunctionStatus
	secrets    map[string]map[string]types.Secret
	namespaces []string
	logs       []logs.Message
	logReqs    []logs.Request

	// upstream and transport are where leases send invocations.
	upstream  *url.URL
	transport http.RoundTripper
	// acquireErr, when set, is returned by Acquire for existing functions.
	acquireErr error
	leases     []*fakeLease
	released   chan provider.Outcome // receives every Release, if non-nil
}

var _ provider.Backend = (*fakeBackend)(nil)

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		fns:        map[string]map[string]types.FunctionStatus{},
		secrets:    map[string]map[string]types.Secret{},
		namespaces: []string{"openfaas-fn", "dev"},
	}
}

func (f *fakeBackend) Deploy(ctx context.Context, req types.FunctionDeployment) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.fns[req.Namespace][req.Service]; ok {
		return fmt.Errorf("function %s.%s: %w", req.Service, req.Namespace, errdefs.ErrAlreadyExists)
	}
	if f.fns[req.Namespace] == nil {
		f.fns[req.Namespace] = map[string]types.FunctionStatus{}
	}
	f.fns[req.Namespace][req.Service] = statusOf(req, 1)
	return nil
}

func statusOf(req types.FunctionDeployment, replicas uint64) types.FunctionStatus {
	return types.FunctionStatus{
		Name:              req.Service,
		Image:             req.Image,
		Namespace:         req.Namespace,
		EnvProcess:        req.EnvProcess,
		EnvVars:           req.EnvVars,
		Secrets:           req.Secrets,
		Labels:            req.Labels,
		Annotations:       req.Annotations,
		Limits:            req.Limits,
		Requests:          req.Requests,
		Replicas:          replicas,
		AvailableReplicas: replicas,
		CreatedAt:         time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func (f *fakeBackend) Update(ctx context.Context, req types.FunctionDeployment) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	old, ok := f.fns[req.Namespace][req.Service]
	if !ok {
		return fmt.Errorf("function %s.%s: %w", req.Service, req.Namespace, errdefs.ErrNotFound)
	}
	f.fns[req.Namespace][req.Service] = statusOf(req, old.Replicas)
	return nil
}

func (f *fakeBackend) Delete(ctx context.Context, namespace, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.fns[namespace][name]; !ok {
		return fmt.Errorf("function %s.%s: %w", name, namespace, errdefs.ErrNotFound)
	}
	delete(f.fns[namespace], name)
	return nil
}

func (f *fakeBackend) Function(ctx context.Context, namespace, name string) (types.FunctionStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn, ok := f.fns[namespace][name]
	if !ok {
		return fn, fmt.Errorf("function %s.%s: %w", name, namespace, errdefs.ErrNotFound)
	}
	return fn, nil
}

func (f *fakeBackend) Functions(ctx context.Context, namespace string) ([]types.FunctionStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []types.FunctionStatus
	for _, fn := range f.fns[namespace] {
		out = append(out, fn)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeBackend) Scale(ctx context.Context, namespace, name string, replicas uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn, ok := f.fns[namespace][name]
	if !ok {
		return fmt.Errorf("function %s.%s: %w", name, namespace, errdefs.ErrNotFound)
	}
	fn.Replicas, fn.AvailableReplicas = replicas, replicas
	f.fns[namespace][name] = fn
	return nil
}

func (f *fakeBackend) Namespaces(ctx context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.namespaces...), nil
}

func (f *fakeBackend) Secrets(ctx context.Context, namespace string) ([]types.Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []types.Secret
	for _, s := range f.secrets[namespace] {
		out = append(out, s) // values included on purpose: the handler must strip them
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// secret reads one stored secret (zero if absent) under the lock.
func (f *fakeBackend) secret(ns, name string) types.Secret {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.secrets[ns][name]
}

func (f *fakeBackend) CreateSecret(ctx context.Context, s types.Secret) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.secrets[s.Namespace][s.Name]; ok {
		return fmt.Errorf("secret %s.%s: %w", s.Name, s.Namespace, errdefs.ErrAlreadyExists)
	}
	if f.secrets[s.Namespace] == nil {
		f.secrets[s.Namespace] = map[string]types.Secret{}
	}
	f.secrets[s.Namespace][s.Name] = s
	return nil
}

func (f *fakeBackend) UpdateSecret(ctx context.Context, s types.Secret) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.secrets[s.Namespace][s.Name]; !ok {
		return fmt.Errorf("secret %s.%s: %w", s.Name, s.Namespace, errdefs.ErrNotFound)
	}
	f.secrets[s.Namespace][s.Name] = s
	return nil
}

func (f *fakeBackend) DeleteSecret(ctx context.Context, namespace, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.secrets[namespace][name]; !ok {
		return fmt.Errorf("secret %s.%s: %w", name, namespace, errdefs.ErrNotFound)
	}
	delete(f.secrets[namespace], name)
	return nil
}

// Query streams the canned messages of the requested function, honouring
// Tail; with Follow it keeps the stream open until ctx ends, as a real
// backend would.
func (f *fakeBackend) Query(ctx context.Context, req logs.Request) (<-chan logs.Message, error) {
	f.mu.Lock()
	f.logReqs = append(f.logReqs, req)
	var msgs []logs.Message
	for _, m := range f.logs {
		if m.Name == req.Name && m.Namespace == req.Namespace {
			msgs = append(msgs, m)
		}
	}
	f.mu.Unlock()
	if req.Tail > 0 && len(msgs) > req.Tail {
		msgs = msgs[len(msgs)-req.Tail:]
	}
	ch := make(chan logs.Message)
	go func() {
		defer close(ch)
		for _, m := range msgs {
			select {
			case ch <- m:
			case <-ctx.Done():
				return
			}
		}
		if req.Follow {
			<-ctx.Done()
		}
	}()
	return ch, nil
}

func (f *fakeBackend) Acquire(ctx context.Context, namespace, name string) (provider.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.fns[namespace][name]; !ok {
		return nil, fmt.Errorf("function %s.%s: %w", name, namespace, errdefs.ErrNotFound)
	}
	if f.acquireErr != nil {
		return nil, f.acquireErr
	}
	l := &fakeLease{ns: namespace, name: name, url: f.upstream, transport: f.transport, notify: f.released}
	f.leases = append(f.leases, l)
	return l, nil
}

func (f *fakeBackend) allLeases() []*fakeLease {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fakeLease(nil), f.leases...)
}

type fakeLease struct {
	ns, name  string
	url       *url.URL
	transport http.RoundTripper
	notify    chan provider.Outcome

	mu       sync.Mutex
	outcomes []provider.Outcome
}

func (l *fakeLease) URL() *url.URL                { return l.url }
func (l *fakeLease) Transport() http.RoundTripper { return l.transport }

func (l *fakeLease) Release(o provider.Outcome) {
	l.mu.Lock()
	l.outcomes = append(l.outcomes, o)
	l.mu.Unlock()
	if l.notify != nil {
		l.notify <- o
	}
}

func (l *fakeLease) released() []provider.Outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]provider.Outcome(nil), l.outcomes...)
}

// Package local runs functions as namespaced processes on this machine: the
// embedded default backend of the provider. Each replica is an agent process
// that is PID 1 of fresh pid, net and mount namespaces; the provider reaches
// it over unix sockets under the data directory.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openfaas/faas-provider/logs"
	"github.com/openfaas/faas-provider/types"
	bolt "go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/agent"
	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/handlers"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// Config tunes the local backend.
type Config struct {
	// DataDir holds the run directory with the workers' sockets.
	DataDir string
	// FunctionsDir is where an image name without a path is looked up.
	FunctionsDir string
	// AgentCommand starts an agent: the provider's own binary and "agent".
	AgentCommand []string
	// Isolate puts each worker in its own namespaces (needs root). Off only
	// for tests that cannot be root.
	Isolate          bool
	DefaultNamespace string
	// ScaleFromZeroTimeout bounds how long an invocation waits for a replica.
	ScaleFromZeroTimeout time.Duration
	// ReadyTimeout bounds how long a new replica may take to answer.
	ReadyTimeout time.Duration
	// StopGrace is how long a retiring replica may finish in-flight calls
	// and shut down before it is killed.
	StopGrace time.Duration
	// LogLines is how many log lines are kept per function.
	LogLines int
	Logger   *slog.Logger

	// Engine decides checkpoints and restores, Store keeps the snapshot
	// images; with either nil every worker starts cold and none is
	// checkpointed or evicted by count.
	Engine *orchestrator.Engine
	Store  snapshot.Store
	// EngineDefaults is the strategy of a function whose annotations name none.
	EngineDefaults orchestrator.Config
	// CRIUPath is the criu the agents run; empty means snapshot.DefaultCRIUPath.
	CRIUPath string
}

func (c *Config) setDefaults() error {
	if c.DataDir == "" {
		return fmt.Errorf("local backend: no data dir")
	}
	if len(c.AgentCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("local backend: find own binary: %w", err)
		}
		c.AgentCommand = []string{exe, "agent"}
	}
	if c.DefaultNamespace == "" {
		c.DefaultNamespace = "openfaas-fn"
	}
	if c.ScaleFromZeroTimeout <= 0 {
		c.ScaleFromZeroTimeout = 30 * time.Second
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 30 * time.Second
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 10 * time.Second
	}
	if c.LogLines <= 0 {
		c.LogLines = 1000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.EngineDefaults.Strategy == "" {
		c.EngineDefaults = orchestrator.DefaultConfig()
	}
	return nil
}

// Backend implements handlers.Backend with local processes.
type Backend struct {
	cfg     Config
	log     *slog.Logger
	store   *store
	logs    *logBook
	runDir  string
	workDir string // CRIU images on their way to or from the store
	metrics *snapshotMetrics

	closed atomic.Bool

	mu        sync.RWMutex
	functions map[string]*function
}

var _ handlers.Backend = (*Backend)(nil)

// New opens the backend on db and brings back every stored function's
// replicas. Workers left over by a provider that was killed are stopped first.
func New(ctx context.Context, db *bolt.DB, cfg Config) (*Backend, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Isolate && os.Geteuid() != 0 {
		return nil, fmt.Errorf("local backend: workers run in their own namespaces, which needs root (running as uid %d)", os.Geteuid())
	}
	st, err := newStore(db)
	if err != nil {
		return nil, err
	}
	b := &Backend{
		cfg: cfg, log: cfg.Logger, store: st, logs: newLogBook(cfg.LogLines),
		runDir: filepath.Join(cfg.DataDir, "run"), workDir: filepath.Join(cfg.DataDir, "work"),
		functions: map[string]*function{}, metrics: newSnapshotMetrics(),
	}
	if n := killOrphans(b.runDir); n > 0 {
		b.log.Warn("stopped orphan workers of an earlier provider", "count", n)
	}
	if err := os.RemoveAll(b.runDir); err != nil {
		return nil, fmt.Errorf("clean run dir: %w", err)
	}
	if err := os.MkdirAll(b.runDir, 0o700); err != nil {
		return nil, fmt.Errorf("create run dir: %w", err)
	}
	// Images left by a dump or download that a crash interrupted.
	if err := os.RemoveAll(b.workDir); err != nil {
		return nil, fmt.Errorf("clean work dir: %w", err)
	}
	if err := os.MkdirAll(b.workDir, 0o700); err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	recs, err := st.functions()
	if err != nil {
		return nil, err
	}
	for _, rec := range recs {
		// Configure again: a crash between storing a function and
		// configuring its strategy must not leave it unconfigured.
		evictAfter, err := b.configureEngine(ctx, rec)
		if err != nil {
			b.log.Error("engine: configure", "function", rec.Deployment.Service, "err", err)
		}
		f := newFunction(rec, b.agentSpec(rec))
		f.evictAfter.Store(evictAfter)
		b.functions[f.key] = f
		f.mu.Lock()
		b.reconcileLocked(f)
		f.mu.Unlock()
		b.log.Info("function restored", "function", f.display, "replicas", rec.Replicas)
	}
	return b, nil
}

// Close stops every worker but keeps the desired replica counts, so the next
// start brings them back.
func (b *Backend) Close(ctx context.Context) error {
	b.closed.Store(true)
	b.mu.Lock()
	fns := make([]*function, 0, len(b.functions))
	for _, f := range b.functions {
		fns = append(fns, f)
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, f := range fns {
		f.mu.Lock()
		if f.retryTimer != nil {
			f.retryTimer.Stop()
		}
		for _, w := range f.workers {
			wg.Add(1)
			go func() { defer wg.Done(); w.stop(b.cfg.StopGrace) }()
		}
		f.mu.Unlock()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop workers: %w", ctx.Err())
	}
}

func (b *Backend) function(namespace, name string) (*function, error) {
	b.mu.RLock()
	f := b.functions[namespace+"/"+name]
	b.mu.RUnlock()
	if f == nil {
		return nil, fmt.Errorf("function %s.%s: %w", name, namespace, errdefs.ErrNotFound)
	}
	return f, nil
}

func (b *Backend) namespace(ns string) string {
	if ns == "" {
		return b.cfg.DefaultNamespace
	}
	return ns
}

// prepare validates a deploy or update request and resolves it to what will
// be stored. Nothing is stored when it fails.
func (b *Backend) prepare(req types.FunctionDeployment) (record, error) {
	req.Namespace = b.namespace(req.Namespace)
	if req.Service == "" {
		return record{}, fmt.Errorf("service name is required: %w", errdefs.ErrInvalid)
	}
	dir, err := resolveImage(b.cfg.FunctionsDir, req.Image)
	if err != nil {
		return record{}, err
	}
	decl, err := readDeclaration(dir)
	if err != nil {
		return record{}, err
	}
	process := req.EnvProcess
	if process == "" {
		process = decl.Process
	}
	if strings.TrimSpace(process) == "" {
		return record{}, fmt.Errorf("no fprocess: set envProcess or add %s to %s: %w", declarationFile, dir, errdefs.ErrInvalid)
	}
	if _, err := b.store.secretValues(req.Namespace, req.Secrets); err != nil {
		return record{}, err
	}
	if _, err := b.engineConfig(req.Annotations); err != nil {
		return record{}, err
	}
	replicas := uint64(1)
	if req.Labels != nil {
		if v, ok := (*req.Labels)["com.openfaas.scale.min"]; ok {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return record{}, fmt.Errorf("label com.openfaas.scale.min=%q is not a replica count: %w", v, errdefs.ErrInvalid)
			}
			replicas = n
		}
	}
	return record{
		Deployment: req, Dir: dir, Process: process, Runtime: decl.Runtime, Env: decl.Env,
		Replicas: replicas, CreatedAt: time.Now().UTC(),
	}, nil
}

// mergeEnv overlays the request's envVars on the directory's declared
// environment.
func mergeEnv(declared, requested map[string]string) map[string]string {
	out := make(map[string]string, len(declared)+len(requested))
	maps.Copy(out, declared)
	maps.Copy(out, requested)
	return out
}

// configureEngine hands the function's strategy to the engine and returns
// its evict-after count.
func (b *Backend) configureEngine(ctx context.Context, rec record) (int64, error) {
	if b.cfg.Engine == nil {
		return 0, nil
	}
	cfg, err := b.engineConfig(rec.Deployment.Annotations)
	if err != nil {
		return 0, err
	}
	return int64(cfg.EvictAfter), b.cfg.Engine.Configure(ctx, rec.Deployment.Namespace+"/"+rec.Deployment.Service, cfg)
}

func (b *Backend) agentSpec(rec record) agent.Config {
	return agent.Config{
		Dir:          rec.Dir,
		Process:      rec.Process,
		Env:          mergeEnv(rec.Env, rec.Deployment.EnvVars),
		ReadyTimeout: agent.Duration(b.cfg.ReadyTimeout),
	}
}

// Deploy stores a new function and starts its replicas.
func (b *Backend) Deploy(ctx context.Context, req types.FunctionDeployment) error {
	rec, err := b.prepare(req)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return fmt.Errorf("provider is shutting down: %w", errdefs.ErrUnavailable)
	}
	if err := b.store.createFunction(rec); err != nil {
		return err
	}
	evictAfter, err := b.configureEngine(ctx, rec)
	if err != nil {
		return err
	}
	f := newFunction(rec, b.agentSpec(rec))
	f.evictAfter.Store(evictAfter)
	b.functions[f.key] = f
	f.mu.Lock()
	b.reconcileLocked(f)
	f.mu.Unlock()
	b.log.Info("function deployed", "function", f.display, "dir", rec.Dir, "process", rec.Process)
	return nil
}

// Update replaces a function's definition; its replicas are replaced by new
// ones, and the old ones keep serving until the new ones are ready.
func (b *Backend) Update(ctx context.Context, req types.FunctionDeployment) error {
	rec, err := b.prepare(req)
	if err != nil {
		return err
	}
	f, err := b.function(rec.Deployment.Namespace, rec.Deployment.Service)
	if err != nil {
		return err
	}
	stored, err := b.store.updateFunction(f.namespace, f.name, func(old *record) error {
		rec.Replicas, rec.CreatedAt = old.Replicas, old.CreatedAt
		*old = rec
		return nil
	})
	if err != nil {
		return err
	}
	evictAfter, err := b.configureEngine(ctx, stored)
	if err != nil {
		return err
	}
	f.evictAfter.Store(evictAfter)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rec, f.spec = stored, b.agentSpec(stored)
	f.generation++
	f.failures, f.retryAt = 0, time.Time{}
	b.reconcileLocked(f)
	b.log.Info("function updated", "function", f.display)
	return nil
}

// Delete removes a function and stops its replicas.
func (b *Backend) Delete(ctx context.Context, namespace, name string) error {
	namespace = b.namespace(namespace)
	if err := b.store.deleteFunction(namespace, name); err != nil {
		return err
	}
	b.mu.Lock()
	f := b.functions[namespace+"/"+name]
	delete(b.functions, namespace+"/"+name)
	b.mu.Unlock()
	if f == nil {
		return nil
	}
	f.mu.Lock()
	f.deleted = true
	workers := make([]*worker, 0, len(f.workers))
	for _, w := range f.workers {
		workers = append(workers, w)
	}
	b.reconcileLocked(f)
	f.mu.Unlock()
	for _, w := range workers {
		select {
		case <-w.done:
		case <-ctx.Done():
		}
	}
	b.logs.forget(f.key)
	if b.cfg.Engine != nil {
		pool, err := b.cfg.Engine.Remove(ctx, f.key)
		if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			b.log.Error("engine: remove", "function", f.display, "err", err)
		}
		b.deleteSnapshots(pool)
	}
	b.log.Info("function deleted", "function", f.display)
	return nil
}

// Scale sets the desired replica count.
func (b *Backend) Scale(ctx context.Context, namespace, name string, replicas uint64) error {
	f, err := b.function(b.namespace(namespace), name)
	if err != nil {
		return err
	}
	return b.scale(f, replicas)
}

func (b *Backend) scale(f *function, replicas uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deleted {
		return fmt.Errorf("function %s: %w", f.display, errdefs.ErrNotFound)
	}
	if f.rec.Replicas == replicas {
		return nil
	}
	stored, err := b.store.updateFunction(f.namespace, f.name, func(r *record) error {
		r.Replicas = replicas
		return nil
	})
	if err != nil {
		return err
	}
	f.rec = stored
	f.failures, f.retryAt = 0, time.Time{}
	b.reconcileLocked(f)
	b.log.Info("function scaled", "function", f.display, "replicas", replicas)
	return nil
}

// Function reports one function's status.
func (b *Backend) Function(ctx context.Context, namespace, name string) (types.FunctionStatus, error) {
	f, err := b.function(b.namespace(namespace), name)
	if err != nil {
		return types.FunctionStatus{}, err
	}
	return b.status(f), nil
}

// Functions reports every function in namespace.
func (b *Backend) Functions(ctx context.Context, namespace string) ([]types.FunctionStatus, error) {
	namespace = b.namespace(namespace)
	b.mu.RLock()
	var fns []*function
	for _, f := range b.functions {
		if f.namespace == namespace {
			fns = append(fns, f)
		}
	}
	b.mu.RUnlock()
	out := make([]types.FunctionStatus, 0, len(fns))
	for _, f := range fns {
		out = append(out, b.status(f))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (b *Backend) status(f *function) types.FunctionStatus {
	f.mu.Lock()
	rec := f.rec
	f.mu.Unlock()
	d := rec.Deployment
	return types.FunctionStatus{
		Name: d.Service, Image: d.Image, Namespace: d.Namespace, EnvProcess: rec.Process,
		EnvVars: d.EnvVars, Constraints: d.Constraints, Secrets: d.Secrets,
		Labels: d.Labels, Annotations: d.Annotations, Limits: d.Limits, Requests: d.Requests,
		ReadOnlyRootFilesystem: d.ReadOnlyRootFilesystem,
		InvocationCount:        float64(f.invocations.Load()),
		Replicas:               rec.Replicas, AvailableReplicas: uint64(len(*f.ready.Load())), CreatedAt: rec.CreatedAt,
	}
}

// Namespaces lists the default namespace and every namespace in use.
func (b *Backend) Namespaces(ctx context.Context) ([]string, error) {
	set := map[string]bool{b.cfg.DefaultNamespace: true}
	b.mu.RLock()
	for _, f := range b.functions {
		set[f.namespace] = true
	}
	b.mu.RUnlock()
	secrets, err := b.store.secretNames("")
	if err != nil {
		return nil, err
	}
	for _, s := range secrets {
		set[s.Namespace] = true
	}
	out := make([]string, 0, len(set))
	for ns := range set {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out, nil
}

func (b *Backend) Secrets(ctx context.Context, namespace string) ([]types.Secret, error) {
	return b.store.secretNames(b.namespace(namespace))
}

func (b *Backend) CreateSecret(ctx context.Context, s types.Secret) error {
	s.Namespace = b.namespace(s.Namespace)
	return b.store.putSecret(s, secretCreate)
}

// UpdateSecret changes a secret's value; replicas started from now on see it.
func (b *Backend) UpdateSecret(ctx context.Context, s types.Secret) error {
	s.Namespace = b.namespace(s.Namespace)
	return b.store.putSecret(s, secretUpdate)
}

func (b *Backend) DeleteSecret(ctx context.Context, namespace, name string) error {
	return b.store.deleteSecret(b.namespace(namespace), name)
}

// Query answers the log API from the in-memory log book.
func (b *Backend) Query(ctx context.Context, req logs.Request) (<-chan logs.Message, error) {
	req.Namespace = b.namespace(req.Namespace)
	f, err := b.function(req.Namespace, req.Name)
	if err != nil {
		return nil, err
	}
	return b.logs.query(ctx, f.key, req), nil
}

// Acquire picks a ready replica, scaling from zero and waiting when there is
// none.
func (b *Backend) Acquire(ctx context.Context, namespace, name string) (handlers.Lease, error) {
	f, err := b.function(b.namespace(namespace), name)
	if err != nil {
		return nil, err
	}
	for {
		w := f.pick()
		if w == nil {
			if f.desiredReplicas() == 0 {
				if err := b.scale(f, 1); err != nil {
					return nil, err
				}
			}
			waitCtx, cancel := context.WithTimeout(ctx, b.cfg.ScaleFromZeroTimeout)
			w, err = f.waitReady(waitCtx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, fmt.Errorf("no ready replica of %s within %s: %w", f.display, b.cfg.ScaleFromZeroTimeout, errdefs.ErrUnavailable)
			}
		}
		w.inflight.Add(1)
		// A replica retired between pick and here is draining: go elsewhere.
		if w.retiring.Load() {
			w.inflight.Add(-1)
			continue
		}
		return &lease{b: b, f: f, w: w}, nil
	}
}

type lease struct {
	b *Backend
	f *function
	w *worker
}

func (l *lease) URL() *url.URL                { return l.w.invokeURL }
func (l *lease) Transport() http.RoundTripper { return l.w.transport }

func (l *lease) Release(o handlers.Outcome) {
	l.w.inflight.Add(-1)
	l.w.served.Add(1)
	l.f.invocations.Add(1)
	l.b.released(l.f, l.w, o)
}

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
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openfaas/faas-provider/logs"
	"github.com/openfaas/faas-provider/types"
	bolt "go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/agent"
	"github.com/pronghorn-openfaas/pronghorn/coordinator"
	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/funcspec"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/provider"
	"github.com/pronghorn-openfaas/pronghorn/sandbox"
	"github.com/pronghorn-openfaas/pronghorn/sandbox/network"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// DefaultFunctionUID and DefaultFunctionGID are those of the app user in
// OpenFaaS's templates.
const DefaultFunctionUID, DefaultFunctionGID = 1000, 1000

// Config tunes the local backend.
type Config struct {
	// DataDir holds the run directory with the workers' sockets.
	DataDir string
	// FunctionsDir is where an image name without a path is looked up. A
	// deploy's image must name a directory under it, symlinks resolved, or
	// under one of AllowedFunctionDirs.
	FunctionsDir string
	// AllowedFunctionDirs are more directories a deploy may name by absolute
	// path: each of them, and any directory under it.
	AllowedFunctionDirs []string
	// AgentCommand starts an agent: the provider's own binary and "agent".
	AgentCommand []string
	// Isolate puts each worker in its own namespaces (needs root). Off only
	// for tests that cannot be root.
	Isolate bool
	// Sandbox confines every isolated worker's function (package sandbox):
	// a private root, FunctionUser, no capabilities, seccomp. Off leaves
	// the function root on the host's file system, for development only.
	Sandbox bool
	// FunctionUser is who a sandboxed function runs as; zero means
	// DefaultFunctionUser.
	FunctionUser sandbox.Identity
	// WorkerTmpBytes bounds a sandboxed worker's /tmp and /dev/shm; 0 means
	// sandbox.DefaultTmpBytes.
	WorkerTmpBytes int64
	// Network, when set on an isolated backend, gives every worker egress
	// through the host, firewalled (package sandbox/network); nil leaves
	// workers with loopback only.
	Network          *network.Config
	DefaultNamespace string
	// MaxReplicas bounds every function's replica count; 0 means
	// funcspec.DefaultMaxReplicas.
	MaxReplicas uint64
	// PidsMax caps the tasks of a worker (agent, CRIU, the function and
	// its threads); 0 means DefaultPidsMax.
	PidsMax int64
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
	// DeleteRetryInterval is how often snapshot deletes the store refused
	// are tried again.
	DeleteRetryInterval time.Duration
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
	c.DefaultNamespace = funcspec.Namespace(c.DefaultNamespace, funcspec.DefaultNamespace)
	if c.FunctionUser == (sandbox.Identity{}) {
		c.FunctionUser = sandbox.Identity{UID: DefaultFunctionUID, GID: DefaultFunctionGID}
	}
	if err := c.FunctionUser.Validate(); err != nil {
		return fmt.Errorf("local backend: %w", err)
	}
	if c.Isolate && c.Sandbox {
		if _, err := os.Stat(sandbox.Setpriv); err != nil {
			return fmt.Errorf("local backend: sandboxed functions start through util-linux's setpriv: %w", err)
		}
	}
	if c.WorkerTmpBytes < 0 {
		return fmt.Errorf("local backend: negative worker /tmp size %d", c.WorkerTmpBytes)
	}
	if c.MaxReplicas == 0 {
		c.MaxReplicas = funcspec.DefaultMaxReplicas
	}
	if c.PidsMax <= 0 {
		c.PidsMax = DefaultPidsMax
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
	if c.DeleteRetryInterval <= 0 {
		c.DeleteRetryInterval = coordinator.DefaultDeleteRetry
	}
	return nil
}

// Backend implements provider.Backend with local processes.
type Backend struct {
	cfg    Config
	log    *slog.Logger
	store  *store
	logs   *logBook
	runDir string
	// workDir holds every CRIU image a worker restores from or dumps to.
	workDir string
	// sandboxReadOnly are host paths a sandboxed agent needs besides /usr:
	// a criu installed elsewhere.
	sandboxReadOnly []string
	// criuKerndat seeds every sandboxed worker's criu cache.
	criuKerndat []byte
	// net plumbs the workers' egress; nil without Config.Network.
	net   *network.Manager
	coord *coordinator.Coordinator
	names *nameLocks
	// restarts counts replicas that died or never became ready.
	restarts *prometheus.CounterVec

	closed atomic.Bool
	// Every goroutine the backend starts is tracked, so Close returns only
	// once none of them can still touch the state file or the store.
	tasksMu     sync.Mutex
	tasksClosed bool
	tasks       sync.WaitGroup

	mu        sync.RWMutex
	functions map[string]*function
}

var _ provider.Backend = (*Backend)(nil)

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
		runDir: filepath.Join(cfg.DataDir, "run"), functions: map[string]*function{}, names: newNameLocks(),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pronghorn_replica_restarts_total", Help: "Replicas that died or never became ready and were replaced.",
		}, []string{"function_name"}),
	}
	if n := killOrphans(b.runDir); n > 0 {
		b.log.Warn("stopped orphan workers of an earlier provider", "count", n)
	}
	if cfg.Isolate {
		removeStaleCgroups()
	}
	if err := os.RemoveAll(b.runDir); err != nil {
		return nil, fmt.Errorf("clean run dir: %w", err)
	}
	if err := os.MkdirAll(b.runDir, 0o700); err != nil {
		return nil, fmt.Errorf("create run dir: %w", err)
	}
	// The work dir holds CRIU images on their way to or from the store and
	// the local copies of pool images. What is there now was left by a
	// crash, and the seals of cached copies died with the last provider.
	// Workers must not read the state file or one another's images.
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	workDir := filepath.Join(cfg.DataDir, "work")
	b.workDir = workDir
	if cfg.Isolate && cfg.Network != nil {
		nc := *cfg.Network
		if nc.Logger == nil {
			nc.Logger = cfg.Logger
		}
		if b.net, err = network.New(ctx, nc); err != nil {
			return nil, fmt.Errorf("worker network: %w", err)
		}
	}
	if cfg.Isolate && cfg.Sandbox {
		b.sandboxReadOnly = criuInstallation(cfg.CRIUPath)
		if cfg.Store != nil {
			if b.criuKerndat, err = sandbox.CRIUKerndat(ctx, (&snapshot.CRIU{Path: cfg.CRIUPath}).Binary()); err != nil {
				b.log.Warn("workers probe the kernel at every dump and restore", "err", err)
			}
		}
	}
	_ = filepath.WalkDir(workDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o700) // sealed directories are read-only
		}
		return nil
	})
	if err := os.RemoveAll(workDir); err != nil {
		return nil, fmt.Errorf("clean work dir: %w", err)
	}
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	b.coord, err = coordinator.New(db, coordinator.Config{
		Engine: cfg.Engine, Store: cfg.Store, Defaults: cfg.EngineDefaults,
		WorkDir: workDir, DeleteRetry: cfg.DeleteRetryInterval, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	recs, bad, err := st.functions()
	if err != nil {
		return nil, fmt.Errorf("read functions: %w", err)
	}
	for k, err := range bad {
		b.quarantine(k, fmt.Errorf("its record cannot be read: %w", err))
	}
	for _, rec := range recs {
		// A record stored by an older provider, before function
		// directories were confined, may name any directory.
		if _, err := resolveImage(cfg.FunctionsDir, cfg.AllowedFunctionDirs, rec.Dir); err != nil {
			b.quarantine(string(key(rec.Deployment.Namespace, rec.Deployment.Service)), err)
			continue
		}
		rec = b.clampLoaded(rec)
		evictAfter, err := b.evictAfter(rec)
		if err != nil {
			b.log.Error("stored function's strategy is invalid, snapshots use the defaults", "function", rec.Deployment.Service, "err", err)
		}
		f := newFunction(rec, b.agentSpec(rec), b.coord.Function(rec.Deployment.Namespace, rec.Deployment.Service))
		f.evictAfter.Store(evictAfter)
		b.functions[f.key] = f
	}
	b.coord.CollectOrphans(ctx, func(fnKey string) bool { return b.functions[fnKey] != nil })
	for _, f := range b.functions {
		f.mu.Lock()
		b.reconcileLocked(f)
		f.mu.Unlock()
		b.log.Info("function restored", "function", f.display, "replicas", f.rec.Replicas)
	}
	return b, nil
}

// quarantine moves a stored function the provider will not run out of the
// way, keeping its record for the operator: the name is free again, and
// nothing stored is lost.
func (b *Backend) quarantine(k string, why error) {
	if err := b.store.quarantine(k, why.Error()); err != nil {
		b.log.Error("stored function skipped, and could not be set aside", "function", k, "reason", why, "err", err)
		return
	}
	b.log.Error("stored function skipped and set aside in the state file's quarantined-functions bucket", "function", k, "reason", why)
}

// clampLoaded brings a stored record within today's bounds, so a record
// written by an older provider, or by hand, cannot crash or flood this one.
func (b *Backend) clampLoaded(rec record) record {
	var labels map[string]string
	if rec.Deployment.Labels != nil {
		labels = *rec.Deployment.Labels
	}
	limit, err := funcspec.MaxReplicas(labels, b.cfg.MaxReplicas)
	if err != nil {
		limit = b.cfg.MaxReplicas
	}
	if rec.Replicas > limit {
		b.log.Warn("stored replica count above the maximum, clamped", "function", rec.Deployment.Service,
			"namespace", rec.Deployment.Namespace, "stored", rec.Replicas, "max", limit)
		if stored, err := b.store.updateFunction(rec.Deployment.Namespace, rec.Deployment.Service, func(r *record) error {
			r.Replicas = limit
			return nil
		}); err == nil {
			return stored
		}
		rec.Replicas = limit
	}
	return rec
}

// goTracked runs fn on a goroutine that Close waits for; after Close it
// runs nothing and reports false.
func (b *Backend) goTracked(fn func()) bool {
	b.tasksMu.Lock()
	defer b.tasksMu.Unlock()
	if b.tasksClosed {
		return false
	}
	b.tasks.Add(1)
	go func() {
		defer b.tasks.Done()
		fn()
	}()
	return true
}

// Close stops every worker but keeps the desired replica counts, so the next
// start brings them back. It returns once nothing the backend started is
// still running, or when ctx ends.
func (b *Backend) Close(ctx context.Context) error {
	if b.closed.Swap(true) {
		return nil
	}
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
	go func() {
		wg.Wait()
		b.tasksMu.Lock()
		b.tasksClosed = true
		b.tasksMu.Unlock()
		b.tasks.Wait()
		_ = b.coord.Close(ctx)
		if b.net != nil {
			if err := b.net.Close(ctx); err != nil {
				b.log.Warn("worker network not cleaned up", "err", err)
			}
		}
		close(done)
	}()
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

func (b *Backend) namespace(ns string) string { return funcspec.Namespace(ns, b.cfg.DefaultNamespace) }

// prepare validates a deploy or update request and resolves it to what will
// be stored. Nothing is stored when it fails.
func (b *Backend) prepare(req types.FunctionDeployment) (record, error) {
	req.Namespace = b.namespace(req.Namespace)
	if req.Service == "" {
		return record{}, fmt.Errorf("service name is required: %w", errdefs.ErrInvalid)
	}
	if err := funcspec.Validate(req, b.cfg.MaxReplicas); err != nil {
		return record{}, err
	}
	dir, err := resolveImage(b.cfg.FunctionsDir, b.cfg.AllowedFunctionDirs, req.Image)
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
	secrets, err := b.store.secretValues(req.Namespace, req.Secrets)
	if err != nil {
		return record{}, err
	}
	if err := checkSecretsFit(secrets); err != nil {
		return record{}, err
	}
	var annotations map[string]string
	if req.Annotations != nil {
		annotations = *req.Annotations
	}
	if _, err := b.coord.EngineConfig(annotations); err != nil {
		return record{}, err
	}
	var labels map[string]string
	if req.Labels != nil {
		labels = *req.Labels
	}
	return record{
		Deployment: req, Dir: dir, Process: process, Runtime: decl.Runtime, Env: decl.Env,
		Replicas: funcspec.MinReplicas(labels), CreatedAt: time.Now().UTC(),
	}, nil
}

// checkSecretsFit refuses secrets that would not fit the worker's secrets
// mount: better a 400 now than replicas that cannot start.
func checkSecretsFit(secrets map[string][]byte) error {
	var total int
	for _, v := range secrets {
		total += len(v)
	}
	if total > agent.MaxSecretsBytes {
		return fmt.Errorf("the function's secrets take %d bytes, more than the %d bytes of a worker's secrets mount: %w", total, agent.MaxSecretsBytes, errdefs.ErrInvalid)
	}
	return nil
}

// mergeEnv overlays the request's envVars on the directory's declared
// environment.
func mergeEnv(declared, requested map[string]string) map[string]string {
	out := make(map[string]string, len(declared)+len(requested))
	maps.Copy(out, declared)
	maps.Copy(out, requested)
	return out
}

// evictAfter returns the evict-after count of rec's strategy.
func (b *Backend) evictAfter(rec record) (int64, error) {
	if !b.coord.Enabled() {
		return 0, nil
	}
	var annotations map[string]string
	if rec.Deployment.Annotations != nil {
		annotations = *rec.Deployment.Annotations
	}
	cfg, err := b.coord.EngineConfig(annotations)
	if err != nil {
		return 0, err
	}
	return int64(cfg.EvictAfter), nil
}

func (b *Backend) agentSpec(rec record) agent.Config {
	return agent.Config{
		Dir:          rec.Dir,
		Process:      rec.Process,
		Env:          mergeEnv(rec.Env, rec.Deployment.EnvVars),
		ReadyTimeout: agent.Duration(b.cfg.ReadyTimeout),
	}
}

// Deploy stores a new function and starts its replicas. Once the record is
// written the deploy completes even if the client goes away, so a function
// is either wholly there or absent.
func (b *Backend) Deploy(ctx context.Context, req types.FunctionDeployment) error {
	rec, err := b.prepare(req)
	if err != nil {
		return err
	}
	k := rec.Deployment.Namespace + "/" + rec.Deployment.Service
	unlock := b.names.lock(k)
	defer unlock()
	if b.closed.Load() {
		return fmt.Errorf("provider is shutting down: %w", errdefs.ErrUnavailable)
	}
	if _, err := b.function(rec.Deployment.Namespace, rec.Deployment.Service); err == nil {
		return fmt.Errorf("function %s.%s: %w", rec.Deployment.Service, rec.Deployment.Namespace, errdefs.ErrAlreadyExists)
	}
	if err := b.store.createFunction(rec); err != nil {
		return err
	}
	evictAfter, _ := b.evictAfter(rec) // validated by prepare
	f := newFunction(rec, b.agentSpec(rec), b.coord.Function(rec.Deployment.Namespace, rec.Deployment.Service))
	f.evictAfter.Store(evictAfter)
	b.mu.Lock()
	b.functions[f.key] = f
	b.mu.Unlock()
	f.mu.Lock()
	b.reconcileLocked(f)
	f.mu.Unlock()
	b.log.Info("function deployed", "function", f.display, "dir", rec.Dir, "process", rec.Process)
	return nil
}

// Update replaces a function's definition; its replicas are replaced by new
// ones, and the old ones keep serving until the new ones are ready. New
// replicas never restore a snapshot of the old definition.
func (b *Backend) Update(ctx context.Context, req types.FunctionDeployment) error {
	rec, err := b.prepare(req)
	if err != nil {
		return err
	}
	unlock := b.names.lock(rec.Deployment.Namespace + "/" + rec.Deployment.Service)
	defer unlock()
	f, err := b.function(rec.Deployment.Namespace, rec.Deployment.Service)
	if err != nil {
		return err
	}
	stored, err := b.store.updateFunction(f.namespace, f.name, func(old *record) error {
		rec.CreatedAt = old.CreatedAt
		// As faas-netes: an update sets the count to a valid scale.min and
		// otherwise keeps it, within the new bounds.
		var labels map[string]string
		if rec.Deployment.Labels != nil {
			labels = *rec.Deployment.Labels
		}
		limit, _ := funcspec.MaxReplicas(labels, b.cfg.MaxReplicas) // validated by prepare
		if !scaleMinSet(labels) {
			rec.Replicas = old.Replicas
		}
		rec.Replicas = min(rec.Replicas, limit)
		*old = rec
		return nil
	})
	if err != nil {
		return err
	}
	evictAfter, _ := b.evictAfter(stored)
	f.evictAfter.Store(evictAfter)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rec, f.spec = stored, b.agentSpec(stored)
	f.generation++
	f.failures, f.retryAt, f.lastFailure = 0, time.Time{}, ""
	b.reconcileLocked(f)
	b.log.Info("function updated", "function", f.display)
	return nil
}

// scaleMinSet reports whether labels carry a scale.min that faas-netes
// would apply (a positive integer).
func scaleMinSet(labels map[string]string) bool {
	n, err := strconv.Atoi(labels[funcspec.LabelScaleMin])
	return err == nil && n > 0
}

// Delete removes a function, stops its replicas and drops its snapshots.
func (b *Backend) Delete(ctx context.Context, namespace, name string) error {
	namespace = b.namespace(namespace)
	unlock := b.names.lock(namespace + "/" + name)
	defer unlock()
	f, err := b.function(namespace, name)
	if err != nil {
		return err
	}
	if err := b.store.deleteFunction(namespace, name); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.functions, f.key)
	b.mu.Unlock()
	f.mu.Lock()
	f.deleted = true
	f.changed.Notify()
	workers := make([]*worker, 0, len(f.workers))
	for _, w := range f.workers {
		workers = append(workers, w)
	}
	b.reconcileLocked(f)
	f.mu.Unlock()
	// The record is gone: finish the clean-up even if the client is not
	// waiting any more, but answer it no later than it asked.
	for _, w := range workers {
		select {
		case <-w.done:
		case <-ctx.Done():
		}
	}
	b.logs.forget(f.key)
	b.coord.Remove(context.WithoutCancel(ctx), f.snap)
	b.log.Info("function deleted", "function", f.display)
	return nil
}

// Scale sets the desired replica count, within the function's bounds.
func (b *Backend) Scale(ctx context.Context, namespace, name string, replicas uint64) error {
	namespace = b.namespace(namespace)
	unlock := b.names.lock(namespace + "/" + name)
	defer unlock()
	f, err := b.function(namespace, name)
	if err != nil {
		return err
	}
	return b.scaleLocked(f, replicas)
}

// scaleLocked sets f's replica count; the caller holds f's name lock.
func (b *Backend) scaleLocked(f *function, replicas uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deleted {
		return fmt.Errorf("function %s: %w", f.display, errdefs.ErrNotFound)
	}
	var labels map[string]string
	if f.rec.Deployment.Labels != nil {
		labels = *f.rec.Deployment.Labels
	}
	if err := funcspec.CheckReplicas(replicas, labels, b.cfg.MaxReplicas); err != nil {
		return err
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
	f.failures, f.retryAt, f.lastFailure = 0, time.Time{}, ""
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

// Status annotations the provider adds to a function's own: the status
// type has no field for why replicas die, and an OOM kill is worth seeing
// in faas-cli describe.
const (
	annotationRestarts = "com.pronghorn.replica-restarts"
	annotationLastExit = "com.pronghorn.last-replica-exit"
)

func (b *Backend) status(f *function) types.FunctionStatus {
	f.mu.Lock()
	rec, restarts, lastExit := f.rec, f.restarts, f.lastExit
	f.mu.Unlock()
	d := rec.Deployment
	annotations := d.Annotations
	if restarts > 0 {
		m := map[string]string{}
		if d.Annotations != nil {
			maps.Copy(m, *d.Annotations)
		}
		m[annotationRestarts] = strconv.Itoa(restarts)
		m[annotationLastExit] = lastExit
		annotations = &m
	}
	return types.FunctionStatus{
		Name: d.Service, Image: d.Image, Namespace: d.Namespace, EnvProcess: rec.Process,
		EnvVars: d.EnvVars, Constraints: d.Constraints, Secrets: d.Secrets,
		Labels: d.Labels, Annotations: annotations, Limits: d.Limits, Requests: d.Requests,
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
	if err := checkSecretsFit(map[string][]byte{s.Name: secretValue(s)}); err != nil {
		return err
	}
	return b.store.putSecret(s, secretCreate)
}

// UpdateSecret changes a secret's value. As with a Kubernetes secret volume,
// running replicas that mount it see the new file; and since a secret is
// part of a function's version, no replica restores a snapshot whose memory
// may hold the old value.
func (b *Backend) UpdateSecret(ctx context.Context, s types.Secret) error {
	s.Namespace = b.namespace(s.Namespace)
	users := b.secretUsers(s.Namespace, s.Name)
	for _, f := range users {
		f.mu.Lock()
		names := f.rec.Deployment.Secrets
		f.mu.Unlock()
		values, err := b.store.secretValues(s.Namespace, names)
		if err != nil {
			continue // a secret it mounts is gone; its replicas report that
		}
		values[s.Name] = secretValue(s)
		if err := checkSecretsFit(values); err != nil {
			return fmt.Errorf("function %s: %w", f.display, err)
		}
	}
	if err := b.store.putSecret(s, secretUpdate); err != nil {
		return err
	}
	for _, f := range users {
		b.pushSecrets(ctx, f)
	}
	return nil
}

func secretValue(s types.Secret) []byte {
	if s.RawValue != nil {
		return s.RawValue
	}
	return []byte(s.Value)
}

// secretUsers returns the functions of namespace that mount secret name.
func (b *Backend) secretUsers(namespace, name string) []*function {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []*function
	for _, f := range b.functions {
		if f.namespace != namespace {
			continue
		}
		f.mu.Lock()
		if slices.Contains(f.rec.Deployment.Secrets, name) {
			out = append(out, f)
		}
		f.mu.Unlock()
	}
	return out
}

// pushSecrets hands f's current secret values to its running replicas.
// A replica that is not isolated has no secrets mount of its own to write.
func (b *Backend) pushSecrets(ctx context.Context, f *function) {
	if !b.cfg.Isolate {
		return
	}
	f.mu.Lock()
	names := f.rec.Deployment.Secrets
	workers := make([]*worker, 0, len(f.workers))
	for _, w := range f.workers {
		workers = append(workers, w)
	}
	f.mu.Unlock()
	values, err := b.store.secretValues(f.namespace, names)
	if err != nil {
		b.log.Warn("secrets not pushed", "function", f.display, "err", err)
		return
	}
	for _, w := range workers {
		if w.exited() || !w.started() {
			continue // a replica not started yet reads the new values at start
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err := w.updateSecrets(pctx, values)
		cancel()
		if err != nil {
			b.log.Warn("secrets not pushed to replica", "function", f.display, "worker", w.id, "err", err)
		}
	}
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

// crashLoopFailures is how many replicas in a row must die before they are
// ready for an invocation to fail at once instead of waiting.
const crashLoopFailures = 2

// Acquire picks a ready replica, scaling from zero and waiting when there is
// none. A function whose replicas keep dying fails the call at once, saying
// why, rather than after the whole scale-from-zero timeout.
func (b *Backend) Acquire(ctx context.Context, namespace, name string) (provider.Lease, error) {
	f, err := b.function(b.namespace(namespace), name)
	if err != nil {
		return nil, err
	}
	for {
		w := f.pick()
		if w == nil {
			if f.desiredReplicas() == 0 {
				unlock := b.names.lock(f.key)
				err := b.scaleLocked(f, 1)
				unlock()
				if err != nil {
					return nil, err
				}
			}
			waitCtx, cancel := context.WithTimeout(ctx, b.cfg.ScaleFromZeroTimeout)
			w, err = f.waitReady(waitCtx, crashLoopFailures)
			cancel()
			switch {
			case errors.Is(err, errCrashLoop):
				return nil, fmt.Errorf("%s: %w", f.display, err)
			case err != nil && ctx.Err() != nil:
				return nil, ctx.Err()
			case err != nil:
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

func (l *lease) Release(o provider.Outcome) {
	l.w.inflight.Add(-1)
	l.w.served.Add(1)
	l.f.invocations.Add(1)
	l.b.released(l.f, l.w, o)
}

// criuInstallation is what a sandboxed agent must see of the host to run
// criu: nothing for one under /usr, which every worker sees; otherwise the
// installation the binary (or wrapper) lies in, above its bin directory.
func criuInstallation(criuPath string) []string {
	if criuPath == "" {
		criuPath = snapshot.DefaultCRIUPath
	}
	if resolved, err := filepath.EvalSymlinks(criuPath); err == nil {
		criuPath = resolved
	}
	dir := filepath.Dir(criuPath)
	if base := filepath.Base(dir); base == "bin" || base == "sbin" {
		dir = filepath.Dir(dir)
	}
	if dir == "/" || dir == "/usr" || strings.HasPrefix(dir, "/usr/") {
		return nil
	}
	if _, err := os.Stat(dir); err != nil {
		return nil // no criu: dumps fail and are counted, workers serve on
	}
	return []string{dir}
}

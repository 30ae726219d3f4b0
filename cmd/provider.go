package cmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/openfaas/faas-provider/auth"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	bolt "go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/funcspec"
	"github.com/pronghorn-openfaas/pronghorn/handlers"
	"github.com/pronghorn-openfaas/pronghorn/k8s"
	"github.com/pronghorn-openfaas/pronghorn/local"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/provider"
)

type providerOptions struct {
	build            BuildInfo
	port             int
	dataDir          string
	functionsDir     string
	readTimeout      time.Duration
	writeTimeout     time.Duration
	basicAuth        bool
	secretMountPath  string
	namespace        string
	scaleFromZero    time.Duration
	readyTimeout     time.Duration
	maxBodyBytes     int
	maxReplicas      uint64
	isolate          bool
	shutdownDeadline time.Duration
	snapshots        snapshotOptions

	backend         string
	kubeconfig      string
	agentImage      string
	imagePullPolicy string
	providerURL     string
}

func newProviderCommand(build BuildInfo) *cobra.Command {
	o := providerOptions{build: build}
	cmd := &cobra.Command{
		Use:   "provider",
		Short: "Serve the faas-provider API: functions as namespaced processes on this machine (local) or as pods (kubernetes)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runProvider(ctx, o)
		},
	}
	fs := cmd.Flags()
	var errs []error
	note := func(err error) { errs = append(errs, err) }
	note(envInt(fs, &o.port, "port", "port", 8080, "TCP port of the API"))
	envString(fs, &o.dataDir, "data-dir", "data_dir", "/var/lib/pronghorn", "state directory: bbolt file, worker sockets, snapshots")
	envString(fs, &o.functionsDir, "functions-dir", "functions_dir", "/var/lib/pronghorn/functions", "where a deploy's image name is looked up as a function directory")
	note(envDuration(fs, &o.readTimeout, "read-timeout", "read_timeout", 60*time.Second, "HTTP read timeout"))
	note(envDuration(fs, &o.writeTimeout, "write-timeout", "write_timeout", 60*time.Second, "HTTP write timeout, bounds an invocation"))
	note(envBool(fs, &o.basicAuth, "basic-auth", "basic_auth", false, "require basic auth on /system/* with credentials from --secret-mount-path"))
	envString(fs, &o.secretMountPath, "secret-mount-path", "secret_mount_path", "/var/openfaas/secrets", "directory holding basic-auth-user and basic-auth-password")
	envString(fs, &o.namespace, "function-namespace", "function_namespace", "openfaas-fn", "namespace used when a request names none")
	note(envDuration(fs, &o.scaleFromZero, "scale-from-zero-timeout", "scale_from_zero_timeout", 30*time.Second, "how long an invocation waits for a replica"))
	note(envDuration(fs, &o.readyTimeout, "ready-timeout", "ready_timeout", 30*time.Second, "how long a new replica may take to answer"))
	note(envInt(fs, &o.maxBodyBytes, "max-body-bytes", "max_body_bytes", 1<<20, "largest JSON body accepted on /system/*"))
	note(envUint64(fs, &o.maxReplicas, "max-replicas", "max_replicas", funcspec.DefaultMaxReplicas,
		"most replicas any function may have; a function's com.openfaas.scale.max label may only lower it"))
	note(envBool(fs, &o.isolate, "isolate", "isolate", true, "run each replica in its own pid, net and mount namespaces (needs root)"))
	note(envDuration(fs, &o.shutdownDeadline, "shutdown-timeout", "shutdown_timeout", 30*time.Second, "how long shutdown waits for calls and replicas to end"))
	envString(fs, &o.backend, "backend", "backend", "local", "where functions run: local (namespaced processes on this machine) or kubernetes (pods)")
	envString(fs, &o.kubeconfig, "kubeconfig", "KUBECONFIG", "", "kubernetes: kubeconfig path (default: in-cluster, then ~/.kube/config)")
	envString(fs, &o.agentImage, "agent-image", "agent_image", "", "kubernetes: image holding /usr/bin/pronghorn, copied into every function pod as its agent")
	envString(fs, &o.imagePullPolicy, "image-pull-policy", "image_pull_policy", "Always", "kubernetes: pull policy of function pods")
	envString(fs, &o.providerURL, "provider-url", "provider_url", "", "kubernetes: URL at which agents reach this provider")
	errs = append(errs, o.snapshots.flags(fs)...)
	cmd.PreRunE = func(*cobra.Command, []string) error { return errors.Join(errs...) }
	return cmd
}

// maxReplicasLimit is what a Kubernetes Deployment's replicas (an int32)
// holds; no backend can honour more.
const maxReplicasLimit = 1<<31 - 1

// checkMaxReplicas refuses a ceiling of 0, which would make every function
// unscalable (and which the packages would read as "the default"), and one
// no backend can store.
func checkMaxReplicas(n uint64) error {
	if n < 1 || n > maxReplicasLimit {
		return fmt.Errorf("--max-replicas %d: want a whole number in 1..%d", n, uint64(maxReplicasLimit))
	}
	return nil
}

// runningBackend is a backend the provider serves and stops on shutdown.
type runningBackend interface {
	provider.Backend
	Close(ctx context.Context) error
}

func runProvider(ctx context.Context, o providerOptions) error {
	if err := checkMaxReplicas(o.maxReplicas); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	log.Info("starting provider", "version", o.build.Version, "backend", o.backend, "port", o.port, "data_dir", o.dataDir,
		"functions_dir", o.functionsDir, "read_timeout", o.readTimeout, "write_timeout", o.writeTimeout,
		"basic_auth", o.basicAuth, "secret_mount_path", o.secretMountPath, "function_namespace", o.namespace,
		"scale_from_zero_timeout", o.scaleFromZero, "ready_timeout", o.readyTimeout, "isolate", o.isolate,
		"max_replicas", o.maxReplicas,
		"snapshot_store", o.snapshots.store, "snapshot_encrypted", o.snapshots.keyFile != "", "criu", o.snapshots.criu,
		"strategy", o.snapshots.engine.Strategy, "evict_after", o.snapshots.engine.EvictAfter,
		"pool_capacity", o.snapshots.engine.PoolCapacity, "horizon", o.snapshots.engine.Horizon,
		"agent_image", o.agentImage)

	var creds *auth.BasicAuthCredentials
	if o.basicAuth {
		reader := auth.ReadBasicAuthFromDisk{SecretMountPath: o.secretMountPath}
		var err error
		if creds, err = reader.Read(); err != nil {
			return fmt.Errorf("basic auth: %w", err)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var backend runningBackend
	switch o.backend {
	case "local":
		b, closeState, err := openLocal(ctx, o, log)
		if err != nil {
			return err
		}
		defer closeState()
		reg.MustRegister(b.Collectors()...)
		backend = b
	case "kubernetes":
		b, err := openKubernetes(o, log)
		if err != nil {
			return err
		}
		backend = b
	default:
		return fmt.Errorf("--backend %q: want local or kubernetes", o.backend)
	}

	router, err := handlers.NewRouter(handlers.Config{
		BasicAuth: creds, WriteTimeout: o.writeTimeout,
		InvokeTimeout: o.writeTimeout, MaxBodyBytes: int64(o.maxBodyBytes), MaxReplicas: o.maxReplicas,
		ProviderName: "pronghorn", Version: o.build.Version, SHA: o.build.Commit,
		Orchestration: o.backend, DefaultNamespace: o.namespace,
	}, backend, reg)
	if err != nil {
		_ = backend.Close(context.Background())
		return err
	}
	return serve(ctx, o, log, router, backend)
}

// openLocal opens the state file, the snapshot store and the engine, and
// starts the local backend; closeState closes the state file after the
// backend has stopped.
func openLocal(ctx context.Context, o providerOptions, log *slog.Logger) (*local.Backend, func(), error) {
	if err := o.snapshots.engine.Validate(); err != nil {
		return nil, nil, fmt.Errorf("engine defaults: %w", err)
	}
	if o.isolate && os.Geteuid() != 0 {
		return nil, nil, fmt.Errorf("local mode runs every replica in its own namespaces and needs root; run as root (or pass --isolate=false for a development setup without isolation)")
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("data dir: %w", err)
	}
	db, err := bolt.Open(filepath.Join(o.dataDir, "pronghorn.db"), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("open state file (is another provider using %s?): %w", o.dataDir, err)
	}
	fail := func(err error) (*local.Backend, func(), error) {
		db.Close()
		return nil, nil, err
	}
	store, err := o.snapshots.openStore(ctx, o.dataDir, log)
	if err != nil {
		return fail(err)
	}
	engine, err := orchestrator.Open(db, orchestrator.WithLogger(log))
	if err != nil {
		return fail(err)
	}
	// The engine flushes its learning into the state file on Close, so it
	// closes after the backend and before the file.
	closeState := func() {
		_ = engine.Close(context.Background())
		db.Close()
	}
	b, err := local.New(ctx, db, local.Config{
		DataDir: o.dataDir, FunctionsDir: o.functionsDir, Isolate: o.isolate,
		DefaultNamespace: o.namespace, ScaleFromZeroTimeout: o.scaleFromZero,
		ReadyTimeout: o.readyTimeout, MaxReplicas: o.maxReplicas, Logger: log,
		Engine: engine, Store: store, EngineDefaults: o.snapshots.engine, CRIUPath: o.snapshots.criu,
	})
	if err != nil {
		closeState()
		return nil, nil, err
	}
	return b, closeState, nil
}

func openKubernetes(o providerOptions, log *slog.Logger) (*k8s.Backend, error) {
	if o.snapshots.store != "none" {
		log.Warn("snapshots are not yet orchestrated in kubernetes mode: workers start cold", "snapshot_store", o.snapshots.store)
	}
	client, err := k8s.ClientFromEnvironment(o.kubeconfig)
	if err != nil {
		return nil, err
	}
	return k8s.New(client, k8s.Config{
		DefaultNamespace: o.namespace, AgentImage: o.agentImage, ImagePullPolicy: o.imagePullPolicy,
		ScaleFromZeroTimeout: o.scaleFromZero, MaxReplicas: o.maxReplicas, ProviderURL: o.providerURL, Logger: log,
	})
}

// serve runs the API until ctx ends, then drains calls and stops the backend.
func serve(ctx context.Context, o providerOptions, log *slog.Logger, router http.Handler, backend runningBackend) error {
	srv := &http.Server{
		Handler:           router,
		ReadTimeout:       o.readTimeout,
		WriteTimeout:      o.writeTimeout,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    http.DefaultMaxHeaderBytes,
	}
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", o.port))
	if err != nil {
		_ = backend.Close(context.Background())
		return err
	}
	log.Info("provider listening", "addr", l.Addr().String())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-serveErr:
		log.Error("server stopped", "err", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), o.shutdownDeadline)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	if cerr := backend.Close(shutdownCtx); cerr != nil {
		log.Error("stop workers", "err", cerr)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

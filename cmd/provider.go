package cmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	bolt "go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/coordinator"
	"github.com/pronghorn-openfaas/pronghorn/funcspec"
	"github.com/pronghorn-openfaas/pronghorn/handlers"
	"github.com/pronghorn-openfaas/pronghorn/k8s"
	"github.com/pronghorn-openfaas/pronghorn/local"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/provider"
	"github.com/pronghorn-openfaas/pronghorn/sandbox"
	"github.com/pronghorn-openfaas/pronghorn/sandbox/network"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

type providerOptions struct {
	build            BuildInfo
	port             int
	dataDir          string
	functionsDir     string
	allowFnDirs      []string
	readTimeout      time.Duration
	writeTimeout     time.Duration
	basicAuth        bool
	secretMountPath  string
	namespace        string
	scaleFromZero    time.Duration
	readyTimeout     time.Duration
	maxBodyBytes     int
	maxReplicas      uint64
	pidsMax          int64
	isolate          bool
	sandbox          bool
	functionUID      int
	functionGID      int
	workerTmpMiB     int64
	workerNetwork    bool
	workerSubnet     string
	workerIfPrefix   string
	network          *network.Config // from the two above, by checkLocal
	shutdownDeadline time.Duration
	snapshots        snapshotOptions

	backend         string
	kubeconfig      string
	agentImage      string
	imagePullPolicy string
	providerURL     string
	kube            kubeFunctionOptions
	clusterConfig   clusterConfigOptions
}

// kubeFunctionOptions are faas-netes' settings for function pods, read
// from the same environment variables.
type kubeFunctionOptions struct {
	httpProbe                   bool
	readiness, liveness         probeOptions
	setNonRootUser, clusterRole bool
}

// probeOptions are one probe's timings in seconds.
type probeOptions struct{ initialDelay, timeout, period int }

func newProviderCommand(build BuildInfo) *cobra.Command {
	o := providerOptions{build: build}
	cmd := &cobra.Command{
		Use:   "provider",
		Short: "Serve the faas-provider API: functions as namespaced processes on this machine (local) or as pods (kubernetes)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			if o.backend == "kubernetes" {
				// Before anything reads the options: the cluster may set them.
				if err := loadClusterConfig(ctx, cmd.Flags(), &o, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
					return err
				}
			}
			return runProvider(ctx, o)
		},
	}
	fs := cmd.Flags()
	var errs []error
	note := func(err error) { errs = append(errs, err) }
	note(envInt(fs, &o.port, "port", "port", 8080, "TCP port of the API"))
	envString(fs, &o.dataDir, "data-dir", "data_dir", "/var/lib/pronghorn", "state directory: bbolt file, worker sockets, snapshots")
	envString(fs, &o.functionsDir, "functions-dir", "functions_dir", "/var/lib/pronghorn/functions",
		"where a deploy's image name is looked up as a function directory; an image must name a directory under it")
	envStringArray(fs, &o.allowFnDirs, "allow-function-dir", "allow_function_dirs",
		"local: a directory outside --functions-dir that a deploy's image may name by absolute path, as may any directory under it")
	note(envDuration(fs, &o.readTimeout, "read-timeout", "read_timeout", 60*time.Second, "HTTP read timeout"))
	note(envDuration(fs, &o.writeTimeout, "write-timeout", "write_timeout", 60*time.Second, "HTTP write timeout, bounds an invocation"))
	note(envBool(fs, &o.basicAuth, "basic-auth", "basic_auth", true,
		"require basic auth on /system/* with the credentials in --secret-mount-path; false lets anyone who reaches the API deploy code"))
	envString(fs, &o.secretMountPath, "secret-mount-path", "secret_mount_path", "",
		"directory holding basic-auth-user and basic-auth-password (default: local, <data-dir>/secrets, generated at first start; kubernetes, "+
			kubernetesSecretMountPath+")")
	envString(fs, &o.namespace, "function-namespace", "function_namespace", "openfaas-fn", "namespace used when a request names none")
	note(envDuration(fs, &o.scaleFromZero, "scale-from-zero-timeout", "scale_from_zero_timeout", 30*time.Second, "how long an invocation waits for a replica"))
	note(envDuration(fs, &o.readyTimeout, "ready-timeout", "ready_timeout", 30*time.Second, "how long a new replica may take to answer"))
	note(envInt(fs, &o.maxBodyBytes, "max-body-bytes", "max_body_bytes", 1<<20, "largest JSON body accepted on /system/*"))
	note(envUint64(fs, &o.maxReplicas, "max-replicas", "max_replicas", funcspec.DefaultMaxReplicas,
		"most replicas any function may have; a function's com.openfaas.scale.max label may only lower it"))
	note(envInt64(fs, &o.pidsMax, "worker-pids-max", "worker_pids_max", local.DefaultPidsMax,
		"local: the most tasks (processes and threads) one worker may have, agent and function together"))
	note(envBool(fs, &o.isolate, "isolate", "isolate", true, "run each replica in its own pid, net and mount namespaces (needs root)"))
	note(envBool(fs, &o.sandbox, "sandbox", "sandbox", true,
		"local: confine every function: private read-only root, --function-uid, no capabilities, seccomp (off only for development)"))
	note(envInt(fs, &o.functionUID, "function-uid", "function_uid", local.DefaultFunctionUID, "local: uid a sandboxed function runs as (never 0)"))
	note(envInt(fs, &o.functionGID, "function-gid", "function_gid", local.DefaultFunctionGID, "local: gid a sandboxed function runs as (never 0)"))
	note(envBool(fs, &o.workerNetwork, "worker-network", "worker_network", true,
		"local: give workers egress through the host (NAT), with the provider, the host's services and other workers firewalled off"))
	envString(fs, &o.workerSubnet, "worker-subnet", "worker_subnet", network.DefaultSubnet, "local: IPv4 subnet workers' addresses come from")
	envString(fs, &o.workerIfPrefix, "worker-interface-prefix", "worker_interface_prefix", network.DefaultHostIfPrefix,
		"local: name prefix of the workers' host-side interfaces, which this provider owns (it also names the nftables table pronghorn-<prefix>); two providers on one host need different prefixes and subnets")
	note(envInt64(fs, &o.workerTmpMiB, "worker-tmp-mib", "worker_tmp_mib", sandbox.DefaultTmpBytes>>20,
		"local: size of a sandboxed worker's /tmp (and /dev/shm) in MiB; it counts against the memory limit"))
	note(envDuration(fs, &o.shutdownDeadline, "shutdown-timeout", "shutdown_timeout", 30*time.Second, "how long shutdown waits for calls and replicas to end"))
	envString(fs, &o.backend, "backend", "backend", "local", "where functions run: local (namespaced processes on this machine) or kubernetes (pods)")
	envString(fs, &o.kubeconfig, "kubeconfig", "KUBECONFIG", "", "kubernetes: kubeconfig path (default: in-cluster, then ~/.kube/config)")
	envString(fs, &o.agentImage, "agent-image", "agent_image", "", "kubernetes: image holding /usr/bin/pronghorn, copied into every function pod as its agent")
	envString(fs, &o.imagePullPolicy, "image-pull-policy", "image_pull_policy", "Always", "kubernetes: pull policy of function pods")
	envString(fs, &o.providerURL, "provider-url", "provider_url", "", "kubernetes: URL at which agents reach this provider")
	errs = append(errs, o.kube.flags(fs)...)
	errs = append(errs, o.snapshots.flags(fs)...)
	o.clusterConfig.flags(fs)
	cmd.PreRunE = func(*cobra.Command, []string) error { return errors.Join(errs...) }
	return cmd
}

// flags defines faas-netes' function pod settings. Defaults are what
// faas-netes CE does, except http_probe: false in faas-netes' code, true in
// the OpenFaaS chart that every CE install uses.
func (k *kubeFunctionOptions) flags(fs *pflag.FlagSet) []error {
	errs := []error{
		envBool(fs, &k.httpProbe, "http-probe", "http_probe", true,
			"kubernetes: probe functions without the agent with GET /_/health on :8080 rather than cat /tmp/.lock"),
		envBool(fs, &k.setNonRootUser, "set-nonroot-user", "set_nonroot_user", false,
			"kubernetes: run function containers as user 12000 (not those that snapshot: CRIU needs root)"),
		envBool(fs, &k.clusterRole, "cluster-role", "cluster_role", false,
			`kubernetes: also serve namespaces annotated openfaas: "1" (needs RBAC there); off, only --function-namespace is served`),
	}
	def := k8s.DefaultProbeConfig()
	for _, p := range []struct {
		kind string
		o    *probeOptions
	}{{"readiness", &k.readiness}, {"liveness", &k.liveness}} {
		for _, f := range []struct {
			name string
			dst  *int
			def  int32
			what string
		}{
			{"initial-delay-seconds", &p.o.initialDelay, def.InitialDelaySeconds, "seconds before the first %s probe of a function pod"},
			{"timeout-seconds", &p.o.timeout, def.TimeoutSeconds, "timeout in seconds of a function pod's %s probe"},
			{"period-seconds", &p.o.period, def.PeriodSeconds, "seconds between %s probes of a function pod"},
		} {
			name := p.kind + "-probe-" + f.name // readiness-probe-timeout-seconds, env readiness_probe_timeout_seconds
			errs = append(errs, envInt(fs, f.dst, name, strings.ReplaceAll(name, "-", "_"), int(f.def),
				"kubernetes: "+fmt.Sprintf(f.what, p.kind)))
		}
	}
	return errs
}

// config is the probe configuration; a value an int32 cannot hold becomes
// -1, which the backend refuses along with the other values out of range.
func (p probeOptions) config() *k8s.ProbeConfig {
	fit := func(n int) int32 {
		if n < math.MinInt32 || n > math.MaxInt32 {
			return -1
		}
		return int32(n)
	}
	return &k8s.ProbeConfig{InitialDelaySeconds: fit(p.initialDelay), TimeoutSeconds: fit(p.timeout), PeriodSeconds: fit(p.period)}
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
	// Checked before the credentials, which may be written to the data dir.
	switch o.backend {
	case "local":
		if err := checkLocal(&o); err != nil {
			return err
		}
	case "kubernetes":
	default:
		return fmt.Errorf("--backend %q: want local or kubernetes", o.backend)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	log.Info("starting provider", "version", o.build.Version, "backend", o.backend, "port", o.port, "data_dir", o.dataDir,
		"functions_dir", o.functionsDir, "allow_function_dirs", o.allowFnDirs, "read_timeout", o.readTimeout, "write_timeout", o.writeTimeout,
		"basic_auth", o.basicAuth, "secret_mount_path", o.authSource().dir, "function_namespace", o.namespace,
		"scale_from_zero_timeout", o.scaleFromZero, "ready_timeout", o.readyTimeout, "isolate", o.isolate,
		"max_replicas", o.maxReplicas, "worker_pids_max", o.pidsMax,
		"snapshot_store", o.snapshots.store, "snapshot_encrypted", o.snapshots.keyFile != "", "criu", o.snapshots.criu,
		"strategy", o.snapshots.engine.Strategy, "evict_after", o.snapshots.engine.EvictAfter,
		"pool_capacity", o.snapshots.engine.PoolCapacity, "horizon", o.snapshots.engine.Horizon,
		"agent_image", o.agentImage)

	creds, err := loadBasicAuth(o, log)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var backend runningBackend
	var agentPlans http.Handler // kubernetes: pods ask for their start plans
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
		b, closeState, err := openKubernetes(ctx, o, log)
		if err != nil {
			return err
		}
		defer closeState()
		agentPlans = b.AgentHandler()
		backend = b
	}

	router, err := handlers.NewRouter(handlers.Config{
		BasicAuth: creds, WriteTimeout: o.writeTimeout,
		InvokeTimeout: o.writeTimeout, MaxBodyBytes: int64(o.maxBodyBytes), MaxReplicas: o.maxReplicas,
		ProviderName: "pronghorn", Version: o.build.Version, SHA: o.build.Commit,
		Orchestration: o.backend, DefaultNamespace: o.namespace,
		Extra: func(r *mux.Router, _ func(http.HandlerFunc) http.HandlerFunc) {
			// Not behind basic auth: a pod proves who it is with its own token.
			if agentPlans != nil {
				r.Handle(k8s.PlanPath, agentPlans).Methods(http.MethodPost)
			}
		},
	}, backend, reg)
	if err != nil {
		_ = backend.Close(context.Background())
		return err
	}
	return serve(ctx, o, log, router, backend)
}

// checkLocal refuses a local-mode configuration that cannot work, and makes
// the function directories absolute: they are compared with the absolute
// paths that deploys name.
func checkLocal(o *providerOptions) error {
	if err := o.snapshots.engine.Validate(); err != nil {
		return fmt.Errorf("engine defaults: %w", err)
	}
	if o.isolate && os.Geteuid() != 0 {
		return fmt.Errorf("local mode runs every replica in its own namespaces and needs root; run as root (or pass --isolate=false for a development setup without isolation)")
	}
	if o.workerNetwork {
		subnet, err := netip.ParsePrefix(o.workerSubnet)
		if err != nil {
			return fmt.Errorf("--worker-subnet: %w", err)
		}
		o.network = &network.Config{Subnet: subnet, HostIfPrefix: o.workerIfPrefix, Table: "pronghorn-" + o.workerIfPrefix}
		if err := o.network.Validate(); err != nil {
			return fmt.Errorf("--worker-subnet: %w", err)
		}
	}
	if o.workerTmpMiB < 1 || o.workerTmpMiB > 1<<20 {
		return fmt.Errorf("--worker-tmp-mib %d: must be between 1 and %d", o.workerTmpMiB, 1<<20)
	}
	if err := (sandbox.Identity{UID: o.functionUID, GID: o.functionGID}).Validate(); err != nil {
		return fmt.Errorf("--function-uid/--function-gid: %w", err)
	}
	dir, err := filepath.Abs(o.functionsDir)
	if err != nil {
		return fmt.Errorf("--functions-dir: %w", err)
	}
	o.functionsDir = dir
	allowed := make([]string, 0, len(o.allowFnDirs))
	for _, d := range o.allowFnDirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return fmt.Errorf("--allow-function-dir %q: %w", d, err)
		}
		allowed = append(allowed, abs)
	}
	o.allowFnDirs = allowed
	return nil
}

// openLocal opens the state file, the snapshot store and the engine, and
// starts the local backend; closeState closes the state file after the
// backend has stopped.
func openLocal(ctx context.Context, o providerOptions, log *slog.Logger) (*local.Backend, func(), error) {
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
		DataDir: o.dataDir, FunctionsDir: o.functionsDir, AllowedFunctionDirs: o.allowFnDirs, Isolate: o.isolate, PidsMax: o.pidsMax,
		Sandbox: o.sandbox, FunctionUser: sandbox.Identity{UID: o.functionUID, GID: o.functionGID}, WorkerTmpBytes: o.workerTmpMiB << 20, Network: o.network,
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

// openKubernetes starts the Kubernetes backend and, with a snapshot store,
// its snapshot coordinator, whose state file lives in the data dir (a
// volume that outlives the provider's pod); closeState closes it after the
// backend has stopped.
func openKubernetes(ctx context.Context, o providerOptions, log *slog.Logger) (*k8s.Backend, func(), error) {
	if len(o.allowFnDirs) > 0 {
		log.Warn("--allow-function-dir has no effect in kubernetes mode: images are container images there")
	}
	client, err := k8s.ClientFromEnvironment(o.kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	coord, closeState, err := openKubernetesSnapshots(ctx, o, log)
	if err != nil {
		return nil, nil, err
	}
	b, err := k8s.New(client, k8s.Config{
		DefaultNamespace: o.namespace, AgentImage: o.agentImage, ImagePullPolicy: o.imagePullPolicy,
		ScaleFromZeroTimeout: o.scaleFromZero, MaxReplicas: o.maxReplicas, ProviderURL: o.providerURL,
		Snapshots: coord, Logger: log,
		HTTPProbe: o.kube.httpProbe, ReadinessProbe: o.kube.readiness.config(), LivenessProbe: o.kube.liveness.config(),
		SetNonRootUser: o.kube.setNonRootUser, ClusterRole: o.kube.clusterRole,
	})
	if err != nil {
		closeState()
		return nil, nil, err
	}
	return b, closeState, nil
}

// openKubernetesSnapshots opens the coordinator of kubernetes mode, or
// none when there is no store: pods then start cold.
func openKubernetesSnapshots(ctx context.Context, o providerOptions, log *slog.Logger) (*coordinator.Coordinator, func(), error) {
	if o.snapshots.store == "none" {
		return nil, func() {}, nil
	}
	if o.providerURL == "" {
		log.Warn("no --provider-url: function pods cannot ask for their plans and start cold")
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("data dir: %w", err)
	}
	db, err := bolt.Open(filepath.Join(o.dataDir, "pronghorn.db"), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("open state file (is another provider using %s?): %w", o.dataDir, err)
	}
	store, err := o.snapshots.openStore(ctx, o.dataDir, log)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	if _, ok := store.(snapshot.Presigner); !ok {
		log.Warn("the snapshot store cannot presign URLs (only MinIO/S3 without --snapshot-key-file can): function pods start cold", "snapshot_store", o.snapshots.store)
	}
	engine, err := orchestrator.Open(db, orchestrator.WithLogger(log))
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	coord, err := coordinator.New(db, coordinator.Config{
		Engine: engine, Store: store, Defaults: o.snapshots.engine,
		WorkDir: filepath.Join(o.dataDir, "work"), Logger: log,
	})
	if err != nil {
		_ = engine.Close(ctx)
		db.Close()
		return nil, nil, err
	}
	return coord, func() {
		_ = coord.Close(context.Background())
		_ = engine.Close(context.Background())
		db.Close()
	}, nil
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

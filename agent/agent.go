package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// stopGrace is how long the function gets to exit after SIGTERM.
const stopGrace = 5 * time.Second

// Agent supervises one function process.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	funcLog  io.Writer
	reaper   *reaper
	upstream string // host:port the function listens on

	upstreamPort int
	transport    *http.Transport // to the function; its idle connections close before a dump
	// gate holds calls back while a checkpoint runs.
	gate    gate
	secrets *secretFiles
	// client reaches the provider and, through presigned URLs, the store.
	client     *http.Client
	planPolicy planPolicy

	proc  atomic.Pointer[process]
	ready atomic.Bool
	// restoreErr says why a requested restore fell back to a cold start.
	restoreErr     atomic.Pointer[string]
	restoreCorrupt atomic.Bool
	restored       atomic.Bool
	restoreDur     atomic.Int64
	fetchDur       atomic.Int64
	checkpointing  sync.Mutex
	// served counts the calls the function answered below 500, and plan
	// is the start plan followed (pods only): a restarted provider reads
	// both to take the pod over (Status).
	served atomic.Int64
	plan   atomic.Pointer[PlanStatus]
	// confined is the entered sandbox, nil for an unconfined function.
	confined *confinement
}

// Status is the control API's view of the worker.
type Status struct {
	Ready bool `json:"ready"`
	PID   int  `json:"pid"`
	// Restored is true when the function was restored from a snapshot.
	Restored bool `json:"restored"`
	// RestoreError is why a requested restore failed (the function then
	// started cold).
	RestoreError string `json:"restoreError,omitempty"`
	// RestoreCorrupt is true when that failure proves the snapshot bad
	// (snapshot.ProvenBad): its images are damaged. Any other failure says
	// nothing about the snapshot, which should be kept.
	RestoreCorrupt bool `json:"restoreCorrupt,omitempty"`
	// RestoreTime is how long CRIU took to restore the function.
	RestoreTime time.Duration `json:"restoreTime,omitempty"`
	// FetchTime is how long downloading, verifying and unpacking a remote
	// image took before that (pods only).
	FetchTime time.Duration `json:"fetchTime,omitempty"`
	// Served is how many calls the function answered in this worker with
	// a status below 500: the calls the provider's engine learns from.
	Served int64 `json:"served"`
	// Plan is the start plan the agent followed and how its start went;
	// nil without one (local mode, or no answer from the provider).
	Plan *PlanStatus `json:"plan,omitempty"`
}

// New prepares an agent; funcLog receives the function's stdout and stderr.
func New(cfg Config, log *slog.Logger, funcLog io.Writer) (*Agent, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	u, err := cfg.upstream()
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		port = 80
	}
	return &Agent{cfg: cfg, log: log, funcLog: funcLog, upstream: u.Host, upstreamPort: port,
		secrets: newSecretFiles(cfg.SecretsDir), client: newHTTPClient(),
		planPolicy: planPolicy{attempt: planAttempt, window: planWindow, backoff: planBackoff}}, nil
}

// Run sets up the worker, starts the function and serves until ctx ends or
// the function exits. A function that exits is an error: the provider decides
// whether to start a new worker.
func (a *Agent) Run(ctx context.Context) error {
	// CRIU cannot dump a descriptor on a mount outside the worker: make sure
	// nothing the agent inherited reaches the function.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		a.log.Warn("close inherited descriptors", "err", err)
	}
	// Go's first process start probes clone(CLONE_PIDFD) with a child of
	// its own, which would take the PID pinned for the function: probe now.
	if self, err := os.FindProcess(os.Getpid()); err == nil {
		self.Release()
	}
	a.reaper = newReaper()
	defer a.reaper.Close()

	if a.cfg.Isolated {
		if err := privateMounts(); err != nil {
			return fmt.Errorf("worker namespaces: %w", err)
		}
	}
	invokeL, err := listen(a.cfg.InvokeSocket, a.cfg.InvokeAddr)
	if err != nil {
		return err
	}
	controlL, err := listen(a.cfg.ControlSocket, a.cfg.ControlAddr)
	if err != nil {
		invokeL.Close()
		return err
	}
	if a.cfg.Isolated {
		if err := a.setupWorker(); err != nil {
			invokeL.Close()
			controlL.Close()
			return fmt.Errorf("worker namespaces: %w", err)
		}
	}
	upstreamURL, _ := a.cfg.upstream()
	proxy, transport := newInvokeHandler(upstreamURL, &a.served)
	a.transport = transport
	gated := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.gate.enter(r.Context()); err != nil {
			http.Error(w, "call given up while a checkpoint held it back: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer a.gate.leave()
		proxy.ServeHTTP(w, r)
	})
	invokeSrv := &http.Server{Handler: gated, ReadHeaderTimeout: 10 * time.Second}
	controlSrv := &http.Server{Handler: a.controlHandler(), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 2)
	go func() { serveErr <- invokeSrv.Serve(invokeL) }()
	go func() { serveErr <- controlSrv.Serve(controlL) }()
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = invokeSrv.Shutdown(shutdownCtx)
		_ = controlSrv.Shutdown(shutdownCtx)
	}()

	started := time.Now()
	var p *process
	switch {
	case a.cfg.RestoreDir != "":
		p = a.tryRestore(func() (*process, error) {
			dir, err := a.imagesPath(a.cfg.RestoreDir)
			if err != nil {
				return nil, err
			}
			return a.restore(ctx, dir)
		})
	case a.cfg.ProviderURL != "":
		p = a.planStart(ctx)
	}
	if p == nil {
		if p, err = startFunction(a.cfg, a.reaper, a.funcLog, a.log); err != nil {
			return err
		}
	}
	a.proc.Store(p)
	if err := waitListening(ctx, a.upstream, p, time.Duration(a.cfg.ReadyTimeout)); err != nil {
		a.stop(p)
		return err
	}
	a.ready.Store(true)
	a.log.Info("function ready", "function", a.cfg.Function, "pid", p.pid, "restored", a.restored.Load(),
		"startup", time.Since(started).Round(time.Microsecond))

	select {
	case <-ctx.Done():
		a.ready.Store(false)
		a.stop(p)
		return nil
	case <-p.done:
		a.ready.Store(false)
		return fmt.Errorf("function exited: %s", describeExit(p.status))
	case err := <-serveErr:
		a.stop(p)
		return fmt.Errorf("agent server: %w", err)
	}
}

// tryRestore runs restore and records how it went for the status: nil
// means the function is to start cold.
func (a *Agent) tryRestore(restore func() (*process, error)) *process {
	p, err := restore()
	if err != nil {
		msg := err.Error()
		a.restoreErr.Store(&msg)
		a.restoreCorrupt.Store(snapshot.ProvenBad(err))
		a.log.Warn("restore failed, starting cold", "function", a.cfg.Function, "err", err,
			"snapshotBad", snapshot.ProvenBad(err))
		return nil
	}
	a.restored.Store(true)
	return p
}

// stop asks the function to exit, then kills it; the process group goes too,
// so helpers the function spawned do not outlive it.
func (a *Agent) stop(p *process) {
	_ = unix.Kill(-p.pid, unix.SIGTERM)
	_ = unix.Kill(p.pid, unix.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = unix.Kill(-p.pid, unix.SIGKILL)
		_ = unix.Kill(p.pid, unix.SIGKILL)
		<-p.done
	}
}

func (a *Agent) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st := Status{Ready: a.ready.Load(), Restored: a.restored.Load(), RestoreTime: time.Duration(a.restoreDur.Load()),
			FetchTime: time.Duration(a.fetchDur.Load()), Served: a.served.Load(), Plan: a.plan.Load()}
		if p := a.proc.Load(); p != nil {
			st.PID = p.pid
		}
		if msg := a.restoreErr.Load(); msg != nil {
			st.RestoreError = *msg
			st.RestoreCorrupt = a.restoreCorrupt.Load()
		}
		w.Header().Set("Content-Type", "application/json")
		if !st.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("POST /checkpoint", func(w http.ResponseWriter, r *http.Request) {
		var req CheckpointRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			http.Error(w, checkpointUsage+": "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := req.validate(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !a.checkpointing.TryLock() {
			http.Error(w, "a checkpoint is already running", http.StatusConflict)
			return
		}
		defer a.checkpointing.Unlock()
		res, err := a.checkpoint(r.Context(), req)
		if err != nil {
			a.log.Warn("checkpoint failed", "function", a.cfg.Function, "err", err)
			status := http.StatusInternalServerError
			if errors.As(err, new(*inFlightError)) {
				status = http.StatusServiceUnavailable // busy now, may work later
			}
			http.Error(w, "checkpoint failed: "+strings.ReplaceAll(err.Error(), "\n", " | "), status)
			return
		}
		a.log.Info("checkpoint", "function", a.cfg.Function, "dump", res.DumpTime, "frozen", res.FrozenTime, "bytes", res.ImageBytes,
			"packedBytes", res.PackedBytes, "upload", res.UploadTime)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("PUT /secrets", func(w http.ResponseWriter, r *http.Request) {
		var req SecretsUpdate
		// Values are base64 in JSON: 4/3 of MaxSecretsBytes, plus names.
		body := http.MaxBytesReader(w, r.Body, 2*MaxSecretsBytes)
		if err := json.NewDecoder(body).Decode(&req); err != nil {
			status := http.StatusBadRequest
			if errors.As(err, new(*http.MaxBytesError)) {
				status = http.StatusRequestEntityTooLarge
			}
			http.Error(w, "body must be {\"secrets\": {\"<name>\": \"<base64>\"}}: "+err.Error(), status)
			return
		}
		if req.Secrets == nil {
			// Not an empty set: that would remove every secret.
			http.Error(w, "body must be {\"secrets\": {\"<name>\": \"<base64>\"}}: no secrets field", http.StatusBadRequest)
			return
		}
		if err := a.secrets.replace(req.Secrets); err != nil {
			status := http.StatusInternalServerError
			switch {
			case errors.Is(err, errSecretInvalid):
				status = http.StatusBadRequest
			case errors.Is(err, errSecretsTooLarge):
				status = http.StatusRequestEntityTooLarge
			}
			a.log.Warn("update secrets", "function", a.cfg.Function, "err", err)
			http.Error(w, "update secrets: "+err.Error(), status)
			return
		}
		a.log.Info("secrets updated", "function", a.cfg.Function, "count", len(req.Secrets))
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func listen(socket, addr string) (net.Listener, error) {
	if socket != "" {
		if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket %s: %w", socket, err)
		}
		l, err := net.Listen("unix", socket)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", socket, err)
		}
		return l, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return l, nil
}

// Main is the agent process's entry point: config from stdin, the function's
// output to stdout, the agent's own log to stderr, until SIGTERM.
func Main(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, workerID string) error {
	cfg, err := ReadConfig(stdin)
	if err != nil {
		return err
	}
	a, err := New(cfg, slog.New(slog.NewTextHandler(stderr, nil)).With("worker", workerID), stdout)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

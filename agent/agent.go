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
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
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

	proc  atomic.Pointer[process]
	ready atomic.Bool
}

// Status is the control API's view of the worker.
type Status struct {
	Ready bool `json:"ready"`
	PID   int  `json:"pid"`
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
	return &Agent{cfg: cfg, log: log, funcLog: funcLog, upstream: u.Host}, nil
}

// Run sets up the worker, starts the function and serves until ctx ends or
// the function exits. A function that exits is an error: the provider decides
// whether to start a new worker.
func (a *Agent) Run(ctx context.Context) error {
	a.reaper = newReaper()
	defer a.reaper.Close()

	if a.cfg.Isolated {
		if err := setupNamespaces(a.cfg.SecretsDir, a.cfg.Secrets); err != nil {
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
	upstreamURL, _ := a.cfg.upstream()
	invokeSrv := &http.Server{Handler: newInvokeHandler(upstreamURL), ReadHeaderTimeout: 10 * time.Second}
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

	p, err := startFunction(a.cfg, a.reaper, a.funcLog)
	if err != nil {
		return err
	}
	a.proc.Store(p)
	started := time.Now()
	if err := waitListening(ctx, a.upstream, p, time.Duration(a.cfg.ReadyTimeout), a.log); err != nil {
		a.stop(p)
		return err
	}
	a.ready.Store(true)
	a.log.Info("function ready", "function", a.cfg.Function, "pid", p.pid, "startup", time.Since(started).Round(time.Microsecond))

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
		st := Status{Ready: a.ready.Load()}
		if p := a.proc.Load(); p != nil {
			st.PID = p.pid
		}
		w.Header().Set("Content-Type", "application/json")
		if !st.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(st)
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

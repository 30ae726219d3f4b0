package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/openfaas/faas-provider/auth"
	"github.com/spf13/cobra"

	"github.com/pronghorn-openfaas/pronghorn/benchmarks/eval"
)

// newBenchEvalCommand runs the paper's evaluation (docs/architecture.md) against a
// provider over HTTP: every benchmark × strategy × eviction rate, then the
// latency CSV, Tables 4 and 5, CDF figures and an HTML index.
func newBenchEvalCommand() *cobra.Command {
	o := eval.DefaultOptions()
	var (
		intervalPyPy, intervalJVM, intervalNode time.Duration
		startProvider                           bool
		functionsDir                            string
		providerArgs                            []string
	)
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Run the paper's evaluation against a provider: latency CSV, Tables 4-5, CDF figures, index.html",
		Long: `Deploys each benchmark under every strategy and eviction rate, sends sequential
requests, records client and server latency per request (latency.csv, written
as it goes), then writes summary, table4 and table5 (.csv and .md), runs.csv,
one latency CDF per (benchmark, rate) under figures/ and index.html into --out.

With --start-provider it starts this binary's provider itself (as root) on a
free port with a temporary data dir, and stops it at the end. The full
protocol (13 benchmarks, 3 strategies, 3 rates, 500 requests) takes about
4-6 hours.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.Intervals = map[string]time.Duration{"pypy": intervalPyPy, "jvm": intervalJVM, "node": intervalNode}
			o.Stdout = cmd.OutOrStdout()
			if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
				return fmt.Errorf("out dir: %w", err)
			}
			if startProvider {
				p, err := startEvalProvider(ctx, functionsDir, filepath.Join(o.OutDir, "provider.log"), providerArgs)
				if err != nil {
					return err
				}
				defer p.stop()
				o.Gateway, o.User, o.Password = p.url, p.creds.User, p.creds.Password
				fmt.Fprintf(o.Stdout, "eval: provider %s (pid %d, log %s)\n", p.url, p.cmd.Process.Pid, p.logPath)
			}
			return eval.Run(ctx, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Gateway, "gateway", o.Gateway, "provider or gateway URL (ignored with --start-provider)")
	envString(fs, &o.User, "user", "basic_auth_user", defaultAuthUser, "basic auth user of --gateway (ignored with --start-provider)")
	envString(fs, &o.Password, "password", "basic_auth_password", "",
		"basic auth password of --gateway, sent when set (prefer the environment: flags show in ps; ignored with --start-provider)")
	fs.StringSliceVar(&o.Benchmarks, "benchmarks", o.Benchmarks, "benchmark functions (directory names under the provider's functions dir)")
	fs.StringSliceVar(&o.Strategies, "strategies", o.Strategies, "strategies: cold, fixed, request-centric, bandit")
	fs.IntSliceVar(&o.Rates, "rates", o.Rates, "eviction rates E (requests a worker serves)")
	fs.IntVar(&o.Requests, "requests", o.Requests, "sequential requests per benchmark, strategy and rate")
	fs.DurationVar(&intervalPyPy, "interval-pypy", o.Intervals["pypy"], "pause after each response, PyPy functions")
	fs.DurationVar(&intervalJVM, "interval-jvm", o.Intervals["jvm"], "pause after each response, JVM functions")
	fs.DurationVar(&intervalNode, "interval-node", o.Intervals["node"], "pause after each response, Node functions")
	fs.DurationVar(&o.DefaultInterval, "interval", o.DefaultInterval, "pause after each response, functions of unknown runtime")
	fs.Float64Var(&o.Mutability, "mutability", o.Mutability, "relative stddev of the handlers' input size")
	fs.Int64Var(&o.Seed, "seed", o.Seed, "seed of the engine's decisions and of the request inputs")
	fs.IntVar(&o.PoolCapacity, "pool-capacity", o.PoolCapacity, "pool capacity C of request-centric and bandit")
	fs.IntVar(&o.CheckpointAt, "checkpoint-at", o.CheckpointAt, "T of the fixed strategy")
	fs.IntVar(&o.PollEvery, "poll-every", o.PollEvery, "scrape /metrics after every N-th request (peak storage, dump/restore times)")
	fs.DurationVar(&o.ReadyTimeout, "ready-timeout", o.ReadyTimeout, "wait for a deployed function's first replica")
	fs.DurationVar(&o.Settle, "settle", o.Settle, "wait after a run's last request before reading its final state")
	fs.DurationVar(&o.RequestTimeout, "request-timeout", o.RequestTimeout, "bound of one invocation")
	fs.StringVar(&o.OutDir, "out", o.OutDir, "output directory")
	fs.BoolVar(&startProvider, "start-provider", false, "start this binary's provider on a free port with a temporary data dir, and stop it at the end (needs root)")
	fs.StringVar(&functionsDir, "functions-dir", filepath.Join("benchmarks", "functions"), "functions dir of the started provider")
	fs.StringArrayVar(&providerArgs, "provider-arg", nil, "extra flag for the started provider (repeatable), e.g. --provider-arg=--criu=/path/criu")
	return cmd
}

type evalProvider struct {
	cmd     *exec.Cmd
	url     string
	creds   *auth.BasicAuthCredentials
	dataDir string
	logPath string
	logFile *os.File
	done    chan error
}

// startEvalProvider runs this same binary as a provider, so the evaluation
// measures exactly the build that drives it.
func startEvalProvider(ctx context.Context, functionsDir, logPath string, extra []string) (*evalProvider, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start provider: %w", err)
	}
	abs, err := filepath.Abs(functionsDir)
	if err != nil {
		return nil, fmt.Errorf("start provider: %w", err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("start provider: functions dir: %w", err)
	}
	port, err := freeTCPPort()
	if err != nil {
		return nil, fmt.Errorf("start provider: %w", err)
	}
	dataDir, err := os.MkdirTemp("", "pronghorn-eval-")
	if err != nil {
		return nil, fmt.Errorf("start provider: %w", err)
	}
	// The provider runs with basic auth on, as it does by default, so the
	// evaluation measures the configuration users run (auth guards only
	// /system/*, never the measured invocations). Its credentials are
	// written here first, so the driver knows them without waiting for
	// the provider to create them.
	secrets := filepath.Join(dataDir, "secrets")
	if _, err := ensureBasicAuthFiles(secrets); err != nil {
		os.RemoveAll(dataDir)
		return nil, fmt.Errorf("start provider: %w", err)
	}
	creds, err := readBasicAuth(secrets)
	if err != nil {
		os.RemoveAll(dataDir)
		return nil, fmt.Errorf("start provider: %w", err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dataDir)
		return nil, fmt.Errorf("start provider: %w", err)
	}
	// Named explicitly, so a basic_auth or secret_mount_path in the
	// environment cannot leave the provider with other credentials than
	// the driver sends.
	args := append([]string{"provider", "--port", strconv.Itoa(port), "--data-dir", dataDir, "--functions-dir", abs,
		"--basic-auth=true", "--secret-mount-path", secrets}, extra...)
	// Not CommandContext: the provider gets SIGTERM and time to retire its
	// workers in stop, not a SIGKILL when ctx ends.
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(dataDir)
		return nil, fmt.Errorf("start provider: %w", err)
	}
	p := &evalProvider{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), creds: creds, dataDir: dataDir, logPath: logPath, logFile: logFile, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	if err := p.waitHealthy(ctx, 30*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("start provider (log %s): %w", logPath, err)
	}
	return p, nil
}

func (p *evalProvider) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/healthz", nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err // stop waits on it too
			return fmt.Errorf("provider exited: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("provider not healthy: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop asks the provider to shut down (it stops its workers), kills it if
// it takes too long, and removes its data dir (state and snapshots).
func (p *evalProvider) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(45 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.logFile.Close()
	if err := os.RemoveAll(p.dataDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "eval: remove %s: %v\n", p.dataDir, err)
	}
}

func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

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
	"golang.org/x/term"

	"github.com/pronghorn-openfaas/pronghorn/benchmarks/eval"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// newBenchEvalCommand runs the paper's evaluation (docs/architecture.md) against a
// provider over HTTP, in resumable chunks, then writes the report. Its
// subcommands regenerate the report (report) and fit the simulator to the
// measured traces (calibrate) from the CSVs alone.
func newBenchEvalCommand() *cobra.Command {
	o := eval.DefaultOptions()
	var (
		intervalPyPy, intervalJVM, intervalNode time.Duration
		startProvider, quick                    bool
		functionsDir, progressMode, criuPath    string
		providerArgs                            []string
	)
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Run the paper's evaluation against a provider, in resumable chunks, and write the report",
		Long: `Deploys each benchmark under every strategy and eviction rate, sends sequential
requests and records per request the client and server latency, the lineage
request number, the worker, and (with --start-provider or --provider-pid) the
CPU the provider and its workers spent. Per benchmark and seed it also runs a
never-evicted worker (the warm-up curve and the floor) and a probe (a
checkpoint, a restore and a cold start measured one at a time, for their CPU
cost).

Every (benchmark, strategy, rate, seed) run is a chunk: a directory under
--out/runs written as a whole when the run completes. Rerunning with the same
--out skips the completed chunks, so an interrupted protocol resumes. At the
end the report (README.md, PNG and SVG figures, CSV tables) is written to
--report-dir from the chunks alone; "pronghorn bench eval report" rewrites it.

With --start-provider it starts this binary's provider itself (as root) on a
free port with a temporary data dir, and stops it at the end. The full
protocol (13 benchmarks, 4 strategies, 3 rates, 500 requests) takes most of a
day on two cores; --quick is the reduced grid of make eval-quick.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if quick {
				applyQuick(cmd, &o)
			}
			o.Intervals = map[string]time.Duration{"pypy": intervalPyPy, "jvm": intervalJVM, "node": intervalNode}
			o.Stdout = cmd.OutOrStdout()
			o.Build = cmd.Root().Version
			mode, err := parseProgress(progressMode, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			o.Progress = mode
			if o.CRIU = criuPath; o.CRIU == "" {
				o.CRIU = os.Getenv("criu_path")
			}
			if o.CRIU == "" {
				o.CRIU = snapshot.DefaultCRIUPath
			}
			if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
				return fmt.Errorf("out dir: %w", err)
			}
			if err := ignoreLogs(o.OutDir); err != nil {
				return err
			}
			if startProvider {
				if criuPath != "" {
					providerArgs = append([]string{"--criu", criuPath}, providerArgs...)
				}
				logPath := filepath.Join(o.OutDir, "logs", "provider-"+time.Now().UTC().Format("20060102T150405Z")+".log")
				p, err := startEvalProvider(ctx, functionsDir, logPath, providerArgs)
				if err != nil {
					return err
				}
				defer p.stop()
				o.Gateway, o.User, o.Password = p.url, p.creds.User, p.creds.Password
				o.ProviderPID, o.ProviderLog = p.cmd.Process.Pid, p.logPath
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
	fs.IntVar(&o.Requests, "requests", o.Requests, "sequential requests per run")
	fs.Int64SliceVar(&o.Seeds, "seeds", o.Seeds, "seeds: every configuration runs once per seed (engine decisions and request inputs)")
	fs.IntVar(&o.WarmupRequests, "warmup-requests", o.WarmupRequests, "requests of the never-evicted warm-up run per benchmark and seed (0: --requests; negative: none)")
	fs.IntVar(&o.ProbeReps, "probe-reps", o.ProbeReps, "repetitions of the mechanism probe per benchmark and seed (negative: no probes)")
	fs.IntVar(&o.ProbeAt, "probe-at", o.ProbeAt, "request the probe checkpoints")
	fs.DurationVar(&intervalPyPy, "interval-pypy", o.Intervals["pypy"], "pause after each response, PyPy functions")
	fs.DurationVar(&intervalJVM, "interval-jvm", o.Intervals["jvm"], "pause after each response, JVM functions")
	fs.DurationVar(&intervalNode, "interval-node", o.Intervals["node"], "pause after each response, Node functions")
	fs.DurationVar(&o.DefaultInterval, "interval", o.DefaultInterval, "pause after each response, functions of unknown runtime")
	fs.Float64Var(&o.Mutability, "mutability", o.Mutability, "relative stddev of the handlers' input size")
	fs.IntVar(&o.PoolCapacity, "pool-capacity", o.PoolCapacity, "pool capacity C of request-centric and bandit")
	fs.IntVar(&o.CheckpointAt, "checkpoint-at", o.CheckpointAt, "T of the fixed strategy")
	fs.IntVar(&o.PollEvery, "poll-every", o.PollEvery, "scrape /metrics after every N-th request (peak storage, dump/restore times)")
	fs.DurationVar(&o.ReadyTimeout, "ready-timeout", o.ReadyTimeout, "wait for a deployed function's first replica")
	fs.DurationVar(&o.Settle, "settle", o.Settle, "wait after a run's last request before reading its final state")
	fs.DurationVar(&o.RequestTimeout, "request-timeout", o.RequestTimeout, "bound of one invocation")
	fs.StringVar(&o.OutDir, "out", o.OutDir, "results directory; completed chunks in it are skipped")
	fs.StringVar(&o.ReportDir, "report-dir", "", "where the report goes (default <out>/report)")
	fs.BoolVar(&o.NoReport, "no-report", false, "do not write the report at the end")
	fs.BoolVar(&quick, "quick", false, "the reduced grid of make eval-quick: bfs and simple-hash, 25 requests, seeds 1,2,3 (flags given explicitly win)")
	fs.StringVar(&progressMode, "progress", "auto", "progress display: bar, lines, none, or auto (a bar on a terminal, lines otherwise)")
	fs.IntVar(&o.ProviderPID, "provider-pid", 0, "pid of the provider under --gateway, to sample its and its workers' CPU (set by --start-provider)")
	fs.StringVar(&o.ProviderLog, "provider-log", "", "log file of the provider under --gateway, for checkpoint freeze times (set by --start-provider)")
	fs.StringVar(&criuPath, "criu", "", "criu binary: recorded with the results, and passed to the provider --start-provider starts (default: $criu_path, else "+snapshot.DefaultCRIUPath+")")
	fs.BoolVar(&startProvider, "start-provider", false, "start this binary's provider on a free port with a temporary data dir, and stop it at the end (needs root)")
	fs.StringVar(&functionsDir, "functions-dir", filepath.Join("benchmarks", "functions"), "functions dir of the started provider")
	fs.StringArrayVar(&providerArgs, "provider-arg", nil, "extra flag for the started provider (repeatable), e.g. --provider-arg=--snapshot-store=...")
	cmd.AddCommand(newBenchReportCommand(), newBenchCalibrateCommand())
	return cmd
}

// applyQuick replaces the grid with eval.QuickOptions where the user did
// not set a flag explicitly.
func applyQuick(cmd *cobra.Command, o *eval.Options) {
	q := eval.QuickOptions()
	set := func(name string, apply func()) {
		if !cmd.Flags().Changed(name) {
			apply()
		}
	}
	set("benchmarks", func() { o.Benchmarks = q.Benchmarks })
	set("strategies", func() { o.Strategies = q.Strategies })
	set("rates", func() { o.Rates = q.Rates })
	set("requests", func() { o.Requests = q.Requests })
	set("seeds", func() { o.Seeds = q.Seeds })
	set("warmup-requests", func() { o.WarmupRequests = q.WarmupRequests })
	set("probe-reps", func() { o.ProbeReps = q.ProbeReps })
	set("probe-at", func() { o.ProbeAt = q.ProbeAt })
}

// parseProgress resolves --progress; auto draws a bar only on a terminal.
func parseProgress(mode string, out io.Writer) (eval.ProgressMode, error) {
	switch mode {
	case "bar":
		return eval.ProgressBar, nil
	case "lines":
		return eval.ProgressLines, nil
	case "none":
		return eval.ProgressNone, nil
	case "auto", "":
		if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return eval.ProgressBar, nil
		}
		return eval.ProgressLines, nil
	}
	return 0, fmt.Errorf("--progress %q: want bar, lines, none or auto", mode)
}

// ignoreLogs keeps the provider logs of a results directory out of git:
// results directories are meant to be committed, logs are large and local.
func ignoreLogs(dir string) error {
	path := filepath.Join(dir, ".gitignore")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.WriteFile(path, []byte("# Written by pronghorn bench eval: provider logs stay local.\nlogs/\n"), 0o644); err != nil {
		return fmt.Errorf("results dir: %w", err)
	}
	return nil
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
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
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

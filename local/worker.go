package local

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/openfaas/faas-provider/types"

	"github.com/pronghorn-openfaas/pronghorn/agent"
	"github.com/pronghorn-openfaas/pronghorn/coordinator"
	"github.com/pronghorn-openfaas/pronghorn/sandbox/network"
)

// errRetiredBeforeStart is the exit reason of a worker stopped before its
// agent was started.
var errRetiredBeforeStart = errors.New("retired before it started")

// worker is one replica: an agent process in namespaces of its own, reached
// over two unix sockets (invocations, control).
type worker struct {
	id         string
	generation uint64
	invokeURL  *url.URL
	transport  *http.Transport
	control    *http.Client
	out        lineWriter

	mu  sync.Mutex
	cmd *exec.Cmd // nil until the agent is started

	// snap is the worker's part in the snapshot life cycle, set once its
	// start is planned.
	snap atomic.Pointer[coordinator.Worker]

	ready    atomic.Bool
	retiring atomic.Bool
	inflight atomic.Int64
	served   atomic.Int64

	done     chan struct{} // closed when the agent has exited, or will never start
	exitErr  error         // valid after done
	oomKills uint64        // tasks the kernel killed at the memory limit; valid after done
	lastLine atomic.Pointer[string]
}

func newWorkerID() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func unixTransport(socket string) *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

func newWorker(runDir string, generation uint64, out lineWriter) *worker {
	id := out.instance
	return &worker{
		id:         id,
		generation: generation,
		invokeURL:  &url.URL{Scheme: "http", Host: id},
		transport:  unixTransport(filepath.Join(runDir, id+".i")),
		control:    &http.Client{Transport: unixTransport(filepath.Join(runDir, id+".c"))},
		out:        out,
		done:       make(chan struct{}),
	}
}

// start launches the worker's agent with spec. The agent becomes PID 1 of
// fresh pid, net, mount, uts and ipc namespaces when b isolates, and dies
// with the provider (Pdeathsig) so a killed provider leaves no orphans.
func (w *worker) start(b *Backend, spec agent.Config, limits *types.FunctionResources) error {
	spec.InvokeSocket = filepath.Join(b.runDir, w.id+".i")
	spec.ControlSocket = filepath.Join(b.runDir, w.id+".c")
	spec.Isolated = b.cfg.Isolate
	if b.cfg.Isolate && b.cfg.Sandbox {
		root := filepath.Join(b.runDir, w.id+".root")
		if err := os.Mkdir(root, 0o700); err != nil {
			return fmt.Errorf("worker root: %w", err)
		}
		spec.Sandbox = &agent.SandboxConfig{
			Root: root, Identity: b.cfg.FunctionUser, TmpBytes: b.cfg.WorkerTmpBytes,
			ReadOnly: b.sandboxReadOnly, ImagesDir: b.workDir, CRIUKerndat: b.criuKerndat,
			Hidden: []string{b.cfg.DataDir, b.cfg.FunctionsDir},
		}
	}
	args := append(append([]string(nil), b.cfg.AgentCommand[1:]...), "--run-dir", b.runDir, "--id", w.id)
	cmd := exec.Command(b.cfg.AgentCommand[0], args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if b.cfg.Isolate {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC
	}
	// The config carries secrets: hand it over stdin, never argv or env.
	// The agent starts nothing before it has read it, so the worker is in
	// its cgroup before any of its processes can run.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	output, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout

	var cg workerCgroup
	if b.cfg.Isolate {
		res, err := cgroupResources(limits, b.cfg.PidsMax)
		if err != nil {
			return err
		}
		if cg, err = newWorkerCgroup(w.id, res); err != nil {
			return err
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.retiring.Load() {
		deleteCgroup(cg)
		return errRetiredBeforeStart
	}
	if err := cmd.Start(); err != nil {
		deleteCgroup(cg)
		return fmt.Errorf("start agent: %w", err)
	}
	fail := func(err error) error {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		deleteCgroup(cg)
		if b.net != nil {
			_ = b.net.Detach(context.Background(), w.id)
		}
		return err
	}
	if cg != nil {
		if err := cg.add(cmd.Process.Pid); err != nil {
			return fail(fmt.Errorf("worker cgroup: %w", err))
		}
	}
	// The agent waits for its config: the network is there before the
	// function can run.
	if b.net != nil {
		att, err := b.net.Attach(context.Background(), w.id, fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
		if err != nil {
			return fail(fmt.Errorf("worker network: %w", err))
		}
		if spec.Sandbox != nil {
			spec.Sandbox.ResolvConf = att.ResolvConf
		}
	}
	payload, err := json.Marshal(spec)
	if err != nil {
		return fail(err)
	}
	w.cmd = cmd
	go func() {
		_, _ = stdin.Write(payload)
		_ = stdin.Close()
	}()
	go func() {
		w.pump(output)
		w.exitErr = cmd.Wait()
		if cg != nil {
			w.oomKills = cg.oomKills()
			deleteCgroup(cg)
		}
		if spec.Sandbox != nil {
			os.Remove(spec.Sandbox.Root) // an empty mount point on the host
		}
		w.ready.Store(false)
		w.transport.CloseIdleConnections()
		close(w.done)
		// After done: the kernel takes a few milliseconds more to remove
		// the dead namespace's interface, which no one need wait for.
		if b.net != nil {
			if err := b.net.Detach(context.Background(), w.id); err != nil && !errors.Is(err, network.ErrClosed) {
				b.log.Warn("worker network not released", "worker", w.id, "err", err)
			}
		}
	}()
	return nil
}

// dumping reports whether the worker is about to be, or being, dumped.
func (w *worker) dumping() bool {
	snap := w.snap.Load()
	return snap != nil && snap.Dumping()
}

// checkpointing reports whether a checkpoint of the worker is in flight.
func (w *worker) checkpointing() bool {
	snap := w.snap.Load()
	return snap != nil && snap.Checkpointing()
}

// started reports whether the agent process was started.
func (w *worker) started() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cmd != nil
}

// exited reports whether the agent has exited (or never started).
func (w *worker) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// abandon marks a worker that will never start as done.
func (w *worker) abandon(err error) {
	w.exitErr = err
	close(w.done)
}

// pump copies the agent's output into the log book, keeping the last line:
// when a replica dies, that is usually why.
func (w *worker) pump(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		w.out.write(line)
		w.lastLine.Store(&line)
	}
}

// exitReason says why the agent exited, with its last output line.
func (w *worker) exitReason() string {
	if w.oomKills > 0 {
		return "out of memory: the function was killed at its memory limit"
	}
	reason := "exit status 0"
	if w.exitErr != nil {
		reason = w.exitErr.Error()
	}
	if last := w.lastLine.Load(); last != nil {
		reason += ` (last output: "` + *last + `")`
	}
	return reason
}

// readyPoll is how often waitReady asks a starting agent: a status call on
// its unix socket is cheap, and every interval waited out is latency the
// call that scaled from zero pays (a doubling backoff cost up to 100 ms).
const readyPoll = 2 * time.Millisecond

// waitReady polls the agent's control socket until the function answers, the
// agent exits, or ctx ends, and returns the agent's status.
func (w *worker) waitReady(ctx context.Context) (agent.Status, error) {
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		var st agent.Status
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/status", nil)
		if resp, err := w.control.Do(req); err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return st, nil
			}
		}
		select {
		case <-w.done:
			return st, fmt.Errorf("worker %s exited before it was ready: %v", w.id, w.exitErr)
		case <-ctx.Done():
			return st, fmt.Errorf("worker %s not ready: %w", w.id, ctx.Err())
		case <-tick.C:
		}
	}
}

// checkpoint asks the agent to dump its function into dir.
func (w *worker) checkpoint(ctx context.Context, dir string) (agent.CheckpointResult, error) {
	var res agent.CheckpointResult
	body, _ := json.Marshal(agent.CheckpointRequest{Dir: dir})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent/checkpoint", bytes.NewReader(body))
	resp, err := w.control.Do(req)
	if err != nil {
		return res, fmt.Errorf("agent: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return res, fmt.Errorf("agent: %s", bytes.TrimSpace(msg))
	}
	return res, json.NewDecoder(resp.Body).Decode(&res)
}

// updateSecrets replaces the secret files of the running worker.
func (w *worker) updateSecrets(ctx context.Context, secrets map[string][]byte) error {
	body, err := json.Marshal(struct {
		Secrets map[string][]byte `json:"secrets"`
	}{secrets})
	if err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://agent/secrets", bytes.NewReader(body))
	resp, err := w.control.Do(req)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("agent: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// stop asks the agent to shut its function down, then kills it if it has not
// exited within grace.
func (w *worker) stop(grace time.Duration) {
	w.retiring.Store(true)
	w.ready.Store(false)
	w.mu.Lock()
	cmd := w.cmd
	w.mu.Unlock()
	if cmd == nil {
		// Not started: its run goroutine sees retiring and gives up.
		<-w.done
		return
	}
	select {
	case <-w.done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(grace):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-w.done
	}
}

package local

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/agent"
)

// worker is one replica: an agent process in namespaces of its own, reached
// over two unix sockets (invocations, control).
type worker struct {
	id         string
	generation uint64
	invokeURL  *url.URL
	transport  *http.Transport
	control    *http.Client
	cmd        *exec.Cmd

	ready    atomic.Bool
	retiring atomic.Bool
	inflight atomic.Int64
	served   atomic.Int64

	done    chan struct{} // closed when the agent process has exited
	exitErr error         // valid after done
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

// startWorker launches an agent for cfg. The agent becomes PID 1 of fresh pid,
// net, mount, uts and ipc namespaces when isolate is set, and dies with the
// provider (Pdeathsig) so a killed provider leaves no orphan workers.
func startWorker(b *Backend, fn *function, spec agent.Config, generation uint64, out lineWriter) (*worker, error) {
	id := out.instance
	spec.InvokeSocket = filepath.Join(b.runDir, id+".i")
	spec.ControlSocket = filepath.Join(b.runDir, id+".c")
	spec.Isolated = b.cfg.Isolate
	spec.Function = fn.display

	payload, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	args := append(append([]string(nil), b.cfg.AgentCommand[1:]...), "--run-dir", b.runDir, "--id", id)
	cmd := exec.Command(b.cfg.AgentCommand[0], args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if b.cfg.Isolate {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	output, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	// The config carries secrets: hand it over a pipe, never argv or env.
	_, werr := stdin.Write(payload)
	stdin.Close()
	if werr != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("send agent config: %w", werr)
	}

	w := &worker{
		id:         id,
		generation: generation,
		invokeURL:  &url.URL{Scheme: "http", Host: id},
		transport:  unixTransport(spec.InvokeSocket),
		control:    &http.Client{Transport: unixTransport(spec.ControlSocket), Timeout: 5 * time.Second},
		cmd:        cmd,
		done:       make(chan struct{}),
	}
	go func() {
		pump(output, out)
		w.exitErr = cmd.Wait()
		w.ready.Store(false)
		w.transport.CloseIdleConnections()
		close(w.done)
	}()
	return w, nil
}

func pump(r io.Reader, out lineWriter) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		out.write(sc.Text())
	}
}

// waitReady polls the agent's control socket until the function answers, the
// agent exits, or ctx ends.
func (w *worker) waitReady(ctx context.Context) error {
	delay := 2 * time.Millisecond
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/status", nil)
		if resp, err := w.control.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-w.done:
			return fmt.Errorf("worker %s exited before it was ready: %v", w.id, w.exitErr)
		case <-ctx.Done():
			return fmt.Errorf("worker %s not ready: %w", w.id, ctx.Err())
		case <-time.After(delay):
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// stop asks the agent to shut its function down, then kills it if it has not
// exited within grace.
func (w *worker) stop(grace time.Duration) {
	w.retiring.Store(true)
	w.ready.Store(false)
	select {
	case <-w.done:
		return
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(grace):
		_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
		<-w.done
	}
}

package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pronghorn-openfaas/pronghorn/sandbox"
)

// functionPID is where every function process lands in an isolated worker,
// so that a snapshot restores into the same PID in any fresh namespace.
const functionPID = 1000

// process is the running function: started cold here, or restored.
type process struct {
	pid    int
	done   chan struct{} // closed when the process has exited
	status unix.WaitStatus
}

func watchProcess(pid int, exited <-chan unix.WaitStatus) *process {
	p := &process{pid: pid, done: make(chan struct{})}
	go func() {
		p.status = <-exited
		close(p.done)
	}()
	return p
}

// startFunction starts the fprocess with stdin from /dev/null and stdout and
// stderr piped to the agent's log: CRIU cannot dump a descriptor that points
// at something outside the worker, so the function gets nothing else.
func startFunction(cfg Config, rp *reaper, logOut io.Writer, log *slog.Logger) (*process, error) {
	argv := strings.Fields(cfg.Process)
	path, err := lookPath(argv[0], cfg.Env)
	if err != nil {
		return nil, err
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devNull.Close()

	cmd := exec.Command(path, argv[1:]...)
	cmd.Dir = cfg.Dir
	if cfg.Sandbox != nil {
		cmd = sandbox.Command(cfg.Sandbox.Identity, path, argv)
		cmd.Dir = sandbox.FunctionPath
	}
	cmd.Env = environ(cfg.Env)
	cmd.Stdin = devNull
	cmd.Stdout = stdoutW
	cmd.Stderr = stdoutW
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true}

	pid, exited, err := rp.Spawn(func() (int, error) {
		switch {
		case cfg.Isolated:
			if err := pinNextPID(functionPID - 1); err != nil {
				return 0, fmt.Errorf("pin function pid: %w", err)
			}
		case cfg.ProviderURL != "" && os.Getpid() == 1:
			// A pod's snapshots restore in other pods, whose agents' own
			// threads and criu take the low PIDs. A pod that may not pin
			// (not privileged) still serves; its checkpoints are refused.
			// An agent that is not PID 1 does not own its pid namespace,
			// and moving ns_last_pid there would move everyone's.
			if err := pinNextPID(functionPID - 1); err != nil {
				log.Warn("cannot pin the function's PID; this pod's snapshots are off", "function", cfg.Function, "err", err)
			}
		}
		start := cmd.Start
		if cfg.Sandbox != nil {
			start = func() error { return sandbox.Start(cmd) }
		}
		if err := start(); err != nil {
			return 0, fmt.Errorf("start %q: %w", cfg.Process, err)
		}
		return cmd.Process.Pid, nil
	})
	stdoutW.Close()
	if err != nil {
		stdoutR.Close()
		return nil, err
	}
	// The reaper owns the exit status; os/exec must not wait as well.
	_ = cmd.Process.Release()
	go copyLines(stdoutR, logOut)
	return watchProcess(pid, exited), nil
}

func copyLines(r io.ReadCloser, w io.Writer) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fmt.Fprintf(w, "%s\n", sc.Bytes())
	}
}

// environ builds the function's environment: a minimal base plus the
// deployment's envVars, which win.
func environ(env map[string]string) []string {
	base := map[string]string{
		"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME": "/tmp",
		"LANG": "C.UTF-8",
	}
	for k, v := range env {
		base[k] = v
	}
	out := make([]string, 0, len(base))
	for k, v := range base {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func lookPath(name string, env map[string]string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := env["PATH"]
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	for _, dir := range strings.Split(path, ":") {
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("function process %q: not found in PATH", name)
}

// listenPoll is how often waitListening tries the function's port. A
// refused connection on loopback costs microseconds, and every poll
// interval a start waits out is latency its first call pays: a doubling
// backoff once added up to 50 ms to a 70 ms cold start.
const listenPoll = 2 * time.Millisecond

// waitListening polls until the function accepts TCP connections on its
// upstream address, it exits, or the timeout passes.
func waitListening(ctx context.Context, addr string, p *process, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(listenPoll)
	defer tick.Stop()
	for {
		conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("function exited before listening on %s: %s", addr, describeExit(p.status))
		case <-ctx.Done():
			return fmt.Errorf("function not listening on %s after %s", addr, timeout)
		case <-tick.C:
		}
	}
}

func describeExit(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		// Signal's String is the bare description ("killed"); the name
		// reads unambiguously in a log line.
		return fmt.Sprintf("killed by %s", unix.SignalName(ws.Signal()))
	default:
		return fmt.Sprintf("wait status %#x", uint32(ws))
	}
}

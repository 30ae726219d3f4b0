package agent

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// connectionDrainTimeout bounds how long a checkpoint waits for the
// function's client connections to close.
const connectionDrainTimeout = 500 * time.Millisecond

// CheckpointRequest asks the agent to dump the running function into Dir
// (which must exist and be empty), leaving the function running.
type CheckpointRequest struct {
	Dir string `json:"dir"`
}

// CheckpointResult reports a dump.
type CheckpointResult struct {
	DumpTime   time.Duration `json:"dumpTime"`
	FrozenTime time.Duration `json:"frozenTime"`
	ImageBytes int64         `json:"imageBytes"`
	PID        int           `json:"pid"`
}

// restore starts the function from the images in dir. Its stdout and stderr
// become a fresh pipe to the agent's log, as for a cold start.
func (a *Agent) restore(ctx context.Context, dir string) (*process, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// The images may be shared with other workers restoring at the same
	// time, so criu's log goes to a directory of our own.
	work, err := os.MkdirTemp("", "pronghorn-restore-")
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	defer os.RemoveAll(work)
	criu := &snapshot.CRIU{Path: a.cfg.CRIUPath}
	pid, exited, err := a.reaper.Spawn(func() (int, error) {
		return criu.Restore(ctx, dir, snapshot.RestoreOptions{Stdout: w, Stderr: w, WorkDir: work})
	})
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	go copyLines(r, a.funcLog)
	return watchProcess(pid, exited), nil
}

// checkpoint dumps the function with CRIU, leaving it running. Calls are
// held back meanwhile; if those in flight do not finish within
// CheckpointDrain, the checkpoint is given up instead. The agent's idle
// connections to the function are closed first: a single-threaded server
// dumped while blocked reading a keep-alive connection would, once restored
// where that peer does not exist, wait on it forever instead of accepting
// new calls.
func (a *Agent) checkpoint(ctx context.Context, req CheckpointRequest) (CheckpointResult, error) {
	p := a.proc.Load()
	if p == nil || !a.ready.Load() {
		return CheckpointResult{}, fmt.Errorf("function not running")
	}
	open, err := a.gate.close(ctx, time.Duration(a.cfg.CheckpointDrain))
	if err != nil {
		return CheckpointResult{}, err
	}
	defer open()
	a.transport.CloseIdleConnections()
	if err := waitNoConnections(ctx, a.upstreamPort, connectionDrainTimeout); err != nil {
		return CheckpointResult{}, err
	}
	resume := a.reaper.Hold() // go-criu waits for its criu child itself
	defer resume()
	criu := &snapshot.CRIU{Path: a.cfg.CRIUPath}
	st, err := criu.Dump(ctx, p.pid, req.Dir, snapshot.DumpOptions{})
	if err != nil {
		return CheckpointResult{}, err
	}
	return CheckpointResult{DumpTime: st.Duration, FrozenTime: st.FrozenTime, ImageBytes: st.ImageBytes, PID: p.pid}, nil
}

// waitNoConnections waits until no established TCP connection in this
// network namespace has the function's port on either end.
func waitNoConnections(ctx context.Context, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n := establishedOnPort(port)
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d connections to the function still open after %s", n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func establishedOnPort(port int) int {
	n := 0
	for _, path := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "01" { // 01 = ESTABLISHED
				continue
			}
			if hexPort(fields[1]) == port || hexPort(fields[2]) == port {
				n++
			}
		}
		f.Close()
	}
	return n
}

func hexPort(addr string) int {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return -1
	}
	v, err := strconv.ParseUint(addr[i+1:], 16, 16)
	if err != nil {
		return -1
	}
	return int(v)
}

package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/sandbox"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// connectionDrainTimeout bounds how long a checkpoint waits for the
// function's client connections to close.
const connectionDrainTimeout = 500 * time.Millisecond

// CheckpointRequest asks the agent to checkpoint the running function,
// leaving it running, either into Dir (which must exist and be empty), or,
// in a pod, into a packed object it uploads itself (Upload). Exactly one of
// the two is set.
type CheckpointRequest struct {
	Dir    string  `json:"dir,omitempty"`
	Upload *Upload `json:"upload,omitempty"`
}

// Upload is where a pod's agent puts its packed dump: a pod holds no store
// credentials, only a presigned URL for exactly this object.
type Upload struct {
	URL string `json:"url"` // presigned PUT
}

// CheckpointResult reports a dump, and for an Upload what was uploaded.
type CheckpointResult struct {
	DumpTime   time.Duration `json:"dumpTime"`
	FrozenTime time.Duration `json:"frozenTime"`
	ImageBytes int64         `json:"imageBytes"`
	PID        int           `json:"pid"`
	// PackedBytes and SHA256 describe the uploaded object, for the
	// provider to commit; UploadTime is packing and uploading it.
	PackedBytes int64         `json:"packedBytes,omitempty"`
	SHA256      string        `json:"sha256,omitempty"`
	UploadTime  time.Duration `json:"uploadTime,omitempty"`
}

const checkpointUsage = `body must be {"dir": "<empty directory>"} or {"upload": {"url": "<presigned PUT URL>"}}`

// validate reports what is wrong with a request, in words for its sender.
func (r CheckpointRequest) validate() error {
	switch {
	case (r.Dir == "") == (r.Upload == nil):
		return errors.New(checkpointUsage)
	case r.Upload != nil:
		u, err := url.Parse(r.Upload.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("upload.url must be an absolute http(s) URL")
		}
	}
	return nil
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
	work, err := os.MkdirTemp(a.workDir(), "pronghorn-restore-")
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	defer os.RemoveAll(work)
	criu := &snapshot.CRIU{Path: a.cfg.CRIUPath}
	start := time.Now()
	pid, exited, err := a.reaper.Spawn(func() (int, error) {
		return criu.Restore(ctx, dir, snapshot.RestoreOptions{Stdout: w, Stderr: w, WorkDir: work})
	})
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	a.restoreDur.Store(int64(time.Since(start)))
	go copyLines(r, a.funcLog)
	return watchProcess(pid, exited), nil
}

// imagesPath is where the agent opens a host directory of images the
// provider names.
func (a *Agent) imagesPath(hostPath string) (string, error) {
	if a.confined == nil {
		return hostPath, nil
	}
	return a.confined.imagesPath(hostPath)
}

// workDir holds the agent's own scratch files: inside a sandbox, a
// directory only root can enter, never the function's /tmp.
func (a *Agent) workDir() string {
	if a.confined != nil && a.cfg.WorkDir == "" {
		return sandbox.SupervisorDir
	}
	return a.cfg.WorkDir
}

// checkpoint serves a valid CheckpointRequest.
func (a *Agent) checkpoint(ctx context.Context, req CheckpointRequest) (CheckpointResult, error) {
	if req.Upload != nil {
		return a.checkpointUpload(ctx, *req.Upload)
	}
	dir, err := a.imagesPath(req.Dir)
	if err != nil {
		return CheckpointResult{}, err
	}
	return a.dump(ctx, dir)
}

// checkpointUpload dumps into a directory of its own under WorkDir, then,
// with calls flowing again, packs and uploads the dump and removes it.
func (a *Agent) checkpointUpload(ctx context.Context, up Upload) (CheckpointResult, error) {
	// Restored in another pod, a function among the low PIDs would collide
	// with that agent's own threads and helpers.
	if p := a.proc.Load(); p != nil && p.pid < functionPID {
		return CheckpointResult{}, fmt.Errorf("the function runs at PID %d, not pinned at %d (the pod cannot write ns_last_pid: is it privileged?): its snapshot would not restore elsewhere",
			p.pid, functionPID)
	}
	dir, err := os.MkdirTemp(a.cfg.WorkDir, "pronghorn-dump-")
	if err != nil {
		return CheckpointResult{}, fmt.Errorf("checkpoint: %w", err)
	}
	defer os.RemoveAll(dir)
	res, err := a.dump(ctx, dir)
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(ctx, remoteTimeout)
	defer cancel()
	u, err := snapshot.UploadURL(ctx, a.client, up.URL, dir, a.cfg.WorkDir)
	if err != nil {
		return res, err
	}
	res.PackedBytes, res.SHA256, res.UploadTime = u.PackedBytes, u.SHA256, u.PackTime+u.UploadTime
	return res, nil
}

// dump checkpoints the function into dir with CRIU, leaving it running.
// Calls are held back meanwhile; if those in flight do not finish within
// CheckpointDrain, the checkpoint is given up instead. The agent's idle
// connections to the function are closed first: a single-threaded server
// dumped while blocked reading a keep-alive connection would, once restored
// where that peer does not exist, wait on it forever instead of accepting
// new calls.
func (a *Agent) dump(ctx context.Context, dir string) (CheckpointResult, error) {
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
	if a.confined != nil {
		criu.Path = a.confined.dumpCRIU
	}
	st, err := criu.Dump(ctx, p.pid, dir, snapshot.DumpOptions{})
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

package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	criu "github.com/checkpoint-restore/go-criu/v7"
	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"github.com/checkpoint-restore/go-criu/v7/stats"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// DefaultCRIUPath is where scripts/install-criu.sh puts its wrapper.
const DefaultCRIUPath = "/opt/pronghorn/criu/bin/criu"

const (
	dumpLog    = "dump.log"
	restoreLog = "restore.log"
	// stdioFile records which pipes the dumped process had as fds 0-2, so a
	// restore can hand it fresh pipes in their place (CRIU inherit-fd).
	stdioFile = "pronghorn-stdio.json"
)

// CRIU runs a criu binary in swrk mode through go-criu.
type CRIU struct {
	// Path of the criu binary or wrapper; empty means DefaultCRIUPath.
	Path string
	// LogLevel for criu's log (0-4); 0 means 2 (errors and warnings), which
	// is what a failure report needs without slowing the dump down.
	LogLevel int

	// mu serialises operations that temporarily make file descriptors
	// inheritable (see Restore), so they do not leak into a concurrent one.
	mu sync.Mutex
}

// DumpOptions tunes a dump. The zero value is what the agent uses.
type DumpOptions struct {
	// Stop the process after the dump instead of leaving it running.
	Stop bool
	// ExtUnixSk allows unix sockets whose peer is outside the dumped tree.
	ExtUnixSk bool
	// External lists extra CRIU external resources (e.g. "mnt[...]:...").
	External []string
}

// DumpStats reports one dump.
type DumpStats struct {
	Duration   time.Duration // wall time of the criu dump call
	FrozenTime time.Duration // how long the process was frozen (from criu's stats)
	ImageBytes int64         // size of the image directory
	Pages      uint64        // memory pages written
}

// RestoreOptions tunes a restore.
type RestoreOptions struct {
	// Stdout and Stderr replace the dumped process's stdout/stderr pipes
	// (give it the write ends of fresh pipes); nil keeps a pipe restored by
	// CRIU that nobody reads.
	Stdout, Stderr *os.File
	// InheritFds maps further CRIU resource keys (e.g. "pipe:[1234]") to
	// files of the caller that replace them.
	InheritFds map[string]*os.File
	// ExtUnixSk must match the dump.
	ExtUnixSk bool
	// WorkDir, when set, receives criu's restore log instead of imagesDir,
	// so several workers can restore from one read-only images directory.
	WorkDir string
}

// Binary is the criu binary (or wrapper) this CRIU runs.
func (c *CRIU) Binary() string {
	if c.Path == "" {
		return DefaultCRIUPath
	}
	return c.Path
}

func (c *CRIU) logLevel() int32 {
	if c.LogLevel <= 0 {
		return 2
	}
	return int32(c.LogLevel)
}

// available fails early with a clear message when the binary is missing, instead
// of go-criu's bare "fork/exec" error.
func (c *CRIU) available() error {
	p := c.Binary()
	if _, err := exec.LookPath(p); err != nil {
		return fmt.Errorf("criu binary %s: %w (install it with scripts/install-criu.sh): %w", p, errdefs.ErrUnavailable, err)
	}
	return nil
}

// Check runs `criu check` and returns its output in the error when it fails.
func (c *CRIU) Check(ctx context.Context) error {
	if err := c.available(); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, c.Binary(), "check").CombinedOutput()
	if err != nil {
		return fmt.Errorf("criu check: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Version reports criu's version as major*10000+minor*100+sublevel.
func (c *CRIU) Version(ctx context.Context) (int, error) {
	if err := c.available(); err != nil {
		return 0, err
	}
	cr := criu.MakeCriu()
	cr.SetCriuPath(c.Binary())
	v, err := runCtx(ctx, cr.GetCriuVersion)
	if err != nil {
		return 0, fmt.Errorf("criu version: %w", err)
	}
	return v, nil
}

// runCtx runs a blocking go-criu call after checking ctx. go-criu has no
// context support and does not expose its swrk child, so a call that has
// started (a dump or restore takes ~0.1 s) runs to completion.
func runCtx[T any](ctx context.Context, f func() (T, error)) (T, error) {
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}
	return f()
}

// Dump checkpoints the process tree rooted at pid into imagesDir (which must
// exist and be empty). By default the process keeps running. On failure the
// criu log stays in imagesDir and the line of it that names the cause is
// the error's message; the error wraps criu's errno when it reported one.
func (c *CRIU) Dump(ctx context.Context, pid int, imagesDir string, opts DumpOptions) (DumpStats, error) {
	if err := c.available(); err != nil {
		return DumpStats{}, err
	}
	if err := syscallKill0(pid); err != nil {
		return DumpStats{}, fmt.Errorf("criu dump: process %d: %w: %w", pid, errdefs.ErrNotFound, err)
	}
	if err := writeStdio(pid, imagesDir); err != nil {
		return DumpStats{}, err
	}
	dir, err := os.Open(imagesDir)
	if err != nil {
		return DumpStats{}, fmt.Errorf("criu dump: %w", err)
	}
	defer dir.Close()
	ro := &rpc.CriuOpts{
		// criu opens the fd through /proc/<our pid>/fd, so it need not be inherited.
		ImagesDirFd:    proto.Int32(int32(dir.Fd())),
		Pid:            proto.Int32(int32(pid)),
		LeaveRunning:   proto.Bool(!opts.Stop),
		TcpEstablished: proto.Bool(true),
		// Restores close established connections (TcpClose), so their
		// state need not be consistent, and the packets a lock would hold
		// back do not matter: no iptables or nft runs inside the worker.
		NetworkLock: rpc.CriuNetworkLockMethod_SKIP.Enum(),
		ShellJob:    proto.Bool(false),
		ExtUnixSk:   proto.Bool(opts.ExtUnixSk),
		FileLocks:   proto.Bool(true),
		LogLevel:    proto.Int32(c.logLevel()),
		LogFile:     proto.String(dumpLog),
		External:    opts.External,
	}
	cr := criu.MakeCriu()
	cr.SetCriuPath(c.Binary())
	start := time.Now()
	_, err = runCtx(ctx, func() (struct{}, error) { return struct{}{}, cr.Dump(ro, nil) })
	st := DumpStats{Duration: time.Since(start)}
	if err != nil {
		return st, criuFailure(fmt.Sprintf("criu dump of pid %d", pid), err, filepath.Join(imagesDir, dumpLog))
	}
	if ds, err := stats.CriuGetDumpStats(dir); err == nil {
		st.FrozenTime = time.Duration(ds.GetFrozenTime()) * time.Microsecond
		st.Pages = ds.GetPagesWritten()
	}
	// The log is only worth keeping (and shipping) when something failed.
	os.Remove(filepath.Join(imagesDir, dumpLog))
	st.ImageBytes, _ = dirSize(imagesDir)
	return st, nil
}

// restoreNotify captures the restored root's pid from criu's post-restore
// notification (go-criu's Restore returns only an error).
type restoreNotify struct {
	criu.NoNotify
	pid int32
}

func (n *restoreNotify) PostRestore(pid int32) error {
	n.pid = pid
	return nil
}

// Restore restores the images in imagesDir as a child of the calling
// process (rst_sibling, detached), in the caller's namespaces, and returns
// its pid. The caller must wait for it, as for any child.
//
// The error wraps ErrCorrupt when the images themselves are bad: a required
// image is missing, or criu's log shows a bad magic, a short or truncated
// image, or a record that does not unpack. Other failures (the PID is taken,
// permissions, criu itself) are not the snapshot's fault and do not.
func (c *CRIU) Restore(ctx context.Context, imagesDir string, opts RestoreOptions) (int, error) {
	if err := c.available(); err != nil {
		return 0, err
	}
	dir, err := os.Open(imagesDir)
	if err != nil {
		return 0, fmt.Errorf("criu restore: %w", err)
	}
	defer dir.Close()
	// Every dump writes these; without pstree.img criu crashes instead of
	// saying what is wrong.
	for _, name := range [...]string{"inventory.img", "pstree.img"} {
		if _, err := os.Stat(filepath.Join(imagesDir, name)); errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("criu restore from %s: %w: %s is missing", imagesDir, ErrCorrupt, name)
		}
	}
	inherit, err := inheritMap(imagesDir, opts)
	if err != nil {
		return 0, err
	}
	logDir := imagesDir
	ro := &rpc.CriuOpts{
		ImagesDirFd: proto.Int32(int32(dir.Fd())),
		RstSibling:  proto.Bool(true),
		// A restored worker has another address, and the peers of the
		// function's established connections know nothing of it: they
		// come back closed, and the function sees a reset and reconnects.
		// The agent's own connections were drained before the dump.
		TcpClose:  proto.Bool(true),
		ShellJob:  proto.Bool(false),
		ExtUnixSk: proto.Bool(opts.ExtUnixSk),
		FileLocks: proto.Bool(true),
		LogLevel:  proto.Int32(c.logLevel()),
		LogFile:   proto.String(restoreLog),
	}
	if opts.WorkDir != "" {
		wd, err := os.Open(opts.WorkDir)
		if err != nil {
			return 0, fmt.Errorf("criu restore: work dir: %w", err)
		}
		defer wd.Close()
		ro.WorkDirFd = proto.Int32(int32(wd.Fd()))
		logDir = opts.WorkDir
	}
	// inherit-fd numbers refer to criu's own fd table, and go-criu starts
	// criu with plain os/exec. Go only passes fds without FD_CLOEXEC to a
	// child, so clear it for the duration of the call; mu keeps a concurrent
	// operation of this CRIU from inheriting them too.
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, f := range inherit {
		fd := int(f.Fd()) // Fd also puts the file into blocking mode, which the restored process expects
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return 0, fmt.Errorf("criu restore: inherit %s: %w", key, err)
		}
		defer unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		ro.InheritFd = append(ro.InheritFd, &rpc.InheritFd{Key: proto.String(key), Fd: proto.Int32(int32(fd))})
	}
	cr := criu.MakeCriu()
	cr.SetCriuPath(c.Binary())
	nfy := &restoreNotify{}
	_, err = runCtx(ctx, func() (struct{}, error) { return struct{}{}, cr.Restore(ro, nfy) })
	if err != nil {
		return 0, criuFailure("criu restore from "+imagesDir, err, filepath.Join(logDir, restoreLog))
	}
	if nfy.pid <= 0 {
		return 0, fmt.Errorf("criu restore from %s: criu reported no pid", imagesDir)
	}
	return int(nfy.pid), nil
}

// inheritMap builds key -> file from the recorded stdio pipes and opts.
func inheritMap(imagesDir string, opts RestoreOptions) (map[string]*os.File, error) {
	m := map[string]*os.File{}
	for k, f := range opts.InheritFds {
		m[k] = f
	}
	stdio, err := readStdio(imagesDir)
	if err != nil {
		return nil, err
	}
	for fd, f := range map[int]*os.File{1: opts.Stdout, 2: opts.Stderr} {
		key, ok := stdio[fd]
		if f == nil || !ok {
			continue
		}
		// stdout and stderr may be one pipe: the first file given wins.
		if _, dup := m[key]; !dup || fd == 1 {
			m[key] = f
		}
	}
	return m, nil
}

// writeStdio records the pipe identities of fds 0-2 of pid.
func writeStdio(pid int, imagesDir string) error {
	stdio := map[int]string{}
	for fd := 0; fd <= 2; fd++ {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
		if err == nil && strings.HasPrefix(link, "pipe:[") {
			stdio[fd] = link
		}
	}
	b, err := json.Marshal(stdio)
	if err != nil {
		return fmt.Errorf("criu dump: %w", err)
	}
	if err := os.WriteFile(filepath.Join(imagesDir, stdioFile), b, 0o600); err != nil {
		return fmt.Errorf("criu dump: %w", err)
	}
	return nil
}

func readStdio(imagesDir string) (map[int]string, error) {
	b, err := os.ReadFile(filepath.Join(imagesDir, stdioFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("criu restore: %w", err)
	}
	var stdio map[int]string
	if err := json.Unmarshal(b, &stdio); err != nil {
		return nil, fmt.Errorf("criu restore: %s: %w: %w", stdioFile, ErrCorrupt, err)
	}
	return stdio, nil
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

func syscallKill0(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("invalid pid %d", pid)
	}
	return unix.Kill(pid, 0)
}

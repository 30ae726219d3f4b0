package snapshot_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
	"github.com/pronghorn-openfaas/pronghorn/snapshot/snapshottest"
)

// The integration tests re-execute this test binary as a mini worker: PID 1
// of fresh pid+net+mount namespaces, like the agent. CRIU restores original
// PIDs and listening ports, so every restore needs its own namespaces.
const (
	workerEnv    = "PRONGHORN_SNAPSHOT_WORKER"
	resultPrefix = "PRONGHORN-RESULT "
)

type workerMode string

const (
	modeCheckpoint     workerMode = "checkpoint"      // cold start, N requests, checkpoint, one more request
	modeCheckpointFail workerMode = "checkpoint-fail" // as above, but the checkpoint must fail
	modeRestore        workerMode = "restore"         // restore, requests must continue the counter
	modeRestoreFail    workerMode = "restore-fail"    // restore must fail and nothing may serve
	modeDumpSleep      workerMode = "dump-sleep"      // dump a sleep(1) into ImagesDir
	modeRestoreImages  workerMode = "restore-images"  // restore ImagesDir with CRIU alone; report the error
)

type workerStore struct {
	Dir   string                `json:",omitempty"`
	MinIO *snapshot.MinIOConfig `json:",omitempty"` // Transport is replaced by Sock
	Sock  string                `json:",omitempty"`
}

type workerConfig struct {
	Mode     workerMode
	CRIU     string
	Store    workerStore
	Key      string
	FuncDir  string
	Fprocess []string
	Runtime  string
	Port     int
	Requests int
	WorkDir  string
	TakePid  int // restore-fail: occupy this pid before restoring
	// ImagesDir is where dump-sleep dumps and restore-images restores from.
	ImagesDir string
}

type workerResult struct {
	Error    string
	Corrupt  bool // the error wraps snapshot.ErrCorrupt
	Counts   []int
	Pids     []int
	PPid     int
	Manifest snapshot.Manifest
	// ColdFirst: process start -> first 200. RestoreFirst: Restore call ->
	// first 200. Latencies of the requests sent.
	ColdFirst    time.Duration
	RestoreFirst time.Duration
	Latencies    []time.Duration
	Log          string
}

type counterReply struct {
	Count int `json:"count"`
	Pid   int `json:"pid"`
}

// TestMain runs the test binary as a namespaced worker when the CRIU
// integration tests re-execute it (workerEnv set), and as the tests otherwise.
func TestMain(m *testing.M) {
	if raw := os.Getenv(workerEnv); raw != "" {
		namespacedWorker(raw)
	}
	if raw := os.Getenv(putHelperEnv); raw != "" {
		stalledPut(raw)
	}
	os.Exit(m.Run())
}

// namespacedWorker is the body of a re-executed worker process: PID 1 of
// fresh namespaces, it reports its result as one JSON line and exits.
func namespacedWorker(raw string) {
	var cfg workerConfig
	res := workerResult{}
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		res.Error = err.Error()
	} else if err := runWorker(&cfg, &res); err != nil {
		res.Error = err.Error()
		res.Corrupt = errors.Is(err, snapshot.ErrCorrupt)
	}
	b, _ := json.Marshal(res)
	fmt.Printf("\n%s%s\n", resultPrefix, b)
	// Exiting as PID 1 kills everything left in the namespace, restored
	// processes included.
	os.Exit(0)
}

func setupNamespace() error {
	if os.Getpid() != 1 {
		return fmt.Errorf("worker is pid %d, not 1 of a new pid namespace", os.Getpid())
	}
	// Go passes every fd without FD_CLOEXEC to children, and whatever
	// started the tests may have leaked some into us (a /dev/null from the
	// host mount namespace makes CRIU fail with "Can't lookup mount").
	// The agent must do the same before starting the function.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close_range: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / rprivate: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	// Bring loopback up with an ioctl: no ip(8) needed.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}

func (c *workerConfig) store(ctx context.Context) (snapshot.Store, error) {
	if c.Store.MinIO != nil {
		mc := *c.Store.MinIO
		mc.Transport = snapshottest.UnixTransport(c.Store.Sock)
		return snapshot.NewMinIOStore(ctx, mc)
	}
	return snapshot.NewDirStore(c.Store.Dir)
}

var httpClient = &http.Client{
	Timeout: 10 * time.Second,
	// No keep-alive: the function should hold no established connection when dumped.
	Transport: &http.Transport{DisableKeepAlives: true},
}

func get(port int) (counterReply, error) {
	resp, err := httpClient.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return counterReply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return counterReply{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return counterReply{}, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var r counterReply
	if err := json.Unmarshal(b, &r); err != nil {
		return counterReply{}, fmt.Errorf("bad reply %q: %w", b, err)
	}
	return r, nil
}

// waitFirst polls until the function answers; it returns the first reply.
func waitFirst(port int, timeout time.Duration) (counterReply, error) {
	deadline := time.Now().Add(timeout)
	for {
		r, err := get(port)
		if err == nil {
			return r, nil
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("function did not answer on port %d within %v: %w", port, timeout, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func (res *workerResult) record(r counterReply, d time.Duration) {
	res.Counts = append(res.Counts, r.Count)
	res.Pids = append(res.Pids, r.Pid)
	res.Latencies = append(res.Latencies, d)
}

// logBuffer collects the function's stdout/stderr from the agent's pipe ends.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) drain(r *os.File) {
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			l.mu.Lock()
			l.buf.Write(b[:n])
			l.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.buf.String()
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

func runWorker(cfg *workerConfig, res *workerResult) error {
	if err := setupNamespace(); err != nil {
		return err
	}
	ctx := context.Background()
	store, err := cfg.store(ctx)
	if err != nil {
		return err
	}
	c := &snapshot.CRIU{Path: cfg.CRIU}
	var logs logBuffer
	defer func() { res.Log = logs.String() }()
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		return err
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		return err
	}
	logs.drain(stdoutR)
	logs.drain(stderrR)

	switch cfg.Mode {
	case modeCheckpoint, modeCheckpointFail:
		// High pid for the function, so restores never collide with the
		// low pids that the agent's own helpers (criu) take.
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte("999"), 0); err != nil {
			return fmt.Errorf("ns_last_pid: %w", err)
		}
		cmd := exec.Command(cfg.Fprocess[0], cfg.Fprocess[1:]...)
		cmd.Dir = cfg.FuncDir
		cmd.Env = append(os.Environ(), fmt.Sprintf("upstream_url=http://127.0.0.1:%d", cfg.Port))
		cmd.Stdout, cmd.Stderr = stdoutW, stderrW // stdin stays /dev/null
		// Own session: without shell-job CRIU refuses a process whose
		// session leader is outside its pid namespace (the agent must do the same).
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return err
		}
		stdoutW.Close()
		stderrW.Close()
		first, err := waitFirst(cfg.Port, 60*time.Second)
		if err != nil {
			return err
		}
		res.ColdFirst = time.Since(start)
		res.record(first, res.ColdFirst)
		for i := 1; i < cfg.Requests; i++ {
			t0 := time.Now()
			r, err := get(cfg.Port)
			if err != nil {
				return err
			}
			res.record(r, time.Since(t0))
		}
		m, cpErr := checkpoint(ctx, c, store, cmd.Process.Pid, cfg.Key,
			snapshot.Manifest{Function: "counter-" + cfg.Runtime, Runtime: cfg.Runtime, RequestNumber: cfg.Requests}, cfg.WorkDir)
		res.Manifest = m
		// Whatever happened, the function must still serve (leave-running,
		// or a failed dump that did not disturb it).
		t0 := time.Now()
		r, err := get(cfg.Port)
		if err != nil {
			return fmt.Errorf("function stopped serving after checkpoint (checkpoint err: %v): %w", cpErr, err)
		}
		res.record(r, time.Since(t0))
		if cfg.Mode == modeCheckpointFail {
			if cpErr == nil {
				return errors.New("checkpoint unexpectedly succeeded")
			}
			if _, err := store.Stat(ctx, cfg.Key); err == nil {
				return fmt.Errorf("failed checkpoint left an object under %s", cfg.Key)
			}
			res.Error = "" // expected failure; report it in Log
			res.Log = cpErr.Error()
			return expectedFailure{cpErr}
		}
		return cpErr

	case modeRestore, modeRestoreFail:
		if cfg.TakePid > 0 {
			if err := occupyPid(cfg.TakePid); err != nil {
				return err
			}
		}
		start := time.Now()
		pid, m, rerr := restore(ctx, c, store, cfg.Key, cfg.WorkDir,
			snapshot.RestoreOptions{Stdout: stdoutW, Stderr: stderrW})
		stdoutW.Close()
		stderrW.Close()
		res.Manifest = m
		if cfg.Mode == modeRestoreFail {
			if rerr == nil {
				return fmt.Errorf("restore unexpectedly succeeded (pid %d)", pid)
			}
			// Nothing may serve after a failed restore.
			if r, err := get(cfg.Port); err == nil {
				return fmt.Errorf("after a failed restore something answers: %+v", r)
			}
			return expectedFailure{rerr}
		}
		if rerr != nil {
			return rerr
		}
		// The restored root is our child (rst_sibling), so we can reap it.
		res.PPid = ppid(pid)
		first, err := waitFirst(cfg.Port, 10*time.Second)
		if err != nil {
			return err
		}
		res.RestoreFirst = time.Since(start)
		res.record(first, res.RestoreFirst)
		for i := 0; i < 2; i++ {
			t0 := time.Now()
			r, err := get(cfg.Port)
			if err != nil {
				return err
			}
			res.record(r, time.Since(t0))
		}
		return nil

	case modeDumpSleep:
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte("999"), 0); err != nil {
			return fmt.Errorf("ns_last_pid: %w", err)
		}
		cmd := exec.Command("sleep", "600")
		cmd.Stdout, cmd.Stderr = stdoutW, stderrW
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return err
		}
		res.Pids = []int{cmd.Process.Pid}
		_, err := c.Dump(ctx, cmd.Process.Pid, cfg.ImagesDir, snapshot.DumpOptions{})
		return err

	case modeRestoreImages:
		if cfg.TakePid > 0 {
			if err := occupyPid(cfg.TakePid); err != nil {
				return err
			}
		}
		work, err := os.MkdirTemp(cfg.WorkDir, "restore-log-*")
		if err != nil {
			return err
		}
		pid, err := c.Restore(ctx, cfg.ImagesDir, snapshot.RestoreOptions{Stdout: stdoutW, Stderr: stderrW, WorkDir: work})
		if err == nil {
			res.Pids = []int{pid}
		}
		return err
	}
	return fmt.Errorf("unknown mode %q", cfg.Mode)
}

// checkpoint is what the local provider does in two processes: the agent
// dumps into a scratch dir, the provider uploads it.
func checkpoint(ctx context.Context, c *snapshot.CRIU, store snapshot.Store, pid int, key string, m snapshot.Manifest, workDir string) (snapshot.Manifest, error) {
	imgDir, err := os.MkdirTemp(workDir, "dump-*")
	if err != nil {
		return snapshot.Manifest{}, err
	}
	defer os.RemoveAll(imgDir)
	st, err := c.Dump(ctx, pid, imgDir, snapshot.DumpOptions{})
	if err != nil {
		return snapshot.Manifest{}, fmt.Errorf("checkpoint %s: %w", key, err)
	}
	m.DumpTime = st.Duration
	m.RawBytes = st.ImageBytes
	out, err := snapshot.Upload(ctx, store, key, imgDir, m)
	if err != nil {
		return snapshot.Manifest{}, fmt.Errorf("checkpoint %s: %w", key, err)
	}
	return out, nil
}

// restore downloads key into a scratch dir and restores it as our child;
// the manifest's RestoreTime covers both.
func restore(ctx context.Context, c *snapshot.CRIU, store snapshot.Store, key, workDir string, opts snapshot.RestoreOptions) (int, snapshot.Manifest, error) {
	start := time.Now()
	imgDir, err := os.MkdirTemp(workDir, "restore-*")
	if err != nil {
		return 0, snapshot.Manifest{}, err
	}
	defer os.RemoveAll(imgDir)
	m, err := snapshot.Download(ctx, store, key, imgDir)
	if err != nil {
		return 0, m, fmt.Errorf("restore: %w", err)
	}
	pid, err := c.Restore(ctx, imgDir, opts)
	if err != nil {
		return 0, m, fmt.Errorf("restore %s: %w", key, err)
	}
	m.RestoreTime = time.Since(start)
	return pid, m, nil
}

// expectedFailure carries the error a *-fail mode expected, so the parent
// can inspect it while the worker reports success.
type expectedFailure struct{ err error }

func (e expectedFailure) Error() string { return "EXPECTED: " + e.err.Error() }
func (e expectedFailure) Unwrap() error { return e.err }

// occupyPid takes pid as a stray process would. The first exec of a Go
// process may use up a pid of its own, and a runtime thread may win the pid
// instead of the squatter; either way it is taken, which is all a test
// needs. So retry.
func occupyPid(pid int) error {
	for try := 0; !pidTaken(pid); try++ {
		if try == 5 {
			return fmt.Errorf("could not occupy pid %d", pid)
		}
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			return fmt.Errorf("ns_last_pid: %w", err)
		}
		if err := exec.Command("sleep", "600").Start(); err != nil {
			return err
		}
	}
	return nil
}

func pidTaken(pid int) bool {
	for _, p := range []string{fmt.Sprintf("/proc/%d", pid), fmt.Sprintf("/proc/1/task/%d", pid)} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return -1
	}
	p, _ := strconv.Atoi(fields[1])
	return p
}

// ---- parent side ----

type runtimeSpec struct {
	name    string
	dir     string // under benchmarks/functions
	needs   []string
	prepare func(t testing.TB, dir string)
}

var runtimes = []runtimeSpec{
	{name: "pypy", dir: "counter-pypy", needs: []string{"pypy3"}},
	{name: "jvm", dir: "counter-jvm", needs: []string{"java", "javac"}, prepare: func(t testing.TB, dir string) {
		out, err := exec.Command("javac", "-d", dir, filepath.Join(dir, "Handler.java")).CombinedOutput()
		if err != nil {
			t.Fatalf("javac: %v\n%s", err, out)
		}
	}},
	{name: "node", dir: "counter-node", needs: []string{"node"}},
}

// prepareFunction copies a sample function into a temp dir (so compiled
// classes do not litter the tree) and returns its dir and fprocess.
func prepareFunction(t testing.TB, rt runtimeSpec) (string, []string) {
	t.Helper()
	for _, bin := range rt.needs {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("runtime %s: %s not installed", rt.name, bin)
		}
	}
	src := filepath.Join("..", "benchmarks", "functions", rt.dir)
	dir := filepath.Join(t.TempDir(), rt.dir)
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Fprocess string            `json:"fprocess"`
		Runtime  string            `json:"runtime"`
		Env      map[string]string `json:"env"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "function.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Runtime != rt.name {
		t.Fatalf("%s/function.json runtime %q, want %q", rt.dir, spec.Runtime, rt.name)
	}
	if rt.prepare != nil {
		rt.prepare(t, dir)
	}
	// The declared environment, as the provider would give it; env(1)
	// execs, so the function keeps env's PID.
	var argv []string
	if len(spec.Env) > 0 {
		argv = append(argv, "/usr/bin/env")
		for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
			argv = append(argv, k+"="+spec.Env[k])
		}
	}
	return dir, append(argv, strings.Fields(spec.Fprocess)...)
}

// spawnWorker re-executes the test binary in new pid/net/mount namespaces.
func spawnWorker(t testing.TB, cfg workerConfig) (workerResult, error) {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), workerEnv+"="+string(b))
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, resultPrefix) {
			var res workerResult
			if jerr := json.Unmarshal([]byte(strings.TrimPrefix(line, resultPrefix)), &res); jerr != nil {
				return res, fmt.Errorf("worker result: %w", jerr)
			}
			if res.Error != "" {
				return res, errors.New(res.Error)
			}
			return res, nil
		}
	}
	return workerResult{}, fmt.Errorf("worker gave no result (exit: %v)\nstdout: %s\nstderr: %s", err, out, stderr.String())
}

type storeKind struct {
	name string
	make func(t *testing.T) workerStore
}

var storeKinds = []storeKind{
	{"dir", func(t *testing.T) workerStore { return workerStore{Dir: t.TempDir()} }},
	{"minio", func(t *testing.T) workerStore {
		m := snapshottest.StartMinIO(t)
		cfg := m.Config("snapshots")
		return workerStore{MinIO: &cfg, Sock: snapshottest.UnixProxy(t, m.Endpoint)}
	}},
}

const requestsBeforeCheckpoint = 5

func TestCheckpointRestore(t *testing.T) {
	criu := snapshottest.CRIU(t)
	for _, rt := range runtimes {
		t.Run(rt.name, func(t *testing.T) {
			dir, fprocess := prepareFunction(t, rt)
			for _, sk := range storeKinds {
				t.Run(sk.name, func(t *testing.T) {
					base := workerConfig{
						CRIU: criu, Store: sk.make(t), Key: rt.name + "/snap-" + sk.name,
						FuncDir: dir, Fprocess: fprocess, Runtime: rt.name, Port: 5000,
						Requests: requestsBeforeCheckpoint, WorkDir: t.TempDir(),
					}
					cp := base
					cp.Mode = modeCheckpoint
					res, err := spawnWorker(t, cp)
					if err != nil {
						t.Fatalf("checkpoint worker: %v\nfunction log: %s", err, res.Log)
					}
					want := []int{1, 2, 3, 4, 5, 6}
					if fmt.Sprint(res.Counts) != fmt.Sprint(want) {
						t.Fatalf("cold worker counts %v, want %v", res.Counts, want)
					}
					m := res.Manifest
					t.Logf("checkpoint: pid %d raw %d packed %d dump %v upload %v cold-first %v",
						res.Pids[0], m.RawBytes, m.PackedBytes, m.DumpTime, m.UploadTime, res.ColdFirst)
					if m.SHA256 == "" || m.PackedBytes == 0 || m.RawBytes < m.PackedBytes || m.RequestNumber != requestsBeforeCheckpoint {
						t.Errorf("manifest %+v", m)
					}

					// Two restores of the same snapshot side by side, each in
					// its own namespaces.
					rs := base
					rs.Mode = modeRestore
					results := make([]workerResult, 2)
					errs := make([]error, 2)
					var wg sync.WaitGroup
					for i := range results {
						wg.Add(1)
						go func() {
							defer wg.Done()
							results[i], errs[i] = spawnWorker(t, rs)
						}()
					}
					wg.Wait()
					for i, r := range results {
						if errs[i] != nil {
							t.Errorf("restore %d: %v\nfunction log: %s", i, errs[i], r.Log)
							continue
						}
						want := []int{requestsBeforeCheckpoint + 1, requestsBeforeCheckpoint + 2, requestsBeforeCheckpoint + 3}
						if fmt.Sprint(r.Counts) != fmt.Sprint(want) {
							t.Errorf("restore %d: counts %v, want %v (state not carried over)", i, r.Counts, want)
						}
						if r.Pids[0] != res.Pids[0] {
							t.Errorf("restore %d: pid %d, want the original %d", i, r.Pids[0], res.Pids[0])
						}
						if r.PPid != 1 {
							t.Errorf("restore %d: restored process's parent is %d, want the worker (1)", i, r.PPid)
						}
						t.Logf("restore %d: restore %v, restore->first response %v, then %v", i, r.Manifest.RestoreTime, r.RestoreFirst, r.Latencies[1:])
					}
				})
			}
		})
	}
}

func TestFailurePaths(t *testing.T) {
	criu := snapshottest.CRIU(t)
	rt := runtimes[2] // node: the quickest to start
	dir, fprocess := prepareFunction(t, rt)
	storeDir := t.TempDir()
	base := workerConfig{
		CRIU: criu, Store: workerStore{Dir: storeDir}, FuncDir: dir, Fprocess: fprocess,
		Runtime: rt.name, Port: 5000, Requests: 3, WorkDir: t.TempDir(),
	}
	// A good snapshot for the restore failure cases.
	good := base
	good.Mode, good.Key = modeCheckpoint, "good"
	res, err := spawnWorker(t, good)
	if err != nil {
		t.Fatalf("checkpoint: %v\n%s", err, res.Log)
	}
	origPid := res.Pids[0]

	corrupt := func(t *testing.T, key string) {
		ds, err := snapshot.NewDirStore(storeDir)
		if err != nil {
			t.Fatal(err)
		}
		rc, _, err := ds.Get(context.Background(), "good")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if _, err := ds.Put(context.Background(), key, bytes.NewReader(b), snapshot.Manifest{}); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(storeDir, "objects", key)
		b[len(b)*2/3] ^= 0xff
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name        string
		mode        workerMode
		key         string
		criu        string
		takePid     int
		setup       func(t *testing.T, key string)
		wantInError string
		wantCorrupt bool
	}{
		{name: "criu-missing", mode: modeCheckpointFail, key: "nocriu", criu: "/nonexistent/criu", wantInError: "install-criu.sh"},
		{name: "criu-fails", mode: modeCheckpointFail, key: "badcriu", criu: "/bin/false", wantInError: "criu dump"},
		{name: "object-missing", mode: modeRestoreFail, key: "missing", wantInError: "not found"},
		{name: "object-corrupt", mode: modeRestoreFail, key: "corrupt", setup: corrupt, wantCorrupt: true},
		{name: "pid-taken", mode: modeRestoreFail, key: "good", takePid: origPid, wantInError: "File exists"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t, tc.key)
			}
			cfg := base
			cfg.Mode, cfg.Key, cfg.TakePid = tc.mode, tc.key, tc.takePid
			if tc.criu != "" {
				cfg.CRIU = tc.criu
			}
			res, err := spawnWorker(t, cfg)
			if err == nil || !strings.HasPrefix(err.Error(), "EXPECTED: ") {
				t.Fatalf("worker: %v\nlog: %s", err, res.Log)
			}
			msg := strings.TrimPrefix(err.Error(), "EXPECTED: ")
			t.Logf("error: %.400s", msg)
			if tc.wantInError != "" && !strings.Contains(msg, tc.wantInError) {
				t.Errorf("error %q does not mention %q", msg, tc.wantInError)
			}
			if tc.wantCorrupt && !res.Corrupt {
				t.Errorf("error does not wrap ErrCorrupt: %s", msg)
			}
			if tc.mode == modeCheckpointFail {
				n := len(res.Counts)
				if n == 0 || res.Counts[n-1] != cfg.Requests+1 {
					t.Errorf("function did not keep serving: counts %v", res.Counts)
				}
			}
		})
	}
}

// TestMeasure reports per-runtime sizes and timings (medians). It runs only
// when PRONGHORN_MEASURE_RUNS is set, because it takes minutes:
//
//	PRONGHORN_MEASURE_RUNS=10 go test ./snapshot -run TestMeasure -v -count=1
//
// PRONGHORN_MEASURE_STORE=dir skips MinIO; PRONGHORN_MEASURE_WORKDIR=/dev/shm
// puts the scratch image dirs on tmpfs.
func TestMeasure(t *testing.T) {
	// One run by default keeps the measuring path tested in every run;
	// PRONGHORN_MEASURE_RUNS=10 gives medians worth reporting.
	runs, _ := strconv.Atoi(os.Getenv("PRONGHORN_MEASURE_RUNS"))
	if runs <= 0 {
		runs = 1
	}
	criu := snapshottest.CRIU(t)
	stores := storeKinds
	if os.Getenv("PRONGHORN_MEASURE_STORE") == "dir" {
		stores = storeKinds[:1]
	}
	var report strings.Builder
	fmt.Fprintf(&report, "\n%-5s %-6s %9s %9s %8s %8s %9s %10s %10s %9s %9s\n", "rt", "store",
		"raw MB", "packed MB", "dump ms", "upload", "restore", "rst->1st", "cold->1st", "warm req", "cold req")
	for _, rt := range runtimes {
		dir, fprocess := prepareFunction(t, rt)
		for _, sk := range stores {
			st := sk.make(t)
			var raw, packed, dump, upload, restore, restFirst, coldFirst, warmReq, coldReq []float64
			for i := 0; i < runs; i++ {
				base := workerConfig{CRIU: criu, Store: st, Key: fmt.Sprintf("%s/m%d", rt.name, i),
					FuncDir: dir, Fprocess: fprocess, Runtime: rt.name, Port: 5000,
					Requests: requestsBeforeCheckpoint, WorkDir: measureWorkDir(t)}
				cp := base
				cp.Mode = modeCheckpoint
				res, err := spawnWorker(t, cp)
				if err != nil {
					t.Fatalf("%s run %d checkpoint: %v\n%s", rt.name, i, err, res.Log)
				}
				rs := base
				rs.Mode = modeRestore
				rr, err := spawnWorker(t, rs)
				if err != nil {
					t.Fatalf("%s run %d restore: %v\n%s", rt.name, i, err, rr.Log)
				}
				m := res.Manifest
				raw = append(raw, float64(m.RawBytes)/1e6)
				packed = append(packed, float64(m.PackedBytes)/1e6)
				dump = append(dump, ms(m.DumpTime))
				upload = append(upload, ms(m.UploadTime))
				restore = append(restore, ms(rr.Manifest.RestoreTime))
				restFirst = append(restFirst, ms(rr.RestoreFirst))
				coldFirst = append(coldFirst, ms(res.ColdFirst))
				// Latency of one request right after restore vs. the second
				// request of a cold worker (its first one includes start-up).
				warmReq = append(warmReq, ms(rr.Latencies[1]))
				coldReq = append(coldReq, ms(res.Latencies[1]))
			}
			fmt.Fprintf(&report, "%-5s %-6s %9.1f %9.1f %8.1f %8.1f %9.1f %10.1f %10.1f %9.2f %9.2f\n", rt.name, sk.name,
				median(raw), median(packed), median(dump), median(upload), median(restore),
				median(restFirst), median(coldFirst), median(warmReq), median(coldReq))
		}
	}
	t.Logf("medians of %d runs (GOMAXPROCS %d); times in ms; restore = download+verify+unpack+criu restore; "+
		"rst->1st = Restore call to first 200; cold->1st = process start to first 200; warm req = 2nd request after restore; cold req = 2nd request of a cold worker%s",
		runs, runtime.GOMAXPROCS(0), report.String())
}

// measureWorkDir is where images are dumped/unpacked; PRONGHORN_MEASURE_WORKDIR
// (e.g. /dev/shm) shows what a tmpfs scratch dir buys.
func measureWorkDir(t *testing.T) string {
	base := os.Getenv("PRONGHORN_MEASURE_WORKDIR")
	if base == "" {
		return t.TempDir()
	}
	d, err := os.MkdirTemp(base, "phmeasure")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func TestCRIUCheck(t *testing.T) {
	installed := snapshottest.CRIU(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		path    string
		wantErr error // nil: must succeed
	}{
		{"installed", installed, nil},
		{"missing", "/nonexistent/criu", errdefs.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &snapshot.CRIU{Path: tc.path}
			err := c.Check(ctx)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				v, err := c.Version(ctx)
				if err != nil || v < 40200 {
					t.Errorf("version %d, %v; want >= 4.2", v, err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

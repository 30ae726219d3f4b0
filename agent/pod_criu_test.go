package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pronghorn-openfaas/pronghorn/snapshot"
	"github.com/pronghorn-openfaas/pronghorn/snapshot/snapshottest"
)

// testPodEnv makes the test binary a pod's agent: PID 1 of fresh pid, net
// and mount namespaces, set up as a container runtime would, running the
// agent as `pronghorn agent --from-env` does (not isolated).
const testPodEnv = "PRONGHORN_TEST_POD"

type testPodSpec struct {
	Config Config
	// Dial maps the host:port of a URL to the unix socket that reaches it
	// from the pod's own network namespace (the provider, MinIO).
	Dial map[string]string
}

// runTestPod is the body of a re-executed test binary (see testPodEnv).
func runTestPod(raw string) int {
	var spec testPodSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := podNamespaces(); err != nil {
		fmt.Fprintln(os.Stderr, "pod namespaces:", err)
		return 2
	}
	a, err := New(spec.Config, slog.New(slog.NewTextHandler(os.Stderr, nil)), os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	a.client = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		sock, ok := spec.Dial[addr]
		if !ok {
			return nil, fmt.Errorf("the test pod cannot reach %s", addr)
		}
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 1
	}
	return 0
}

// podNamespaces does what a container runtime does for a pod before its
// entrypoint runs: a /proc of the pod's pid namespace, loopback up.
func podNamespaces() error {
	if os.Getpid() != 1 {
		return fmt.Errorf("pid %d, not 1 of a new pid namespace", os.Getpid())
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	return loopbackUp()
}

type testPod struct {
	invoke, control *http.Client
	logs            *syncBuffer
	cmd             *exec.Cmd
	exited          chan struct{}
}

// startTestPod starts a pod's agent (see testPodEnv) with cfg, reached over
// unix sockets in a directory of its own.
func startTestPod(t *testing.T, cfg Config, dial map[string]string) *testPod {
	t.Helper()
	dir, err := os.MkdirTemp("", "phpod") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg.InvokeSocket, cfg.ControlSocket = filepath.Join(dir, "i"), filepath.Join(dir, "c")
	b, err := json.Marshal(testPodSpec{Config: cfg, Dial: dial})
	if err != nil {
		t.Fatal(err)
	}
	p := &testPod{logs: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), testPodEnv+"="+string(b))
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.stop)
	client := func(sock string) *http.Client {
		return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
		}}
	}
	p.invoke, p.control = client(cfg.InvokeSocket), client(cfg.ControlSocket)
	return p
}

// stop ends the pod as the kubelet does: SIGTERM, then SIGKILL. Its PID 1
// exiting takes every process of the pod with it.
func (p *testPod) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *testPod) call(t *testing.T) string {
	t.Helper()
	resp, err := p.invoke.Get("http://fn/")
	if err != nil {
		t.Fatalf("call: %v\npod log:\n%s", err, p.logs)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("call: %s: %s", resp.Status, b)
	}
	return string(b)
}

// TestPodSnapshotRoundTrip: a pod checkpoints its function and uploads it
// through a presigned PUT; another pod, told by its plan, fetches it
// through a presigned GET and restores it, and the function's state
// carries over. Neither pod sees a store credential.
func TestPodSnapshotRoundTrip(t *testing.T) {
	criu := snapshottest.CRIU(t)
	ctx := context.Background()
	m := snapshottest.StartMinIO(t)
	store, err := snapshot.NewMinIOStore(ctx, m.Config("pods"))
	if err != nil {
		t.Fatal(err)
	}
	prov := newFakeProvider(t)
	provAddr := prov.srv.Listener.Addr().String()
	dial := map[string]string{
		m.Endpoint: snapshottest.UnixProxy(t, m.Endpoint),
		provAddr:   snapshottest.UnixProxy(t, provAddr),
	}
	cfg := Config{
		Function: "counter.openfaas-fn", Process: os.Args[0],
		// Go listens with MPTCP by default since 1.24, which CRIU cannot dump.
		Env:          map[string]string{"PRONGHORN_TEST_FUNCTION": "1", "upstream_url": "http://127.0.0.1:5000", "GODEBUG": "multipathtcp=0"},
		ReadyTimeout: Duration(10 * time.Second), CRIUPath: criu,
		ProviderURL: "http://" + provAddr, TokenFile: writeToken(t, "pod-token"),
		PodName: "counter-abc", PodNamespace: "openfaas-fn", WorkDir: t.TempDir(),
	}

	// Pod A starts cold, serves, checkpoints after its third call.
	prov.answer(http.StatusOK, `{}`)
	a := startTestPod(t, cfg, dial)
	st := waitStatus(t, a.control)
	if st.Restored || st.PID != functionPID {
		t.Fatalf("pod A: status %+v; want a cold function pinned at PID %d", st, functionPID)
	}
	for i := 1; i <= 3; i++ {
		if got := a.call(t); !strings.HasPrefix(got, fmt.Sprintf("%d ", i)) {
			t.Fatalf("pod A call %d: %q", i, got)
		}
	}
	const key = "openfaas-fn/counter/0123456789abcdef/r00003-pod-a"
	put, err := store.PresignPut(ctx, key, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(CheckpointRequest{Upload: &Upload{URL: put.String()}})
	resp, err := a.control.Post("http://agent/checkpoint", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pod A checkpoint: %s: %s\npod log:\n%s", resp.Status, b, a.logs)
	}
	var res CheckpointResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	t.Logf("pod A checkpoint: %+v", res)
	if res.PackedBytes <= 0 || len(res.SHA256) != 64 || res.ImageBytes <= res.PackedBytes || res.PID != functionPID || res.DumpTime <= 0 {
		t.Errorf("checkpoint result %+v", res)
	}
	if left, _ := os.ReadDir(cfg.WorkDir); len(left) != 0 {
		t.Errorf("pod A left %v in its work dir", left)
	}
	mf, err := store.Commit(ctx, key, snapshot.Manifest{PackedBytes: res.PackedBytes, SHA256: res.SHA256, RawBytes: res.ImageBytes, RequestNumber: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.call(t); !strings.HasPrefix(got, "4 ") {
		t.Errorf("pod A after its checkpoint: %q", got)
	}
	a.stop()

	// Pod B is told to restore it.
	get, err := store.PresignGet(ctx, key, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	plan, _ := json.Marshal(StartPlan{Version: "0123456789abcdef", CheckpointAt: 6,
		Restore: &RemoteImage{URL: get.String(), SHA256: mf.SHA256, Size: mf.PackedBytes, Key: key, RequestNumber: 3}})
	prov.answer(http.StatusOK, string(plan))
	pb := startTestPod(t, cfg, dial)
	st = waitStatus(t, pb.control)
	t.Logf("pod B: %+v", st)
	if !st.Restored || st.RestoreError != "" || st.PID != functionPID || st.RestoreTime <= 0 || st.FetchTime <= 0 {
		t.Fatalf("pod B: status %+v; want restored at PID %d\npod log:\n%s", st, functionPID, pb.logs)
	}
	for i := 4; i <= 5; i++ {
		if got := pb.call(t); !strings.HasPrefix(got, fmt.Sprintf("%d ", i)) {
			t.Errorf("pod B call: %q, want the count to go on at %d", got, i)
		}
	}
	// Where its state stands, for a provider restarted meanwhile.
	st = waitStatus(t, pb.control)
	if want := (PlanStatus{Version: "0123456789abcdef", CheckpointAt: 6, StartLineage: 3, Snapshot: key}); st.Plan == nil || *st.Plan != want || st.Served != 2 {
		t.Errorf("pod B: plan %+v, served %d; want %+v after 2 calls", st.Plan, st.Served, want)
	}
	if left, _ := os.ReadDir(cfg.WorkDir); len(left) != 0 {
		t.Errorf("pod B left %v in its work dir", left)
	}
	pb.stop()

	// Pod C gets a plan whose checksum the object does not match.
	bad := StartPlan{Version: "0123456789abcdef", Restore: &RemoteImage{URL: get.String(), SHA256: strings.Repeat("0", 64), Size: mf.PackedBytes, Key: key, RequestNumber: 3}}
	plan, _ = json.Marshal(bad)
	prov.answer(http.StatusOK, string(plan))
	pc := startTestPod(t, cfg, dial)
	st = waitStatus(t, pc.control)
	if st.Restored || !st.RestoreCorrupt || st.PID != functionPID || st.Plan == nil || st.Plan.StartLineage != 0 || st.Plan.Snapshot != "" {
		t.Errorf("pod C: status %+v (plan %+v); want a cold start at PID %d, at lineage 0, that blames the snapshot", st, st.Plan, functionPID)
	}
	if got := pc.call(t); !strings.HasPrefix(got, "1 ") {
		t.Errorf("pod C call: %q, want a cold function's first", got)
	}

	for i, r := range prov.seen() {
		if r.auth != "Bearer pod-token" || r.body != (planRequest{"counter-abc", "openfaas-fn"}) {
			t.Errorf("plan request %d: %+v", i, r)
		}
	}
}

package local

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/logs"
	"github.com/openfaas/faas-provider/types"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/provider"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: workers run in their own pid, net and mount namespaces")
	}
}

// testFunctionFile is the test binary's name in the function directory.
const testFunctionFile = "fn"

// linkOrCopy makes dst hold src's content, by a hard link where it can.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

type env struct {
	t       testing.TB
	dataDir string
	fnDir   string
	db      *bolt.DB
	b       *Backend
	tune    func(*Config, *bolt.DB)
}

// newEnv opens a backend whose agents and functions are this test binary;
// tune, if given, adjusts its config.
func newEnv(t testing.TB, tune ...func(*Config, *bolt.DB)) *env {
	t.Helper()
	requireRoot(t)
	e := &env{t: t, dataDir: t.TempDir(), fnDir: t.TempDir(), tune: func(*Config, *bolt.DB) {}}
	if len(tune) > 0 {
		e.tune = tune[0]
	}
	// The function is this test binary, inside the function directory: a
	// sandboxed function sees nothing else of the host.
	if err := os.Mkdir(filepath.Join(e.fnDir, "testfn"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := linkOrCopy(os.Args[0], filepath.Join(e.fnDir, "testfn", testFunctionFile)); err != nil {
		t.Fatal(err)
	}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	db, err := bolt.Open(filepath.Join(e.dataDir, "state.db"), 0o600, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := Config{
		DataDir: e.dataDir, FunctionsDir: e.fnDir, Isolate: true, Sandbox: true,
		AgentCommand:         []string{"/usr/bin/env", "PRONGHORN_TEST_ROLE=agent", os.Args[0]},
		ScaleFromZeroTimeout: 10 * time.Second, ReadyTimeout: 10 * time.Second, StopGrace: 2 * time.Second,
	}
	e.tune(&cfg, db)
	b, err := New(context.Background(), db, cfg)
	if err != nil {
		db.Close()
		e.t.Fatal(err)
	}
	e.db, e.b = db, b
}

func (e *env) close() {
	if e.b == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.b.Close(ctx); err != nil {
		e.t.Error(err)
	}
	// The engine flushes its learning into the file on Close.
	if eng := e.b.cfg.Engine; eng != nil {
		if err := eng.Close(ctx); err != nil {
			e.t.Error(err)
		}
	}
	e.db.Close()
	e.b = nil
}

func deployment(name string, env map[string]string) types.FunctionDeployment {
	vars := map[string]string{"PRONGHORN_TEST_ROLE": "function"}
	for k, v := range env {
		vars[k] = v
	}
	return types.FunctionDeployment{Service: name, Image: "testfn:latest", EnvProcess: "./" + testFunctionFile, EnvVars: vars}
}

// invoke calls the function through the backend, as the invoke handler does.
func (e *env) invoke(name string) (string, error) { return e.invokePath(name, "/hello") }

// invokePath calls path of the function.
func (e *env) invokePath(name, path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	lease, err := e.b.Acquire(ctx, "", name)
	if err != nil {
		return "", err
	}
	u := *lease.URL()
	u.Path, u.RawQuery, _ = strings.Cut(path, "?")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	resp, err := lease.Transport().RoundTrip(req)
	if err != nil {
		lease.Release(provider.Outcome{Err: err})
		return "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	// As the invoke handler reports it: the agent's measure of the function.
	upstream, _ := strconv.ParseFloat(resp.Header.Get("X-Duration-Seconds"), 64)
	lease.Release(provider.Outcome{StatusCode: resp.StatusCode, Upstream: time.Duration(upstream * float64(time.Second))})
	return string(body), err
}

// eventually polls cond until it holds or 15 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) status(name string) types.FunctionStatus {
	e.t.Helper()
	st, err := e.b.Function(context.Background(), "", name)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *env) waitAvailable(name string, n uint64) {
	e.t.Helper()
	eventually(e.t, "available replicas", func() bool { return e.status(name).AvailableReplicas == n })
}

func TestDeployInvokeIsolated(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.b.CreateSecret(ctx, types.Secret{Name: "api-key", Value: "s3cr3t"}); err != nil {
		t.Fatal(err)
	}
	d := deployment("hello", map[string]string{"GREETING": "hi", "SECRET_NAME": "api-key"})
	d.Secrets = []string{"api-key"}
	if err := e.b.Deploy(ctx, d); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"count=1", "count=2"} {
		got, err := e.invoke("hello")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, want) {
			t.Fatalf("call %d: got %q, want prefix %q", i, got, want)
		}
		// The function runs at the pinned PID of a fresh pid namespace,
		// sees its env vars and its secret on the tmpfs.
		for _, part := range []string{"greeting=hi", "secret=s3cr3t", "path=/hello"} {
			if !strings.Contains(got, part) {
				t.Errorf("call %d: %q lacks %q", i, got, part)
			}
		}
		if !strings.Contains(got, " pid=100") {
			t.Errorf("function not at the pinned pid: %q", got)
		}
	}
	st := e.status("hello")
	if st.Replicas != 1 || st.AvailableReplicas != 1 || st.InvocationCount != 2 || st.Namespace != "openfaas-fn" {
		t.Errorf("status = %+v", st)
	}
	// The secret never reaches the host's filesystem.
	if _, err := os.Stat("/var/openfaas/secrets/api-key"); err == nil {
		t.Error("secret visible on the host")
	}
}

func TestDeployRejectsBadInput(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	noProcess := deployment("noproc", nil)
	noProcess.EnvProcess = ""
	missingSecret := deployment("nosecret", nil)
	missingSecret.Secrets = []string{"absent"}
	badScale := deployment("badscale", nil)
	badScale.Labels = &map[string]string{"com.openfaas.scale.max": "many"}
	for _, tc := range []struct {
		name string
		req  types.FunctionDeployment
		want error
	}{
		{"unknown image", types.FunctionDeployment{Service: "x", Image: "no-such-dir", EnvProcess: "true"}, errdefs.ErrInvalid},
		{"no image", types.FunctionDeployment{Service: "x", EnvProcess: "true"}, errdefs.ErrInvalid},
		{"path escape", types.FunctionDeployment{Service: "x", Image: "../etc", EnvProcess: "true"}, errdefs.ErrInvalid},
		{"no process", noProcess, errdefs.ErrInvalid},
		{"missing secret", missingSecret, errdefs.ErrInvalid},
		{"bad max scale", badScale, errdefs.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.b.Deploy(ctx, tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	fns, err := e.b.Functions(ctx, "")
	if err != nil || len(fns) != 0 {
		t.Fatalf("rejected deploys stored something: %v %v", fns, err)
	}

	if err := e.b.Deploy(ctx, deployment("dup", nil)); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Deploy(ctx, deployment("dup", nil)); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("duplicate deploy: %v", err)
	}
	if _, err := e.b.Acquire(ctx, "", "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("acquire unknown: %v", err)
	}
	if err := e.b.Scale(ctx, "", "nope", 1); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("scale unknown: %v", err)
	}
	if err := e.b.Delete(ctx, "", "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("delete unknown: %v", err)
	}
}

func TestScaleUpDownAndFromZero(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.b.Deploy(ctx, deployment("scaler", nil)); err != nil {
		t.Fatal(err)
	}
	e.waitAvailable("scaler", 1)
	if err := e.b.Scale(ctx, "", "scaler", 3); err != nil {
		t.Fatal(err)
	}
	e.waitAvailable("scaler", 3)
	// Calls spread over the replicas: with three fresh counters, six calls
	// never reach count=6 on one of them.
	seen := map[string]bool{}
	for range 6 {
		got, err := e.invoke("scaler")
		if err != nil {
			t.Fatal(err)
		}
		seen[strings.Fields(got)[0]] = true
	}
	if seen["count=6"] || !seen["count=1"] {
		t.Errorf("calls not spread: %v", seen)
	}
	if err := e.b.Scale(ctx, "", "scaler", 0); err != nil {
		t.Fatal(err)
	}
	e.waitAvailable("scaler", 0)
	eventually(t, "workers to stop", func() bool { return workerCount(e.b, "scaler") == 0 })

	// An invocation at zero replicas scales to one and waits.
	got, err := e.invoke("scaler")
	if err != nil || !strings.HasPrefix(got, "count=1") {
		t.Fatalf("scale from zero: %q %v", got, err)
	}
	if st := e.status("scaler"); st.Replicas != 1 {
		t.Errorf("replicas after scale from zero = %d", st.Replicas)
	}
}

func workerCount(b *Backend, name string) int {
	f, err := b.function("openfaas-fn", name)
	if err != nil {
		return -1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.workers)
}

func TestFunctionFailingAtStart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.b.Deploy(ctx, deployment("broken", map[string]string{"FAIL_AT_START": "cannot open model file"})); err != nil {
		t.Fatalf("deploy of a function that fails at start must still answer: %v", err)
	}
	logText := func() string {
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		ch, err := e.b.Query(lctx, logs.Request{Name: "broken"})
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		for m := range ch {
			sb.WriteString(m.Text + "\n")
		}
		return sb.String()
	}
	eventually(t, "the failure in the logs", func() bool {
		text := logText()
		return strings.Contains(text, "cannot open model file") && strings.Contains(text, "exit status 3")
	})
	if st := e.status("broken"); st.AvailableReplicas != 0 || st.Replicas != 1 {
		t.Errorf("status = %+v", st)
	}
	// Restarts back off (0.5 s, 1 s, 2 s, ...): a tight loop would restart
	// this function dozens of times in the next two seconds.
	f, _ := e.b.function("openfaas-fn", "broken")
	restarts := func() int { f.mu.Lock(); defer f.mu.Unlock(); return f.restarts }
	before := restarts()
	time.Sleep(2 * time.Second)
	if n := restarts() - before; n > 3 {
		t.Errorf("%d restarts in 2 s: no backoff for a crash-looping function", n)
	}
	// Invocations fail at once, saying why, instead of waiting out the
	// scale-from-zero timeout (30 s here).
	e.b.cfg.ScaleFromZeroTimeout = 30 * time.Second
	start := time.Now()
	_, err := e.invoke("broken")
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("invoke broken: %v", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("a crash-looping function made the call wait %s", waited)
	}
}

func TestReplicaThatDiesIsRestarted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.b.Deploy(ctx, deployment("phoenix", nil)); err != nil {
		t.Fatal(err)
	}
	e.waitAvailable("phoenix", 1)
	f, _ := e.b.function("openfaas-fn", "phoenix")
	f.mu.Lock()
	var victim *worker
	for _, w := range f.workers {
		victim = w
	}
	f.mu.Unlock()
	victim.mu.Lock()
	cmd := victim.cmd
	victim.mu.Unlock()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a replacement replica", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		_, old := f.workers[victim.id]
		return !old && f.restarts == 1 && len(*f.ready.Load()) == 1
	})
	if got, err := e.invoke("phoenix"); err != nil || !strings.HasPrefix(got, "count=1") {
		t.Fatalf("after restart: %q %v", got, err)
	}
	if n := testutil.ToFloat64(e.b.restarts.WithLabelValues("phoenix.openfaas-fn")); n != 1 {
		t.Errorf("pronghorn_replica_restarts_total = %v, want 1", n)
	}
}

func TestUpdateReplacesReplicas(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.b.Deploy(ctx, deployment("upd", map[string]string{"GREETING": "v1"})); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.invoke("upd"); !strings.Contains(got, "greeting=v1") {
		t.Fatalf("v1: %q", got)
	}
	if err := e.b.Update(ctx, deployment("upd", map[string]string{"GREETING": "v2"})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "v2 to serve", func() bool {
		got, err := e.invoke("upd")
		return err == nil && strings.Contains(got, "greeting=v2")
	})
	eventually(t, "the v1 replica to go", func() bool { return workerCount(e.b, "upd") == 1 })
	if err := e.b.Update(ctx, deployment("missing", nil)); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("update of unknown function: %v", err)
	}
}

func TestRestartBringsFunctionsBack(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.b.Deploy(ctx, deployment("durable", nil)); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Scale(ctx, "", "durable", 2); err != nil {
		t.Fatal(err)
	}
	e.waitAvailable("durable", 2)
	e.close()
	if n := countAgents(e.dataDir); n != 0 {
		t.Fatalf("%d agents still running after Close", n)
	}
	e.open()
	st := e.status("durable")
	if st.Replicas != 2 || st.Image != "testfn:latest" {
		t.Fatalf("after restart: %+v", st)
	}
	e.waitAvailable("durable", 2)
}

func TestOrphanWorkersAreKilled(t *testing.T) {
	requireRoot(t)
	dataDir := t.TempDir()
	// A process that looks like an agent of a provider on dataDir. It
	// blocks in the shell's builtin read, so it never forks: a child
	// caught between fork and exec carries the same command line and
	// would be counted too.
	orphan := exec.Command("/bin/sh", "-c", "read x #", "--run-dir", filepath.Join(dataDir, "run"), "x")
	stdin, err := orphan.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- orphan.Wait() }()
	if n := killOrphans(filepath.Join(dataDir, "run")); n != 1 {
		t.Fatalf("killed %d orphans, want 1", n)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("orphan still running")
	}
}

// countAgents counts live agent processes of the provider on dataDir.
func countAgents(dataDir string) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	marker := "--run-dir\x00" + filepath.Join(dataDir, "run") + "\x00"
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), marker) {
			n++
		}
	}
	return n
}

func TestLogsTailSinceFollow(t *testing.T) {
	lb := newLogBook(3)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, text := range []string{"a", "b", "c", "d"} {
		lb.add("ns/f", logs.Message{Name: "f", Instance: map[bool]string{true: "w1", false: "w2"}[i%2 == 0], Text: text, Timestamp: base.Add(time.Duration(i) * time.Second)})
	}
	collect := func(req logs.Request) string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var out []string
		for m := range lb.query(ctx, "ns/f", req) {
			out = append(out, m.Text)
		}
		return strings.Join(out, "")
	}
	since := base.Add(2 * time.Second)
	for _, tc := range []struct {
		name string
		req  logs.Request
		want string
	}{
		{"ring keeps the newest", logs.Request{}, "bcd"},
		{"tail", logs.Request{Tail: 2}, "cd"},
		{"since", logs.Request{Since: &since}, "cd"},
		{"instance", logs.Request{Instance: "w2"}, "bd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := collect(tc.req); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("follow", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		ch := lb.query(ctx, "ns/f", logs.Request{Tail: 1, Follow: true})
		if m := <-ch; m.Text != "d" {
			t.Fatalf("first = %q", m.Text)
		}
		lb.add("ns/f", logs.Message{Text: "e"})
		if m := <-ch; m.Text != "e" {
			t.Fatalf("followed = %q", m.Text)
		}
		cancel()
		for range ch {
		}
	})
}

// A function directory's function.json may declare a base environment, as
// an image's ENV does; the deploy request's envVars win over it.
func TestDeclaredEnvironment(t *testing.T) {
	e := newEnv(t)
	decl := `{"fprocess": "ignored when envProcess is set", "env": {"GREETING": "declared"}}`
	if err := os.WriteFile(filepath.Join(e.fnDir, "testfn", "function.json"), []byte(decl), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.b.Deploy(ctx, deployment("plain", nil)); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Deploy(ctx, deployment("override", map[string]string{"GREETING": "requested"})); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"plain": "greeting=declared", "override": "greeting=requested"} {
		got, err := e.invoke(name)
		if err != nil || !strings.Contains(got, want) {
			t.Errorf("%s: %q %v, want %q", name, got, err, want)
		}
	}
	if st := e.status("plain"); st.EnvVars["GREETING"] != "" {
		t.Errorf("status reports the declared env as the request's: %v", st.EnvVars)
	}
}

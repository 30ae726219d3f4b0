// Package e2e drives the real pronghorn binary over HTTP, as faas-cli and the
// OpenFaaS gateway do, with the sample functions under benchmarks/functions.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"
)

func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the provider runs workers in their own namespaces")
	}
}

func requirements(t testing.TB) {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("pypy3"); err != nil {
		t.Skip("needs pypy3 for the sample function (apt-get install pypy3, or scripts/setup.sh)")
	}
}

// buildBinary builds pronghorn once per test binary run.
func buildBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pronghorn")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

type provider struct {
	t       testing.TB
	bin     string
	dataDir string
	url     string
	cmd     *exec.Cmd
	logs    *syncBuffer
	// user and password are sent on /system/* calls: the credentials the
	// provider generated in its data dir, when it did.
	user, password string
}

// syncBuffer collects the provider's output, which os/exec copies in from
// another goroutine while tests read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startProvider(t testing.TB, bin, dataDir string, extra ...string) *provider {
	t.Helper()
	port := freePort(t)
	p := &provider{t: t, bin: bin, dataDir: dataDir, url: fmt.Sprintf("http://127.0.0.1:%d", port), logs: &syncBuffer{}}
	// Worker network settings of this package's own (extra may override
	// them): providers of other test packages may run on this host now.
	p.launch(10*time.Second, append([]string{"--port", fmt.Sprint(port), "--data-dir", dataDir,
		"--functions-dir", filepath.Join(repoRoot(t), "benchmarks", "functions"),
		"--worker-interface-prefix", "pe2e", "--worker-subnet", "10.201.0.0/16"}, extra...)...)
	// Written before the provider listens.
	p.user, p.password = credentials(dataDir)
	return p
}

// launch runs `pronghorn provider args...`, stops it when the test ends
// (showing its log if the test failed), and waits up to timeout for its
// /healthz.
func (p *provider) launch(timeout time.Duration, args ...string) {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, append([]string{"provider"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.stop(syscall.SIGTERM)
		}
		if p.t.Failed() {
			p.t.Logf("provider log:\n%s", p.logs)
		}
	})
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(p.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("provider not healthy: %v\n%s", err, p.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// credentials reads the basic auth files a provider keeps in dataDir;
// empty when there are none (basic auth off, or credentials elsewhere).
func credentials(dataDir string) (user, password string) {
	u, err := os.ReadFile(filepath.Join(dataDir, "secrets", "basic-auth-user"))
	if err != nil {
		return "", ""
	}
	pw, err := os.ReadFile(filepath.Join(dataDir, "secrets", "basic-auth-password"))
	if err != nil {
		return "", ""
	}
	return strings.TrimSpace(string(u)), strings.TrimSpace(string(pw))
}

func (p *provider) stop(sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
	_ = p.cmd.Wait()
}

// do calls the API, with the provider's credentials on /system/* calls.
func (p *provider) do(method, path string, body any) (int, string) {
	p.t.Helper()
	return p.send(method, path, body, strings.HasPrefix(path, "/system/") && p.password != "")
}

// send calls the API, with the provider's credentials if withAuth.
func (p *provider) send(method, path string, body any, withAuth bool) (int, string) {
	p.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case rawBody:
		r = strings.NewReader(string(b))
	default:
		raw, _ := json.Marshal(body)
		r = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, p.url+path, r)
	if withAuth {
		req.SetBasicAuth(p.user, p.password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func (p *provider) must(want int, method, path string, body any) string {
	p.t.Helper()
	code, out := p.do(method, path, body)
	if code != want {
		p.t.Fatalf("%s %s = %d %q, want %d", method, path, code, out, want)
	}
	return out
}

func (p *provider) status(name string) types.FunctionStatus {
	p.t.Helper()
	var st types.FunctionStatus
	if err := json.Unmarshal([]byte(p.must(200, "GET", "/system/function/"+name, nil)), &st); err != nil {
		p.t.Fatal(err)
	}
	return st
}

func (p *provider) waitAvailable(name string, n uint64) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for p.status(name).AvailableReplicas != n {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s never reached %d available replicas: %+v", name, n, p.status(name))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// agents counts live worker processes of the provider using dataDir.
func agents(dataDir string) int {
	entries, _ := os.ReadDir("/proc")
	marker := "--run-dir\x00" + filepath.Join(dataDir, "run") + "\x00"
	n := 0
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), marker) {
			n++
		}
	}
	return n
}

type counterReply struct {
	Count int `json:"count"`
	PID   int `json:"pid"`
}

func TestProviderLifecycle(t *testing.T) {
	requirements(t)
	// Cold starts only: a replica scaled from zero must start afresh here,
	// not from a snapshot the default strategy may have taken.
	p := startProvider(t, buildBinary(t), t.TempDir(), "--strategy", "cold")

	p.must(202, "POST", "/system/functions", types.FunctionDeployment{Service: "counter", Image: "counter-pypy:latest"})
	if code, _ := p.do("POST", "/system/functions", types.FunctionDeployment{Service: "counter", Image: "counter-pypy"}); code != 409 {
		t.Errorf("duplicate deploy = %d, want 409", code)
	}
	if code, body := p.do("POST", "/system/functions", types.FunctionDeployment{Service: "ghost", Image: "no-such-function"}); code != 400 || !strings.Contains(body, "no-such-function") {
		t.Errorf("unknown image = %d %q", code, body)
	}
	// An image names a directory under --functions-dir, nothing else.
	for _, image := range []string{"/", "/etc", "../../etc", filepath.Join(repoRoot(t), "benchmarks", "functions", "..", "..")} {
		code, body := p.do("POST", "/system/functions", types.FunctionDeployment{Service: "escape", Image: image, EnvProcess: "true"})
		if code != 400 || strings.Count(strings.TrimSpace(body), "\n") != 0 {
			t.Errorf("image %q = %d %q, want 400 with a one-line reason", image, code, body)
		}
	}

	var list []types.FunctionStatus
	if err := json.Unmarshal([]byte(p.must(200, "GET", "/system/functions", nil)), &list); err != nil || len(list) != 1 || list[0].Name != "counter" {
		t.Fatalf("list = %v %v", list, err)
	}

	for want := 1; want <= 3; want++ {
		var r counterReply
		if err := json.Unmarshal([]byte(p.must(200, "POST", "/function/counter", "x")), &r); err != nil || r.Count != want {
			t.Fatalf("invoke %d: %+v %v", want, r, err)
		}
	}

	p.must(202, "POST", "/system/scale-function/counter", types.ScaleServiceRequest{ServiceName: "counter", Replicas: 2})
	p.waitAvailable("counter", 2)
	if n := agents(p.dataDir); n != 2 {
		t.Errorf("%d agents for 2 replicas", n)
	}
	p.must(202, "POST", "/system/scale-function/counter", types.ScaleServiceRequest{ServiceName: "counter", Replicas: 0})
	p.waitAvailable("counter", 0)

	// Scale from zero on invocation.
	var r counterReply
	if err := json.Unmarshal([]byte(p.must(200, "GET", "/function/counter", nil)), &r); err != nil || r.Count != 1 {
		t.Fatalf("invoke from zero: %+v %v", r, err)
	}
	if st := p.status("counter"); st.Replicas != 1 || st.InvocationCount < 4 {
		t.Errorf("status after scale from zero: %+v", st)
	}

	p.must(202, "DELETE", "/system/functions", types.DeleteFunctionRequest{FunctionName: "counter"})
	p.must(404, "GET", "/system/function/counter", nil)
	deadline := time.Now().Add(10 * time.Second)
	for agents(p.dataDir) != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := agents(p.dataDir); n != 0 {
		t.Errorf("%d agents left after delete", n)
	}
}

func TestProviderRestartAndCrash(t *testing.T) {
	requirements(t)
	bin := buildBinary(t)
	dataDir := t.TempDir()

	p := startProvider(t, bin, dataDir, "--strategy", "cold")
	p.must(202, "POST", "/system/functions", types.FunctionDeployment{Service: "keeper", Image: "counter-pypy"})
	p.waitAvailable("keeper", 1)
	// Graceful shutdown stops every worker.
	p.stop(syscall.SIGTERM)
	if n := agents(dataDir); n != 0 {
		t.Fatalf("%d agents left after SIGTERM", n)
	}

	// The function comes back with its replicas.
	p = startProvider(t, bin, dataDir, "--strategy", "cold")
	p.waitAvailable("keeper", 1)

	// SIGKILL in the middle of a deploy: afterwards the function is either
	// fully there or not there at all, and no worker of the dead provider
	// survives.
	// The kill may come before or after the answer: only the state after
	// it matters, so this call's outcome is not checked.
	body, _ := json.Marshal(types.FunctionDeployment{Service: "halfway", Image: "counter-pypy"})
	req, _ := http.NewRequest("POST", p.url+"/system/functions", bytes.NewReader(body))
	req.SetBasicAuth(p.user, p.password)
	go func() {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(5 * time.Millisecond)
	p.stop(syscall.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for agents(dataDir) != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := agents(dataDir); n != 0 {
		t.Fatalf("%d orphan agents after SIGKILL", n)
	}
	p = startProvider(t, bin, dataDir, "--strategy", "cold")
	var list []types.FunctionStatus
	if err := json.Unmarshal([]byte(p.must(200, "GET", "/system/functions", nil)), &list); err != nil {
		t.Fatal(err)
	}
	for _, f := range list {
		if f.Name == "halfway" {
			// Stored, so it must be whole and start.
			p.waitAvailable("halfway", 1)
		}
	}
	p.waitAvailable("keeper", 1)
	var r counterReply
	if err := json.Unmarshal([]byte(p.must(200, "GET", "/function/keeper", nil)), &r); err != nil || r.Count != 1 {
		t.Fatalf("invoke after restart: %+v %v", r, err)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Basic auth as faas-provider does it: /system/* needs the credentials from
// secret_mount_path; invocations, /healthz and /metrics stay open.
func TestProviderBasicAuth(t *testing.T) {
	requirements(t)
	secrets := t.TempDir()
	for name, value := range map[string]string{"basic-auth-user": "admin", "basic-auth-password": "s3cret"} {
		if err := os.WriteFile(filepath.Join(secrets, name), []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dataDir := t.TempDir()
	p := startProvider(t, buildBinary(t), dataDir, "--basic-auth", "--secret-mount-path", secrets)
	if _, err := os.Stat(filepath.Join(dataDir, "secrets")); !os.IsNotExist(err) {
		t.Errorf("credentials generated in the data dir although --secret-mount-path was given: %v", err)
	}
	if code, _ := p.do("GET", "/system/functions", nil); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", code)
	}
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"admin", "wrong", http.StatusUnauthorized}, {"admin", "s3cret", http.StatusOK}} {
		req, _ := http.NewRequest("GET", p.url+"/system/functions", nil)
		req.SetBasicAuth(tc.user, tc.pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s/%s: %d, want %d", tc.user, tc.pass, resp.StatusCode, tc.want)
		}
	}
	p.must(200, "GET", "/metrics", nil)
	if code, _ := p.do("GET", "/function/absent", nil); code != http.StatusNotFound {
		t.Errorf("invoke without credentials: %d, want 404 (open route, unknown function)", code)
	}
}

// Basic auth is on by default: a fresh provider generates its credentials
// in <data-dir>/secrets, refuses API calls without them, and a restart
// reuses them.
func TestProviderAuthOnByDefault(t *testing.T) {
	requireRoot(t)
	bin, dataDir := buildBinary(t), t.TempDir()
	p := startProvider(t, bin, dataDir)

	secrets := filepath.Join(dataDir, "secrets")
	for path, want := range map[string]os.FileMode{
		secrets: 0o700, filepath.Join(secrets, "basic-auth-user"): 0o600, filepath.Join(secrets, "basic-auth-password"): 0o600,
	} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %o", path, fi, err, want)
		}
	}
	if p.user != "admin" || len(p.password) < 32 {
		t.Fatalf("generated credentials %q / %d characters, want admin and 32+", p.user, len(p.password))
	}
	if n := strings.Count(p.logs.String(), "generated basic auth credentials"); n != 1 {
		t.Errorf("the generation was logged %d times, want once", n)
	}
	if !strings.Contains(p.logs.String(), filepath.Join(secrets, "basic-auth-password")) {
		t.Error("the log does not say where the password is")
	}

	deploy := types.FunctionDeployment{Service: "counter", Image: "counter-pypy"}
	if code, body := p.send("POST", "/system/functions", deploy, false); code != http.StatusUnauthorized {
		t.Errorf("deploy without credentials = %d %q, want 401", code, body)
	}
	user, password := p.user, p.password
	p.password = "wrong"
	if code, _ := p.do("POST", "/system/functions", deploy); code != http.StatusUnauthorized {
		t.Errorf("deploy with a wrong password = %d, want 401", code)
	}
	p.password = password
	if list := p.must(200, "GET", "/system/functions", nil); strings.TrimSpace(list) != "[]" {
		t.Errorf("a refused deploy stored something: %s", list)
	}
	p.must(200, "GET", "/healthz", nil)
	p.must(200, "GET", "/metrics", nil)

	p.stop(syscall.SIGTERM)
	p = startProvider(t, bin, dataDir)
	if p.user != user || p.password != password {
		t.Errorf("the second start changed the credentials")
	}
	p.must(200, "GET", "/system/functions", nil)
	if strings.Contains(p.logs.String(), "generated basic auth credentials") {
		t.Errorf("the second start generated credentials again:\n%s", p.logs)
	}
}

// --basic-auth=false, or basic_auth=false in the environment, opens /system/*
// and says so at start.
func TestProviderAuthOff(t *testing.T) {
	requireRoot(t)
	bin := buildBinary(t)
	for _, tc := range []struct {
		name string
		env  bool
	}{{"flag", false}, {"env", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			if tc.env {
				t.Setenv("basic_auth", "false")
			} else {
				args = append(args, "--basic-auth=false")
			}
			dataDir := t.TempDir()
			p := startProvider(t, bin, dataDir, args...)
			if code, body := p.send("GET", "/system/functions", nil, false); code != http.StatusOK {
				t.Errorf("without credentials = %d %q, want 200", code, body)
			}
			if !strings.Contains(p.logs.String(), "level=WARN msg=\"basic auth is OFF") {
				t.Errorf("no warning at start:\n%s", p.logs)
			}
			if _, err := os.Stat(filepath.Join(dataDir, "secrets")); !os.IsNotExist(err) {
				t.Errorf("credentials generated with basic auth off: %v", err)
			}
		})
	}
}

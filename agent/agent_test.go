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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The test binary doubles as a function process (PRONGHORN_TEST_FUNCTION=1)
// so the agent can be exercised without any runtime installed.
func TestMain(m *testing.M) {
	if raw := os.Getenv(testPodEnv); raw != "" {
		os.Exit(runTestPod(raw))
	}
	if os.Getenv("PRONGHORN_TEST_FUNCTION") == "1" {
		if os.Getenv("EXIT_AT_ONCE") != "" {
			fmt.Println("giving up")
			os.Exit(4)
		}
		var n atomic.Int64
		addr := strings.TrimPrefix(os.Getenv("upstream_url"), "http://")
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			// ?stream=3s answers slowly, a chunk at a time, like a
			// long-running streaming call.
			if d, err := time.ParseDuration(r.URL.Query().Get("stream")); err == nil {
				for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
					w.Write([]byte("."))
					w.(http.Flusher).Flush()
				}
				return
			}
			// ?status=500 answers with that status.
			if code, err := strconv.Atoi(r.URL.Query().Get("status")); err == nil {
				w.WriteHeader(code)
				return
			}
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Echo-Method", r.Method)
			fmt.Fprintf(w, "%d %s %s", n.Add(1), r.URL.RequestURI(), body)
		})
		fmt.Println("function up")
		_ = http.ListenAndServe(addr, nil)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startAgent runs an agent (not isolated: no root needed) supervising the
// test binary as its function, and returns clients for its two sockets.
func startAgent(t *testing.T, env map[string]string) (invoke, control *http.Client, logs *syncBuffer, done <-chan error) {
	t.Helper()
	return startAgentWith(t, env, nil)
}

// startAgentWith is startAgent with a chance to change the config first.
func startAgentWith(t *testing.T, env map[string]string, configure func(*Config)) (invoke, control *http.Client, logs *syncBuffer, done <-chan error) {
	t.Helper()
	return startAgentTweaked(t, env, configure, nil)
}

// startAgentTweaked is startAgentWith with a chance to change the agent
// before it runs (its HTTP client, its plan policy).
func startAgentTweaked(t *testing.T, env map[string]string, configure func(*Config), tweak func(*Agent)) (invoke, control *http.Client, logs *syncBuffer, done <-chan error) {
	t.Helper()
	dir := t.TempDir()
	vars := map[string]string{"PRONGHORN_TEST_FUNCTION": "1", "upstream_url": "http://" + freeAddr(t)}
	for k, v := range env {
		vars[k] = v
	}
	cfg := Config{
		Function: "test.openfaas-fn", Process: os.Args[0], Env: vars,
		InvokeSocket: filepath.Join(dir, "i"), ControlSocket: filepath.Join(dir, "c"),
		ReadyTimeout: Duration(5 * time.Second),
	}
	if configure != nil {
		configure(&cfg)
	}
	logs = &syncBuffer{}
	a, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), logs)
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	stopped := make(chan struct{})
	go func() {
		errc <- a.Run(ctx)
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
	})
	client := func(sock string) *http.Client {
		return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	}
	return client(cfg.InvokeSocket), client(cfg.ControlSocket), logs, errc
}

type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
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

func waitStatus(t *testing.T, control *http.Client) Status {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := control.Get("http://agent/status")
		if err == nil {
			var st Status
			_ = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent never ready: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAgentProxiesAndTimes(t *testing.T) {
	invoke, control, logs, _ := startAgent(t, nil)
	st := waitStatus(t, control)
	if !st.Ready || st.PID == 0 || st.Restored {
		t.Fatalf("status = %+v", st)
	}
	for i, tc := range []struct{ method, path, body, want string }{
		{"GET", "/", "", "1 / "},
		{"POST", "/a/b?x=1&y=2", "payload", "2 /a/b?x=1&y=2 payload"},
		{"PUT", "/put", "p", "3 /put p"},
	} {
		req, _ := http.NewRequest(tc.method, "http://fn"+tc.path, strings.NewReader(tc.body))
		resp, err := invoke.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != tc.want || resp.Header.Get("X-Echo-Method") != tc.method {
			t.Errorf("call %d: %q %q", i, body, resp.Header.Get("X-Echo-Method"))
		}
		d, err := strconv.ParseFloat(resp.Header.Get(durationHeader), 64)
		if err != nil || d <= 0 || d > 5 {
			t.Errorf("call %d: %s = %q", i, durationHeader, resp.Header.Get(durationHeader))
		}
	}
	if !strings.Contains(logs.String(), "function up") {
		t.Errorf("function output not captured: %q", logs.String())
	}
}

func TestAgentFunctionExitingAtStart(t *testing.T) {
	_, _, logs, done := startAgent(t, map[string]string{"EXIT_AT_ONCE": "1"})
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "exit status 4") {
			t.Fatalf("err = %v, want the function's exit status", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent kept running after its function exited")
	}
	if !strings.Contains(logs.String(), "giving up") {
		t.Errorf("function output lost: %q", logs.String())
	}
}

func TestCheckpointRequestValidation(t *testing.T) {
	_, control, _, _ := startAgent(t, nil)
	waitStatus(t, control)
	for _, body := range []string{"", "{", `{"dir": ""}`, `{"dir": "/tmp/x", "upload": {"url": "http://minio:9000/b/o"}}`,
		`{"upload": {"url": ""}}`, `{"upload": {"url": "/objects/k"}}`, `{"upload": {"url": "ftp://minio/b/o"}}`, `{"upload": null}`} {
		resp, err := control.Post("http://agent/checkpoint", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("body %q: %d, want 400", body, resp.StatusCode)
		}
	}
}

func TestReadConfigRejects(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"not json", "{", "decode"},
		{"no process", `{"invokeSocket":"/i","controlSocket":"/c"}`, "no function process"},
		{"no invoke", `{"process":"x","controlSocket":"/c"}`, "invoke"},
		{"no control", `{"process":"x","invokeSocket":"/i"}`, "control"},
		{"bad upstream", `{"process":"x","invokeSocket":"/i","controlSocket":"/c","env":{"upstream_url":"::"}}`, "upstream_url"},
		{"bad duration", `{"process":"x","invokeSocket":"/i","controlSocket":"/c","readyTimeout":"soon"}`, "decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadConfig(strings.NewReader(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	c, err := ReadConfig(strings.NewReader(`{"process":"x","invokeSocket":"/i","controlSocket":"/c","readyTimeout":"2s"}`))
	if err != nil || time.Duration(c.ReadyTimeout) != 2*time.Second || c.SecretsDir != defaultSecretsDir {
		t.Errorf("valid config: %+v %v", c, err)
	}
}

func TestEstablishedPortParsing(t *testing.T) {
	for _, tc := range []struct {
		addr string
		port int
	}{
		{"0100007F:1388", 5000},
		{"00000000000000000000000001000000:1F90", 8080},
		{"garbage", -1},
		{"0100007F:ZZZZ", -1},
	} {
		if got := hexPort(tc.addr); got != tc.port {
			t.Errorf("hexPort(%q) = %d, want %d", tc.addr, got, tc.port)
		}
	}
}

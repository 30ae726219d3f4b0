package agent

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/pronghorn-openfaas/pronghorn/snapshot"
	"github.com/pronghorn-openfaas/pronghorn/snapshot/snapshottest"
)

// fakeProvider answers plan requests with plan and records them.
type fakeProvider struct {
	srv *httptest.Server

	mu       sync.Mutex
	plan     string // JSON answered with status
	status   int
	delay    time.Duration
	requests []recordedPlanRequest
}

type recordedPlanRequest struct {
	method, path, auth, contentType string
	body                            planRequest
}

func newFakeProvider(t *testing.T) *fakeProvider {
	p := &fakeProvider{plan: "{}", status: http.StatusOK}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *fakeProvider) serve(w http.ResponseWriter, r *http.Request) {
	var body planRequest
	json.NewDecoder(r.Body).Decode(&body)
	p.mu.Lock()
	p.requests = append(p.requests, recordedPlanRequest{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body})
	plan, status, delay := p.plan, p.status, p.delay
	p.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	w.WriteHeader(status)
	io.WriteString(w, plan)
}

func (p *fakeProvider) answer(status int, plan string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status, p.plan = status, plan
}

func (p *fakeProvider) seen() []recordedPlanRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]recordedPlanRequest(nil), p.requests...)
}

func writeToken(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var fastPlanPolicy = planPolicy{attempt: time.Second, window: 2 * time.Second, backoff: 20 * time.Millisecond}

func TestFetchPlan(t *testing.T) {
	ctx := context.Background()
	prov := newFakeProvider(t)
	token := writeToken(t, "  eyJhbGciOi.pod-token\n")
	cfg := Config{ProviderURL: prov.srv.URL + "/", TokenFile: token, PodName: "counter-abc", PodNamespace: "openfaas-fn"}

	prov.answer(http.StatusOK, `{"restore": {"url": "http://minio:9000/b/objects/k?X-Amz-Signature=s", "sha256": "ab", "size": 42, "key": "fn/k"}, "future": true}`)
	plan, err := fetchPlan(ctx, http.DefaultClient, cfg, fastPlanPolicy)
	if err != nil {
		t.Fatal(err)
	}
	want := RemoteImage{URL: "http://minio:9000/b/objects/k?X-Amz-Signature=s", SHA256: "ab", Size: 42, Key: "fn/k"}
	if plan.Restore == nil || *plan.Restore != want {
		t.Errorf("plan %+v, want restore %+v", plan.Restore, want)
	}
	reqs := prov.seen()
	wantReq := recordedPlanRequest{"POST", PlanPath, "Bearer eyJhbGciOi.pod-token", "application/json", planRequest{"counter-abc", "openfaas-fn"}}
	if len(reqs) != 1 || reqs[0] != wantReq {
		t.Errorf("requests %+v, want one %+v", reqs, wantReq)
	}

	prov.answer(http.StatusOK, `{}`)
	if plan, err := fetchPlan(ctx, http.DefaultClient, cfg, fastPlanPolicy); err != nil || plan.Restore != nil {
		t.Errorf("cold plan: %+v, %v", plan, err)
	}

	for _, tc := range []struct {
		name, plan, want string
		status           int
		tokenFile        string
	}{
		{name: "refused", status: http.StatusUnauthorized, plan: "not a pod's token for this provider\nmore", want: "401 Unauthorized: not a pod's token for this provider"},
		{name: "server error", status: http.StatusServiceUnavailable, plan: "engine down", want: "503"},
		{name: "bad JSON", status: http.StatusOK, plan: `{"restore": `, want: "decode the plan"},
		{name: "too large", status: http.StatusOK, plan: `{"x": "` + strings.Repeat("a", maxPlanBytes) + `"}`, want: "larger than"},
		{name: "no token file", status: http.StatusOK, plan: `{}`, tokenFile: filepath.Join(t.TempDir(), "none"), want: "no such file"},
		{name: "empty token", status: http.StatusOK, plan: `{}`, tokenFile: writeToken(t, " \n"), want: "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prov.answer(tc.status, tc.plan)
			before := len(prov.seen())
			c := cfg
			if tc.tokenFile != "" {
				c.TokenFile = tc.tokenFile
			}
			_, err := fetchPlan(ctx, http.DefaultClient, c, fastPlanPolicy)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			sent := len(prov.seen()) - before
			if wantSent := map[bool]int{true: 0, false: 1}[tc.tokenFile != ""]; sent != wantSent {
				t.Errorf("%d requests, want %d (answers are not retried)", sent, wantSent)
			}
		})
	}

	t.Run("slow provider is not asked twice", func(t *testing.T) {
		prov.answer(http.StatusOK, `{}`)
		prov.mu.Lock()
		prov.delay = time.Second
		prov.mu.Unlock()
		defer func() { prov.mu.Lock(); prov.delay = 0; prov.mu.Unlock() }()
		before := len(prov.seen())
		_, err := fetchPlan(ctx, http.DefaultClient, cfg, planPolicy{attempt: 100 * time.Millisecond, window: 2 * time.Second, backoff: 10 * time.Millisecond})
		if err == nil || len(prov.seen())-before != 1 {
			t.Errorf("err = %v after %d requests; want a timeout after one", err, len(prov.seen())-before)
		}
	})

	t.Run("provider not routable yet", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		c := cfg
		c.ProviderURL = "http://" + addr
		start := time.Now()
		_, err = fetchPlan(ctx, http.DefaultClient, c, fastPlanPolicy)
		if err == nil || !strings.Contains(err.Error(), "refused") || time.Since(start) < fastPlanPolicy.window/2 {
			t.Errorf("err = %v after %v; want connection refused after retrying for about %v", err, time.Since(start), fastPlanPolicy.window)
		}

		// The provider comes up while the agent retries.
		late := &http.Server{Handler: http.HandlerFunc(prov.serve)}
		time.AfterFunc(300*time.Millisecond, func() {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Errorf("listen again on %s: %v", addr, err)
				return
			}
			go late.Serve(l)
		})
		defer late.Close()
		prov.answer(http.StatusOK, `{}`)
		if _, err := fetchPlan(ctx, http.DefaultClient, c, fastPlanPolicy); err != nil {
			t.Errorf("provider up after 300ms: %v", err)
		}
	})
}

// countingTransport counts the requests an agent sends anywhere.
type countingTransport struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// remoteImage packs a fake image directory into MinIO through a presigned
// PUT, as a pod's checkpoint does, and returns how a plan names it.
func remoteImage(t *testing.T, s *snapshot.MinIOStore, key string) RemoteImage {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	for name, data := range map[string][]byte{"inventory.img": []byte("inv"), "pstree.img": bytes.Repeat([]byte("p"), 5000), "pages-1.img": bytes.Repeat([]byte("page"), 100000)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	put, err := s.PresignPut(ctx, key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	up, err := snapshot.UploadURL(ctx, http.DefaultClient, put.String(), dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, key, snapshot.Manifest{PackedBytes: up.PackedBytes, SHA256: up.SHA256}); err != nil {
		t.Fatal(err)
	}
	get, err := s.PresignGet(ctx, key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return RemoteImage{URL: get.String(), SHA256: up.SHA256, Size: up.PackedBytes, Key: key}
}

func TestFetchImage(t *testing.T) {
	m := snapshottest.StartMinIO(t)
	ctx := context.Background()
	s, err := snapshot.NewMinIOStore(ctx, m.Config("images"))
	if err != nil {
		t.Fatal(err)
	}
	img := remoteImage(t, s, "fn/v/r00001-a")
	dir := t.TempDir()
	if err := fetchImage(ctx, http.DefaultClient, img, dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "pages-1.img")); err != nil || !bytes.Equal(b, bytes.Repeat([]byte("page"), 100000)) {
		t.Errorf("unpacked images differ: %v", err)
	}
	bad := img
	bad.SHA256 = hex.EncodeToString(make([]byte, 32))
	if err := fetchImage(ctx, http.DefaultClient, bad, t.TempDir()); !snapshot.ProvenBad(err) {
		t.Errorf("wrong checksum: %v, want it proven bad", err)
	}
}

// TestPodStartPlans runs agents in pod mode (not isolated, no CRIU) against
// a fake provider and a real MinIO: whatever the plan, the function
// starts, and the status says whether the snapshot is to blame.
func TestPodStartPlans(t *testing.T) {
	m := snapshottest.StartMinIO(t)
	ctx := context.Background()
	const bucket = "pods"
	s, err := snapshot.NewMinIOStore(ctx, m.Config(bucket))
	if err != nil {
		t.Fatal(err)
	}
	good := remoteImage(t, s, "fn/v/r00001-good")
	corrupt := remoteImage(t, s, "fn/v/r00001-corrupt")
	obj, err := m.Client(t).GetObject(ctx, bucket, "objects/"+corrupt.Key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if _, err := m.Client(t).PutObject(ctx, bucket, "objects/"+corrupt.Key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	missing := good
	missing.Key = "fn/v/r00002-gone"
	if u, err := s.PresignGet(ctx, missing.Key, time.Minute); err != nil {
		t.Fatal(err)
	} else {
		missing.URL = u.String()
	}
	refusedPort, err := snapshottest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	refused := good
	refused.URL = fmt.Sprintf("http://127.0.0.1:%d/pods/objects/fn?X-Amz-Signature=s", refusedPort)
	unsigned := good
	unsigned.SHA256 = ""
	plan := func(img RemoteImage) string {
		b, _ := json.Marshal(StartPlan{Restore: &img})
		return string(b)
	}

	tests := []struct {
		name        string
		provider    bool // a provider URL at all
		status      int
		plan        string
		wantErr     string // in RestoreError; "" for none
		wantCorrupt bool
	}{
		{name: "no provider URL", provider: false},
		{name: "cold plan", provider: true, status: http.StatusOK, plan: `{}`},
		{name: "provider refuses", provider: true, status: http.StatusForbidden, plan: "no"},
		{name: "plan undecodable", provider: true, status: http.StatusOK, plan: "<html>"},
		{name: "intact snapshot, criu missing", provider: true, status: http.StatusOK, plan: plan(good), wantErr: "criu binary"},
		{name: "corrupt snapshot", provider: true, status: http.StatusOK, plan: plan(corrupt), wantErr: "corrupt", wantCorrupt: true},
		{name: "missing snapshot", provider: true, status: http.StatusOK, plan: plan(missing), wantErr: "404", wantCorrupt: true},
		{name: "store unreachable", provider: true, status: http.StatusOK, plan: plan(refused), wantErr: "refused"},
		{name: "plan without checksum", provider: true, status: http.StatusOK, plan: plan(unsigned), wantErr: "sha256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prov := newFakeProvider(t)
			prov.answer(tc.status, tc.plan)
			work := t.TempDir()
			counter := &countingTransport{next: http.DefaultTransport}
			invoke, control, _, _ := startAgentTweaked(t, nil, func(c *Config) {
				c.CRIUPath = "/nonexistent/criu"
				c.WorkDir = work
				if tc.provider {
					c.ProviderURL = prov.srv.URL
					c.TokenFile = writeToken(t, "tok")
					c.PodName, c.PodNamespace = "counter-abc", "openfaas-fn"
				}
			}, func(a *Agent) {
				a.client = &http.Client{Transport: counter}
				a.planPolicy = fastPlanPolicy
			})
			st := waitStatus(t, control)
			t.Logf("status %+v", st)
			if st.Restored || st.RestoreCorrupt != tc.wantCorrupt || (tc.wantErr == "") != (st.RestoreError == "") ||
				!strings.Contains(st.RestoreError, tc.wantErr) {
				t.Errorf("status %+v; want a cold start, restore error mentioning %q, corrupt %v", st, tc.wantErr, tc.wantCorrupt)
			}
			if strings.Contains(st.RestoreError, "Signature") {
				t.Errorf("the status leaks a presigned URL: %q", st.RestoreError)
			}
			resp, err := invoke.Get("http://fn/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.HasPrefix(string(body), "1 ") {
				t.Errorf("first call: %q, want a cold function's first", body)
			}
			if !tc.provider && counter.n.Load() != 0 {
				t.Errorf("%d requests without a provider URL", counter.n.Load())
			}
			if tc.provider && len(prov.seen()) != 1 {
				t.Errorf("%d plan requests, want 1", len(prov.seen()))
			}
			if left, _ := os.ReadDir(work); len(left) != 0 {
				t.Errorf("work dir not cleaned up: %v", left)
			}
		})
	}
}

// TestCheckpointUploadFailures: the function keeps serving and nothing is
// left in the work dir when a pod's checkpoint fails.
func TestCheckpointUploadFailures(t *testing.T) {
	work := t.TempDir()
	invoke, control, _, _ := startAgentWith(t, nil, func(c *Config) {
		c.CRIUPath = "/nonexistent/criu"
		c.WorkDir = work
	})
	st := waitStatus(t, control)
	// This agent is not PID 1, so it does not pin the function's PID: the
	// function gets what the host hands out next, and below the pinned PID
	// the checkpoint is refused before it dumps. Either way it fails.
	wantErr := "criu binary"
	if st.PID < functionPID {
		wantErr = "not pinned"
	}
	resp, err := control.Post("http://agent/checkpoint", "application/json",
		strings.NewReader(`{"upload": {"url": "http://127.0.0.1:1/b/objects/k?X-Amz-Signature=s"}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(b), wantErr) {
		t.Errorf("checkpoint (function at PID %d): %d %s, want 500 mentioning %q", st.PID, resp.StatusCode, b, wantErr)
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("work dir not cleaned up: %v", left)
	}
	if resp, err := invoke.Get("http://fn/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("function after a failed checkpoint: %v", err)
	} else {
		resp.Body.Close()
	}
}

// The status says which plan a pod followed and how many calls its
// function has served, as the provider's engine counts them: what a
// restarted provider needs to take the pod over.
func TestPodStatusReportsPlanAndCalls(t *testing.T) {
	for _, tc := range []struct {
		name     string
		provider bool
		status   int
		plan     string
		calls    []string // query strings
		want     *PlanStatus
		served   int64
	}{
		{name: "local mode, no plan", calls: []string{"", ""}, served: 2},
		{name: "provider down", provider: true, status: http.StatusServiceUnavailable, plan: "restarting", calls: []string{""}, served: 1},
		{name: "planned cold", provider: true, status: http.StatusOK, plan: `{"version": "3f9c0a1b2c3d4e5f", "checkpointAt": 3}`,
			calls: []string{"", "status=404", "status=500", "status=503", ""}, want: &PlanStatus{Version: "3f9c0a1b2c3d4e5f", CheckpointAt: 3}, served: 3},
		{name: "planned without snapshots", provider: true, status: http.StatusOK, plan: `{}`, want: &PlanStatus{}},
		{name: "restore failed", provider: true, status: http.StatusOK,
			plan:  `{"version": "3f9c0a1b2c3d4e5f", "checkpointAt": 5, "restore": {"url": "http://127.0.0.1:1/b/objects/k?X-Amz-Signature=s", "sha256": "ab", "size": 42, "key": "fn/k/r00003-a", "requestNumber": 3}}`,
			calls: []string{""}, want: &PlanStatus{Version: "3f9c0a1b2c3d4e5f", CheckpointAt: 5}, served: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prov := newFakeProvider(t)
			prov.answer(tc.status, tc.plan)
			invoke, control, _, _ := startAgentTweaked(t, nil, func(c *Config) {
				c.CRIUPath = "/nonexistent/criu"
				c.WorkDir = t.TempDir()
				if tc.provider {
					c.ProviderURL = prov.srv.URL
					c.TokenFile = writeToken(t, "tok")
					c.PodName, c.PodNamespace = "counter-abc", "openfaas-fn"
				}
			}, func(a *Agent) { a.planPolicy = fastPlanPolicy })
			waitStatus(t, control)
			for _, q := range tc.calls {
				resp, err := invoke.Get("http://fn/?" + q)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			st := waitStatus(t, control)
			if st.Served != tc.served {
				t.Errorf("served %d, want %d", st.Served, tc.served)
			}
			if (st.Plan == nil) != (tc.want == nil) || (st.Plan != nil && *st.Plan != *tc.want) {
				t.Errorf("plan %+v, want %+v", st.Plan, tc.want)
			}
		})
	}
}

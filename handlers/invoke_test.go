package handlers

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/provider"
)

type seenRequest struct {
	Method, Path, RawQuery, Host string
	Header                       http.Header
	Body                         string
}

// echoUpstream stands in for an agent: it records what reached it and
// answers 201 with a marker header, an X-Duration-Seconds like the agent's,
// and the request body echoed back.
type echoUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

func newEchoUpstream(t testing.TB) *echoUpstream {
	u := &echoUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Clone(), string(b)})
		u.mu.Unlock()
		w.Header().Set("X-Test-Reply", "yes")
		w.Header().Add("X-Multi", "1")
		w.Header().Add("X-Multi", "2")
		w.Header().Set(durationHeader, "0.250000")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "reply:"+string(b))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *echoUpstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// newInvokeEnv is newEnv with leases pointing at an echo upstream and figlet
// deployed in "dev" too.
func newInvokeEnv(t *testing.T, mutate func(*Config)) (*testEnv, *echoUpstream) {
	e := newEnv(t, mutate)
	up := newEchoUpstream(t)
	e.fb.upstream = mustURL(t, up.URL)
	e.fb.released = make(chan provider.Outcome, 64)
	if err := e.fb.Deploy(context.Background(), types.FunctionDeployment{Service: "figlet", Image: "x", Namespace: "dev"}); err != nil {
		t.Fatal(err)
	}
	return e, up
}

func TestInvokePassThrough(t *testing.T) {
	cases := []struct {
		method, path string
		body         string
		wantPath     string
		wantQuery    string
		wantNS       string
	}{
		{"POST", "/function/figlet/sub/path?x=1&y=two%20words", "hello", "/sub/path", "x=1&y=two%20words", "openfaas-fn"},
		{"GET", "/function/figlet", "", "/", "", "openfaas-fn"},
		{"GET", "/function/figlet/", "", "/", "", "openfaas-fn"},
		{"PUT", "/function/figlet/a/b/", "put-body", "/a/b/", "", "openfaas-fn"},
		{"DELETE", "/function/figlet/item/7", "", "/item/7", "", "openfaas-fn"},
		{"PATCH", "/function/figlet", `{"a":1}`, "/", "", "openfaas-fn"},
		{"OPTIONS", "/function/figlet", "", "/", "", "openfaas-fn"},
		{"PURGE", "/function/figlet/cache", "", "/cache", "", "openfaas-fn"},
		{"POST", "/function/figlet.dev/x", "ns", "/x", "", "dev"},
		{"GET", "/function/figlet/x?namespace=dev", "", "/x", "namespace=dev", "dev"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			e, up := newInvokeEnv(t, nil)
			hdr := http.Header{
				"X-Custom":   {"v1", "v2"},
				"Connection": {"X-Hop"},
				"X-Hop":      {"must not pass"},
				"User-Agent": {"faas-cli/test"},
			}
			res, body := e.do(t, tc.method, tc.path, tc.body, hdr)

			if res.StatusCode != http.StatusCreated {
				t.Fatalf("status = %d, body %q", res.StatusCode, body)
			}
			if body != "reply:"+tc.body {
				t.Errorf("body = %q", body)
			}
			if res.Header.Get("X-Test-Reply") != "yes" || strings.Join(res.Header.Values("X-Multi"), ",") != "1,2" {
				t.Errorf("response headers not passed back: %v", res.Header)
			}

			seen := up.requests()
			if len(seen) != 1 {
				t.Fatalf("upstream saw %d requests", len(seen))
			}
			got := seen[0]
			if got.Method != tc.method || got.Path != tc.wantPath || got.RawQuery != tc.wantQuery || got.Body != tc.body {
				t.Errorf("upstream got %s %s ?%s body %q", got.Method, got.Path, got.RawQuery, got.Body)
			}
			if v := got.Header.Values("X-Custom"); strings.Join(v, ",") != "v1,v2" {
				t.Errorf("X-Custom = %v", v)
			}
			if got.Header.Get("X-Hop") != "" {
				t.Error("hop-by-hop header named in Connection was forwarded")
			}
			if got.Header.Get("User-Agent") != "faas-cli/test" {
				t.Errorf("User-Agent = %q", got.Header.Get("User-Agent"))
			}
			if got.Header.Get("X-Forwarded-For") != "127.0.0.1" {
				t.Errorf("X-Forwarded-For = %q", got.Header.Get("X-Forwarded-For"))
			}
			if want := mustURL(t, e.srv.URL).Host; got.Header.Get("X-Forwarded-Host") != want {
				t.Errorf("X-Forwarded-Host = %q, want %q", got.Header.Get("X-Forwarded-Host"), want)
			}

			leases := e.fb.allLeases()
			if len(leases) != 1 || leases[0].ns != tc.wantNS || leases[0].name != "figlet" {
				t.Fatalf("leases = %+v", leases)
			}
			outs := leases[0].released()
			if len(outs) != 1 {
				t.Fatalf("Release called %d times", len(outs))
			}
			o := outs[0]
			if o.StatusCode != 201 || o.Upstream != 250*time.Millisecond || o.Total <= 0 || o.Err != nil {
				t.Errorf("outcome = %+v", o)
			}
		})
	}
}

func TestInvokeHead(t *testing.T) {
	e, up := newInvokeEnv(t, nil)
	res, body := e.do(t, "HEAD", "/function/figlet", "", nil)
	if res.StatusCode != 201 || body != "" || len(up.requests()) != 1 || up.requests()[0].Method != "HEAD" {
		t.Fatalf("HEAD: %d %q %v", res.StatusCode, body, up.requests())
	}
}

func TestInvokeErrors(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // nothing listens there any more

	cases := []struct {
		name       string
		path       string
		setup      func(*testEnv)
		cfg        func(*Config)
		status     int
		bodyHas    string
		wantLeases int
	}{
		{name: "unknown function", path: "/function/nope", status: 404, bodyHas: "not found"},
		{name: "unknown namespace suffix", path: "/function/figlet.other", status: 404},
		{name: "invalid name", path: "/function/Fig_let", status: 400, bodyHas: "DNS-1123"},
		{name: "invalid namespace", path: "/function/figlet?namespace=Nope", status: 400},
		{name: "unavailable", path: "/function/figlet", status: 503, bodyHas: "no ready replica",
			setup: func(e *testEnv) { e.fb.acquireErr = fmt.Errorf("no ready replica in 30s: %w", errdefs.ErrUnavailable) }},
		{name: "acquire deadline", path: "/function/figlet", status: 503,
			setup: func(e *testEnv) { e.fb.acquireErr = fmt.Errorf("waiting: %w", context.DeadlineExceeded) }},
		{name: "upstream down", path: "/function/figlet", status: 502, bodyHas: "did not answer", wantLeases: 1,
			setup: func(e *testEnv) { e.fb.upstream = mustURL(t, downURL) }},
		{name: "lease without URL", path: "/function/figlet", status: 502, bodyHas: "no URL", wantLeases: 1,
			setup: func(e *testEnv) { e.fb.upstream = nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newInvokeEnv(t, tc.cfg)
			if tc.setup != nil {
				tc.setup(e)
			}
			res, body := e.do(t, "GET", tc.path, "", nil)
			if res.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d, body %q", res.StatusCode, tc.status, body)
			}
			assertReason(t, res, body)
			if !strings.Contains(body, tc.bodyHas) {
				t.Errorf("body %q lacks %q", body, tc.bodyHas)
			}
			if res.Header.Get(internalHeader) != "proxy" {
				t.Error("provider-made error without X-OpenFaaS-Internal")
			}
			leases := e.fb.allLeases()
			if len(leases) != tc.wantLeases {
				t.Fatalf("%d leases", len(leases))
			}
			for _, l := range leases {
				outs := l.released()
				if len(outs) != 1 || outs[0].Err == nil || outs[0].StatusCode != tc.status {
					t.Errorf("outcomes = %+v", outs)
				}
			}
		})
	}
}

func TestInvokeTimeout(t *testing.T) {
	e, _ := newInvokeEnv(t, func(c *Config) { c.InvokeTimeout = 100 * time.Millisecond })
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	e.fb.upstream = mustURL(t, slow.URL)

	res, body := e.do(t, "GET", "/function/figlet", "", nil)
	if res.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status = %d, body %q", res.StatusCode, body)
	}
	assertReason(t, res, body)
	o := <-e.fb.released
	if o.StatusCode != 504 || o.Err == nil {
		t.Errorf("outcome = %+v", o)
	}
}

// TestInvokeStreams proves the response is streamed, not buffered: the
// upstream sends its second chunk only after the client has read the first.
func TestInvokeStreams(t *testing.T) {
	e, _ := newInvokeEnv(t, nil)
	next := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "chunk1\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "chunk2\n")
	}))
	defer up.Close()
	e.fb.upstream = mustURL(t, up.URL)

	client := &http.Client{Timeout: 10 * time.Second}
	res, err := client.Get(e.srv.URL + "/function/figlet")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	rd := bufio.NewReader(res.Body)
	if line, err := rd.ReadString('\n'); err != nil || line != "chunk1\n" {
		t.Fatalf("first chunk: %q %v", line, err)
	}
	close(next)
	rest, _ := io.ReadAll(rd)
	if string(rest) != "chunk2\n" {
		t.Fatalf("rest = %q", rest)
	}
	if o := <-e.fb.released; o.StatusCode != 200 || o.Err != nil {
		t.Errorf("outcome = %+v", o)
	}
}

// TestInvokeClientGoneReleasesOnce covers the abort path: the client hangs up
// mid-stream, ReverseProxy panics with http.ErrAbortHandler, and the lease
// must still be released exactly once, not as a 5xx.
func TestInvokeClientGoneReleasesOnce(t *testing.T) {
	e, _ := newInvokeEnv(t, nil)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "chunk1\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer up.Close()
	e.fb.upstream = mustURL(t, up.URL)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/function/figlet", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(res.Body).ReadString('\n'); line != "chunk1\n" {
		t.Fatalf("first chunk %q", line)
	}
	cancel()
	res.Body.Close()

	select {
	case o := <-e.fb.released:
		if o.Err == nil || o.StatusCode != statusClientClosedRequest {
			t.Errorf("outcome = %+v", o)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("lease never released")
	}
	time.Sleep(50 * time.Millisecond)
	if l := e.fb.allLeases(); len(l) != 1 || len(l[0].released()) != 1 {
		t.Fatalf("Release calls: %d", len(l[0].released()))
	}
}

func TestSplitFunctionName(t *testing.T) {
	for _, tc := range []struct{ full, q, name, ns string }{
		{"figlet", "", "figlet", "def"},
		{"figlet", "dev", "figlet", "dev"},
		{"figlet.dev", "other", "figlet", "dev"},
		{"a.b.c", "", "a.b", "c"},
	} {
		name, ns := splitFunctionName(tc.full, tc.q, "def")
		if name != tc.name || ns != tc.ns {
			t.Errorf("%q/%q -> %q %q", tc.full, tc.q, name, ns)
		}
	}
	if joinPath("", "") != "/" || joinPath("/base/", "x/y") != "/base/x/y" || joinPath("", "a/") != "/a/" {
		t.Error("joinPath")
	}
}

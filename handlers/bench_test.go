package handlers

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pronghorn-openfaas/pronghorn/provider"
)

// BenchmarkInvoke measures what the provider adds to an invocation: the
// upstream is a trivial HTTP handler on a unix socket, reached through a
// lease Transport that dials it (as the local runtime reaches its agents).
//
//   - direct: a client calling the upstream over the socket, the baseline.
//   - router: the router's ServeHTTP in-process (routing, acquire, metrics,
//     ReverseProxy) then the socket hop; router minus direct is the handler
//     overhead.
//   - server: a real HTTP client over loopback TCP to the router, i.e. the
//     full extra hop a gateway or faas-cli pays; server minus direct is the
//     provider's added latency.
//
// Serial runs report p50/p99 per request; parallel runs show throughput
// (ns/op is wall time divided by requests, so req/s = 1e9 / ns/op).
func BenchmarkInvoke(b *testing.B) {
	upstream, transport := unixUpstream(b)

	b.Run("direct", func(b *testing.B) {
		client := &http.Client{Transport: transport}
		target := upstream.String() + "hello"
		runLatency(b, func() {
			res, err := client.Get(target)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		})
	})
	b.Run("direct-parallel", func(b *testing.B) {
		client := &http.Client{Transport: transport}
		target := upstream.String() + "hello"
		runParallel(b, func() func() {
			return func() {
				res, err := client.Get(target)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		})
	})

	b.Run("router", func(b *testing.B) {
		h := benchRouter(b, upstream, transport)
		runLatency(b, inProcessCall(b, h))
	})
	b.Run("router-parallel", func(b *testing.B) {
		h := benchRouter(b, upstream, transport)
		runParallel(b, func() func() { return inProcessCall(b, h) })
	})

	b.Run("server", func(b *testing.B) {
		srv := httptest.NewServer(benchRouter(b, upstream, transport))
		defer srv.Close()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}
		target := srv.URL + "/function/figlet/hello"
		runLatency(b, func() {
			res, err := client.Get(target)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		})
	})
	b.Run("server-parallel", func(b *testing.B) {
		srv := httptest.NewServer(benchRouter(b, upstream, transport))
		defer srv.Close()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}
		target := srv.URL + "/function/figlet/hello"
		runParallel(b, func() func() {
			return func() {
				res, err := client.Get(target)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		})
	})
}

// unixUpstream serves a trivial handler, shaped like the agent's answer, on a
// unix socket and returns a base URL and a Transport that dials the socket
// whatever the URL's host.
func unixUpstream(b *testing.B) (*url.URL, *http.Transport) {
	sock := filepath.Join(b.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte("hello world\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set(durationHeader, "0.000010")
		_, _ = w.Write(body)
	})}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })

	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &url.URL{Scheme: "http", Host: "agent", Path: "/"}, tr
}

// benchBackend serves figlet from one long-lived lease, so the benchmark
// measures the HTTP layer and not the fake's bookkeeping.
type benchBackend struct {
	*fakeBackend
	lease *staticLease
}

func (b *benchBackend) Acquire(ctx context.Context, ns, name string) (provider.Lease, error) {
	if name != "figlet" {
		return b.fakeBackend.Acquire(ctx, ns, name)
	}
	return b.lease, nil
}

type staticLease struct {
	url       *url.URL
	transport http.RoundTripper
	releases  atomic.Int64
}

func (l *staticLease) URL() *url.URL                { return l.url }
func (l *staticLease) Transport() http.RoundTripper { return l.transport }
func (l *staticLease) Release(provider.Outcome)     { l.releases.Add(1) }

func benchRouter(b *testing.B, upstream *url.URL, tr http.RoundTripper) http.Handler {
	fb := newFakeBackend()
	if err := fb.Deploy(context.Background(), types.FunctionDeployment{Service: "figlet", Image: "x", Namespace: "openfaas-fn"}); err != nil {
		b.Fatal(err)
	}
	h, err := NewRouter(Config{}, &benchBackend{fakeBackend: fb, lease: &staticLease{url: upstream, transport: tr}}, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// inProcessCall returns one goroutine's invocation through h.ServeHTTP with a
// reusable request and a writer that discards the body.
func inProcessCall(b *testing.B, h http.Handler) func() {
	req := httptest.NewRequest("GET", "http://provider:8080/function/figlet/hello", nil)
	w := &discardWriter{h: make(http.Header)}
	return func() {
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(c int) {
	if w.code == 0 {
		w.code = c
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(p), nil
}
func (w *discardWriter) Flush() {}

// runLatency runs fn b.N times and reports the median and 99th percentile.
func runLatency(b *testing.B, fn func()) {
	fn() // warm connections and pools outside the measurement
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		fn()
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

// runParallel runs one fn per goroutine (GOMAXPROCS of them unless -cpu
// says otherwise, times 4 to keep both cores busy while others wait on I/O)
// and reports the percentiles across all of them.
func runParallel(b *testing.B, newFn func() func()) {
	var mu sync.Mutex
	var all []time.Duration
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		fn := newFn()
		var lat []time.Duration
		for pb.Next() {
			t0 := time.Now()
			fn()
			lat = append(lat, time.Since(t0))
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	})
	b.StopTimer()
	reportPercentiles(b, all)
	b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "req/s")
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

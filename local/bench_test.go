package local

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sort"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pronghorn-openfaas/pronghorn/handlers"
)

// BenchmarkInvokePath compares a call through the whole provider (HTTP
// router, local backend, agent over its unix socket, function) with a call
// straight to the function inside its network namespace, on a trivial Go
// handler. Reported: p50/p99 per call (sequential) and req/s (parallel).
//
//	sudo go test -run '^$' -bench InvokePath -benchtime 20000x ./local/
func BenchmarkInvokePath(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	if err := e.b.Deploy(ctx, deployment("bench", nil)); err != nil {
		b.Fatal(err)
	}
	e.waitAvailable("bench", 1)

	router, err := handlers.NewRouter(handlers.Config{}, e.b, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(router)
	defer srv.Close()

	f, _ := e.b.function("openfaas-fn", "bench")
	agentPID := (*f.ready.Load())[0].cmd.Process.Pid
	direct := &http.Client{Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return dialInNetns(agentPID, "127.0.0.1:5000")
		},
		MaxIdleConnsPerHost: 256,
	}}
	viaProvider := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

	for _, tc := range []struct {
		name   string
		client *http.Client
		url    string
	}{
		{"direct", direct, "http://function/"},
		{"agent", &http.Client{Transport: (*f.ready.Load())[0].transport}, "http://agent/"},
		{"provider", viaProvider, srv.URL + "/function/bench"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				call(b, tc.client, tc.url)
				lat = append(lat, time.Since(start))
			}
			reportPercentiles(b, lat)
		})
		b.Run(tc.name+"-parallel", func(b *testing.B) {
			b.SetParallelism(8)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					call(b, tc.client, tc.url)
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}

func call(b *testing.B, c *http.Client, url string) {
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// dialInNetns opens a TCP connection from inside pid's network namespace: a
// socket belongs to the namespace of the thread that created it, so the
// thread switches in for the dial only.
func dialInNetns(pid int, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err
	}
	defer self.Close()
	target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("enter netns: %w", err)
	}
	conn, dialErr := net.Dial("tcp", addr)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// This thread is in the wrong namespace; keep it locked so it dies
		// with the goroutine instead of serving others.
		runtime.LockOSThread()
		return nil, fmt.Errorf("leave netns: %w", err)
	}
	return conn, dialErr
}

// BenchmarkInvokeLearning drives a trivial function through the whole
// provider with 8 parallel clients while the engine learns from every call,
// and reports whether any call went unlearned (there is no queue to
// overflow: the engine's OnRequest runs in memory on the call's goroutine).
//
//	sudo go test -run '^$' -bench InvokeLearning -benchtime 20000x ./local/
func BenchmarkInvokeLearning(b *testing.B) {
	// The cold strategy learns like the others but never checkpoints, so
	// only learning is measured.
	e := newEnv(b, withColdEngine(b))
	ctx := context.Background()
	if err := e.b.Deploy(ctx, deployment("learn", nil)); err != nil {
		b.Fatal(err)
	}
	e.waitAvailable("learn", 1)
	router, err := handlers.NewRouter(handlers.Config{}, e.b, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(router)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	f, _ := e.b.function("openfaas-fn", "learn")
	w := (*f.ready.Load())[0]
	before := w.snap.Load().Served()

	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			call(b, client, srv.URL+"/function/learn")
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	learned := w.snap.Load().Served() - before
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(b.N-learned), "unlearned")
	if learned != b.N {
		b.Errorf("%d of %d calls were not learned from", b.N-learned, b.N)
	}
}

package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func findRow(t *testing.T, tb Table, bench string) map[string]string {
	t.Helper()
	for _, r := range tb.Rows {
		if r[0] == bench {
			m := map[string]string{}
			for i, h := range tb.Header {
				m[h] = r[i]
			}
			return m
		}
	}
	t.Fatalf("%s: no row for %s in %v", tb.Title, bench, tb.Rows)
	return nil
}

func fakeResults() []RunResult {
	return []RunResult{
		{Benchmark: "bfs", Strategy: StrategyCold, Rate: 20},
		{Benchmark: "bfs", Strategy: StrategyFixed, Rate: 20, PeakPoolBytes: 10e6, PackedBytes: 10e6, RawBytes: 50e6,
			UploadBytes: 10e6, DownloadBytes: 20e6, Dump: []float64{0.1}, Restore: []float64{0.05, 0.07}},
		{Benchmark: "bfs", Strategy: StrategyFixed, Rate: 4, PeakPoolBytes: 10e6, PackedBytes: 12e6, RawBytes: 60e6,
			UploadBytes: 10e6, DownloadBytes: 100e6, Dump: []float64{0.3}, Restore: []float64{0.06}},
		{Benchmark: "bfs", Strategy: StrategyRequestCentric, Rate: 20, PeakPoolBytes: 40e6, PackedBytes: 14e6, RawBytes: 70e6,
			UploadBytes: 40e6, DownloadBytes: 30e6, Dump: []float64{0.2, 0.2},
			State: EngineState{Pool: []PoolEntry{{RequestNumber: 3, Score: 10}, {RequestNumber: 17, Score: 90}, {RequestNumber: 9, Score: 50}}}},
		{Benchmark: "bfs", Strategy: StrategyRequestCentric, Rate: 4, PeakPoolBytes: 60e6, UploadBytes: 20e6, DownloadBytes: 10e6,
			State: EngineState{Pool: []PoolEntry{{RequestNumber: 2, Score: 99}}}},
		{Benchmark: "word-count", Strategy: StrategyCold, Rate: 1},
	}
}

func TestTable4(t *testing.T) {
	tb := Table4(fakeResults())
	tests := []struct {
		bench string
		want  map[string]string
	}{
		// Sizes: median of the three snapshotting runs; dump: median of
		// 0.1, 0.3, 0.2, 0.2; restore: median of 0.05, 0.07, 0.06; best:
		// the top-scored entry of the request-centric run at the largest E.
		{"bfs", map[string]string{"packed_MB": "12.0", "raw_MB": "60.0", "dump_ms_p50": "200.0", "restore_ms_p50": "60.0",
			"dumps": "4", "restores": "3", "requests_to_best": "17", "best_from": "request-centric E=20"}},
		{"word-count", map[string]string{"packed_MB": "-", "dump_ms_p50": "-", "dumps": "0", "requests_to_best": "-", "best_from": "-"}},
	}
	for _, tt := range tests {
		row := findRow(t, tb, tt.bench)
		for k, v := range tt.want {
			if row[k] != v {
				t.Errorf("%s %s = %q, want %q", tt.bench, k, row[k], v)
			}
		}
	}
}

func TestTable5(t *testing.T) {
	tb := Table5(fakeResults())
	row := findRow(t, tb, "bfs")
	want := map[string]string{
		"rc_peak_storage_MB": "60.0", "rc_network_MB": "100.0", "rc_network_max_run_MB": "70.0",
		"fixed_peak_storage_MB": "10.0", "fixed_network_MB": "140.0", "fixed_network_max_run_MB": "110.0",
		"storage_ratio": "6.00x", "network_ratio": "0.71x",
	}
	for k, v := range want {
		if row[k] != v {
			t.Errorf("bfs %s = %q, want %q", k, row[k], v)
		}
	}
	for _, r := range tb.Rows {
		if r[0] == "word-count" {
			t.Errorf("word-count ran neither fixed nor request-centric, yet has a row: %v", r)
		}
	}
}

func TestSummaryTable(t *testing.T) {
	res := []RunResult{{Benchmark: "bfs", Strategy: StrategyFixed, Rate: 4, Samples: []Sample{
		{ClientUS: 1000, ServerUS: 500}, {ClientUS: 3000, ServerUS: 1000}, {ClientUS: 2000, ServerUS: 1500},
	}, State: EngineState{ColdStarts: 1, Restores: 2, Checkpoints: 1}}}
	row := findRow(t, SummaryTable(res), "bfs")
	want := map[string]string{"n": "3", "client_p50_ms": "2.00", "client_p90_ms": "2.80", "client_mean_ms": "2.00",
		"server_p50_ms": "1.00", "overhead_p50_ms": "0.50", "cold": "1", "restores": "2", "checkpoints": "1"}
	for k, v := range want {
		if row[k] != v {
			t.Errorf("%s = %q, want %q", k, row[k], v)
		}
	}
}

// fakeProvider imitates the provider's API closely enough for the driver:
// fixed and request-centric checkpoint at a worker's first request and every
// eviction after that restores, with the matching metrics.
type fakeProvider struct {
	mu       sync.Mutex
	fns      map[string]*fakeFn
	deleted  []string
	requests map[string][]string // raw queries per function
}

type fakeFn struct {
	strategy                string
	evict, served           int
	state                   EngineState
	dumpSum, dumpN, restSum float64
	restN, up, down, packed float64
	annotations             map[string]string
}

func newFakeProvider() *fakeProvider {
	return &fakeProvider{fns: map[string]*fakeFn{}, requests: map[string][]string{}}
}

func (p *fakeProvider) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /system/functions", func(w http.ResponseWriter, r *http.Request) {
		var d deployment
		if err := json.NewDecoder(r.Body).Decode(&d); err != nil || d.Service == "" {
			http.Error(w, "bad deployment", http.StatusBadRequest)
			return
		}
		e, _ := strconv.Atoi(d.Annotations["com.pronghorn.evict-after"])
		p.mu.Lock()
		p.fns[d.Service] = &fakeFn{strategy: d.Annotations["com.pronghorn.strategy"], evict: e, annotations: d.Annotations,
			state: EngineState{Strategy: d.Annotations["com.pronghorn.strategy"], ColdStarts: 1}}
		p.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("DELETE /system/functions", func(w http.ResponseWriter, r *http.Request) {
		var d struct{ FunctionName string }
		json.NewDecoder(r.Body).Decode(&d)
		p.mu.Lock()
		defer p.mu.Unlock()
		if _, ok := p.fns[d.FunctionName]; !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		delete(p.fns, d.FunctionName)
		p.deleted = append(p.deleted, d.FunctionName)
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /system/function/{name}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"name":"x","availableReplicas":1}`)
	})
	mux.HandleFunc("GET /system/pronghorn/functions/{name}", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		f, ok := p.fns[r.PathValue("name")]
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(f.state)
	})
	mux.HandleFunc("GET /function/{name}", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		name := r.PathValue("name")
		f, ok := p.fns[name]
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		p.requests[name] = append(p.requests[name], r.URL.RawQuery)
		snapshots := f.strategy != StrategyCold
		if f.served == f.evict { // a new worker
			f.served = 0
			if snapshots && f.state.Checkpoints > 0 {
				f.state.Restores++
				f.restSum += 0.04
				f.restN++
				f.down += f.packed
			} else {
				f.state.ColdStarts++
			}
		}
		f.served++
		if snapshots && f.state.Checkpoints == 0 {
			f.state.Checkpoints++
			f.dumpSum += 0.1
			f.dumpN++
			f.packed = 5e6
			f.up += f.packed
			f.state.Pool = []PoolEntry{{Key: "k1", RequestNumber: 1, SizeBytes: 5e6, Score: 1}}
		}
		fmt.Fprint(w, `{"server_us": 1234}`)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		for name, f := range p.fns {
			l := fmt.Sprintf(`{function_name="%s.openfaas-fn"}`, name)
			fmt.Fprintf(w, "pronghorn_dump_seconds_sum%s %g\npronghorn_dump_seconds_count%s %g\n", l, f.dumpSum, l, f.dumpN)
			fmt.Fprintf(w, "pronghorn_restore_seconds_sum%s %g\npronghorn_restore_seconds_count%s %g\n", l, f.restSum, l, f.restN)
			fmt.Fprintf(w, "pronghorn_pool_bytes%s %g\npronghorn_snapshot_packed_bytes%s %g\npronghorn_snapshot_raw_bytes%s %g\n", l, f.packed, l, f.packed, l, 4*f.packed)
			fmt.Fprintf(w, "pronghorn_snapshot_transfer_bytes_total{direction=\"upload\",function_name=\"%s.openfaas-fn\"} %g\n", name, f.up)
			fmt.Fprintf(w, "pronghorn_snapshot_transfer_bytes_total{direction=\"download\",function_name=\"%s.openfaas-fn\"} %g\n", name, f.down)
		}
	})
	return mux
}

func TestRunAgainstFakeProvider(t *testing.T) {
	fp := newFakeProvider()
	srv := httptest.NewServer(fp.handler())
	defer srv.Close()
	out := t.TempDir()
	var stdout bytes.Buffer
	o := Options{
		Gateway: srv.URL, Benchmarks: []string{"bfs", "word-count"}, Strategies: []string{StrategyCold, StrategyFixed, StrategyRequestCentric},
		Rates: []int{4, 1}, Requests: 8, Intervals: map[string]time.Duration{"pypy": time.Millisecond, "jvm": time.Millisecond},
		Mutability: 0.1, Seed: 7, OutDir: out, Stdout: &stdout, RunID: "t1", Settle: time.Millisecond,
	}
	if err := Run(context.Background(), o); err != nil {
		t.Fatalf("Run: %v\n%s", err, stdout.String())
	}
	samples, err := ReadLatencyCSV(filepath.Join(out, "latency.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 2*3*2*8 {
		t.Fatalf("%d rows, want %d", len(samples), 2*3*2*8)
	}
	for _, s := range samples {
		if s.ServerUS != 1234 || s.ClientUS <= 0 || s.Mutability != 0.1 || s.Index < 0 || s.Index >= 8 {
			t.Fatalf("bad row %+v", s)
		}
	}
	// Every function was removed, and requests carried seed+index and mutability.
	if len(fp.deleted) != 12 || len(fp.fns) != 0 {
		t.Errorf("deleted %v, left %v", fp.deleted, fp.fns)
	}
	if got := fp.requests["bfs-rc-e4-t1"]; len(got) != 8 || got[0] != "mutability=0.1&seed=7" || got[7] != "mutability=0.1&seed=14" {
		t.Errorf("queries %v", got)
	}
	for _, f := range []string{"latency.csv", "runs.csv", "summary.csv", "summary.md", "table4.csv", "table4.md", "table5.csv", "table5.md", "index.html",
		"figures/cdf-bfs-e4.svg", "figures/cdf-bfs-e1.svg", "figures/cdf-word-count-e4.svg", "figures/cdf-word-count-e1.svg"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	svg, _ := os.ReadFile(filepath.Join(out, "figures/cdf-bfs-e1.svg"))
	wellFormed(t, svg)
	if n := strings.Count(string(svg), "<path"); n != 3 {
		t.Errorf("bfs E=1 figure has %d lines, want 3", n)
	}
	index, _ := os.ReadFile(filepath.Join(out, "index.html"))
	for _, want := range []string{"figures/cdf-word-count-e4.svg", "Table 4", "Table 5", "Latency summary"} {
		if !strings.Contains(string(index), want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	// At E=1 with 8 requests, fixed checkpoints once and restores 7 times.
	t4, _ := os.ReadFile(filepath.Join(out, "table4.csv"))
	if !strings.Contains(string(t4), "bfs,5.0,20.0,100.0,40.0") {
		t.Errorf("table4.csv:\n%s", t4)
	}
	runs, _ := os.ReadFile(filepath.Join(out, "runs.csv"))
	if !strings.Contains(string(runs), "bfs,fixed,1,bfs-fixed-e1-t1,8,0,1,7,1,0,0,5000000,1,5000000,20000000,5000000,35000000,") {
		t.Errorf("runs.csv:\n%s", runs)
	}
	if !strings.Contains(stdout.String(), "client_p50_ms") {
		t.Errorf("no summary on stdout:\n%s", stdout.String())
	}
}

func TestRunFailsCleanly(t *testing.T) {
	tests := []struct {
		name string
		opts func(url string) Options
		want string
	}{
		{"unknown strategy", func(u string) Options { return Options{Gateway: u, Strategies: []string{"lru"}} }, "unknown strategy"},
		{"bad rate", func(u string) Options { return Options{Gateway: u, Rates: []int{0}} }, "eviction rate"},
		{"bad gateway", func(string) Options { return Options{Gateway: "localhost"} }, "gateway"},
		{"unknown function", func(u string) Options {
			return Options{Gateway: u, Benchmarks: []string{"nope"}, Requests: 2, Rates: []int{1}, Strategies: []string{"cold"}}
		}, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.HandleFunc("GET /metrics", func(http.ResponseWriter, *http.Request) {})
			mux.HandleFunc("POST /system/functions", func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, `function "nope" not found in functions dir`, http.StatusBadRequest)
			})
			srv := httptest.NewServer(mux)
			defer srv.Close()
			o := tt.opts(srv.URL)
			o.OutDir = t.TempDir()
			err := Run(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestAnnotations(t *testing.T) {
	o := DefaultOptions()
	o.Seed, o.PoolCapacity, o.CheckpointAt = 3, 12, 1
	tests := []struct {
		strategy string
		rate     int
		want     map[string]string
	}{
		{StrategyCold, 20, map[string]string{"com.pronghorn.strategy": "cold", "com.pronghorn.evict-after": "20", "com.pronghorn.seed": "3"}},
		{StrategyFixed, 4, map[string]string{"com.pronghorn.strategy": "fixed", "com.pronghorn.evict-after": "4", "com.pronghorn.seed": "3", "com.pronghorn.checkpoint-at": "1"}},
		{StrategyRequestCentric, 1, map[string]string{"com.pronghorn.strategy": "request-centric", "com.pronghorn.evict-after": "1", "com.pronghorn.seed": "3", "com.pronghorn.pool-capacity": "12"}},
	}
	for _, tt := range tests {
		if got := o.annotations(tt.strategy, tt.rate); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s/%d: %v, want %v", tt.strategy, tt.rate, got, tt.want)
		}
	}
}

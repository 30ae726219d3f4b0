package eval

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
)

// fakeProvider imitates the provider's API closely enough for the driver:
// workers with lineages and tokens, eviction after E requests, fixed(T)
// checkpointing at T, the other snapshotting strategies at each of the
// first three request numbers, restores from the pool, scale to and from
// zero, and the matching /metrics.
type fakeProvider struct {
	mu       sync.Mutex
	fns      map[string]*fakeFn
	deployed []string
	deleted  []string
	requests map[string][]string // raw queries per function
	workers  int                 // tokens handed out
}

type fakeFn struct {
	strategy        string
	evict, t        int
	replicas        int
	worker          *fakeWorker
	pool            []int
	state           EngineState
	dumpSum, dumpN  float64
	restSum, restN  float64
	upSum, upN      float64
	up, down        float64
	packed, raw     float64
	annotations     map[string]string
	failNextRestore bool
}

type fakeWorker struct {
	token           string
	lineage, served int
}

func newFakeProvider() *fakeProvider {
	return &fakeProvider{fns: map[string]*fakeFn{}, requests: map[string][]string{}}
}

// start gives f a worker, restoring from its pool when the strategy
// snapshots.
func (p *fakeProvider) start(f *fakeFn) {
	p.workers++
	w := &fakeWorker{token: fmt.Sprintf("tok%d", p.workers)}
	if f.strategy != StrategyCold && len(f.pool) > 0 {
		best := f.pool[0]
		for _, r := range f.pool {
			if (f.strategy != StrategyFixed || r <= f.t) && r > best {
				best = r
			}
		}
		w.lineage = best
		f.state.Restores++
		f.restSum += 0.04
		f.restN++
		f.down += f.packed
	} else {
		f.state.ColdStarts++
	}
	f.worker = w
}

func (p *fakeProvider) checkpoint(f *fakeFn, lineage int) {
	for _, r := range f.pool {
		if r == lineage {
			return
		}
	}
	f.pool = append(f.pool, lineage)
	f.state.Checkpoints++
	f.dumpSum += 0.1
	f.dumpN++
	f.upSum += 0.05
	f.upN++
	f.packed, f.raw = 5e6, 20e6
	f.up += f.packed
	f.state.Pool = append(f.state.Pool, PoolEntry{Key: fmt.Sprintf("k%d", lineage), RequestNumber: lineage, SizeBytes: 5e6, Score: float64(lineage)})
}

func (p *fakeProvider) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /system/functions", func(w http.ResponseWriter, r *http.Request) {
		var d deployment
		if err := json.NewDecoder(r.Body).Decode(&d); err != nil || d.Service == "" {
			http.Error(w, "bad deployment", http.StatusBadRequest)
			return
		}
		if d.Image == "nope" {
			http.Error(w, `function "nope" not found in functions dir`, http.StatusBadRequest)
			return
		}
		e, _ := strconv.Atoi(d.Annotations["com.pronghorn.evict-after"])
		t, _ := strconv.Atoi(d.Annotations["com.pronghorn.checkpoint-at"])
		p.mu.Lock()
		f := &fakeFn{strategy: d.Annotations["com.pronghorn.strategy"], evict: e, t: t, replicas: 1, annotations: d.Annotations,
			state: EngineState{Strategy: d.Annotations["com.pronghorn.strategy"]}}
		p.start(f)
		p.fns[d.Service] = f
		p.deployed = append(p.deployed, d.Service)
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
		p.mu.Lock()
		defer p.mu.Unlock()
		f, ok := p.fns[r.PathValue("name")]
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		avail := 0
		if f.worker != nil {
			avail = 1
		}
		fmt.Fprintf(w, `{"name":"x","replicas":%d,"availableReplicas":%d}`, f.replicas, avail)
	})
	mux.HandleFunc("POST /system/scale-function/{name}", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Replicas int }
		json.NewDecoder(r.Body).Decode(&body)
		p.mu.Lock()
		defer p.mu.Unlock()
		f, ok := p.fns[r.PathValue("name")]
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		f.replicas = body.Replicas
		if body.Replicas == 0 {
			f.worker = nil
		}
		w.WriteHeader(http.StatusAccepted)
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
		if f.worker == nil {
			f.replicas = 1
			p.start(f)
		}
		wk := f.worker
		wk.lineage++
		wk.served++
		fmt.Fprintf(w, `{"server_us": 1234, "lineage": %d, "worker": %q}`, wk.lineage, wk.token)
		switch {
		case f.strategy == StrategyFixed && wk.lineage == f.t:
			p.checkpoint(f, wk.lineage)
		case f.strategy == StrategyRequestCentric || f.strategy == StrategyBandit:
			if wk.lineage <= 3 {
				p.checkpoint(f, wk.lineage)
			}
		}
		if f.evict > 0 && wk.served >= f.evict {
			p.start(f) // the replacement starts right away
		}
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		for name, f := range p.fns {
			l := fmt.Sprintf(`{function_name="%s.openfaas-fn"}`, name)
			fmt.Fprintf(w, "pronghorn_dump_seconds_sum%s %g\npronghorn_dump_seconds_count%s %g\n", l, f.dumpSum, l, f.dumpN)
			fmt.Fprintf(w, "pronghorn_upload_seconds_sum%s %g\npronghorn_upload_seconds_count%s %g\n", l, f.upSum, l, f.upN)
			fmt.Fprintf(w, "pronghorn_restore_seconds_sum%s %g\npronghorn_restore_seconds_count%s %g\n", l, f.restSum, l, f.restN)
			fmt.Fprintf(w, "pronghorn_pool_bytes%s %g\npronghorn_pool_snapshots%s %d\n", l, float64(len(f.pool))*5e6, l, len(f.pool))
			fmt.Fprintf(w, "pronghorn_snapshot_packed_bytes%s %g\npronghorn_snapshot_raw_bytes%s %g\n", l, f.packed, l, f.raw)
			fmt.Fprintf(w, "pronghorn_checkpoints_total%s %d\npronghorn_restores_total%s %d\npronghorn_failed_checkpoints_total%s 0\n",
				l, f.state.Checkpoints, l, f.state.Restores, l)
			fmt.Fprintf(w, "pronghorn_snapshot_transfer_bytes_total{direction=\"upload\",function_name=\"%s.openfaas-fn\"} %g\n", name, f.up)
			fmt.Fprintf(w, "pronghorn_snapshot_transfer_bytes_total{direction=\"download\",function_name=\"%s.openfaas-fn\"} %g\n", name, f.down)
		}
	})
	return mux
}

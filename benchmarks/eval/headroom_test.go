package eval

import (
	"strings"
	"testing"
)

// workers builds a run of workers serving two requests each: the first
// started as start (restored from a snapshot that had served at requests,
// or cold) with latency first, the second at later (ms).
func workers(strategy string, rate int, runs ...workerSpec) RunResult {
	r := RunResult{Chunk: Chunk{Kind: KindRun, Benchmark: "bfs", Strategy: strategy, Rate: rate, Seed: 1}}
	for _, w := range runs {
		for i := 0; i < w.n; i++ {
			worker := len(r.Samples) / 2
			lineage := 1
			if w.start == StartRestore {
				lineage = w.at + 1
			}
			r.Samples = append(r.Samples,
				Sample{Index: len(r.Samples), ClientUS: int64(w.first * 1000), Lineage: lineage, Worker: worker, Served: 1, Start: w.start},
				Sample{Index: len(r.Samples) + 1, ClientUS: int64(w.later * 1000), Lineage: lineage + 1, Worker: worker, Served: 2})
		}
	}
	r.Requests = len(r.Samples)
	return r
}

type workerSpec struct {
	n            int
	start        string
	at           int
	first, later float64
}

// headroomData: a floor of 10 ms; request-centric's 100 requests have a
// mean of 21 and a p90 of 30; ours (four fast restores, too few to set the
// bound) a mean of 5.5.
func headroomData(rate int) *Dataset {
	return &Dataset{Runs: []RunResult{
		run(KindWarmup, "bfs", StrategyCold, 0, 1, 50, 10, 10, 10, 10, 10), // floor 10
		workers(StrategyCold, rate, workerSpec{5, StartCold, 0, 100, 10}),
		workers(StrategyRequestCentric, rate,
			workerSpec{5, StartRestore, 1, 50, 10},
			workerSpec{45, StartRestore, 3, 30, 10}),
		// Four restores are too few to set the bound, however fast.
		workers(StrategyBandit, rate, workerSpec{4, StartRestore, 7, 1, 10}),
	}}
}

func TestHeadroomTable(t *testing.T) {
	tb := HeadroomTable(headroomData(2))
	row := findRow(t, tb, "bfs", "2")
	want := map[string]string{
		"first request ms (at)": "30.0 (3)", // not the cold start, not the four fast restores
		// The first worker as the warm-up began (50, 10); 49 workers
		// restored at 30 then 10: mean (60 + 49*30 + 49*10) / 100 = 20.2.
		"bound p50 over floor": "+0.0%",
		"bound mean vs rc":     "3.8%",
		"bound p90 vs rc":      "0.0%",
		"ours p50 over floor":  "-45.0%",
		"ours mean vs rc":      "73.8%",
		"ours p90 vs rc":       "66.7%",
	}
	for k, v := range want {
		if row[k] != v {
			t.Errorf("%s = %q, want %q", k, row[k], v)
		}
	}
	all := findRow(t, tb, "all (1)", "2")
	if all["bound mean vs rc"] != "3.8%" || all["ours mean vs rc"] != "73.8%" {
		t.Errorf("geometric mean row %v", all)
	}
}

func TestMixtureQuantiles(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cs       []component
		q, want  float64
		wantMean float64
	}{
		{"one in four from the first: p50 in the second", []component{{[]float64{100}, 1}, {[]float64{1, 2, 3}, 3}}, 0.5, 2, 26.5},
		{"one in four from the first: p90 is it", []component{{[]float64{100}, 1}, {[]float64{1, 2, 3}, 3}}, 0.9, 100, 26.5},
		{"a share of zero draws nothing", []component{{[]float64{4, 8}, 1}, {[]float64{1}, 0}}, 0.5, 4, 6},
	} {
		m := mixture(tc.cs...)
		if got := weightedQuantile(m, tc.q); got != tc.want {
			t.Errorf("%s: quantile %v = %v, want %v", tc.name, tc.q, got, tc.want)
		}
		if got := weightedMean(m); got != tc.wantMean {
			t.Errorf("%s: mean = %v, want %v", tc.name, got, tc.wantMean)
		}
	}
}

func TestBoundStartsWithAColdWorker(t *testing.T) {
	coldPos := [][]float64{{100}, {40}, {10}}
	// 6 requests at E=2: the cold worker's 100 and 40, then two workers
	// restored at 20 with one floor request each.
	got := bound(6, 2, coldPos, []float64{20}, []float64{10})
	if m := weightedMean(got); m != 200.0/6 {
		t.Errorf("mean %v, want %v", m, 200.0/6)
	}
	if q := weightedQuantile(got, 0.5); q != 20 {
		t.Errorf("p50 %v, want 20", q)
	}
	// E=0 (never evicted): the cold worker's requests, then the steady state.
	if m := weightedMean(bound(4, 0, coldPos, []float64{20}, []float64{10})); m != 160.0/4 {
		t.Errorf("E=0 mean %v, want %v", m, 160.0/4)
	}
}

func TestWorkerSpread(t *testing.T) {
	r := RunResult{Chunk: Chunk{Kind: KindRun, Benchmark: "bfs", Strategy: StrategyBandit, Rate: 3}}
	add := func(worker, at int, lat ...float64) {
		for i, l := range lat {
			s := Sample{Worker: worker, Served: i + 1, Lineage: at + i + 1, ClientUS: int64(l * 1000)}
			if i == 0 {
				s.Start = StartRestore
			}
			r.Samples = append(r.Samples, s)
		}
	}
	add(0, 5, 50, 9, 9)
	add(1, 5, 50, 10, 10)
	add(2, 5, 50, 12, 12)
	add(3, 8, 50, 1, 1) // alone with its snapshot: no group to compare with
	got := workerSpread(&Dataset{Runs: []RunResult{r}})["bfs"]
	if lo, hi := signedPct(got[0]), signedPct(got[1]); lo != "-8.0%" || hi != "+16.0%" {
		t.Errorf("spread %s to %s, want -8.0%% to +16.0%%", lo, hi)
	}
}

func TestHeadroomVerdict(t *testing.T) {
	if v := HeadroomVerdict(headroomData(2)); v != "" {
		t.Errorf("a verdict at E=2, where no target applies: %q", v)
	}
	v := HeadroomVerdict(headroomData(4))
	for _, want := range []string{"E=4 (1 benchmark)", "at most 27.6%", "out of reach for the p90 here", "Ours: mean 73.8%"} {
		if !strings.Contains(v, want) {
			t.Errorf("verdict %q lacks %q", v, want)
		}
	}
}

func TestBestSteadyTakesAFasterRun(t *testing.T) {
	floor := map[string][]float64{"bfs": {10, 10, 10}}
	faster := workers(StrategyRequestCentric, 4, workerSpec{60, StartRestore, 3, 30, 8})
	few := workers(StrategyBandit, 4, workerSpec{10, StartRestore, 3, 30, 1}) // too few to count
	got := bestSteady(&Dataset{Runs: []RunResult{few, faster}}, floor)["bfs"]
	if len(got) != 60 || got[0] != 8 {
		t.Errorf("steady state %v, want the 60 later requests at 8 ms", got)
	}
	if got := bestSteady(&Dataset{Runs: []RunResult{few}}, floor)["bfs"]; len(got) != 3 {
		t.Errorf("steady state %v, want the floor", got)
	}
}

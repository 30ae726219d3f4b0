package eval

import (
	"strings"
	"testing"
	"time"
)

// at sets a run's start to after a fixed instant.
func at(r RunResult, after time.Duration) RunResult {
	r.Started = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC).Add(after)
	return r
}

func TestPairs(t *testing.T) {
	rc := at(run(KindRun, "bfs", StrategyRequestCentric, 4, 1, 10, 10), 0)
	for _, tc := range []struct {
		name     string
		ours     []RunResult
		wantMean float64 // ours' mean in the pair; 0: no pair
	}{
		{"back to back", []RunResult{at(run(KindRun, "bfs", StrategyBandit, 4, 1, 8, 8), 2*time.Minute)}, 8},
		{"before it counts too", []RunResult{at(run(KindRun, "bfs", StrategyBandit, 4, 1, 8, 8), -2*time.Minute)}, 8},
		{"hours apart", []RunResult{at(run(KindRun, "bfs", StrategyBandit, 4, 1, 8, 8), 2*time.Hour)}, 0},
		{"another seed", []RunResult{at(run(KindRun, "bfs", StrategyBandit, 4, 2, 8, 8), time.Minute)}, 0},
		{"another rate", []RunResult{at(run(KindRun, "bfs", StrategyBandit, 20, 1, 8, 8), time.Minute)}, 0},
		{"the nearest of two", []RunResult{
			at(run(KindRun, "bfs", StrategyBandit, 4, 1, 9, 9), 10*time.Minute),
			at(run(KindRun, "bfs", StrategyBandit, 4, 1, 7, 7), 3*time.Minute)}, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := pairs(&Dataset{Runs: append([]RunResult{rc}, tc.ours...)})[cellKey{bench: "bfs", rate: 4}]
			switch {
			case tc.wantMean == 0 && len(ps) != 0:
				t.Fatalf("pairs %d, want none", len(ps))
			case tc.wantMean != 0 && len(ps) != 1:
				t.Fatalf("pairs %d, want one", len(ps))
			case tc.wantMean != 0 && mean(clientMS(ps[0].ours.Samples)) != tc.wantMean:
				t.Errorf("paired with the run of mean %v, want %v", mean(clientMS(ps[0].ours.Samples)), tc.wantMean)
			}
		})
	}
}

func TestPairedTable(t *testing.T) {
	ds := &Dataset{Runs: []RunResult{
		// Seed 1 back to back: ours' mean 20% lower, p90 and p50 too.
		at(run(KindRun, "bfs", StrategyRequestCentric, 4, 1, 10, 10, 10, 10), 0),
		at(run(KindRun, "bfs", StrategyBandit, 4, 1, 8, 8, 8, 8), 2*time.Minute),
		// Seed 2 back to back: ours' mean 10% higher.
		at(run(KindRun, "bfs", StrategyRequestCentric, 4, 2, 10, 10, 10, 10), time.Hour),
		at(run(KindRun, "bfs", StrategyBandit, 4, 2, 11, 11, 11, 11), time.Hour+2*time.Minute),
		// Seed 3 hours apart: a faster ours in a faster hour is not counted.
		at(run(KindRun, "bfs", StrategyRequestCentric, 4, 3, 10, 10, 10, 10), 0),
		at(run(KindRun, "bfs", StrategyBandit, 4, 3, 1, 1, 1, 1), 5*time.Hour),
		// simple-hash has no pair at all.
		at(run(KindRun, "simple-hash", StrategyRequestCentric, 4, 1, 10, 10), 0),
	}}
	tb := PairedTable(ds)
	row := findRow(t, tb, "bfs", "4")
	// Geometric mean of 0.8 and 1.1: sqrt(0.88) = 0.938.
	want := map[string]string{"pairs": "2", "mean vs rc": "6.2%", "p90 vs rc": "6.2%", "p50 vs rc": "6.2%", "mean vs rc: range": "-10.0% to 20.0%"}
	for k, v := range want {
		if row[k] != v {
			t.Errorf("%s = %q, want %q", k, row[k], v)
		}
	}
	if all := findRow(t, tb, "all (1)", "4"); all["mean vs rc"] != "6.2%" {
		t.Errorf("all-benchmarks row %v", all)
	}
	for _, r := range tb.Rows {
		if r[0] == "simple-hash" {
			t.Errorf("a row for a benchmark without a pair: %v", r)
		}
	}
}

// lifecycle is a run at rate e of bfs: a cold first worker answering
// cold, then restored workers, each answering first and then e-1 requests
// at later (ms), from a snapshot that had served at requests.
func lifecycle(strategy string, e int, cold []float64, restores, at int, first, later float64) RunResult {
	r := RunResult{Chunk: Chunk{Kind: KindRun, Benchmark: "bfs", Strategy: strategy, Rate: e, Seed: 1}}
	add := func(worker, served, lineage int, start string, ms float64) {
		r.Samples = append(r.Samples, Sample{Index: len(r.Samples), Worker: worker, Served: served, Lineage: lineage,
			Start: start, ClientUS: int64(ms * 1000)})
	}
	for i, ms := range cold {
		start := ""
		if i == 0 {
			start = StartCold
		}
		add(0, i+1, i+1, start, ms)
	}
	for w := 1; w <= restores; w++ {
		add(w, 1, at+1, StartRestore, first)
		for i := 2; i <= e; i++ {
			add(w, i, at+i, "", later)
		}
	}
	r.Requests = len(r.Samples)
	return r
}

// pairBoundData: request-centric restores from an early snapshot (first
// request 30 ms) into a fast steady state (7 ms); ours from a later one
// (20 ms) into a slower one (9 ms); the floor is 10 ms.
func pairBoundData() *Dataset {
	return &Dataset{Runs: []RunResult{
		run(KindWarmup, "bfs", StrategyCold, 0, 1, 50, 10, 10, 10, 10, 10),
		at(lifecycle(StrategyRequestCentric, 4, []float64{100, 10, 10, 10}, 24, 3, 30, 7), 0),
		at(lifecycle(StrategyBandit, 4, []float64{80, 10, 10, 10}, 24, 7, 20, 9), 2*time.Minute),
	}}
}

func TestPairBound(t *testing.T) {
	row := findRow(t, PairedTable(pairBoundData()), "bfs", "4")
	want := map[string]string{
		// request-centric: (130 + 24*30 + 72*7) / 100 = 13.54; ours:
		// (110 + 24*20 + 72*9) / 100 = 12.38.
		"mean vs rc": "8.6%",
		// The bound takes ours' snapshot and request-centric's steady state
		// (its three 10s and 72 7s, mean 7.12): the first worker as the two
		// began (90, 10, 10, 10), 24 first requests at 20, 72 at 7.12:
		// 11.13 ms.
		"bound mean vs rc": "17.8%",
		// p90: 30 for request-centric, 20 for the bound.
		"bound p90 vs rc": "33.3%",
		// Medians: 7 for the bound, 9 for ours, against a floor of 10.
		"bound p50 over floor": "-30.0%",
		"ours p50 over floor":  "-10.0%",
	}
	for k, v := range want {
		if row[k] != v {
			t.Errorf("%s = %q, want %q", k, row[k], v)
		}
	}
	if all := findRow(t, PairedTable(pairBoundData()), "all (1)", "4"); all["bound mean vs rc"] != "17.8%" {
		t.Errorf("all-benchmarks row %v", all)
	}

	v := PairedVerdict(pairBoundData())
	for _, s := range []string{"E=4, next to request-centric (1 benchmark)", "cut the mean by at most 17.8% and the p90 by 33.3%",
		"ours cut them by 8.6% and 33.3%", "out of reach for the mean. ", "the bound's -30.0%, ours -10.0%",
		// 24 first requests 10 ms faster: 240 ms of request-centric's 1354;
		// 72 others at 7 against a steady state of 7.12: 8.6 ms more.
		"saves on request-centric: 17.7% of its mean on the first requests", "and -0.6% on their other requests"} {
		if !strings.Contains(v, s) {
			t.Errorf("verdict %q lacks %q", v, s)
		}
	}
	if strings.Contains(v, "the p90 target") || strings.Contains(v, "for the mean and the p90") {
		t.Errorf("verdict calls the p90 out of reach: %q", v)
	}
}

func TestPairBoundNeedsEnoughRestores(t *testing.T) {
	ds := pairBoundData()
	// Four restores per run: too few from any one snapshot to set the bound.
	ds.Runs[1] = at(lifecycle(StrategyRequestCentric, 4, []float64{100, 10, 10, 10}, 4, 3, 30, 7), 0)
	ds.Runs[2] = at(lifecycle(StrategyBandit, 4, []float64{80, 10, 10, 10}, 4, 7, 20, 9), 2*time.Minute)
	tb := PairedTable(ds)
	row := findRow(t, tb, "bfs", "4")
	if row["pairs"] != "1" || row["bound mean vs rc"] != "-" || row["bound p50 over floor"] != "-" {
		t.Errorf("row %v: want the pair counted and no bound", row)
	}
	if v := PairedVerdict(ds); v != "" {
		t.Errorf("a verdict without a bound: %q", v)
	}
}

package eval

import (
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

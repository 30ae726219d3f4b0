package sim

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
)

// Warm follows the exponential model unless a measured curve is given, in
// which case the curve's entries are used as they are and its last entry
// holds beyond its end.
func TestModelWarm(t *testing.T) {
	exp := Model{Floor: 10 * time.Millisecond, Peak: 110 * time.Millisecond, Tau: 1}
	curve := Model{Floor: time.Second, Peak: time.Hour, Tau: 1, Curve: []time.Duration{30 * time.Millisecond, 20 * time.Millisecond, 5 * time.Millisecond}}
	tests := []struct {
		name string
		m    Model
		r    int
		want time.Duration
	}{
		{"exponential at r=1 is the peak", exp, 1, 110 * time.Millisecond},
		{"exponential decays by e per Tau", exp, 2, 46787944 * time.Nanosecond},
		{"curve first entry", curve, 1, 30 * time.Millisecond},
		{"curve middle", curve, 2, 20 * time.Millisecond},
		{"curve holds its last entry", curve, 50, 5 * time.Millisecond},
		{"curve below r=1 clamps", curve, 0, 30 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.m.Warm(tt.r)
			if d := got - tt.want; d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("Warm(%d) = %v, want %v", tt.r, got, tt.want)
			}
		})
	}
}

// latency adds each first-request and checkpoint cost exactly where it
// applies, and draws the same three random numbers in every case.
func TestModelLatencyCosts(t *testing.T) {
	m := Model{Curve: []time.Duration{10 * time.Millisecond}, InitCost: 100 * time.Millisecond,
		RestoreCost: 20 * time.Millisecond, CheckpointCost: 7 * time.Millisecond}
	tests := []struct {
		name                           string
		first, restored, afterCheckpnt bool
		want                           time.Duration
	}{
		{"warm", false, false, false, 10 * time.Millisecond},
		{"cold first request", true, false, false, 110 * time.Millisecond},
		{"restored first request", true, true, false, 30 * time.Millisecond},
		{"held by a checkpoint", false, false, true, 17 * time.Millisecond},
		{"restored and held", true, true, true, 37 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			if got := m.latency(rng, 3, tt.first, tt.restored, tt.afterCheckpnt); got != tt.want {
				t.Errorf("latency = %v, want %v", got, tt.want)
			}
			// Common random numbers: exactly three draws were consumed.
			ref := rand.New(rand.NewPCG(1, 2))
			ref.NormFloat64()
			ref.Float64()
			ref.Float64()
			if rng.Uint64() != ref.Uint64() {
				t.Error("latency consumed a different number of random draws")
			}
		})
	}
}

// A checkpoint cost makes fixed(1), whose decisions do not depend on the
// latencies, slower in the mean, and never touches cold, which takes no
// checkpoints.
func TestCheckpointCostOnlyHitsSnapshottingStrategies(t *testing.T) {
	base := DefaultModel()
	base.GCProb = 0
	costly := base
	costly.CheckpointCost = 50 * time.Millisecond
	opts := func(m Model) Options {
		return Options{Requests: 400, Seed: 3, Rates: []int{4}, Model: m, Dir: t.TempDir(),
			Strategies: []string{orchestrator.StrategyCold, orchestrator.StrategyFixed}}
	}
	free, err := Run(context.Background(), opts(base))
	if err != nil {
		t.Fatal(err)
	}
	paid, err := Run(context.Background(), opts(costly))
	if err != nil {
		t.Fatal(err)
	}
	fc, _ := free.Find(orchestrator.StrategyCold, 4)
	pc, _ := paid.Find(orchestrator.StrategyCold, 4)
	if pc.Mean != fc.Mean {
		t.Errorf("cold: mean %v with a checkpoint cost, %v without", pc.Mean, fc.Mean)
	}
	ff, _ := free.Find(orchestrator.StrategyFixed, 4)
	pf, _ := paid.Find(orchestrator.StrategyFixed, 4)
	if pf.Checkpoints == 0 || pf.Checkpoints != ff.Checkpoints || pf.Mean <= ff.Mean {
		t.Errorf("fixed(1): %d checkpoints (%d without cost), mean %v vs %v without cost", pf.Checkpoints, ff.Checkpoints, pf.Mean, ff.Mean)
	}
}

// The request after one that triggered a checkpoint pays CheckpointCost
// whichever worker serves it: when the checkpoint was the evicted worker's
// last request, its successor's restore and first request share the CPUs
// with the dump and the packing.
func TestCheckpointCostReachesTheSuccessor(t *testing.T) {
	m := Model{Curve: []time.Duration{10 * time.Millisecond}, CheckpointCost: 7 * time.Millisecond}
	res, err := Run(context.Background(), Options{Requests: 3, Seed: 1, Rates: []int{1}, Model: m, Dir: t.TempDir(),
		Strategies: []string{orchestrator.StrategyFixed}})
	if err != nil {
		t.Fatal(err)
	}
	row, _ := res.Find(orchestrator.StrategyFixed, 1)
	want := []time.Duration{10 * time.Millisecond, 17 * time.Millisecond, 10 * time.Millisecond}
	for i, l := range row.Latencies {
		if l != want[i] {
			t.Fatalf("latencies %v, want %v (checkpoint on request 1, taken by the first worker)", row.Latencies, want)
		}
	}
}

// A checkpoint's snapshot reaches the pool RegisterDelay requests after the
// one that triggered it: until then its successors start as if it did not
// exist (here: cold).
func TestRegisterDelay(t *testing.T) {
	for _, delay := range []int{0, 2} {
		m := Model{Curve: []time.Duration{10 * time.Millisecond}, RegisterDelay: delay}
		res, err := Run(context.Background(), Options{Requests: 10, Seed: 1, Rates: []int{1}, Model: m, Dir: t.TempDir(),
			Strategies: []string{orchestrator.StrategyFixed}})
		if err != nil {
			t.Fatal(err)
		}
		row, _ := res.Find(orchestrator.StrategyFixed, 1)
		if row.ColdStarts != uint64(1+delay) {
			t.Errorf("delay %d: %d cold starts, want %d", delay, row.ColdStarts, 1+delay)
		}
	}
}

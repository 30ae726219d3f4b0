package eval

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// syntheticTraces draws runs from a known model: a warm-up curve
// 10 + 90·exp(-(r-1)/5) ms with 5% log-normal noise, 200 ms more on a cold
// worker's first request, 30 ms on a restored one's, 15 ms on the request
// after a checkpoint, and fixed(1)-like runs at E=4.
func syntheticTraces() []RunResult {
	rng := rand.New(rand.NewPCG(1, 2))
	curve := func(r int) float64 { return 10 + 90*math.Exp(-float64(r-1)/5) }
	noisy := func(v float64) int64 { return int64(v * math.Exp(0.05*rng.NormFloat64()) * 1000) }
	warm := RunResult{Chunk: Chunk{Kind: KindWarmup, Benchmark: "bfs", Strategy: StrategyCold, Seed: 1, Requests: 60},
		Protocol: Protocol{Requests: 60, PoolCapacity: 12, CheckpointAt: 1}}
	for i := 0; i < 60; i++ {
		v := curve(i + 1)
		if i == 0 {
			v += 200
		}
		warm.Samples = append(warm.Samples, Sample{Index: i, Benchmark: "bfs", Strategy: StrategyCold, ClientUS: noisy(v), Lineage: i + 1,
			Served: i + 1, Start: map[bool]string{true: StartCold}[i == 0]})
	}
	runs := []RunResult{warm}
	for seed := int64(1); seed <= 2; seed++ {
		r := RunResult{Chunk: Chunk{Kind: KindRun, Benchmark: "bfs", Strategy: StrategyFixed, Rate: 4, Seed: seed, Requests: 40},
			Protocol: Protocol{Requests: 40, PoolCapacity: 12, CheckpointAt: 1}, PackedBytes: 8 << 20}
		for i := 0; i < 40; i++ {
			worker, served := i/4, i%4+1
			lineage := served // the first worker is cold at 1, later ones restore from 1 and serve 2..5
			start := ""
			if worker > 0 {
				lineage = served + 1
			}
			v := curve(lineage)
			switch {
			case served == 1 && worker == 0:
				v += 200
				start = StartCold
			case served == 1:
				v += 30
				start = StartRestore
			case worker == 0 && served == 2:
				v += 15 // held by the checkpoint request 1 triggered
			}
			r.Samples = append(r.Samples, Sample{Index: i, Benchmark: "bfs", Strategy: StrategyFixed, Rate: 4, Seed: seed, ClientUS: noisy(v),
				Lineage: lineage, Worker: worker, Served: served, Start: start})
		}
		r.Events = []Event{{Kind: EventCheckpoint, Index: 0, RequestNumber: 1}}
		runs = append(runs, r)
	}
	return runs
}

func TestFitModel(t *testing.T) {
	runs := syntheticTraces()
	c, ok := fitModel(runs, "bfs")
	if !ok {
		t.Fatal("no fit")
	}
	m := c.Model
	near := func(name string, got, want, tol float64) {
		t.Helper()
		if math.Abs(got-want) > tol {
			t.Errorf("%s = %.2f, want %.2f ± %.2f", name, got, want, tol)
		}
	}
	near("floor ms", durMS(m.Floor), 10, 1)
	near("peak ms", durMS(m.Peak), 100, 20)
	near("tau", m.Tau, 5, 2)
	near("noise", m.Noise, 0.05, 0.03)
	// The curve starts at request 2's level, so the first request's excess
	// is the 200 ms plus the drop from request 1 to 2.
	near("init ms", durMS(m.InitCost), 200+90*(1-math.Exp(-0.2)), 25)
	near("restore ms", durMS(m.RestoreCost), 30, 8)
	near("checkpoint ms", durMS(m.CheckpointCost), 15, 8)
	if len(m.Curve) != 60 || m.SnapshotSize != 8<<20 || c.ColdFirstN != 3 || c.RestoreFirstN != 18 || c.HeldN != 2 {
		t.Errorf("curve %d, size %d, n cold %d restore %d held %d", len(m.Curve), m.SnapshotSize, c.ColdFirstN, c.RestoreFirstN, c.HeldN)
	}
	if _, ok := fitModel(runs, "dfs"); ok {
		t.Error("a benchmark without a warm-up run was fitted")
	}
}

// Calibrate simulates the same grid and the figures and tables come out.
func TestCalibrateAndWrite(t *testing.T) {
	ds := &Dataset{Runs: syntheticTraces()}
	cals, err := Calibrate(context.Background(), ds)
	if err != nil {
		t.Fatal(err)
	}
	if len(cals) != 1 || len(cals[0].Rows) != 1 || len(cals[0].SimWarmup) != 60 {
		t.Fatalf("calibrations %+v", cals)
	}
	row := cals[0].Rows[0]
	if row.Strategy != StrategyFixed || row.Rate != 4 || !(row.SimMean > 0) || !(row.RealMean > 0) {
		t.Errorf("row %+v", row)
	}
	// The model was fitted to these traces: the simulated mean is close.
	if r := row.SimMean / row.RealMean; r < 0.7 || r > 1.3 {
		t.Errorf("simulated mean %.1f ms against real %.1f ms", row.SimMean, row.RealMean)
	}
	paths, err := WriteCalibration(t.TempDir(), cals)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	want := []string{"calibration-compare.csv", "calibration-means.png", "calibration-means.svg", "calibration-warmup.png",
		"calibration-warmup.svg", "calibration.csv"}
	if len(names) != len(want) {
		t.Fatalf("wrote %v", names)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Errorf("wrote %v, want %v", names, want)
			break
		}
	}
}

package sim

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
)

// TestStrategiesRanking runs the default model (a curve that keeps falling
// for ~100 requests) on a fixed seed and checks the claims of the design:
// request-centric beats fixed(1) and cold on median latency at every E;
// ours (bandit) beats request-centric on median and mean at E=20 and E=4.
// At E=1 every request is a first request, and climbing this curve takes
// one checkpoint per request number; the claim there is a mean latency no
// worse (within 2%) with at most a fifth of the checkpoints.
func TestStrategiesRanking(t *testing.T) {
	n := 3000
	if raceEnabled {
		n = 1500
	}
	res, err := Run(context.Background(), Options{Requests: n, Seed: 7, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := res.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + buf.String())
	get := func(s string, e int) Row {
		r, ok := res.Find(s, e)
		if !ok {
			t.Fatalf("no row %s E=%d", s, e)
		}
		return r
	}
	for _, e := range []int{20, 4, 1} {
		rc, fixed, cold, ours := get(orchestrator.StrategyRequestCentric, e), get("fixed", e), get("cold", e), get("bandit", e)
		if rc.Median >= fixed.Median || rc.Median >= cold.Median {
			t.Errorf("E=%d: request-centric median %v not below fixed(1) %v and cold %v", e, rc.Median, fixed.Median, cold.Median)
		}
		if e == 1 {
			if float64(ours.Mean) > 1.02*float64(rc.Mean) || ours.Checkpoints*5 > rc.Checkpoints {
				t.Errorf("E=1: bandit mean %v / %d checkpoints vs request-centric %v / %d", ours.Mean, ours.Checkpoints, rc.Mean, rc.Checkpoints)
			}
			continue
		}
		if ours.Median >= rc.Median || ours.Mean >= rc.Mean {
			t.Errorf("E=%d: bandit median %v mean %v not below request-centric %v %v", e, ours.Median, ours.Mean, rc.Median, rc.Mean)
		}
	}
	if !strings.Contains(buf.String(), "fixed(1)") {
		t.Error("table lacks fixed(1)")
	}
}

// measuredModel has the shape of the 13 benchmarks' warm-up curves on the
// real system (two slow requests, flat from the third), their noise and
// pauses, and the costs measured there: a cold start far above a restore,
// 20 ms on the request after a checkpoint, two requests from a checkpoint
// to its registration.
func measuredModel() Model {
	return Model{
		Curve: []time.Duration{40 * time.Millisecond, 30 * time.Millisecond, 5 * time.Millisecond},
		Noise: 0.25, GCProb: 0.05, GCMin: 5 * time.Millisecond, GCMax: 30 * time.Millisecond,
		InitCost: 250 * time.Millisecond, RestoreCost: 3500 * time.Microsecond,
		CheckpointCost: 20 * time.Millisecond, RegisterDelay: 2, SnapshotSize: 8 << 20,
	}
}

// TestBanditConverges holds ours to issue 9's targets against
// request-centric on curves shaped like the real ones, over three seeds: at
// most a third of its checkpoints and of its peak pool, no cold start once
// a snapshot is in the pool (at E=1 the registration lag lets two more
// workers start cold), mean and p90 a fifth lower at E=4 and not worse at
// E=1. At E=20 they are only asked to be a tenth lower: request-centric
// then checkpoints once per 20 requests, and what its checkpoints cost is
// all there is to win, which here (20 ms each) is some 12% of its mean.
// The published policy checkpoints nearly every worker; so did ours before
// it converged.
func TestBanditConverges(t *testing.T) {
	const n = 600 // 30 workers at E=20: fewer make the p90 a coin toss
	for _, seed := range []int64{1, 2, 3} {
		res, err := Run(context.Background(), Options{Requests: n, Seed: seed, Model: measuredModel(), Dir: t.TempDir(),
			Strategies: []string{orchestrator.StrategyRequestCentric, orchestrator.StrategyBandit}})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := res.WriteTable(&buf); err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %d\n%s", seed, buf.String())
		for _, e := range []int{20, 4, 1} {
			rc, _ := res.Find(orchestrator.StrategyRequestCentric, e)
			ours, _ := res.Find(orchestrator.StrategyBandit, e)
			meanGain, p90Gain := 0.8, 0.8
			switch e {
			case 20:
				meanGain, p90Gain = 0.9, 0.9
			case 1:
				meanGain, p90Gain = 1, 1
			}
			if 3*ours.Checkpoints > rc.Checkpoints || 3*ours.PeakPool > rc.PeakPool {
				t.Errorf("seed %d E=%d: %d checkpoints, peak pool %d; request-centric %d, %d", seed, e, ours.Checkpoints, ours.PeakPool, rc.Checkpoints, rc.PeakPool)
			}
			if ours.ColdStarts > 1+uint64(max(0, 3-e)) {
				t.Errorf("seed %d E=%d: %d cold starts", seed, e, ours.ColdStarts)
			}
			if float64(ours.Mean) > meanGain*float64(rc.Mean) || float64(ours.P90) > p90Gain*float64(rc.P90) {
				t.Errorf("seed %d E=%d: mean %v p90 %v, request-centric %v %v", seed, e, ours.Mean, ours.P90, rc.Mean, rc.P90)
			}
		}
	}
}

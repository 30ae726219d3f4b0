package orchestrator

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// banditState is a bandit weights record with observations laid out by the
// test: warm[i] is the latency of request i+1 on a running worker (0 = not
// observed), first[r] the first request of a worker restored at r, each
// observed n times; cold > 0 records cold first requests.
type banditState struct {
	warm, first map[int]float64
	n           int
	cold        float64
}

func (b banditState) view(cfg Config) banditView {
	w := newWeights(cfg)
	v := w.bandit()
	n := max(b.n, 1)
	for range n {
		for i, us := range b.warm {
			banditObserve(v, i, 1, false, us)
		}
		for r, us := range b.first {
			banditObserve(v, r, 0, true, us)
		}
		if b.cold > 0 {
			banditObserve(v, 0, 0, false, b.cold)
		}
	}
	return v
}

// curve maps indices lo..hi to f(i).
func curve(lo, hi int, f func(i int) float64) map[int]float64 {
	m := map[int]float64{}
	for i := lo; i <= hi; i++ {
		m[i] = f(i)
	}
	return m
}

// fastWarmup is the shape measured on the real benchmarks: two slow
// requests, then flat at 5 ms; wobble adds a deterministic ±10% so flat is
// not exactly flat.
func fastWarmup(i int) float64 {
	if i <= 1 {
		return 40000
	}
	return 5000 * (1 + 0.1*math.Sin(float64(i)*2.7))
}

func banditCfgE(e, m int) Config {
	c := DefaultConfig()
	c.Strategy, c.EvictAfter, c.Horizon, c.PoolCapacity = StrategyBandit, e, m, 12
	return c
}

func TestBanditProgress(t *testing.T) {
	spike := curve(1, 40, fastWarmup)
	spike[25] = 60000 // a GC pause in a position observed once
	rising := curve(1, 40, func(i int) float64 { return map[bool]float64{true: 8000, false: fastWarmup(i)}[i > 30] })
	slowFall := curve(1, 40, func(i int) float64 { return 50000 * math.Pow(0.97, float64(i)) })
	tests := []struct {
		name          string
		cfg           Config
		state         banditState
		explored      bool
		wantFrontier  int
		wantConverged bool
	}{
		{"nothing observed", banditCfgE(4, 100), banditState{}, false, -1, false},
		{"warm after two requests, flat over 38 more", banditCfgE(4, 100),
			banditState{warm: curve(1, 40, fastWarmup)}, false, 40, true},
		{"flat, but not for banditMinStretch yet", banditCfgE(4, 100),
			banditState{warm: curve(1, 10, fastWarmup)}, false, 10, false},
		{"flat for less long than it took to get there", banditCfgE(4, 100),
			banditState{warm: curve(1, 40, func(i int) float64 { return 5000 + 1000*max(30-float64(i), 0) })}, false, 40, false},
		{"flat for as long as it took to get there", banditCfgE(4, 100),
			banditState{warm: curve(1, 70, func(i int) float64 { return 5000 + 1000*max(30-float64(i), 0) })}, false, 70, true},
		{"falling 3% a request: keep climbing", banditCfgE(4, 100),
			banditState{warm: slowFall}, false, 40, false},
		{"a GC pause inside the plateau does not restart it", banditCfgE(4, 100),
			banditState{warm: spike}, false, 40, true},
		{"E=1: first requests are the curve", banditCfgE(1, 100),
			banditState{first: curve(1, 40, fastWarmup)}, false, 40, true},
		{"falling, but the frontier reached the horizon", banditCfgE(4, 41),
			banditState{warm: slowFall}, false, 40, true},
		{"rising at the frontier while exploring: a hump, keep going", banditCfgE(4, 100),
			banditState{warm: rising}, false, 40, false},
		{"rising after exploration ended: the machine slowed down", banditCfgE(4, 100),
			banditState{warm: rising}, true, 40, true},
		{"falling after exploration ended: climb again", banditCfgE(4, 100),
			banditState{warm: slowFall}, true, 40, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := banditProgressOf(tt.cfg, tt.state.view(tt.cfg), tt.explored)
			if p.frontier != tt.wantFrontier || p.converged != tt.wantConverged {
				t.Fatalf("progress %+v, want frontier %d converged %v", p, tt.wantFrontier, tt.wantConverged)
			}
		})
	}
}

// planOutcome runs banditPlan under many random sources.
type planOutcome struct {
	starts      map[int]int // request number started from (-1 = cold) -> count
	checkpoints map[int]int // checkpoint request number (0 = none) -> count
	maxKept     int
	pruned      map[int]bool
}

func planMany(cfg Config, v banditView, pool []Snapshot, mem banditMemory) planOutcome {
	o := planOutcome{starts: map[int]int{}, checkpoints: map[int]int{}, pruned: map[int]bool{}}
	for seed := range 50 {
		d := banditPlan(cfg, v, pool, mem, rand.New(rand.NewPCG(uint64(seed), 7)))
		from := -1
		if d.choice >= 0 {
			from = d.kept[d.choice].RequestNumber
		}
		o.starts[from]++
		o.checkpoints[d.checkpointAt]++
		o.maxKept = max(o.maxKept, len(d.kept))
		for _, s := range d.pruned {
			o.pruned[s.RequestNumber] = true
		}
	}
	return o
}

func only(m map[int]int, k int) bool { return len(m) == 1 && m[k] > 0 }

func TestBanditPlanRules(t *testing.T) {
	known := banditState{warm: curve(1, 40, fastWarmup), first: curve(8, 8, func(int) float64 { return 6000 }), n: 5}
	// Converged on a flat curve, then the machine slowed down while only the
	// positions after the best snapshot were observed again.
	drifted := banditState{n: 5, warm: curve(1, 40, func(i int) float64 {
		if i > 32 {
			return 1.5 * fastWarmup(i)
		}
		return fastWarmup(i)
	})}
	// Two snapshots on a flat curve, the later one steadily slower to
	// restore from.
	slowerLater := banditState{n: 9, warm: curve(1, 40, fastWarmup),
		first: map[int]float64{10: 5500, 14: 9000}}
	// Two snapshots restoring equally fast, the later one's workers
	// serving every request slower (a PyPy function's later snapshot, or
	// one that slows down as it warms).
	slowerWarmLater := banditState{n: 9, first: map[int]float64{10: 6000, 14: 6000},
		warm: curve(1, 40, func(i int) float64 { return map[bool]float64{true: 5000, false: 6000}[i > 10 && i < 15] })}
	stepDown := banditState{n: 5,
		warm:  curve(1, 40, func(i int) float64 { return map[bool]float64{true: 20000, false: 5000}[i < 8] }),
		first: curve(3, 3, func(int) float64 { return 21000 })}
	tests := []struct {
		name  string
		cfg   Config
		state banditState
		pool  []int
		mem   banditMemory
		check func(t *testing.T, o planOutcome)
	}{
		{"never a cold start once a snapshot exists (cold cost unseen, so optimistic)", banditCfgE(4, 100), known, []int{8}, banditMemory{lag: -1},
			func(t *testing.T, o planOutcome) {
				if !only(o.starts, 8) {
					t.Errorf("starts %v, want always from 8", o.starts)
				}
			}},
		{"no checkpoint while one is in flight", banditCfgE(4, 100), known, []int{8}, banditMemory{pending: []int{12}, lag: 2},
			func(t *testing.T, o planOutcome) {
				if !only(o.checkpoints, 0) {
					t.Errorf("checkpoints %v, want none", o.checkpoints)
				}
			}},
		{"converged on a flat curve: noise buys no checkpoint", banditCfgE(4, 100), known, []int{8}, banditMemory{lag: 2},
			func(t *testing.T, o planOutcome) {
				if !only(o.checkpoints, 0) {
					t.Errorf("checkpoints %v, want none", o.checkpoints)
				}
			}},
		{"converged: a clearly faster reachable state is still taken", banditCfgE(4, 100), stepDown, []int{3}, banditMemory{lag: 2},
			func(t *testing.T, o planOutcome) {
				if !only(o.starts, 3) || !only(o.checkpoints, 7) {
					t.Errorf("starts %v checkpoints %v, want from 3 and at 7", o.starts, o.checkpoints)
				}
			}},
		{"exploring: from the latest snapshot to the end of its window", banditCfgE(4, 100),
			banditState{warm: curve(1, 7, fastWarmup)}, []int{2, 4}, banditMemory{lag: 3},
			func(t *testing.T, o planOutcome) {
				if !only(o.starts, 4) || !only(o.checkpoints, 8) {
					t.Errorf("starts %v checkpoints %v, want from 4 and at 8", o.starts, o.checkpoints)
				}
			}},
		{"exploring at E=20: the end of the window less the registration lag", banditCfgE(20, 100),
			banditState{warm: curve(1, 7, fastWarmup)}, []int{4}, banditMemory{lag: 3},
			func(t *testing.T, o planOutcome) {
				if !only(o.checkpoints, 21) {
					t.Errorf("checkpoints %v, want at 4+20-3", o.checkpoints)
				}
			}},
		{"exploring stops where a worker cannot serve its window before M", banditCfgE(5, 20),
			banditState{warm: curve(1, 19, func(i int) float64 { return 50000 * math.Pow(0.97, float64(i)) })}, []int{15}, banditMemory{lag: 3},
			func(t *testing.T, o planOutcome) {
				// Without the stop it would checkpoint at 19, whose workers
				// serve one request before the horizon.
				if !only(o.starts, 15) || !only(o.checkpoints, 0) {
					t.Errorf("starts %v checkpoints %v, want from 15 and none", o.starts, o.checkpoints)
				}
			}},
		{"a tail slowed by the machine restarts exploration on a fresh engine", banditCfgE(4, 100), drifted, []int{36}, banditMemory{lag: 2},
			func(t *testing.T, o planOutcome) {
				if !only(o.checkpoints, 40) {
					t.Errorf("checkpoints %v, want exploration on to 40", o.checkpoints)
				}
			}},
		{"explored: a tail slowed by the machine does not restart it", banditCfgE(4, 100), drifted, []int{36}, banditMemory{lag: 2, explored: true},
			func(t *testing.T, o planOutcome) {
				if !only(o.checkpoints, 0) {
					t.Errorf("checkpoints %v, want none", o.checkpoints)
				}
			}},
		{"a later snapshot slower to restore from does not tie with an earlier one", banditCfgE(4, 100), slowerLater, []int{10, 14}, banditMemory{lag: 2},
			func(t *testing.T, o planOutcome) {
				if !only(o.starts, 10) {
					t.Errorf("starts %v, want always from 10", o.starts)
				}
			}},
		{"a later snapshot whose workers serve slower does not tie with an earlier one", banditCfgE(4, 100), slowerWarmLater, []int{10, 14},
			banditMemory{lag: 2, explored: true},
			func(t *testing.T, o planOutcome) {
				if !only(o.starts, 10) {
					t.Errorf("starts %v, want always from 10", o.starts)
				}
			}},
		{"the pool converges on the best two", banditCfgE(4, 100), known, []int{2, 8, 16, 24, 32}, banditMemory{lag: 2},
			func(t *testing.T, o planOutcome) {
				if o.maxKept > banditKeep || !o.pruned[2] {
					t.Errorf("kept up to %d, pruned %v: want at most %d, 2 pruned", o.maxKept, o.pruned, banditKeep)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, planMany(tt.cfg, tt.state.view(tt.cfg), snaps(tt.pool...), tt.mem))
		})
	}
}

// The first snapshot is taken early enough to be in the pool when the
// cold worker is evicted (its successor would otherwise start cold too).
func TestBanditFirstCheckpoint(t *testing.T) {
	tests := []struct {
		e, lag, want int
	}{
		{20, -1, 20 - banditFirstLag}, // lag not learned yet
		{20, 5, 15},
		{20, 0, 20}, // registered before the next request
		{4, 2, 2},
		{4, -1, 1},
		{1, 3, 1},
		{0, -1, 99 - banditFirstLag}, // E=0: the window is M, checkpoints stop at M-1
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("E=%d lag=%d", tt.e, tt.lag), func(t *testing.T) {
			cfg := banditCfgE(tt.e, 100)
			o := planMany(cfg, banditState{}.view(cfg), nil, banditMemory{lag: tt.lag})
			if !only(o.starts, -1) || !only(o.checkpoints, tt.want) {
				t.Fatalf("starts %v checkpoints %v, want cold and at %d", o.starts, o.checkpoints, tt.want)
			}
		})
	}
}

// The engine tracks checkpoints in flight: the plan of the successor of a
// worker that is being dumped takes no checkpoint; Register or
// CheckpointFailed ends it, and so does pendingTTL; the registration lag is
// learned from Register.
func TestCheckpointsInFlight(t *testing.T) {
	now := time.Unix(1000, 0)
	db, _ := newDB(t)
	e, err := Open(db, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeEngine(t, e) })
	ctx := context.Background()
	mustConfigure(t, e, "f", cfgOf(StrategyBandit, 4))

	p, err := e.OnStart(ctx, "f", "w1")
	if err != nil {
		t.Fatal(err)
	}
	w := p.Worker
	if p.Restore != nil || w.CheckpointAt != 1 {
		t.Fatalf("first plan %+v, want cold with a checkpoint at 1", p.Worker)
	}
	act, err := e.OnRequest(ctx, "f", &w, time.Millisecond)
	if err != nil || !act.Checkpoint {
		t.Fatalf("request 1: %+v %v, want a checkpoint", act, err)
	}
	if pending := e.banditMemory("f").pending; len(pending) != 1 || pending[0] != 1 {
		t.Fatalf("in flight %v, want [1]", pending)
	}
	p2, err := e.OnStart(ctx, "f", "w2")
	if err != nil {
		t.Fatal(err)
	}
	if p2.Worker.CheckpointAt != 0 {
		t.Fatalf("successor checkpoints at %d while one is in flight", p2.Worker.CheckpointAt)
	}
	// Three more requests, then the snapshot registers: a lag of 3.
	for range 3 {
		if _, err := e.OnRequest(ctx, "f", &w, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Register(ctx, "f", Snapshot{Key: "s1", RequestNumber: 1}); err != nil {
		t.Fatal(err)
	}
	if mem := e.banditMemory("f"); len(mem.pending) != 0 || mem.lag != 3 {
		t.Fatalf("in flight %v lag %d after Register, want none and 3", mem.pending, mem.lag)
	}

	// A failed checkpoint ends it too.
	w3 := Worker{ID: "w3", CheckpointAt: 2, Lineage: 1, Snapshot: "s1"}
	if act, _ := e.OnRequest(ctx, "f", &w3, time.Millisecond); !act.Checkpoint {
		t.Fatal("no checkpoint at 2")
	}
	if err := e.CheckpointFailed(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	if pending := e.banditMemory("f").pending; len(pending) != 0 {
		t.Fatalf("in flight %v after CheckpointFailed", pending)
	}

	// One whose outcome never comes is forgotten after pendingTTL.
	w4 := Worker{ID: "w4", CheckpointAt: 2, Lineage: 1, Snapshot: "s1"}
	if act, _ := e.OnRequest(ctx, "f", &w4, time.Millisecond); !act.Checkpoint {
		t.Fatal("no checkpoint at 2")
	}
	now = now.Add(pendingTTL + time.Second)
	if pending := e.banditMemory("f").pending; len(pending) != 0 {
		t.Fatalf("in flight %v after the TTL", pending)
	}
}

// The engine remembers that exploration ended until the weights are
// replaced.
func TestExplorationEndIsRemembered(t *testing.T) {
	db, _ := newDB(t)
	e, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeEngine(t, e) })
	ctx := context.Background()
	mustConfigure(t, e, "f", cfgOf(StrategyBandit, 4))
	start := func() {
		t.Helper()
		if _, err := e.OnStart(ctx, "f", "w"); err != nil {
			t.Fatal(err)
		}
	}
	start()
	if e.banditMemory("f").explored {
		t.Fatal("explored before anything was observed")
	}
	for i := range 40 {
		w := Worker{ID: "w", Lineage: i + 1, Served: 1}
		if _, err := e.OnRequest(ctx, "f", &w, time.Duration(fastWarmup(i+1))*time.Microsecond); err != nil {
			t.Fatal(err)
		}
	}
	start()
	if !e.banditMemory("f").explored {
		t.Fatal("not explored after a flat curve of 38 request numbers")
	}
	if _, err := e.Reset(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	if e.banditMemory("f").explored {
		t.Fatal("still explored after Reset replaced the weights")
	}
}

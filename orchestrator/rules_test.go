package orchestrator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func testRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func snaps(rns ...int) []Snapshot {
	out := make([]Snapshot, len(rns))
	for i, r := range rns {
		out[i] = Snapshot{Key: fmt.Sprintf("s%d-%d", i, r), RequestNumber: r}
	}
	return out
}

func TestRCUpdate(t *testing.T) {
	tests := []struct {
		name    string
		weights []float64
		r       int
		lat     float64
		want    []float64
	}{
		{"unset takes the latency, truncated", []float64{0, 0, 0, 0}, 1, 100.9, []float64{100, 0, 0, 0}},
		{"set is an EWMA with eps", []float64{100, 0, 0, 0}, 1, 200, []float64{150, 0, 0, 0}},
		{"EWMA result truncated like the int array", []float64{101, 0, 0, 0}, 1, 200, []float64{150, 0, 0, 0}},
		{"weights[-1] = weights[-2] after every update", []float64{0, 0, 7, 0}, 1, 50, []float64{50, 0, 7, 7}},
		{"update of M-1 is overwritten by the quirk", []float64{0, 0, 5, 0}, 4, 90, []float64{0, 0, 5, 5}},
		{"beyond the horizon ignored", []float64{1, 2, 3, 3}, 5, 90, []float64{1, 2, 3, 3}},
		{"r 0 ignored", []float64{1, 2, 3, 3}, 0, 90, []float64{1, 2, 3, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := slices.Clone(tt.weights)
			rcUpdate(w, tt.r, tt.lat, 0.5)
			if !slices.Equal(w, tt.want) {
				t.Fatalf("got %v, want %v", w, tt.want)
			}
		})
	}
}

func TestRCScore(t *testing.T) {
	w := []float64{999, 1999, 3999, 0, 99}
	tests := []struct {
		name      string
		r, window int
		want      float64
	}{
		{"full window", 0, 2, (1000 + 500) / 2.0},
		{"window cut at M", 3, 5, (1e6 + 1e4) / 2},
		{"unobserved weight scores 1e6", 3, 1, 1e6},
		{"single", 2, 1, 250},
		{"empty window (r >= M) scores 0", 5, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rcScore(w, tt.r, tt.window); math.Abs(got-tt.want) > 1e-9 {
				t.Fatalf("rcScore(%d,%d) = %v, want %v", tt.r, tt.window, got, tt.want)
			}
		})
	}
}

func TestRCPrune(t *testing.T) {
	tests := []struct {
		name            string
		n, capacity     int
		p, gamma        float64
		wantTop         int // top-scored snapshots that must be kept
		wantMaxRandom   int // at most this many from the rest
		wantMinRandom   int
		wantExactlyKept int // -1 = not checked
	}{
		{"artifact defaults 15 -> 6 + round(0.9)", 15, 14, 0.4, 0.1, 6, 1, 1, 7},
		{"banker's rounding 5 -> round(2.0)=2 + round(0.3)=0", 5, 4, 0.4, 0.1, 2, 0, 0, 2},
		{"gamma 1 draws with replacement: duplicates collapse", 13, 12, 0.0, 1.0, 0, 13, 1, -1},
		{"p 1 keeps all, capped at capacity", 13, 12, 1.0, 0.0, 12, 0, 0, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := snaps(make([]int, tt.n)...)
			scores := make([]float64, tt.n)
			for i := range scores {
				scores[i] = float64(tt.n - i) // pool order = score order
			}
			kept, pruned := rcPrune(pool, scores, tt.capacity, tt.p, tt.gamma, testRand())
			if len(kept)+len(pruned) != tt.n {
				t.Fatalf("kept %d + pruned %d != %d", len(kept), len(pruned), tt.n)
			}
			seen := map[string]bool{}
			for _, s := range kept {
				if seen[s.Key] {
					t.Fatalf("duplicate %s in kept pool", s.Key)
				}
				seen[s.Key] = true
			}
			for i := range tt.wantTop {
				if !seen[pool[i].Key] {
					t.Fatalf("top snapshot %d not kept", i)
				}
			}
			random := len(kept) - tt.wantTop
			if random < tt.wantMinRandom || random > tt.wantMaxRandom {
				t.Fatalf("random survivors %d not in [%d,%d]", random, tt.wantMinRandom, tt.wantMaxRandom)
			}
			if tt.wantExactlyKept >= 0 && len(kept) != tt.wantExactlyKept {
				t.Fatalf("kept %d, want %d", len(kept), tt.wantExactlyKept)
			}
			if len(kept) > tt.capacity {
				t.Fatalf("kept %d over capacity %d", len(kept), tt.capacity)
			}
		})
	}
	// With replacement: over many seeds, gamma=1 over 10 leftovers keeps
	// fewer than 10 distinct on average (10 draws from 10 with replacement
	// hit ~6.5 distinct), which is the artifact's behaviour.
	total := 0
	for seed := range uint64(200) {
		kept, _ := rcPrune(snaps(make([]int, 10)...), make([]float64, 10), 100, 0, 1, rand.New(rand.NewPCG(seed, 0)))
		total += len(kept)
	}
	if avg := float64(total) / 200; avg < 6 || avg > 7 {
		t.Fatalf("average distinct survivors %.2f, want ~6.5 (draws with replacement)", avg)
	}
}

func TestSoftmaxChoice(t *testing.T) {
	tests := []struct {
		name   string
		scores []float64
		want   []float64 // expected frequencies
	}{
		{"equal scores uniform", []float64{5, 5}, []float64{0.5, 0.5}},
		{"raw scores in the hundreds are greedy", []float64{500, 480, 300}, []float64{1, 0, 0}},
		{"difference of ln 3", []float64{math.Log(3), 0}, []float64{0.75, 0.25}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := testRand()
			counts := make([]float64, len(tt.scores))
			const n = 20000
			for range n {
				counts[softmaxChoice(tt.scores, rng)]++
			}
			for i := range counts {
				if math.Abs(counts[i]/n-tt.want[i]) > 0.02 {
					t.Fatalf("freq %v, want %v", counts, tt.want)
				}
			}
		})
	}
}

func TestRCChooseIncludesColdStart(t *testing.T) {
	// weights: request 1 (index 0) is fast, later ones slow: the cold start
	// (window [0,1)) outscores a snapshot at 2 (window [2,3)) and is chosen.
	w := []float64{10, 5000, 5000, 5000}
	pool := snaps(2)
	if got := rcChoose(w, pool, 1, testRand()); got != -1 {
		t.Fatalf("choice %d, want cold (-1)", got)
	}
	// Reverse: snapshot window fast, cold slow.
	w = []float64{5000, 5000, 10, 10}
	if got := rcChoose(w, pool, 1, testRand()); got != 0 {
		t.Fatalf("choice %d, want snapshot 0", got)
	}
	// Empty pool: cold, without consulting the strategy.
	if got := rcChoose(w, nil, 1, testRand()); got != -1 {
		t.Fatalf("choice %d, want cold", got)
	}
	// Close scores: both options drawn.
	w = []float64{1e6, 1e6, 1e6, 1e6}
	seen := map[int]bool{}
	rng := testRand()
	for range 200 {
		seen[rcChoose(w, pool, 1, rng)] = true
	}
	if !seen[-1] || !seen[0] {
		t.Fatalf("softmax over near-equal scores should draw both, saw %v", seen)
	}
}

func TestRCCheckpointAt(t *testing.T) {
	// Request numbers 1..9 with weights making candidate 3's score 3x
	// candidate 2's (window 1): draws follow the scores linearly.
	w := make([]float64, 10)
	for i := range w {
		w[i] = 999
	}
	w[2] = 332 // 1e6/333 ≈ 3003 vs 1000 for the others
	tests := []struct {
		name       string
		r, window  int
		lo, hi     int
		wantNever  bool
		freqTarget map[int]float64
	}{
		{"range (r, r+E]", 1, 3, 2, 4, false, nil},
		{"bounded by M-1", 7, 5, 8, 9, false, nil},
		{"none possible at M-1", 9, 5, 0, 0, true, nil},
		{"weighted by score", 1, 2, 2, 3, false, map[int]float64{
			2: rcScore(w, 2, 2) / (rcScore(w, 2, 2) + rcScore(w, 3, 2)),
			3: rcScore(w, 3, 2) / (rcScore(w, 2, 2) + rcScore(w, 3, 2))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := testRand()
			counts := map[int]float64{}
			const n = 20000
			for range n {
				got := rcCheckpointAt(w, tt.r, tt.window, rng)
				if tt.wantNever {
					if got != 0 {
						t.Fatalf("got %d, want never", got)
					}
					return
				}
				if got < tt.lo || got > tt.hi {
					t.Fatalf("got %d outside [%d,%d]", got, tt.lo, tt.hi)
				}
				counts[got]++
			}
			for k, f := range tt.freqTarget {
				if math.Abs(counts[k]/n-f) > 0.02 {
					t.Fatalf("freq of %d = %.3f, want %.3f", k, counts[k]/n, f)
				}
			}
		})
	}
}

func TestFixedRules(t *testing.T) {
	choose := []struct {
		name string
		pool []int
		t    int
		want int
	}{
		{"largest <= T", []int{1, 4, 3, 9}, 5, 1},
		{"exact T", []int{1, 5, 3}, 5, 1},
		{"first on ties", []int{2, 2}, 5, 0},
		{"empty pool cold", nil, 5, -1},
	}
	for _, tt := range choose {
		t.Run("choose "+tt.name, func(t *testing.T) {
			if got := fixedChoose(snaps(tt.pool...), tt.t, testRand()); got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
	t.Run("choose none <= T is random", func(t *testing.T) {
		if got := fixedChoose(snaps(7, 8), 5, testRand()); got < 0 || got > 1 {
			t.Fatalf("got %d", got)
		}
	})
	at := []struct {
		name       string
		r, t, e    int
		want       int
		wantNoEver bool
	}{
		{"fixed(1) from cold", 0, 1, 20, 1, false},
		{"T reachable", 2, 5, 4, 5, false},
		{"T beyond reach: climb to r+E", 0, 10, 4, 4, false},
		{"at T: never (no duplicate)", 5, 5, 4, 0, true},
		{"past T: never", 7, 5, 4, 0, true},
		{"E=0: T reachable whenever ahead", 0, 50, 0, 50, false},
	}
	for _, tt := range at {
		t.Run("at "+tt.name, func(t *testing.T) {
			if got := fixedCheckpointAt(tt.r, tt.t, tt.e); got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestRobustUpdate(t *testing.T) {
	est, n := 0.0, 0.0
	for range 10 {
		est, n = robustUpdate(est, n, 1000)
	}
	spiked, _ := robustUpdate(est, n, 50000) // a GC pause of 50x
	if spiked > 1000*(1+banditAlphaMin*(banditClip-1))+1e-9 {
		t.Fatalf("GC spike moved the estimate to %v", spiked)
	}
	// A genuine slowdown still moves the estimate up, geometrically.
	e := est
	for range 30 {
		e, n = robustUpdate(e, n, 3000)
	}
	if e < 2900 {
		t.Fatalf("estimate %v did not follow a genuine slowdown to 3000", e)
	}
	// The first observations are a running mean.
	a, an := robustUpdate(0, 0, 100)
	a, _ = robustUpdate(a, an, 300)
	if a != 200 {
		t.Fatalf("running mean = %v, want 200", a)
	}
}

func TestIsotonicFit(t *testing.T) {
	est := []float64{100, 0, 80, 90, 60, 70, 0}
	n := []float64{1, 0, 1, 1, 1, 1, 0}
	mean := isotonicFit(est, n)
	want := []float64{100, math.NaN(), 85, 85, 65, 65, math.NaN()}
	for i := range want {
		if math.IsNaN(want[i]) != math.IsNaN(mean[i]) || (!math.IsNaN(want[i]) && math.Abs(mean[i]-want[i]) > 1e-9) {
			t.Fatalf("fit %v, want %v", mean, want)
		}
	}
}

func TestShrunkFit(t *testing.T) {
	// 2 observed once between 1 and 3, each observed banditEffN times:
	// the isotonic fit pools 2 and 3 to 85 (weights 1 and 9 -> 83.5).
	est := []float64{100, 70, 85, 0}
	n := []float64{9, 1, 9, 0}
	iso := isotonicFit(est, n)
	mean, _ := shrunkFit(est, n, 0.1, nil)
	if !math.IsNaN(mean[3]) {
		t.Fatalf("unobserved position fitted: %v", mean)
	}
	if mean[0] != 100 {
		t.Fatalf("mean %v: a position the fit leaves alone moved", mean)
	}
	// The well-observed 3 keeps most of its own value, above the pool.
	if want := (9*85 + banditFitPrior*iso[2]) / (9 + banditFitPrior); math.Abs(mean[2]-want) > 1e-9 || mean[2] <= iso[2] {
		t.Fatalf("mean[2] = %v, want %v (iso %v)", mean[2], want, iso[2])
	}
	// The once-observed 2 leans on the pool.
	if math.Abs(mean[1]-iso[1]) >= math.Abs(mean[1]-70) {
		t.Fatalf("mean[1] = %v, nearer its own 70 than the pool %v", mean[1], iso[1])
	}
}

func banditCfg(e int) Config {
	c := DefaultConfig()
	c.Strategy, c.EvictAfter, c.Horizon, c.PoolCapacity = StrategyBandit, e, 20, 4
	return c
}

func TestBanditPlan(t *testing.T) {
	cfg := banditCfg(5)
	w := newWeights(cfg)
	v := w.bandit()
	// Warm curve falling from 1000 to 100 µs; restores cost +500 µs.
	for i := 1; i < 20; i++ {
		for range 5 {
			banditObserve(v, i, 1, false, 1000-float64(i)*45)
		}
	}
	for range 5 {
		banditObserve(v, 0, 0, false, 50000) // cold first request
	}
	for r := 3; r < 20; r++ {
		for range 5 {
			banditObserve(v, r, 0, true, 500+1000-float64(r)*45)
		}
	}
	// Pool 3, 10, 15 with E=5, M=20: 15 serves 5 requests ending at 20, the
	// warmest full window: chosen; 3 and 10 are slower by far more than
	// banditGain and leave the pool; nothing is worth a checkpoint (16-19
	// are evicted at M before amortising their restore).
	d := banditPlan(cfg, v, snaps(3, 10, 15), banditMemory{lag: -1}, testRand())
	if d.choice < 0 || d.kept[d.choice].RequestNumber != 15 || len(d.pruned) != 2 || len(d.kept) != 1 {
		t.Fatalf("choice %d of %v, pruned %v", d.choice, d.kept, d.pruned)
	}
	if d.checkpointAt != 0 {
		t.Fatalf("checkpoint at %d, want none past the best window", d.checkpointAt)
	}
	// From 10 (3 is dominated), the curve is still falling: explore to the
	// end of the window, 15.
	d = banditPlan(cfg, v, snaps(3, 10), banditMemory{lag: -1}, testRand())
	if d.choice < 0 || d.kept[d.choice].RequestNumber != 10 || d.checkpointAt != 15 {
		t.Fatalf("choice %d of %v, checkpoint %d, want 10 and 15", d.choice, d.kept, d.checkpointAt)
	}
	// Empty pool: cold start and always seed the pool.
	d = banditPlan(cfg, v, nil, banditMemory{lag: -1}, testRand())
	if d.choice != -1 || d.checkpointAt < 1 || d.checkpointAt > 5 {
		t.Fatalf("choice %d checkpoint %d", d.choice, d.checkpointAt)
	}
}

func TestBanditPrune(t *testing.T) {
	cfg := banditCfg(5) // capacity 4, gamma 0.1 -> round(0.4) = 0 random
	w := newWeights(cfg)
	v := w.bandit()
	for i := 1; i < 20; i++ {
		banditObserve(v, i, 1, false, 1000-float64(i)*45)
	}
	pool := snaps(1, 2, 3, 4, 5, 15, 15, 14, 13)
	kept, pruned := banditPrune(cfg, banditSample(v, nil, false), pool, testRand())
	if len(kept) != 4 || len(kept)+len(pruned) != len(pool) {
		t.Fatalf("kept %d pruned %d", len(kept), len(pruned))
	}
	rns := map[int]int{}
	for _, s := range kept {
		rns[s.RequestNumber]++
	}
	for _, r := range []int{13, 14, 15} {
		if rns[r] != 1 {
			t.Fatalf("kept %v: want one each of 13, 14, 15", rns)
		}
	}
	// Without replacement: gamma 1 keeps exactly capacity distinct.
	cfg.Gamma = 1
	kept, _ = banditPrune(cfg, banditSample(v, nil, false), pool, testRand())
	seen := map[string]bool{}
	for _, s := range kept {
		if seen[s.Key] {
			t.Fatal("duplicate")
		}
		seen[s.Key] = true
	}
	if len(kept) != 4 {
		t.Fatalf("kept %d, want 4", len(kept))
	}
}

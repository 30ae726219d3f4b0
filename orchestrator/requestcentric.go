package orchestrator

import (
	"math"
	"math/rand/v2"
	"sort"
)

// This file holds the pure decision rules of the faithful strategies (cold,
// fixed and request-centric), written against plain slices so each rule is
// tested on its own. They follow the artifact's Python
// (agent-python/orchestration/strategies/*.py) including its quirks, which
// are called out where they happen; bandit.go fixes them.

// minWeightEps is the artifact's MIN_WEIGHT_EPSILON: 1 µs added to every
// weight before inverting it, so an unobserved request number (weight 0)
// scores 1e6 — the policy's only, accidental, exploration bonus.
const minWeightEps = 1.0

// rcUpdate records the latency (µs) of lineage request number r (1-based:
// the r-th request since the cold start) into weights[r-1]: the latency if
// unset, else an EWMA with factor eps.
//
// Quirks kept on purpose: the artifact's weights are a numpy int array, so
// every stored value is truncated towards zero; and after every update it
// copies weights[M-2] into weights[M-1] (the weights[-1] quirk), so the last
// request number never holds its own observation.
func rcUpdate(weights []float64, r int, latencyUs, eps float64) {
	m := len(weights)
	if r < 1 || r > m || m < 2 {
		// The artifact would crash with IndexError; only reachable here when
		// E=0 lets a worker run past the horizon, where nothing is tracked.
		return
	}
	i := r - 1
	if weights[i] == 0 {
		weights[i] = math.Trunc(latencyUs)
	} else {
		weights[i] = math.Trunc(eps*latencyUs + (1-eps)*weights[i])
	}
	weights[m-1] = weights[m-2]
}

// rcScore is the artifact's _weights_for(r, scalar=True): the mean over the
// window [r, min(r+window, M)) of 1e6/(w+1), i.e. the expected speed of the
// requests a worker starting at request number r will serve. An empty window
// (r >= M, only possible after the horizon shrank) scores 0 where numpy would
// produce NaN.
func rcScore(weights []float64, r, window int) float64 {
	hi := min(r+window, len(weights))
	if r < 0 || r >= hi {
		return 0
	}
	s := 0.0
	for i := r; i < hi; i++ {
		s += 1e6 / (weights[i] + minWeightEps)
	}
	return s / float64(hi-r)
}

// roundHalfEven is Python 3's round(), which the artifact uses for the
// pruning counts (round(0.4*5) == 2, round(0.1*5) == 0).
func roundHalfEven(x float64) int { return int(math.RoundToEven(x)) }

// rcPrune keeps the top round(p*n) snapshots by score plus round(gamma*rest)
// draws from the rest. Like the artifact's random.choices the draws are WITH
// replacement, so fewer than round(gamma*rest) distinct snapshots may
// survive; unlike the artifact the kept pool holds each snapshot once (the
// Python list could hold duplicates, which would make the caller delete one
// object twice). The result is also capped at capacity, which the artifact
// only asserted. pruned lists the removed snapshots in pool order.
func rcPrune(pool []Snapshot, scores []float64, capacity int, p, gamma float64, rng *rand.Rand) (kept, pruned []Snapshot) {
	order := make([]int, len(pool))
	for i := range order {
		order[i] = i
	}
	// Python's sorted is stable; sort.SliceStable keeps the same tie order.
	sort.SliceStable(order, func(a, b int) bool { return scores[order[a]] > scores[order[b]] })

	keepP := min(roundHalfEven(p*float64(len(pool))), len(pool))
	keep := make([]bool, len(pool))
	var picked []int
	for _, i := range order[:keepP] {
		keep[i] = true
		picked = append(picked, i)
	}
	rest := order[keepP:]
	keepG := min(roundHalfEven(gamma*float64(len(rest))), len(rest))
	for range keepG {
		i := rest[rng.IntN(len(rest))]
		if !keep[i] {
			keep[i] = true
			picked = append(picked, i)
		}
	}
	if len(picked) > capacity {
		for _, i := range picked[capacity:] {
			keep[i] = false
		}
		picked = picked[:capacity]
	}
	for _, i := range picked {
		kept = append(kept, pool[i])
	}
	for i, s := range pool {
		if !keep[i] {
			pruned = append(pruned, s)
		}
	}
	return kept, pruned
}

// weightedChoice is Python's random.choices(range(n), weights)[0]: one
// uniform draw scaled by the total, then the first cumulative weight above
// it (bisect_right).
func weightedChoice(weights []float64, rng *rand.Rand) int {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	u := rng.Float64() * total
	cum := 0.0
	last := -1
	for i, w := range weights {
		if w <= 0 {
			continue
		}
		cum += w
		last = i
		if u < cum {
			return i
		}
	}
	if last < 0 {
		return len(weights) - 1
	}
	return last // u == total after rounding
}

// softmaxChoice draws an index with probability exp(s_i - max)/Σ. With raw
// scores in the hundreds or thousands this is effectively argmax — the
// published policy's first weakness.
func softmaxChoice(scores []float64, rng *rand.Rand) int {
	mx := math.Inf(-1)
	for _, s := range scores {
		mx = max(mx, s)
	}
	w := make([]float64, len(scores))
	for i, s := range scores {
		w[i] = math.Exp(s - mx)
	}
	return weightedChoice(w, rng)
}

// rcChoose picks what a new worker starts from: the pool (already pruned)
// followed by the cold start, softmax over their window scores. It returns
// the pool index, or -1 for a cold start.
func rcChoose(weights []float64, pool []Snapshot, window int, rng *rand.Rand) int {
	if len(pool) == 0 {
		// The artifact consults the strategy only when the pool is non-empty.
		return -1
	}
	scores := make([]float64, len(pool)+1)
	for i, s := range pool {
		scores[i] = rcScore(weights, s.RequestNumber, window)
	}
	scores[len(pool)] = rcScore(weights, 0, window)
	if i := softmaxChoice(scores, rng); i < len(pool) {
		return i
	}
	return -1
}

// rcCheckpointAt draws the lineage request number at which a worker starting
// at r is checkpointed, from (r, r+L] with L = len(weights[r+1 : min(r+1+W,
// M)]), weighted by each candidate's window score. 0 means never (the
// artifact's 50000). Candidates stop at M-1, as in the artifact.
func rcCheckpointAt(weights []float64, r, window int, rng *rand.Rand) int {
	lo := r + 1
	n := min(lo+window, len(weights)) - lo
	if n <= 0 {
		return 0
	}
	scores := make([]float64, n)
	for k := range scores {
		scores[k] = rcScore(weights, lo+k, window)
	}
	return lo + weightedChoice(scores, rng)
}

// fixedChoose returns the pool index of the snapshot with the largest request
// number <= t (first in pool order on ties), a uniformly random one if none
// qualifies (as the artifact does), or -1 for an empty pool (cold start).
func fixedChoose(pool []Snapshot, t int, rng *rand.Rand) int {
	if len(pool) == 0 {
		return -1
	}
	best := -1
	for i, s := range pool {
		if s.RequestNumber <= t && (best < 0 || s.RequestNumber > pool[best].RequestNumber) {
			best = i
		}
	}
	if best < 0 {
		return rng.IntN(len(pool))
	}
	return best
}

// fixedCheckpointAt is the artifact's FixedStrategy.when_to_checkpoint for a
// worker starting at lineage r that will serve e requests: T if reachable in
// (r, r+e]; the last reachable request r+e if T lies beyond it (so a chain of
// snapshots climbs towards T when E < T); never once T is behind. With e = 0
// (no eviction by count) any T > r is reachable.
func fixedCheckpointAt(r, t, e int) int {
	switch {
	case t <= r:
		return 0 // already at or past T: the artifact returns lo, which never fires
	case e == 0 || t <= r+e:
		return t
	default:
		return r + e
	}
}

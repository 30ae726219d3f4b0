package orchestrator

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// The "bandit" strategy: ours, measured against request-centric in
// orchestrator/sim and on the real system (benchmarks/eval).
//
// What it fixes in the published policy, and how:
//
//  1. Softmax over raw scores is greedy or uniform depending on the
//     function's latency scale (scores of ~1000 differ by tens: argmax;
//     scores of ~30 when restores cost tens of ms differ by <1: near-uniform).
//     We choose by Thompson sampling instead: draw a plausible latency curve
//     from per-request-number estimates with uncertainty shrinking as
//     1/sqrt(observations), and take the argmin of the expected latency per
//     request. Exploration is thereby scale-free and fades as evidence grows.
//  2. The objective is the one a client sees: the mean latency of the n
//     requests a worker will serve, (first request + Σ following) / n, where
//     the first request of a restored worker carries the restore cost and n
//     is min(E, M-r) because the worker is evicted at lineage M. The
//     artifact's mean-of-speeds score hardly notices one slow request, so it
//     favours snapshots near M whose workers are evicted after a handful of
//     requests and pay the restore again and again.
//  3. First requests (cold init, restore) are estimated separately from the
//     warm curve, per request number, instead of being mixed into one EWMA;
//     an unseen position borrows the pooled restore overhead.
//  4. GC pauses: the estimator is a running mean then an EWMA whose input is
//     clipped at 1.5x the current estimate once it has 3 observations, so a
//     pause cannot pull a request number's estimate far up, while a genuine
//     slowdown still moves it (by up to 10% per observation).
//  5. No weights[-1] quirk, no int truncation.
//  6. Once the pool holds a snapshot, a new worker always restores one: the
//     engine only sees the function's own time, not the process start and
//     runtime initialisation a cold worker makes its first client wait for
//     (hundreds of ms on the real system), so exploring a cold start can
//     only lose.
//  7. Checkpoints converge. The published policy checkpoints nearly every
//     worker, and each checkpoint freezes the function and packs its image
//     on the CPUs that serve the next requests (on the real system the
//     request after a checkpoint was 12-45 ms slower, more than a restore
//     costs). Ours checkpoints in two phases:
//     - exploration, while the learned curve may still fall beyond the
//     furthest request number observed (the frontier): start from the latest
//     snapshot and checkpoint at the end of its window, so the frontier moves
//     by about E per checkpoint. It ends when the curve has been flat (the
//     medians of the first and last quarters of the stretch within
//     banditGain of each other either way, or within noise) for as many
//     request numbers as it took to reach the plateau and at least
//     banditMinStretch, or when the next snapshot could no longer serve a
//     whole window before the horizon. JIT warm-up is neither smooth nor monotone
//     (tier compilations and collectors make steps and humps), hence a
//     stretch, not one flat step, and a tail that rises counts as unsettled
//     until exploration has ended once; after, only a falling tail restarts
//     it (a rising one is the machine slowing down: banditMemory).
//     - exploitation: start from the snapshot with the lowest sampled cost,
//     and checkpoint only where, in at least banditConfidence of
//     banditDraws posterior draws with no optimism about unobserved
//     positions, a snapshot would cut the expected mean latency of a worker
//     by banditGain against the best snapshot held. Noise and the bias of
//     a noisy fit then do not buy checkpoints.
//     While a checkpoint is being taken and uploaded no other is planned,
//     so the successor of the worker that is dumping does not take the same
//     snapshot again, nor a neighbour of it. And a checkpoint is placed the
//     registration lag (learned: requests served between a checkpoint and
//     its Register) before the end of the window when that gives up at most
//     a quarter of it, and always for the first snapshot, whose successor
//     would otherwise start cold too.
//  8. The pool converges with the checkpoints: snapshots that are worse
//     than the best by banditGain with confidence, or beyond the best
//     banditKeep, leave it (the snapshot that exploration extends stays), so
//     storage stays at two or three snapshots instead of C. C still caps it:
//     the best C-k by expected latency plus k = round(gamma*C) drawn WITHOUT
//     replacement from the rest; duplicates of one request number are
//     dropped first. p is not used.
//
// The engine keeps nothing new on disk for this (banditMemory): the
// checkpoints in flight, the registration lag and whether exploration has
// ended live in memory only, and a restarted engine recomputes convergence
// from the learned curve.
const (
	banditSigma        = 0.25  // assumed per-observation log-scale noise of one latency
	banditSigmaMin     = 0.01  // floor of the posterior sd: keep exploring a little
	banditSigmaImputed = 0.30  // sd of an imputed (never observed) value
	banditDecay        = 1e-3  // optimistic per-request-number decay of imputed values
	banditAlphaMin     = 0.2   // EWMA factor once the running mean has 5 observations
	banditClip         = 1.5   // GC-spike clip, relative to the current estimate
	banditClipAfter    = 3     // observations before clipping starts
	banditMaxCount     = 1e9   // counts saturate (they are float64 in the record)
	banditNoEstimate   = -1.0  // sentinel in mean arrays for "nothing to go on"
	banditUnknownFirst = 0.0   // optimistic first-request cost when nothing is known
	banditTieBreak     = 1e-12 // relative margin so later request numbers win exact ties

	// banditGain is the smallest relative cut of a worker's mean latency
	// worth a checkpoint, and the least tolerance of "flat". A dump costs
	// the next request tens of ms and hundreds of ms of CPU; gains below a
	// few percent are also below what a busy machine's noise lets one
	// measure.
	banditGain = 0.05
	// banditMinStretch is the least number of request numbers the curve must
	// stay flat at the frontier before exploration stops.
	banditMinStretch = 16
	// banditFlatZ widens the flat tolerance to this many sds of the
	// difference between the medians of a stretch's first and last
	// quarters, so noise (the real system's is 15-40% per request) does not
	// keep a flat curve exploring.
	banditFlatZ = 2
	// banditDraws posterior draws back each exploitation checkpoint and
	// each pruning for dominance; banditConfidence of them must agree.
	banditDraws      = 16
	banditConfidence = 0.9
	// banditKeep is how many snapshots exploitation keeps: the best and a
	// fallback (a proven-bad snapshot leaves the pool, and Thompson sampling
	// keeps comparing the two).
	banditKeep = 2
	// banditFitPrior is the weight, in observations, of the isotonic fit
	// in a request number's estimate (shrunkFit).
	banditFitPrior = 3
	// banditFirstLag is the registration lag assumed before one is learned:
	// a dump, its packing and its upload take a few hundred ms, a couple of
	// requests at the evaluation's spacing.
	banditFirstLag = 3
	// banditScan bounds how far back from the frontier the plateau is
	// looked for (the scan is quadratic in it).
	banditScan = 512
)

// banditView slices a weights record of kind bandit into its parts.
type banditView struct {
	m                          int
	warm, warmN, first, firstN []float64
	v                          []float64 // whole record, scalars after the arrays
}

// Scalars after the four arrays: the cold first-request estimate and its
// count, and the function's noise level (mean absolute log deviation of an
// observation from its estimate) and its count.
const (
	scColdEst = iota
	scColdN
	scNoise
	scNoiseN
	banditScalars
)

func (v banditView) cold() (est, n float64) { return v.v[4*v.m+scColdEst], v.v[4*v.m+scColdN] }

// sigma is the per-observation log-scale noise, learned per function: the
// mean absolute log deviation times 1.25 (normal MAD to sd), each deviation
// capped at 1 so GC pauses do not inflate it; the prior until enough
// observations is banditSigma.
func (v banditView) sigma() float64 {
	if v.v[4*v.m+scNoiseN] < 10 {
		return banditSigma
	}
	return max(1.25*v.v[4*v.m+scNoise], banditSigmaMin)
}

// observeNoise folds one deviation of observation x from estimate est.
func (v banditView) observeNoise(est, x float64) {
	if est <= 0 || x <= 0 {
		return
	}
	dev := min(math.Abs(math.Log(x/est)), 1)
	i := 4*v.m + scNoise
	n := v.v[i+1]
	alpha := max(1/(n+1), 0.02)
	v.v[i] += alpha * (dev - v.v[i])
	v.v[i+1] = min(n+1, banditMaxCount)
}

// robustUpdate folds observation x into (est, n).
func robustUpdate(est, n, x float64) (float64, float64) {
	if n <= 0 {
		return x, 1
	}
	if n >= banditClipAfter && x > banditClip*est {
		x = banditClip * est
	}
	alpha := max(1/(n+1), banditAlphaMin)
	return est + alpha*(x-est), min(n+1, banditMaxCount)
}

// banditObserve records a request of a worker that, before it, had lineage
// r0 and had served served0 requests.
func banditObserve(v banditView, r0, served0 int, restored bool, us float64) {
	switch {
	case served0 == 0 && !restored:
		i := 4*v.m + scColdEst
		if v.v[i+1] > 0 {
			v.observeNoise(v.v[i], us)
		}
		v.v[i], v.v[i+1] = robustUpdate(v.v[i], v.v[i+1], us)
	case r0 < 0 || r0 >= v.m:
		// Past the horizon (E=0): nothing tracked.
	case served0 == 0:
		if v.firstN[r0] > 0 {
			v.observeNoise(v.first[r0], us)
		}
		v.first[r0], v.firstN[r0] = robustUpdate(v.first[r0], v.firstN[r0], us)
	default:
		if v.warmN[r0] > 0 {
			v.observeNoise(v.warm[r0], us)
		}
		v.warm[r0], v.warmN[r0] = robustUpdate(v.warm[r0], v.warmN[r0], us)
	}
}

// banditCurve is one draw (or, with rng nil, the posterior mean) of the
// latency of every request number, as a first request after a restore and
// as a warm request, plus the cold first request.
type banditCurve struct {
	warm   []float64 // warm[i]: latency of request i+1 on a running worker
	prefix []float64 // prefix[i] = Σ warm[:i]
	first  []float64 // first[r]: first request of a worker restored at r
	cold   float64   // first request of a cold worker
}

// banditEffN caps the weight of one estimate: after the running mean phase
// it is an EWMA whose effective sample size is (2-α)/α = 9 at α = 0.2.
const banditEffN = 9

func sdFor(sigma, n float64) float64 { return max(sigma/math.Sqrt(n), banditSigmaMin) }

// isotonicFit fits a non-increasing sequence to the observed estimates
// (pool-adjacent-violators, weighted by effective counts), NaN where
// nothing was observed. JIT warm-up mostly makes later requests faster, so
// pooling a later request number measured slower with the earlier ones
// averages noise away; shrunkFit keeps it from overruling a position
// observed often.
func isotonicFit(est, n []float64) []float64 {
	type block struct {
		sum, w float64
		cnt    int // observed indices in the block
	}
	var blocks []block
	var idx []int
	for i := range est {
		if n[i] <= 0 {
			continue
		}
		w := min(n[i], banditEffN)
		idx = append(idx, i)
		blocks = append(blocks, block{est[i] * w, w, 1})
		// Merge while the sequence increases (violates non-increasing).
		for len(blocks) > 1 {
			a, b := blocks[len(blocks)-2], blocks[len(blocks)-1]
			if a.sum/a.w >= b.sum/b.w {
				break
			}
			blocks = append(blocks[:len(blocks)-2], block{a.sum + b.sum, a.w + b.w, a.cnt + b.cnt})
		}
	}
	mean := make([]float64, len(est))
	for i := range mean {
		mean[i] = math.NaN()
	}
	k := 0
	for _, b := range blocks {
		for range b.cnt {
			mean[idx[k]] = b.sum / b.w
			k++
		}
	}
	return mean
}

// shrunkFit fits a curve like isotonicFit, except that each observed
// position's own estimate, weighted by its effective count, is pooled with
// the isotonic fit, weighted banditFitPrior, and drawn on its own. Warm-up
// makes later requests faster, but what a snapshot holds also counts: a
// restored worker's first request pays for its heap and for what was
// compiled when it was dumped, and so do the requests after it (a later
// snapshot of a PyPy function can serve every request slower than an
// earlier one, and some functions slow down as they warm). The isotonic fit
// alone would pool such a position with the faster earlier ones and tie
// them, and the tie goes to the later one. As a prior it still lets a
// position observed once lean on its neighbours, while one observed often
// speaks for itself.
func shrunkFit(est, n []float64, sigma float64, rng *rand.Rand) (mean, draw []float64) {
	iso := isotonicFit(est, n)
	mean, draw = make([]float64, len(est)), make([]float64, len(est))
	for i := range est {
		if math.IsNaN(iso[i]) {
			mean[i], draw[i] = math.NaN(), math.NaN()
			continue
		}
		w := min(n[i], banditEffN)
		mean[i] = (w*est[i] + banditFitPrior*iso[i]) / (w + banditFitPrior)
		draw[i] = mean[i]
		if rng != nil {
			draw[i] *= math.Exp(sdFor(sigma, w+banditFitPrior) * rng.NormFloat64())
		}
	}
	return mean, draw
}

// banditWarmMean is the posterior mean of the warm curve with unobserved
// positions carried flat from their neighbours (0 when nothing is known).
func banditWarmMean(v banditView) []float64 {
	wmean, _ := shrunkFit(v.warm, v.warmN, v.sigma(), nil)
	last := math.NaN()
	for i := range wmean {
		if math.IsNaN(wmean[i]) {
			wmean[i] = last
		} else {
			last = wmean[i]
		}
	}
	next := 0.0
	for i := len(wmean) - 1; i >= 0; i-- {
		if math.IsNaN(wmean[i]) {
			wmean[i] = next
		} else {
			next = wmean[i]
		}
	}
	return wmean
}

// banditOverhead is the pooled restore overhead: the median over observed
// positions of first-request latency minus the warm latency there.
func banditOverhead(v banditView, wmean []float64) (float64, bool) {
	var over []float64
	for i := range v.m {
		if v.firstN[i] > 0 && wmean[i] > 0 {
			over = append(over, v.first[i]-wmean[i])
		}
	}
	if len(over) == 0 {
		return 0, false
	}
	sort.Float64s(over)
	return max(over[len(over)/2], 0), true
}

// banditSample draws a curve (rng nil: the posterior mean). Observed
// positions come from shrunkFit. Positions never observed are
// imputed from their neighbours: optimistically (a shared draw on the
// better side, and a slight decay past the last observation) for choosing
// where to start, so a snapshot never restored yet gets tried; or
// neutrally (carried flat with their neighbour's draw) for deciding whether
// a checkpoint pays, so hoped-for gains buy no dumps.
func banditSample(v banditView, rng *rand.Rand, optimistic bool) banditCurve {
	m := v.m
	sigma := v.sigma()
	normal := func() float64 {
		if rng == nil || !optimistic {
			return 0
		}
		return rng.NormFloat64()
	}
	// Imputed values are bounds under monotone warm-up: a request number
	// after the last observation is at most as slow as it (draw below), one
	// before the first observation at least as slow (draw above).
	zw, zf := math.Abs(normal()), math.Abs(normal())
	below := func(z float64) float64 { return math.Exp(-banditSigmaImputed * z) }
	above := func(z float64) float64 { return math.Exp(banditSigmaImputed * z) }
	c := banditCurve{warm: make([]float64, m), prefix: make([]float64, m+1), first: make([]float64, m)}

	// Warm curve: carry the last fitted value forward (with the optimistic
	// decay when optimistic); before the first observation, carry the first
	// one backwards; with no observation at all, 0 (optimistic).
	wmean, wdraw := shrunkFit(v.warm, v.warmN, sigma, rng)
	lastAt, firstAt := -1, -1
	for i := range m {
		switch {
		case !math.IsNaN(wmean[i]):
			lastAt = i
			if firstAt < 0 {
				firstAt = i
			}
			c.warm[i] = wdraw[i]
		case lastAt >= 0 && optimistic:
			wmean[i] = wmean[lastAt] * math.Pow(1-banditDecay, float64(i-lastAt))
			c.warm[i] = wmean[i] * below(zw)
		case lastAt >= 0:
			wmean[i], c.warm[i] = wmean[lastAt], c.warm[lastAt]
		}
	}
	for i := 0; i < m && math.IsNaN(wmean[i]); i++ {
		switch {
		case firstAt < 0:
			wmean[i], c.warm[i] = 0, 0
		case optimistic:
			wmean[i], c.warm[i] = wmean[firstAt], wmean[firstAt]*above(zw)
		default:
			wmean[i], c.warm[i] = wmean[firstAt], c.warm[firstAt]
		}
	}
	for i := range m {
		c.prefix[i+1] = c.prefix[i] + c.warm[i]
	}
	overhead, haveOverhead := banditOverhead(v, wmean)

	// First requests: fitted where observed. Elsewhere, optimistically the
	// smaller of (carried forward fit) and (pooled overhead + warm
	// estimate), both upper-ish guesses under monotone warm-up; neutrally
	// the pooled overhead on the drawn warm latency, else the carried fit.
	fmean, fdraw := shrunkFit(v.first, v.firstN, sigma, rng)
	lastFAt := -1
	for i := range m {
		if !math.IsNaN(fmean[i]) {
			lastFAt = i
			c.first[i] = fdraw[i]
			continue
		}
		if !optimistic {
			switch {
			case haveOverhead && wmean[i] > 0:
				c.first[i] = overhead + c.warm[i]
			case lastFAt >= 0:
				c.first[i] = c.first[lastFAt]
			default:
				c.first[i] = c.warm[i]
			}
			continue
		}
		guess := banditNoEstimate
		if lastFAt >= 0 {
			guess = fmean[lastFAt] * math.Pow(1-banditDecay, float64(i-lastFAt))
		}
		if haveOverhead && wmean[i] > 0 {
			if g := overhead + wmean[i]; guess < 0 || g < guess {
				guess = g
			}
		}
		if guess < 0 {
			// No restore observed yet: assume it costs nothing beyond the
			// warm request (optimism, so the first restore gets tried).
			guess = max(wmean[i], banditUnknownFirst)
		}
		c.first[i] = guess * below(zf)
	}

	est, n := v.cold()
	switch {
	case n > 0 && rng != nil:
		c.cold = est * math.Exp(sdFor(sigma, min(n, banditEffN))*rng.NormFloat64())
	case n > 0:
		c.cold = est
	default:
		c.cold = banditUnknownFirst
	}
	return c
}

// served is how many requests a worker starting at lineage r serves before
// it is evicted: E, cut at the horizon M; with E = 0 a window of M.
func served(cfg Config, r int) int {
	if cfg.EvictAfter > 0 {
		return min(cfg.EvictAfter, cfg.Horizon-r)
	}
	return cfg.Horizon
}

// cost is the expected mean latency per request of a worker starting at r
// (cold when cold is true, else restored from a snapshot taken at r).
func (c banditCurve) cost(cfg Config, r int, cold bool) float64 {
	m := len(c.warm)
	n := served(cfg, r)
	if n <= 0 || r < 0 || (!cold && r >= m) {
		return math.Inf(1)
	}
	head := c.cold
	if !cold {
		head = c.first[r]
	}
	// Warm requests r+2 .. r+n are warm[r+1 .. r+n-1]; beyond the horizon
	// (E = 0 only) they cost what the last tracked one does.
	lo, hi := min(r+1, m), min(r+n, m)
	sum := c.prefix[hi] - c.prefix[lo]
	if extra := r + n - max(hi, r+1); extra > 0 {
		sum += float64(extra) * c.warm[m-1]
	}
	return (head + sum) / float64(n)
}

// banditProgress is how far exploration has got: the frontier (the highest
// request index, i.e. request number - 1, observed as a warm or first
// request; -1 when nothing is), where the flat stretch that ends there
// begins, and whether exploration is over.
type banditProgress struct {
	frontier, plateau int
	converged         bool
}

// banditProgressOf finds the frontier and the plateau on the level curve
// (the warm estimates; at E=1, where every request is a first request, the
// first-request estimates) and decides whether exploration is over: once
// the plateau spans as many request numbers as it took to reach it (the
// curve has been flat for as long as it was falling), and at least
// banditMinStretch; or once the frontier reached the horizon. (Carrying a
// slow fall across the plateau forward was tried: on the real system it
// mostly extrapolated the machine's load easing off, because exploration
// visits request numbers in time order.) explored says exploration has
// ended before; a tail slower than the head then no longer unsettles the
// curve (banditMemory.explored).
func banditProgressOf(cfg Config, v banditView, explored bool) banditProgress {
	m := v.m
	// The level curve: warm requests where any were observed (E >= 2), else
	// first requests (E = 1). Not both: a first request carries a restore
	// overhead that varies from snapshot to snapshot, and mixing the two
	// would read that variation as a slope.
	est, cnt := v.warm, v.warmN
	if !slices.ContainsFunc(v.warmN, func(x float64) bool { return x > 0 }) {
		est, cnt = v.first, v.firstN
	}
	lvl, n := make([]float64, m), make([]float64, m)
	frontier := -1
	for i := range m {
		if cnt[i] > 0 {
			lvl[i], n[i], frontier = est[i], min(cnt[i], banditEffN), i
		}
	}
	if frontier < 0 {
		return banditProgress{frontier: -1, plateau: -1}
	}
	// Prefix sums of weights, for the precision of stretches.
	cw := make([]float64, m+1)
	for i := range m {
		cw[i+1] = cw[i] + n[i]
	}
	// median of the observed levels in [lo, hi): a GC pause in a position
	// observed once (exploration observes most positions once) moves a
	// mean, not a median.
	median := func(lo, hi int) float64 {
		var xs []float64
		for i := lo; i < hi; i++ {
			if n[i] > 0 {
				xs = append(xs, lvl[i])
			}
		}
		if len(xs) == 0 {
			return math.NaN()
		}
		sort.Float64s(xs)
		if k := len(xs); k%2 == 0 {
			return (xs[k/2-1] + xs[k/2]) / 2
		}
		return xs[len(xs)/2]
	}
	sigma := v.sigma()
	// The plateau starts at the first observed position from which the
	// stretch to the frontier is flat: the medians of its first and last
	// quarters within banditGain of each other (widened by banditFlatZ sds),
	// either way. Until exploration has ended once, a tail slower than the
	// head means the curve is rising again (a compilation or a collector at
	// work): not settled; after, it means the machine slowed down (see
	// banditMemory.explored). The middle
	// is left out: exploration visits request numbers in time order, so a
	// burst of load on the machine shows as a bump there, which has passed.
	// Scanning from the start, a noisy estimate inside a long flat stretch
	// cannot cut it short. The scan covers the last banditScan positions
	// only, so a huge horizon costs no more than a small one.
	plateau := frontier
	for p := max(0, frontier+1-banditScan); p < frontier; p++ {
		if n[p] <= 0 {
			continue
		}
		span := frontier - p + 1
		head, tail := p+max(span/4, 1), frontier+1-max(span/4, 1)
		wh, wt := cw[head]-cw[p], cw[frontier+1]-cw[tail]
		if wh <= 0 || wt <= 0 {
			continue
		}
		h, tl := median(p, head), median(tail, frontier+1)
		tol := 1 + max(banditGain, banditFlatZ*sigma*math.Sqrt(1/wh+1/wt))
		if falling, rising := h > tl*tol, tl > h*tol; falling || (rising && !explored) {
			continue
		}
		plateau = p
		break
	}
	need := max(plateau+1, banditMinStretch)
	return banditProgress{frontier: frontier, plateau: plateau,
		converged: frontier-plateau+1 >= need || frontier >= banditExploreCap(cfg)}
}

// banditExploreCap is the furthest exploration takes a snapshot: M-1, and
// with E > 0 no further than a restored worker still serves its whole
// window before the horizon evicts it (beyond, every worker would pay a
// restore for fewer requests, and the flat part of a curve cannot make up
// for that); a first snapshot at 1 if need be still beats cold starts.
// Once the frontier has reached it there is nothing left to explore.
func banditExploreCap(cfg Config) int {
	if cfg.EvictAfter > 0 {
		return min(cfg.Horizon-1, max(cfg.Horizon-cfg.EvictAfter, 1))
	}
	return cfg.Horizon - 1
}

// banditPrune cuts the pool to capacity by posterior-mean cost: one snapshot
// per request number (the newest), then the best capacity-k, then k drawn
// without replacement from the rest.
func banditPrune(cfg Config, mean banditCurve, pool []Snapshot, rng *rand.Rand) (kept, pruned []Snapshot) {
	newest := map[int]int{}
	for i, s := range pool {
		newest[s.RequestNumber] = i
	}
	var uniq []int
	for i, s := range pool {
		if newest[s.RequestNumber] == i {
			uniq = append(uniq, i)
		} else {
			pruned = append(pruned, s)
		}
	}
	if len(uniq) <= cfg.PoolCapacity {
		for _, i := range uniq {
			kept = append(kept, pool[i])
		}
		return kept, pruned
	}
	cost := make([]float64, len(pool))
	for _, i := range uniq {
		cost[i] = mean.cost(cfg, pool[i].RequestNumber, false)
	}
	sort.SliceStable(uniq, func(a, b int) bool { return cost[uniq[a]] < cost[uniq[b]] })
	k := min(roundHalfEven(cfg.Gamma*float64(cfg.PoolCapacity)), cfg.PoolCapacity)
	top := cfg.PoolCapacity - k
	keep := map[int]bool{}
	for _, i := range uniq[:top] {
		keep[i] = true
	}
	rest := uniq[top:]
	for j, p := range rng.Perm(len(rest)) {
		if j == k {
			break
		}
		keep[rest[p]] = true
	}
	for _, i := range uniq {
		if keep[i] {
			kept = append(kept, pool[i])
		} else {
			pruned = append(pruned, pool[i])
		}
	}
	return kept, pruned
}

// banditLatest is the pool index of the snapshot taken furthest along the
// lineage (the newest on ties): where exploration continues from.
func banditLatest(pool []Snapshot) int {
	latest := 0
	for i, s := range pool {
		if s.RequestNumber >= pool[latest].RequestNumber {
			latest = i
		}
	}
	return latest
}

// banditShrink drops what the pool no longer needs: snapshots that cannot
// serve a request before the horizon, those worse than the best by
// banditGain in at least banditConfidence of the draws, and beyond those,
// all but the banditKeep best by mean cost (ties to the later request
// number). keep (a pool index, or -1) is dropped only if it cannot serve:
// it is the latest snapshot, which exploration extends; were it dropped,
// exploration could take it again and again.
func banditShrink(cfg Config, pool []Snapshot, keep int, mean banditCurve, draws []banditCurve) (kept, dropped []Snapshot) {
	if len(pool) <= 1 {
		return pool, nil
	}
	useless := func(s Snapshot) bool { return math.IsInf(mean.cost(cfg, s.RequestNumber, false), 1) }
	dominated := func(s Snapshot) bool {
		if len(draws) == 0 {
			return false
		}
		worse := 0
		for _, d := range draws {
			best := math.Inf(1)
			for _, t := range pool {
				if t.Key != s.Key {
					best = min(best, d.cost(cfg, t.RequestNumber, false))
				}
			}
			if d.cost(cfg, s.RequestNumber, false) > (1+banditGain)*best {
				worse++
			}
		}
		return float64(worse) >= banditConfidence*float64(len(draws))
	}
	type ranked struct {
		i    int
		cost float64
	}
	var cands []ranked
	drop := make([]bool, len(pool))
	for i, s := range pool {
		switch {
		case useless(s):
			drop[i] = true
		case i == keep:
		case dominated(s):
			drop[i] = true
		default:
			cands = append(cands, ranked{i, mean.cost(cfg, s.RequestNumber, false)})
		}
	}
	sort.SliceStable(cands, func(a, b int) bool {
		if cands[a].cost != cands[b].cost {
			return cands[a].cost < cands[b].cost
		}
		return pool[cands[a].i].RequestNumber > pool[cands[b].i].RequestNumber
	})
	room := banditKeep
	if keep >= 0 {
		room--
	}
	for j, c := range cands {
		if j >= max(room, 1) {
			drop[c.i] = true
		}
	}
	for i, s := range pool {
		if drop[i] {
			dropped = append(dropped, s)
		} else {
			kept = append(kept, s)
		}
	}
	return kept, dropped
}

// banditMemory is what the engine remembers of a function between plans,
// in memory only.
type banditMemory struct {
	// pending lists the request numbers whose checkpoint is still being
	// taken; lag is how many requests a checkpoint takes to reach the pool
	// (negative: not known yet).
	pending []int
	lag     int
	// explored: exploration has ended once since the weights were last
	// replaced. From then on a tail slower than the head no longer keeps
	// the curve unsettled (a tail faster than it still does: the curve is
	// still falling). Once the curve is flat, the positions that keep being
	// observed are the few after the best snapshot, so their estimates
	// follow the machine's load of the moment while the rest of the stretch
	// keeps that of when exploration passed. A machine slowing down then
	// reads as a rising tail, and exploring again would take checkpoints on
	// a flat curve (measured: six in a row, each slowing the requests
	// around it).
	explored bool
}

// banditDecision is a plan for a new worker: the start option (pool index,
// -1 = cold), the checkpoint request number (0 = never), the pool it leaves
// and what it pruned, and whether exploration has ended.
type banditDecision struct {
	choice, checkpointAt int
	kept, pruned         []Snapshot
	explored             bool
}

// banditPlan plans a new worker, pruning the pool first.
func banditPlan(cfg Config, v banditView, pool []Snapshot, mem banditMemory, rng *rand.Rand) banditDecision {
	d := banditDecision{choice: -1, kept: pool}
	if len(pool) > cfg.PoolCapacity {
		d.kept, d.pruned = banditPrune(cfg, banditSample(v, nil, false), pool, rng)
	}
	// While a checkpoint is in flight, take no other: the snapshot on its way
	// changes what the next one should be, and the successor of the worker
	// that is dumping would otherwise take the same one again.
	busy := len(mem.pending) > 0
	held := func(r int) bool {
		return busy || slices.ContainsFunc(d.kept, func(s Snapshot) bool { return s.RequestNumber == r })
	}
	// Reachable checkpoints of a worker starting at r0: (r0, r0+W], stopping
	// at M-1 like request-centric (a snapshot at M or later would serve
	// nothing before eviction).
	reach := func(r0 int) int { return min(r0+cfg.window(), cfg.Horizon-1) }
	explore := func(r0 int) int { return min(reach(r0), banditExploreCap(cfg)) }
	prog := banditProgressOf(cfg, v, mem.explored)
	d.explored = mem.explored || prog.converged
	mean := banditSample(v, nil, false)

	lag := mem.lag
	if lag < 0 {
		lag = banditFirstLag
	}
	if !prog.converged && len(d.kept) > 0 {
		latest := banditLatest(d.kept)
		if r0 := d.kept[latest].RequestNumber; explore(r0) > r0 {
			var dropped []Snapshot
			d.kept, dropped = banditShrink(cfg, d.kept, latest, mean, nil)
			d.pruned = append(d.pruned, dropped...)
			d.choice = banditLatest(d.kept)
			if at := banditFarthest(r0, explore(r0), lag); !held(at) {
				d.checkpointAt = at
			}
			return d
		}
		// The latest snapshot cannot reach further: nothing left to explore.
	}

	draws := make([]banditCurve, banditDraws)
	for k := range draws {
		draws[k] = banditSample(v, rng, false)
	}
	if len(d.kept) > 0 {
		var dropped []Snapshot
		d.kept, dropped = banditShrink(cfg, d.kept, banditLatest(d.kept), mean, draws)
		d.pruned = append(d.pruned, dropped...)
	}
	if len(d.kept) == 0 {
		d.checkpointAt = banditFirstCheckpoint(cfg, prog, mean, explore(0), lag, held)
		return d
	}

	draw := banditSample(v, rng, true)
	best := math.Inf(1)
	for i, s := range d.kept {
		c := draw.cost(cfg, s.RequestNumber, false)
		if d.choice < 0 || c < best*(1-banditTieBreak) || (c <= best && s.RequestNumber > d.kept[d.choice].RequestNumber) {
			d.choice, best = i, c
		}
	}
	if math.IsInf(best, 1) {
		d.choice = -1 // nothing in the pool can serve before the horizon
		return d
	}

	r0 := d.kept[d.choice].RequestNumber
	cand, candCost := 0, math.Inf(1)
	for i := r0 + 1; i <= reach(r0); i++ {
		if c := mean.cost(cfg, i, false); !held(i) && c <= candCost {
			cand, candCost = i, c
		}
	}
	if cand == 0 {
		return d
	}
	wins := 0
	for _, dr := range draws {
		b := math.Inf(1)
		for _, s := range d.kept {
			b = min(b, dr.cost(cfg, s.RequestNumber, false))
		}
		if dr.cost(cfg, cand, false) <= (1-banditGain)*b {
			wins++
		}
	}
	if float64(wins) >= banditConfidence*float64(len(draws)) {
		d.checkpointAt = cand
	}
	return d
}

// banditFarthest is where exploration checkpoints a worker starting at r0
// whose last reachable checkpoint is hi: as far as it gets (the warmest
// state), less the registration lag, so the snapshot is in the pool by the
// time the worker is evicted (its successor then restores it instead of
// starting a step behind, or cold) and the dump runs beside the worker's
// own requests rather than beside its successor's restore; but never
// giving up more than a quarter of the window for it (each checkpoint
// would then move exploration on by less).
func banditFarthest(r0, hi, lag int) int {
	if 4*(hi-lag-r0) >= 3*(hi-r0) && hi-lag > r0 {
		return hi - lag
	}
	return hi
}

// banditFirstCheckpoint is where a cold worker seeds an empty pool. While
// exploring: as far as it gets less the registration lag, however much of
// the window that gives up, because the alternative for its successor is
// not a colder snapshot but a cold start. Once the curve is known (learned
// before, or inherited from the previous version): at the earliest
// position within banditGain of the cheapest, so the snapshot is there
// sooner.
func banditFirstCheckpoint(cfg Config, prog banditProgress, mean banditCurve, hi, lag int, held func(int) bool) int {
	if hi < 1 {
		return 0
	}
	if !prog.converged {
		if at := max(hi-lag, 1); !held(at) {
			return at
		}
		return 0
	}
	lowest := math.Inf(1)
	for i := 1; i <= hi; i++ {
		lowest = min(lowest, mean.cost(cfg, i, false))
	}
	for i := 1; i <= hi; i++ {
		if !held(i) && mean.cost(cfg, i, false) <= (1+banditGain)*lowest {
			return i
		}
	}
	return 0
}

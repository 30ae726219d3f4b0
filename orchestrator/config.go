// Package orchestrator is Pronghorn's checkpoint orchestration engine: per
// function it decides which snapshot a new worker starts from, at which
// request a worker is checkpointed, and when a worker is due for eviction,
// learning from the latencies it is fed. It is pure Go: its only I/O is its
// own buckets in a bbolt file shared with the rest of the provider. Its
// working state lives in memory so that learning keeps up with traffic:
// what is learned per request is written by a background flusher, while
// the pool, checkpoint registrations, start decisions and counters are
// written through before the call that changes them returns. Any number of
// goroutines may call it concurrently.
//
// Strategies (docs/architecture.md, section "The engine"):
//
//   - cold: never checkpoint, never restore (baseline).
//   - fixed: checkpoint when the lineage reaches T, restore the snapshot with
//     the largest request number <= T (fixed(1) is the SnapStart-like baseline).
//   - request-centric: the published Pronghorn policy, reproduced faithfully,
//     quirks included (see requestcentric.go).
//   - bandit: our improvement (see bandit.go): Thompson sampling over the
//     expected per-request latency of each start option, restore cost and
//     eviction horizon included, robust to GC spikes, pruning without
//     replacement.
package orchestrator

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// Strategy names as accepted in Config.Strategy and the strategy annotation.
const (
	StrategyCold           = "cold"
	StrategyFixed          = "fixed"
	StrategyRequestCentric = "request-centric"
	StrategyBandit         = "bandit"
)

// Strategies lists the accepted strategy names, baselines first.
func Strategies() []string {
	return []string{StrategyCold, StrategyFixed, StrategyRequestCentric, StrategyBandit}
}

// Annotation keys read by ConfigFromAnnotations.
const (
	AnnotationStrategy     = "com.pronghorn.strategy"
	AnnotationCheckpointAt = "com.pronghorn.checkpoint-at"
	AnnotationPoolCapacity = "com.pronghorn.pool-capacity"
	AnnotationEvictAfter   = "com.pronghorn.evict-after"
	AnnotationP            = "com.pronghorn.p"
	AnnotationGamma        = "com.pronghorn.gamma"
	AnnotationEps          = "com.pronghorn.eps"
	AnnotationHorizon      = "com.pronghorn.horizon"
	AnnotationSeed         = "com.pronghorn.seed"
)

// MaxHorizon bounds M so that a typo in an annotation cannot make every
// flush rewrite megabytes of weights.
const MaxHorizon = 100000

// MaxPoolCapacity bounds C for the same reason (the pool is rewritten on
// every start and checkpoint).
const MaxPoolCapacity = 4096

// Config is one function's strategy parameters.
type Config struct {
	Strategy     string  `json:"strategy"`     // cold, fixed, request-centric, bandit
	CheckpointAt int     `json:"checkpointAt"` // T for fixed (default 1)
	PoolCapacity int     `json:"poolCapacity"` // C (default 14; the paper's evaluation uses 12)
	EvictAfter   int     `json:"evictAfter"`   // E: requests a worker serves before eviction; 0 = never by count
	Horizon      int     `json:"horizon"`      // M (default 100)
	P            float64 `json:"p"`            // fraction of the pool kept by score when pruning (0.4)
	Gamma        float64 `json:"gamma"`        // fraction of the rest kept at random when pruning (0.1)
	Eps          float64 `json:"eps"`          // EWMA factor of the request-centric weights (0.5)
	Seed         int64   `json:"seed"`         // random seed; 0 = derive from the clock at Configure
}

// DefaultConfig returns the artifact's defaults with the faithful
// request-centric policy and no eviction by count (production: eviction
// comes from scale-down).
func DefaultConfig() Config {
	return Config{
		Strategy:     StrategyRequestCentric,
		CheckpointAt: 1,
		PoolCapacity: 14,
		EvictAfter:   0,
		Horizon:      100,
		P:            0.4,
		Gamma:        0.1,
		Eps:          0.5,
	}
}

func invalid(key, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", key, fmt.Sprintf(format, args...), errdefs.ErrInvalid)
}

// Validate checks every field; the error names the annotation key of the
// offending field so the deploy handler can answer 400 with it verbatim.
func (c Config) Validate() error {
	switch c.Strategy {
	case StrategyCold, StrategyFixed, StrategyRequestCentric, StrategyBandit:
	default:
		return invalid(AnnotationStrategy, "unknown strategy %q (want one of %s)", c.Strategy, strings.Join(Strategies(), ", "))
	}
	if c.CheckpointAt < 1 {
		return invalid(AnnotationCheckpointAt, "must be >= 1, got %d", c.CheckpointAt)
	}
	if c.PoolCapacity < 1 || c.PoolCapacity > MaxPoolCapacity {
		return invalid(AnnotationPoolCapacity, "must be in [1, %d], got %d", MaxPoolCapacity, c.PoolCapacity)
	}
	if c.EvictAfter < 0 {
		return invalid(AnnotationEvictAfter, "must be >= 0, got %d", c.EvictAfter)
	}
	// M >= 2 because the faithful policy copies weights[M-2] into weights[M-1].
	if c.Horizon < 2 || c.Horizon > MaxHorizon {
		return invalid(AnnotationHorizon, "must be in [2, %d], got %d", MaxHorizon, c.Horizon)
	}
	if !(c.P >= 0 && c.P <= 1) { // also rejects NaN
		return invalid(AnnotationP, "must be in [0, 1], got %v", c.P)
	}
	if !(c.Gamma >= 0 && c.Gamma <= 1) {
		return invalid(AnnotationGamma, "must be in [0, 1], got %v", c.Gamma)
	}
	if !(c.Eps > 0 && c.Eps <= 1) {
		return invalid(AnnotationEps, "must be in (0, 1], got %v", c.Eps)
	}
	return nil
}

// window is the number of request numbers a new worker is expected to serve:
// E, or the horizon M when workers are not evicted by count.
func (c Config) window() int {
	if c.EvictAfter > 0 {
		return c.EvictAfter
	}
	return c.Horizon
}

// ConfigFromAnnotations overlays the com.pronghorn.* annotations on defaults
// and validates the result. Unknown com.pronghorn.* keys are ignored so that
// newer annotations do not break older providers.
func ConfigFromAnnotations(defaults Config, annotations map[string]string) (Config, error) {
	c := defaults
	intKey := func(key string, dst *int) error {
		v, ok := annotations[key]
		if !ok {
			return nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return invalid(key, "not an integer: %q", v)
		}
		*dst = n
		return nil
	}
	floatKey := func(key string, dst *float64) error {
		v, ok := annotations[key]
		if !ok {
			return nil
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return invalid(key, "not a finite number: %q", v)
		}
		*dst = f
		return nil
	}
	if v, ok := annotations[AnnotationStrategy]; ok {
		c.Strategy = strings.ToLower(strings.TrimSpace(v))
	}
	for _, step := range []error{
		intKey(AnnotationCheckpointAt, &c.CheckpointAt),
		intKey(AnnotationPoolCapacity, &c.PoolCapacity),
		intKey(AnnotationEvictAfter, &c.EvictAfter),
		intKey(AnnotationHorizon, &c.Horizon),
		floatKey(AnnotationP, &c.P),
		floatKey(AnnotationGamma, &c.Gamma),
		floatKey(AnnotationEps, &c.Eps),
	} {
		if step != nil {
			return defaults, step
		}
	}
	if v, ok := annotations[AnnotationSeed]; ok {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return defaults, invalid(AnnotationSeed, "not a 64-bit integer: %q", v)
		}
		c.Seed = n
	}
	if err := c.Validate(); err != nil {
		return defaults, err
	}
	return c, nil
}

// Binary encoding of Config: a fixed little-endian layout, kept because
// existing state files hold it (it dates from when every OnRequest decoded
// the config).
const cfgVersion = 1

var strategyCodes = [...]string{StrategyCold, StrategyFixed, StrategyRequestCentric, StrategyBandit}

func strategyCode(s string) byte {
	for i, n := range strategyCodes {
		if n == s {
			return byte(i)
		}
	}
	return 0xff
}

const cfgLen = 2 + 4*8 + 3*8 + 8

func (c Config) marshalBinary() []byte {
	b := make([]byte, 0, cfgLen)
	b = append(b, cfgVersion, strategyCode(c.Strategy))
	for _, v := range []int{c.CheckpointAt, c.PoolCapacity, c.EvictAfter, c.Horizon} {
		b = binary.LittleEndian.AppendUint64(b, uint64(int64(v)))
	}
	for _, v := range []float64{c.P, c.Gamma, c.Eps} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return binary.LittleEndian.AppendUint64(b, uint64(c.Seed))
}

func unmarshalConfig(b []byte) (Config, error) {
	if len(b) != cfgLen || b[0] != cfgVersion || int(b[1]) >= len(strategyCodes) {
		return Config{}, fmt.Errorf("orchestrator: corrupt config record (%d bytes)", len(b))
	}
	var c Config
	c.Strategy = strategyCodes[b[1]]
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(b[2+8*i:]) }
	c.CheckpointAt = int(int64(u(0)))
	c.PoolCapacity = int(int64(u(1)))
	c.EvictAfter = int(int64(u(2)))
	c.Horizon = int(int64(u(3)))
	c.P = math.Float64frombits(u(4))
	c.Gamma = math.Float64frombits(u(5))
	c.Eps = math.Float64frombits(u(6))
	c.Seed = int64(u(7))
	return c, nil
}

package eval

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A results directory holds one directory per completed chunk of the
// protocol, so a run of many hours can stop anywhere and resume:
//
//	<results>/env/<hash>.csv                         machine, kernel, CRIU, runtimes
//	<results>/runs/<benchmark>/<strategy>-e<E>-s<seed>/  a measured run
//	<results>/runs/<benchmark>/warmup-s<seed>/           a never-evicted cold worker
//	<results>/runs/<benchmark>/probe-s<seed>/            the mechanism's costs in isolation
//
// Each chunk directory holds run.csv (one row: what was run, with which
// protocol, and the run's counters), and, by kind, requests.csv.zst and
// events.csv.zst, or probe.csv. A chunk is written into a hidden temporary
// directory and renamed into place only when complete, so a directory that
// exists is a finished chunk, and a rerun skips it.

// Chunk kinds.
const (
	KindRun    = "run"    // a benchmark under one strategy and eviction rate
	KindWarmup = "warmup" // one cold worker that is never evicted: the warm-up curve and the floor
	KindProbe  = "probe"  // checkpoint, restore and cold start measured one at a time, for their CPU cost
)

// Chunk is one resumable unit of the protocol.
type Chunk struct {
	Kind      string
	Benchmark string
	Strategy  string // cold for warmup; "" for probe
	Rate      int    // E; 0 for warmup and probe
	Seed      int64
	Requests  int // per run; for a probe, the request that is checkpointed
}

// Dir is the chunk's directory relative to the results directory.
func (c Chunk) Dir() string {
	var leaf string
	switch c.Kind {
	case KindWarmup:
		leaf = fmt.Sprintf("warmup-s%d", c.Seed)
	case KindProbe:
		leaf = fmt.Sprintf("probe-s%d", c.Seed)
	default:
		leaf = fmt.Sprintf("%s-e%d-s%d", c.Strategy, c.Rate, c.Seed)
	}
	return filepath.Join("runs", c.Benchmark, leaf)
}

func (c Chunk) String() string {
	switch c.Kind {
	case KindWarmup:
		return fmt.Sprintf("%s warm-up seed=%d", c.Benchmark, c.Seed)
	case KindProbe:
		return fmt.Sprintf("%s probe seed=%d", c.Benchmark, c.Seed)
	}
	return fmt.Sprintf("%s %s E=%d seed=%d", c.Benchmark, c.Strategy, c.Rate, c.Seed)
}

// Protocol is what must agree between the chunks of one results directory
// for their numbers to be comparable; a rerun with other values refuses to
// mix them in.
type Protocol struct {
	Requests     int
	IntervalMS   float64
	Mutability   float64
	PoolCapacity int
	CheckpointAt int
	ProbeReps    int // probe chunks only
}

func (p Protocol) String() string {
	return fmt.Sprintf("requests=%d interval=%gms mutability=%g pool-capacity=%d checkpoint-at=%d",
		p.Requests, p.IntervalMS, p.Mutability, p.PoolCapacity, p.CheckpointAt)
}

// RunResult is everything measured in one chunk of kind run or warmup.
type RunResult struct {
	Chunk
	Protocol          Protocol
	Function          string // deployed name
	Samples           []Sample
	Events            []Event
	Errors            int         // failed invocations (not in Samples)
	State             EngineState // engine state at the end of the run
	PeakPoolBytes     int64       // max of the pool's stored bytes seen during the run
	PeakPoolSnapshots int
	PackedBytes       float64 // latest snapshot's stored size at the end (0: none taken)
	RawBytes          float64 // latest snapshot's CRIU image size at the end
	UploadBytes       float64 // snapshot bytes sent to the store during the run
	DownloadBytes     float64 // snapshot bytes fetched from the store during the run
	Env               string  // hash of the environment it ran in (env/<hash>.csv)
	Started           time.Time
	Duration          time.Duration
	// LoadStart and LoadEnd are the 1-minute load average before and after:
	// a busy machine measures contention, and the report says so.
	LoadStart, LoadEnd float64
	CPUSampled         bool // the per-request CPU columns are filled
}

// durations lists the Seconds of the run's events of one kind.
func (r RunResult) durations(kind string) []float64 {
	var out []float64
	for _, e := range r.Events {
		if e.Kind == kind {
			out = append(out, e.Seconds)
		}
	}
	return out
}

// bestRequestNumber is the lineage request number of the top-scored pool
// entry at the end of the run (0: empty pool).
func (r RunResult) bestRequestNumber() int {
	best, score := 0, 0.0
	for i, p := range r.State.Pool {
		if i == 0 || p.Score > score {
			best, score = p.RequestNumber, p.Score
		}
	}
	return best
}

func runHeader() []string {
	return []string{"kind", "benchmark", "strategy", "rate", "seed", "requests", "interval_ms", "mutability", "pool_capacity",
		"checkpoint_at", "probe_reps", "function", "measured", "errors", "env", "started", "duration_s", "load_start", "load_end",
		"cold_starts", "restores", "checkpoints", "failed_restores", "failed_checkpoints", "peak_pool_bytes", "peak_pool_snapshots",
		"pool_request_numbers", "pool_scores", "best_request_number", "packed_bytes", "raw_bytes", "upload_bytes", "download_bytes", "cpu_sampled"}
}

func (r RunResult) record() []string {
	var nums, scores []string
	for _, p := range r.State.Pool {
		nums = append(nums, strconv.Itoa(p.RequestNumber))
		scores = append(scores, fmtFloat(p.Score))
	}
	p := r.Protocol
	return []string{r.Kind, r.Benchmark, r.Strategy, strconv.Itoa(r.Rate), strconv.FormatInt(r.Seed, 10), strconv.Itoa(p.Requests),
		fmtFloat(p.IntervalMS), fmtFloat(p.Mutability), strconv.Itoa(p.PoolCapacity), strconv.Itoa(p.CheckpointAt), strconv.Itoa(p.ProbeReps),
		r.Function, strconv.Itoa(len(r.Samples)), strconv.Itoa(r.Errors), r.Env, r.Started.UTC().Format(time.RFC3339),
		strconv.FormatFloat(r.Duration.Seconds(), 'f', 1, 64), strconv.FormatFloat(r.LoadStart, 'f', 2, 64), strconv.FormatFloat(r.LoadEnd, 'f', 2, 64),
		strconv.FormatUint(r.State.ColdStarts, 10), strconv.FormatUint(r.State.Restores, 10), strconv.FormatUint(r.State.Checkpoints, 10),
		strconv.FormatUint(r.State.FailedRestores, 10), strconv.FormatUint(r.State.FailedCheckpoints, 10),
		strconv.FormatInt(r.PeakPoolBytes, 10), strconv.Itoa(r.PeakPoolSnapshots), strings.Join(nums, ";"), strings.Join(scores, ";"),
		strconv.Itoa(r.bestRequestNumber()), fmtFloat(r.PackedBytes), fmtFloat(r.RawBytes), fmtFloat(r.UploadBytes), fmtFloat(r.DownloadBytes),
		strconv.FormatBool(r.CPUSampled)}
}

func parseRun(r row) (RunResult, error) {
	res := RunResult{
		Chunk: Chunk{Kind: r.str("kind"), Benchmark: r.str("benchmark"), Strategy: r.str("strategy"), Rate: r.int("rate"),
			Seed: r.int64("seed"), Requests: r.int("requests")},
		Protocol: Protocol{Requests: r.int("requests"), IntervalMS: r.float("interval_ms"), Mutability: r.float("mutability"),
			PoolCapacity: r.int("pool_capacity"), CheckpointAt: r.int("checkpoint_at"), ProbeReps: r.intOr("probe_reps", 0)},
		Function: r.str("function"), Errors: r.int("errors"), Env: r.str("env"),
		Duration:  time.Duration(r.float("duration_s") * float64(time.Second)),
		LoadStart: r.floatOr("load_start", 0), LoadEnd: r.floatOr("load_end", 0),
		State: EngineState{Strategy: r.str("strategy"), ColdStarts: uint64(r.int64("cold_starts")), Restores: uint64(r.int64("restores")),
			Checkpoints: uint64(r.int64("checkpoints")), FailedRestores: uint64(r.int64("failed_restores")),
			FailedCheckpoints: uint64(r.int64("failed_checkpoints"))},
		PeakPoolBytes: r.int64("peak_pool_bytes"), PeakPoolSnapshots: r.int("peak_pool_snapshots"),
		PackedBytes: r.float("packed_bytes"), RawBytes: r.float("raw_bytes"), UploadBytes: r.float("upload_bytes"),
		DownloadBytes: r.float("download_bytes"), CPUSampled: r.str("cpu_sampled") == "true",
	}
	if t, err := time.Parse(time.RFC3339, r.str("started")); err == nil {
		res.Started = t
	}
	nums, scores := splitList(r.str("pool_request_numbers")), splitList(r.str("pool_scores"))
	for i, n := range nums {
		v, err := strconv.Atoi(n)
		if err != nil {
			r.fail("pool_request_numbers", err)
			break
		}
		p := PoolEntry{RequestNumber: v}
		if i < len(scores) {
			p.Score, _ = strconv.ParseFloat(scores[i], 64)
		}
		res.State.Pool = append(res.State.Pool, p)
	}
	return res, r.err
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ";")
}

// Chunk files.
const (
	runFile      = "run.csv"
	requestsFile = "requests.csv.zst"
	eventsFile   = "events.csv.zst"
	probeFile    = "probe.csv"
)

// commitChunk writes the files of a finished chunk into a temporary
// directory next to its place and renames it into place, so a chunk
// directory is either complete or absent.
func commitChunk(resultsDir string, c Chunk, files map[string]func(io.Writer) error) error {
	final := filepath.Join(resultsDir, c.Dir())
	parent := filepath.Dir(final)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("chunk %s: %w", c, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(final)+".tmp-")
	if err != nil {
		return fmt.Errorf("chunk %s: %w", c, err)
	}
	defer os.RemoveAll(tmp) // a no-op after the rename
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := writeFile(filepath.Join(tmp, name), files[name]); err != nil {
			return fmt.Errorf("chunk %s: %w", c, err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("chunk %s: %w", c, err)
	}
	// A chunk measured again on purpose (its directory removed by hand
	// meanwhile, or a second driver on the same directory) must not be
	// merged into: the rename fails if the target exists and is not empty.
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("chunk %s: %w", c, err)
	}
	return syncDir(parent)
}

// syncDir makes a rename in dir durable, so a power cut right after a
// chunk completed does not lose it.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// writeRunChunk commits a measured run or warm-up.
func writeRunChunk(resultsDir string, r RunResult) error {
	samples := make([][]string, len(r.Samples))
	for i, s := range r.Samples {
		samples[i] = s.record()
	}
	events := make([][]string, len(r.Events))
	for i, e := range r.Events {
		events[i] = e.record()
	}
	return commitChunk(resultsDir, r.Chunk, map[string]func(io.Writer) error{
		runFile:      func(w io.Writer) error { return encodeTable(w, runHeader(), [][]string{r.record()}, false) },
		requestsFile: func(w io.Writer) error { return encodeTable(w, sampleHeader(), samples, true) },
		eventsFile:   func(w io.Writer) error { return encodeTable(w, eventHeader(), events, true) },
	})
}

// Dataset is every completed chunk of one or more results directories.
type Dataset struct {
	Runs   []RunResult // kinds run and warmup
	Probes []ProbeResult
	Envs   map[string]Environment // by hash
}

// LoadResults reads the completed chunks of the given results directories.
// Temporary directories of chunks that never finished are ignored. The
// same chunk in two directories is an error: the report would count it
// twice.
func LoadResults(dirs ...string) (*Dataset, error) {
	ds := &Dataset{Envs: map[string]Environment{}}
	seen := map[string]string{}
	for _, dir := range dirs {
		envs, err := readEnvironments(dir)
		if err != nil {
			return nil, err
		}
		for h, e := range envs {
			ds.Envs[h] = e
		}
		runFiles, err := filepath.Glob(filepath.Join(dir, "runs", "*", "*", runFile))
		if err != nil {
			return nil, fmt.Errorf("results %s: %w", dir, err)
		}
		sort.Strings(runFiles)
		for _, rf := range runFiles {
			chunkDir := filepath.Dir(rf)
			if strings.HasPrefix(filepath.Base(chunkDir), ".") {
				continue
			}
			metas, err := readTable(rf, parseRun)
			if err != nil {
				return nil, err
			}
			if len(metas) != 1 {
				return nil, fmt.Errorf("%s: %d rows, want 1", rf, len(metas))
			}
			r := metas[0]
			key := r.Chunk.Dir()
			if prev, dup := seen[key]; dup {
				return nil, fmt.Errorf("chunk %s is in both %s and %s", key, prev, dir)
			}
			seen[key] = dir
			if r.Kind == KindProbe {
				rows, err := readTable(filepath.Join(chunkDir, probeFile), parseProbeRow)
				if err != nil {
					return nil, err
				}
				ds.Probes = append(ds.Probes, ProbeResult{Run: r, Rows: rows})
				continue
			}
			if r.Samples, err = readTable(filepath.Join(chunkDir, requestsFile), parseSample); err != nil {
				return nil, err
			}
			if r.Events, err = readTable(filepath.Join(chunkDir, eventsFile), parseEvent); err != nil {
				return nil, err
			}
			ds.Runs = append(ds.Runs, r)
		}
	}
	return ds, nil
}

// completedChunks lists the chunks already in a results directory, with
// the protocol each ran under.
func completedChunks(dir string) (map[string]RunResult, error) {
	out := map[string]RunResult{}
	files, err := filepath.Glob(filepath.Join(dir, "runs", "*", "*", runFile))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(filepath.Dir(f)), ".") {
			continue
		}
		metas, err := readTable(f, parseRun)
		if err != nil {
			return nil, err
		}
		if len(metas) == 1 {
			out[metas[0].Chunk.Dir()] = metas[0]
		}
	}
	return out, nil
}

// removeStaleTemps deletes the temporary directories of chunks an
// interrupted driver left behind.
func removeStaleTemps(dir string) error {
	root := filepath.Join(dir, "runs")
	entries, err := filepath.Glob(filepath.Join(root, "*", ".*.tmp-*"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(e); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", e, err)
		}
	}
	return nil
}

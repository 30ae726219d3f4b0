package eval

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Sample is one request of one run. The first eight CSV columns are the
// artifact's per-request layout (index, benchmark, mutability, strategy,
// rate, client_us, server_us, overhead_us), so its notebooks read our files;
// the rest is what calibration and the cost analysis need.
type Sample struct {
	Index      int
	Benchmark  string
	Mutability float64
	Strategy   string
	Rate       int
	ClientUS   int64
	ServerUS   int64
	Seed       int64
	// Lineage is the lineage request number the function reported (the
	// requests its runtime state has served, across snapshots); -1 when
	// the function does not report one.
	Lineage int
	// Worker numbers the run's workers in order (0, 1, ...); Served is
	// this request's position in its worker (1 = the worker's first).
	Worker, Served int
	// Start is "cold" or "restore" on a worker's first request when the
	// lineage tells which, else "".
	Start string
	// CPU time of the provider process and of everything below it (agents,
	// CRIU, functions) between the sample after the previous response and
	// the one after this response; -1 when not sampled.
	CPUProviderUS, CPUWorkersUS int64
	// SentMS is when the request was sent, in ms since the run started.
	SentMS float64
}

// OverheadUS is what the platform added to the handler's own time.
func (s Sample) OverheadUS() int64 { return s.ClientUS - s.ServerUS }

// Worker start kinds.
const (
	StartCold    = "cold"
	StartRestore = "restore"
)

func sampleHeader() []string {
	return []string{"index", "benchmark", "mutability", "strategy", "rate", "client_us", "server_us", "overhead_us",
		"seed", "lineage", "worker", "served", "start", "cpu_provider_us", "cpu_workers_us", "sent_ms"}
}

func (s Sample) record() []string {
	return []string{
		strconv.Itoa(s.Index), s.Benchmark, fmtFloat(s.Mutability), s.Strategy,
		strconv.Itoa(s.Rate), strconv.FormatInt(s.ClientUS, 10), strconv.FormatInt(s.ServerUS, 10),
		strconv.FormatInt(s.OverheadUS(), 10), strconv.FormatInt(s.Seed, 10), strconv.Itoa(s.Lineage),
		strconv.Itoa(s.Worker), strconv.Itoa(s.Served), s.Start, strconv.FormatInt(s.CPUProviderUS, 10),
		strconv.FormatInt(s.CPUWorkersUS, 10), strconv.FormatFloat(s.SentMS, 'f', 1, 64),
	}
}

func parseSample(r row) (Sample, error) {
	s := Sample{
		Index: r.int("index"), Benchmark: r.str("benchmark"), Mutability: r.float("mutability"), Strategy: r.str("strategy"),
		Rate: r.int("rate"), ClientUS: r.int64("client_us"), ServerUS: r.int64("server_us"), Seed: r.int64Or("seed", 0),
		Lineage: r.intOr("lineage", -1), Worker: r.intOr("worker", 0), Served: r.intOr("served", 0), Start: r.str("start"),
		CPUProviderUS: r.int64Or("cpu_provider_us", -1), CPUWorkersUS: r.int64Or("cpu_workers_us", -1), SentMS: r.floatOr("sent_ms", 0),
	}
	return s, r.err
}

// Event is one measured snapshot event of a run. Kinds dump, upload,
// download and restore come from /metrics (_sum/_count deltas between the
// scrapes after each request, so nearly always exact per event); Index is
// the request after which the scrape saw it. Kinds checkpoint,
// checkpoint-failed and restore-failed come from the provider's log; Index
// is the request that triggered the checkpoint (-1 when unknown).
type Event struct {
	Kind          string
	Index         int
	Seconds       float64 // duration (dump/upload/download/restore; dump for checkpoint)
	RequestNumber int     // lineage request number of a checkpoint; 0 otherwise
	PackedBytes   int64
	RawBytes      int64
	FrozenSeconds float64 // how long the function was frozen by the dump
	UploadSeconds float64 // packing and storing
}

// Event kinds.
const (
	EventDump             = "dump"
	EventUpload           = "upload"
	EventDownload         = "download"
	EventRestore          = "restore"
	EventCheckpoint       = "checkpoint"
	EventCheckpointFailed = "checkpoint-failed"
	EventRestoreFailed    = "restore-failed"
)

func eventHeader() []string {
	return []string{"index", "kind", "seconds", "request_number", "packed_bytes", "raw_bytes", "frozen_seconds", "upload_seconds"}
}

func (e Event) record() []string {
	return []string{strconv.Itoa(e.Index), e.Kind, fmtFloat(e.Seconds), strconv.Itoa(e.RequestNumber),
		strconv.FormatInt(e.PackedBytes, 10), strconv.FormatInt(e.RawBytes, 10), fmtFloat(e.FrozenSeconds), fmtFloat(e.UploadSeconds)}
}

func parseEvent(r row) (Event, error) {
	e := Event{Index: r.int("index"), Kind: r.str("kind"), Seconds: r.float("seconds"), RequestNumber: r.int("request_number"),
		PackedBytes: r.int64("packed_bytes"), RawBytes: r.int64("raw_bytes"), FrozenSeconds: r.float("frozen_seconds"),
		UploadSeconds: r.float("upload_seconds")}
	return e, r.err
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// row reads one CSV record by column name and remembers the first error,
// so a parser reads every field and checks once.
type row struct {
	line int
	cols map[string]int
	rec  []string
	err  error
}

func (r *row) get(name string) (string, bool) {
	i, ok := r.cols[name]
	if !ok || i >= len(r.rec) {
		return "", false
	}
	return r.rec[i], true
}

func (r *row) fail(name string, err error) {
	if r.err == nil {
		r.err = fmt.Errorf("line %d, column %s: %w", r.line, name, err)
	}
}

func (r *row) str(name string) string { v, _ := r.get(name); return v }

func (r *row) int64Or(name string, def int64) int64 {
	v, ok := r.get(name)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		r.fail(name, err)
	}
	return n
}

func (r *row) int64(name string) int64 {
	if _, ok := r.get(name); !ok {
		r.fail(name, errors.New("missing"))
		return 0
	}
	return r.int64Or(name, 0)
}

func (r *row) int(name string) int            { return int(r.int64(name)) }
func (r *row) intOr(name string, def int) int { return int(r.int64Or(name, int64(def))) }

func (r *row) floatOr(name string, def float64) float64 {
	v, ok := r.get(name)
	if !ok || v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		r.fail(name, err)
	}
	return f
}

func (r *row) float(name string) float64 {
	if _, ok := r.get(name); !ok {
		r.fail(name, errors.New("missing"))
		return 0
	}
	return r.floatOr(name, 0)
}

// readTable reads a CSV file (zstd-compressed when its name ends in .zst)
// with a header line and hands every record to parse by column name.
func readTable[T any](path string, parse func(row) (T, error)) ([]T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if strings.HasSuffix(path, ".zst") {
		zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		data, err = zr.DecodeAll(data, nil)
		zr.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("read %s: no header", path)
	}
	cols := map[string]int{}
	for i, h := range recs[0] {
		cols[h] = i
	}
	out := make([]T, 0, len(recs)-1)
	for i, rec := range recs[1:] {
		v, err := parse(row{line: i + 2, cols: cols, rec: rec})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// encodeTable writes header and records as CSV, zstd-compressed when
// compress is set (the committed per-request files are a few hundred KB
// raw, a fifth of that compressed).
func encodeTable(w io.Writer, header []string, records [][]string, compress bool) error {
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	if err := cw.Write(header); err != nil {
		return err
	}
	if err := cw.WriteAll(records); err != nil {
		return err
	}
	data := buf.Bytes()
	if compress {
		// A fixed level and a single goroutine, so the same rows always
		// make the same bytes and a regenerated file shows no diff.
		zw, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return err
		}
		data = zw.EncodeAll(data, nil)
		zw.Close()
	}
	_, err := w.Write(data)
	return err
}

// ReadSamples reads a per-request CSV (plain or .zst), for reports over
// earlier runs and for tests.
func ReadSamples(path string) ([]Sample, error) { return readTable(path, parseSample) }

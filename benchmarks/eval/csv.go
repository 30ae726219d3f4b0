package eval

import (
	"encoding/csv"
	"fmt"
	"os"
	"strconv"
)

// latencyHeader is the artifact's per-request CSV layout.
func latencyHeader() []string {
	return []string{"index", "benchmark", "mutability", "strategy", "rate", "client_us", "server_us", "overhead_us"}
}

// Sample is one request of one run.
type Sample struct {
	Index      int
	Benchmark  string
	Mutability float64
	Strategy   string
	Rate       int
	ClientUS   int64
	ServerUS   int64
}

// OverheadUS is what the platform added to the handler's own time.
func (s Sample) OverheadUS() int64 { return s.ClientUS - s.ServerUS }

func (s Sample) record() []string {
	return []string{
		strconv.Itoa(s.Index), s.Benchmark, strconv.FormatFloat(s.Mutability, 'g', -1, 64), s.Strategy,
		strconv.Itoa(s.Rate), strconv.FormatInt(s.ClientUS, 10), strconv.FormatInt(s.ServerUS, 10),
		strconv.FormatInt(s.OverheadUS(), 10),
	}
}

// latencyWriter appends rows to latency.csv and flushes each one, so an
// interrupted multi-hour evaluation keeps every request it measured.
type latencyWriter struct {
	f *os.File
	w *csv.Writer
}

// openLatencyCSV opens path for appending and writes the header when the
// file is new or empty (a rerun into the same directory adds rows).
func openLatencyCSV(path string) (*latencyWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("latency csv: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("latency csv: %w", err)
	}
	lw := &latencyWriter{f: f, w: csv.NewWriter(f)}
	if st.Size() == 0 {
		if err := lw.write(latencyHeader()); err != nil {
			f.Close()
			return nil, err
		}
	}
	return lw, nil
}

func (lw *latencyWriter) write(rec []string) error {
	if err := lw.w.Write(rec); err != nil {
		return fmt.Errorf("latency csv: %w", err)
	}
	lw.w.Flush()
	if err := lw.w.Error(); err != nil {
		return fmt.Errorf("latency csv: %w", err)
	}
	return nil
}

func (lw *latencyWriter) Write(s Sample) error { return lw.write(s.record()) }

func (lw *latencyWriter) Close() error {
	lw.w.Flush()
	err := lw.w.Error()
	if cerr := lw.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("latency csv: %w", err)
	}
	return nil
}

// ReadLatencyCSV reads a latency.csv back (for reports over an earlier or
// interrupted run, and for tests).
func ReadLatencyCSV(path string) ([]Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("latency csv: %w", err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("latency csv %s: %w", path, err)
	}
	var out []Sample
	for i, r := range recs {
		if i == 0 && len(r) > 0 && r[0] == "index" {
			continue
		}
		if len(r) != len(latencyHeader()) {
			return nil, fmt.Errorf("latency csv %s line %d: %d fields, want %d", path, i+1, len(r), len(latencyHeader()))
		}
		var s Sample
		var errs [5]error
		s.Index, errs[0] = strconv.Atoi(r[0])
		s.Benchmark, s.Strategy = r[1], r[3]
		s.Mutability, errs[1] = strconv.ParseFloat(r[2], 64)
		s.Rate, errs[2] = strconv.Atoi(r[4])
		s.ClientUS, errs[3] = strconv.ParseInt(r[5], 10, 64)
		s.ServerUS, errs[4] = strconv.ParseInt(r[6], 10, 64)
		for _, e := range errs {
			if e != nil {
				return nil, fmt.Errorf("latency csv %s line %d: %w", path, i+1, e)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

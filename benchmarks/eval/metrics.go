package eval

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Scrape is the part of a provider's /metrics that concerns one function:
// the pronghorn_* samples whose function_name label matches, keyed by
// metric name plus the remaining labels in their exposition order (for
// example `pronghorn_snapshot_transfer_bytes_total{direction="upload"}`).
//
// The driver parses the text format itself instead of pulling in expfmt:
// it needs a handful of plain samples, and a tiny parser is easy to test
// against the exact lines the provider writes.
type Scrape map[string]float64

// Names of the per-function metrics the evaluation reads.
const (
	mDump         = "pronghorn_dump_seconds"
	mUpload       = "pronghorn_upload_seconds"
	mDownload     = "pronghorn_download_seconds"
	mRestore      = "pronghorn_restore_seconds"
	mPackedBytes  = "pronghorn_snapshot_packed_bytes"
	mRawBytes     = "pronghorn_snapshot_raw_bytes"
	mPoolBytes    = "pronghorn_pool_bytes"
	mPoolSnaps    = "pronghorn_pool_snapshots"
	mTransferUp   = `pronghorn_snapshot_transfer_bytes_total{direction="upload"}`
	mTransferDown = `pronghorn_snapshot_transfer_bytes_total{direction="download"}`
	mCheckpoints  = "pronghorn_checkpoints_total"
	mFailedCkpts  = "pronghorn_failed_checkpoints_total"
	mRestores     = "pronghorn_restores_total"
	mInProgress   = "pronghorn_checkpoints_in_progress"
)

// ParseMetrics reads Prometheus text exposition from r and keeps the
// pronghorn_* samples labelled function_name=function (e.g.
// "bfs-rc-e4.openfaas-fn"). Histogram buckets are dropped: the driver uses
// _sum and _count deltas, which are exact.
func ParseMetrics(r io.Reader, function string) (Scrape, error) {
	s := Scrape{}
	want := `function_name="` + function + `"`
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "pronghorn_") || !strings.Contains(line, want) {
			continue
		}
		// name{labels} value [timestamp]
		open := strings.IndexByte(line, '{')
		close := strings.LastIndexByte(line, '}')
		if open < 0 || close < open {
			continue
		}
		name := line[:open]
		if strings.HasSuffix(name, "_bucket") {
			continue
		}
		fields := strings.Fields(line[close+1:])
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: value of %q: %w", line, err)
		}
		var rest []string
		for _, l := range splitLabels(line[open+1 : close]) {
			if l != want {
				rest = append(rest, l)
			}
		}
		key := name
		if len(rest) > 0 {
			key += "{" + strings.Join(rest, ",") + "}"
		}
		s[key] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: read: %w", err)
	}
	return s, nil
}

// splitLabels splits `a="x",b="y,z"` at the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	inQuote, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case c == ',' && !inQuote:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// eventTracker turns successive scrapes of a histogram's _sum and _count
// into per-event durations. Scraped after every request, nearly every new
// observation arrives alone, so its duration is exact; when several land
// between two scrapes each gets their mean.
type eventTracker struct {
	name     string // metric, e.g. pronghorn_dump_seconds
	kind     string // event kind, e.g. dump
	sum, cnt float64
	events   []Event
}

// observe records the events a scrape taken after request index shows.
func (t *eventTracker) observe(s Scrape, index int) {
	sum, cnt := s[t.name+"_sum"], s[t.name+"_count"]
	if n := cnt - t.cnt; n >= 1 && n < 1e6 {
		mean := (sum - t.sum) / n
		for i := 0; i < int(math.Round(n)); i++ {
			t.events = append(t.events, Event{Kind: t.kind, Index: index, Seconds: mean})
		}
	}
	t.sum, t.cnt = sum, cnt
}

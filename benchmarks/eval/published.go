package eval

import (
	_ "embed"
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"
)

// publishedCSV is the artifact's Table 4 and 5 values; the file says where
// each number comes from.
//
//go:embed published.csv
var publishedCSV string

// Published is one benchmark's row of the artifact's Tables 4 and 5.
type Published struct {
	Benchmark, ArtifactName    string
	DumpMS, DumpVariance       float64
	RestoreMS, RestoreVariance float64
	SnapshotMiB                float64
	StorageMB, NetworkMB       float64
}

// PublishedValues parses the embedded published.csv, by benchmark.
func PublishedValues() (map[string]Published, error) {
	r := csv.NewReader(strings.NewReader(publishedCSV))
	r.Comment = '#'
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("published.csv: %w", err)
	}
	if len(recs) < 2 {
		return nil, fmt.Errorf("published.csv: no rows")
	}
	cols := map[string]int{}
	for i, h := range recs[0] {
		cols[h] = i
	}
	out := map[string]Published{}
	for n, rec := range recs[1:] {
		rw := row{line: n + 2, cols: cols, rec: rec}
		p := Published{Benchmark: rw.str("benchmark"), ArtifactName: rw.str("artifact_name"),
			DumpMS: rw.float("dump_ms_mean"), DumpVariance: rw.float("dump_ms_variance"),
			RestoreMS: rw.float("restore_ms_mean"), RestoreVariance: rw.float("restore_ms_variance"),
			SnapshotMiB: rw.float("snapshot_mib"), StorageMB: rw.float("storage_mb"), NetworkMB: rw.float("network_mb")}
		if rw.err != nil {
			return nil, fmt.Errorf("published.csv: %w", rw.err)
		}
		out[p.Benchmark] = p
	}
	return out, nil
}

// fmtPublished formats a published value as it was printed.
func fmtPublished(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

package eval

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/xml"
	"image/png"
	"io"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func findRow(t *testing.T, tb Table, match ...string) map[string]string {
	t.Helper()
	for _, r := range tb.Rows {
		ok := true
		for i, m := range match {
			if r[i] != m {
				ok = false
			}
		}
		if ok {
			m := map[string]string{}
			for i, h := range tb.Header {
				m[h] = r[i]
			}
			return m
		}
	}
	t.Fatalf("%s: no row %v in %v", tb.Title, match, tb.Rows)
	return nil
}

// run builds a synthetic run whose client latencies are lat (ms).
func run(kind, bench, strategy string, rate int, seed int64, lat ...float64) RunResult {
	r := RunResult{Chunk: Chunk{Kind: kind, Benchmark: bench, Strategy: strategy, Rate: rate, Seed: seed, Requests: len(lat)},
		Protocol: Protocol{Requests: len(lat), CheckpointAt: 1, PoolCapacity: 12}, Env: "e1"}
	for i, l := range lat {
		r.Samples = append(r.Samples, Sample{Index: i, Benchmark: bench, Strategy: strategy, Rate: rate, Seed: seed,
			ClientUS: int64(l * 1000), ServerUS: int64(l * 500), Lineage: i + 1, Served: i + 1, CPUProviderUS: -1, CPUWorkersUS: -1})
	}
	return r
}

func TestSummaryTable(t *testing.T) {
	ds := &Dataset{Runs: []RunResult{
		run(KindRun, "bfs", StrategyCold, 4, 1, 10, 10, 10, 10),
		run(KindRun, "bfs", StrategyFixed, 4, 1, 4, 4, 4, 4),
		run(KindRun, "bfs", StrategyRequestCentric, 4, 1, 2, 2, 2, 6),
		run(KindRun, "bfs", StrategyBandit, 4, 1, 1, 1, 1, 1),
	}}
	ds.Runs[2].State.Checkpoints = 3
	tb := SummaryTable(ds)
	if len(tb.Rows) != 4 {
		t.Fatalf("%d rows, want one per strategy", len(tb.Rows))
	}
	rc := findRow(t, tb, "bfs", "4", "request-centric")
	want := map[string]string{"runs": "1", "requests": "4", "p50": "2.00", "p90": "4.80", "mean": "3.00", "checkpoints": "3.0",
		"p50 vs cold": "80.0%", "p50 vs fixed(1)": "50.0%", "p90 vs cold": "52.0%", "p90 vs fixed(1)": "-20.0%"}
	for k, v := range want {
		if rc[k] != v {
			t.Errorf("request-centric %s = %q, want %q", k, rc[k], v)
		}
	}
	if cold := findRow(t, tb, "bfs", "4", "cold"); cold["p50 vs cold"] != "" {
		t.Errorf("cold has a reduction against itself: %v", cold)
	}
	g := findRow(t, GeomeanTable(ds), "4", "bandit (ours)")
	if g["p50 vs cold"] != "90.0%" || g["mean vs fixed(1)"] != "75.0%" || g["benchmarks"] != "1" {
		t.Errorf("geomean row %v", g)
	}
}

func TestFloorAndTarget(t *testing.T) {
	warm := run(KindWarmup, "bfs", StrategyCold, 0, 1, 50, 20, 10, 10, 10, 10)
	rc := run(KindRun, "bfs", StrategyRequestCentric, 4, 1, 11, 11, 11, 30)
	ours := run(KindRun, "bfs", StrategyBandit, 4, 1, 10, 10, 10, 12)
	rc.State.Checkpoints, ours.State.Checkpoints = 6, 2
	rc.PeakPoolBytes, ours.PeakPoolBytes = 100, 50
	ds := &Dataset{Runs: []RunResult{warm, rc, ours}}
	f := findRow(t, FloorTable(ds), "bfs")
	if f["floor p50"] != "10.0" || f["request-centric"] != "+10.0%" || f["bandit (ours)"] != "+0.0%" {
		t.Errorf("floor row %v", f)
	}
	tg := findRow(t, TargetTable(ds), "4")
	// mean 10.5 vs 15.75; p90 11.4 vs 24.3 (interpolated); a third of the
	// checkpoints; half the storage.
	want := map[string]string{"mean vs rc": "33.3%", "p50 over floor (ours)": "0.0%", "p50 over floor (rc)": "10.0%",
		"checkpoints ours/rc": "0.33", "peak storage ours/rc": "0.50"}
	for k, v := range want {
		if tg[k] != v {
			t.Errorf("target %s = %q, want %q", k, tg[k], v)
		}
	}
}

func TestConverged(t *testing.T) {
	flat := make([]float64, 100)
	for i := range flat {
		flat[i] = 5
		if i < 50 {
			flat[i] = 50
		}
	}
	tests := []struct {
		name    string
		lat     []float64
		runtime string
		want    int
	}{
		{"too short", []float64{1, 2, 3}, "pypy", -1},
		// From request 41 on, 11 of the 20 in the window are at the
		// target's level: their median is.
		{"pypy: the first window at the target's level", flat, "pypy", 41},
		{"jvm starts looking later, from 40", flat, "jvm", 41},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := converged(tt.lat, tt.runtime); got != tt.want {
				t.Errorf("converged = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestTables4And5(t *testing.T) {
	pub, err := PublishedValues()
	if err != nil {
		t.Fatal(err)
	}
	rc20 := run(KindRun, "bfs", StrategyRequestCentric, 20, 1, 5, 5)
	rc20.State.Pool = []PoolEntry{{RequestNumber: 3, Score: 10}, {RequestNumber: 17, Score: 90}}
	rc20.PackedBytes, rc20.RawBytes, rc20.PeakPoolBytes = 10<<20, 40<<20, 30<<20
	rc20.Events = []Event{{Kind: EventDump, Seconds: 0.1}, {Kind: EventRestore, Seconds: 0.05}, {Kind: EventCheckpoint, FrozenSeconds: 0.02}}
	rc4 := run(KindRun, "bfs", StrategyRequestCentric, 4, 1, 5, 5)
	rc4.PeakPoolBytes, rc4.UploadBytes, rc4.DownloadBytes = 50<<20, 10<<20, 20<<20
	rc4.Events = []Event{{Kind: EventDump, Seconds: 0.3}, {Kind: EventRestore, Seconds: 0.07}}
	fx4 := run(KindRun, "bfs", StrategyFixed, 4, 1, 5, 5)
	fx4.PeakPoolBytes, fx4.UploadBytes = 10<<20, 10<<20
	other := run(KindRun, "mine", StrategyCold, 4, 1, 5, 5)
	ds := &Dataset{Runs: []RunResult{rc20, rc4, fx4, other}}

	t4 := Table4(ds, pub)
	row := findRow(t, t4, "bfs")
	want := map[string]string{"best at (rc)": "17", "stored MiB": "10.0", "raw MiB": "40.0", "artifact MiB": "55.5",
		"dump ms": "200", "artifact dump ms": "85.6", "frozen ms": "20.0", "restore ms": "60.0", "artifact restore ms": "73.8",
		"dumps": "2", "restores": "2", "best at (ours)": "-"}
	for k, v := range want {
		if row[k] != v {
			t.Errorf("table 4 %s = %q, want %q", k, row[k], v)
		}
	}
	if r := findRow(t, t4, "mine"); r["artifact MiB"] != "-" {
		t.Errorf("a benchmark outside the artifact has published values: %v", r)
	}

	row = findRow(t, Table5(ds, pub), "bfs")
	want = map[string]string{"rc peak": "50.0", "rc moved": "30.0", "fixed(1) peak": "10.0", "fixed(1) moved": "10.0",
		"ours peak": "-", "artifact storage MB": "666", "artifact network MB": "13875", "formula storage": "480.0", "formula network": "40.0"}
	for k, v := range want {
		if row[k] != v {
			t.Errorf("table 5 %s = %q, want %q", k, row[k], v)
		}
	}
}

func TestPublishedValues(t *testing.T) {
	pub, err := PublishedValues()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range CatalogNames() {
		p, ok := pub[b]
		if !ok || p.DumpMS <= 0 || p.RestoreMS <= 0 || p.SnapshotMiB <= 0 {
			t.Errorf("%s: %+v", b, p)
			continue
		}
		// Table 5 is the artifact's formula on its own size.
		if math.Abs(p.StorageMB-12*p.SnapshotMiB) > 0.05 || math.Abs(p.NetworkMB-250*p.SnapshotMiB) > 0.05 {
			t.Errorf("%s: storage %g, network %g for size %g", b, p.StorageMB, p.NetworkMB, p.SnapshotMiB)
		}
	}
}

func TestSeedsTable(t *testing.T) {
	ds := &Dataset{Runs: []RunResult{
		run(KindRun, "bfs", StrategyFixed, 4, 1, 10, 10), run(KindRun, "bfs", StrategyFixed, 4, 2, 20, 20),
		run(KindRun, "bfs", StrategyRequestCentric, 4, 1, 5, 5), run(KindRun, "bfs", StrategyRequestCentric, 4, 2, 15, 15),
	}}
	row := findRow(t, SeedsTable(ds), "bfs", "4", "request-centric")
	if row["seeds"] != "2" || row["p50"] != "10.0 ± 7.07 [5.00, 15.0]" || row["p50 vs fixed(1)"] != "25.0% to 50.0%" {
		t.Errorf("seeds row %v", row)
	}
}

// A seed that repeats part of the grid is described, and only holes
// inside its part are missing runs.
func TestDataTextPartialSeed(t *testing.T) {
	var runs []RunResult
	for _, s := range []string{StrategyFixed, StrategyRequestCentric} {
		for _, e := range []int{4, 1} {
			runs = append(runs, run(KindRun, "bfs", s, e, 1, 10), run(KindRun, "dfs", s, e, 1, 10))
		}
	}
	runs = append(runs, run(KindRun, "bfs", StrategyRequestCentric, 4, 2, 10))
	ds := &Dataset{Runs: runs}
	text := dataText(ds, gridOf(ds), nil, t.TempDir())
	if !strings.Contains(text, "seed 2 covers {request-centric} × E ∈ {4} on 1 benchmark (bfs)") || !strings.Contains(text, "The grid is complete.") {
		t.Errorf("complete grid with a partial seed 2:\n%s", text)
	}
	ds.Runs = ds.Runs[1:] // bfs fixed E=4 seed 1 gone
	if text := dataText(ds, gridOf(ds), nil, t.TempDir()); !strings.Contains(text, "Runs missing from the grid (1): bfs fixed E=4 seed=1.") {
		t.Errorf("one run missing:\n%s", text)
	}
}

// checkReport asserts a report directory is well formed: the README has
// its sections and links only figures that exist, every PNG decodes, every
// SVG is XML, and the summary table has the expected number of rows.
func checkReport(t *testing.T, dir string, benchmarks []string, summaryRows int) {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Setup", "## Summary", "### Latency summary", "## Warm-up curves and the floor", "### The floor",
		"## Latency distributions", "### Table 4: snapshots", "### Table 5: storage and network", "## Cost of the mechanism",
		"### Costs per event", "### CPU spent against latency saved", "## Simulator calibration", "### Fitted model", "## Data", "kernel", "criu"} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README.md lacks %q", want)
		}
	}
	for _, b := range benchmarks {
		if !strings.Contains(string(readme), "figures/cdf-"+b+".png") {
			t.Errorf("README.md has no CDF of %s", b)
		}
	}
	pngs, _ := filepath.Glob(filepath.Join(dir, "figures", "*.png"))
	svgs, _ := filepath.Glob(filepath.Join(dir, "figures", "*.svg"))
	if len(pngs) == 0 || len(pngs) != len(svgs) {
		t.Errorf("%d PNG and %d SVG figures", len(pngs), len(svgs))
	}
	for _, f := range pngs {
		if !strings.Contains(string(readme), "figures/"+filepath.Base(f)) {
			t.Errorf("figure %s is not in the README", filepath.Base(f))
		}
		data, _ := os.ReadFile(f)
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil || img.Bounds().Dx() < 200 || img.Bounds().Dy() < 200 {
			t.Errorf("%s: %v (%v)", f, err, img)
		}
	}
	for _, f := range svgs {
		data, _ := os.ReadFile(f)
		d := xml.NewDecoder(bytes.NewReader(data))
		for {
			if _, err := d.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Errorf("%s: %v", f, err)
				break
			}
		}
	}
	for _, link := range strings.Split(string(readme), "](figures/")[1:] {
		name := link[:strings.IndexByte(link, ')')]
		if _, err := os.Stat(filepath.Join(dir, "figures", name)); err != nil {
			t.Errorf("README links missing figure %s", name)
		}
	}
	f, err := os.Open(filepath.Join(dir, "tables", "summary.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs)-1 != summaryRows {
		t.Errorf("summary.csv has %d rows, want %d", len(recs)-1, summaryRows)
	}
	for _, name := range []string{"table4", "table5", "floor", "headroom", "paired", "probe", "cost", "calibration", "calibration-compare", "environment"} {
		if _, err := os.Stat(filepath.Join(dir, "tables", name+".csv")); err != nil {
			t.Errorf("missing tables/%s.csv", name)
		}
	}
}

// A report regenerated from the same data is byte for byte the same, so a
// committed report shows no diff unless the data changed.
func TestReportIsReproducible(t *testing.T) {
	srv := newFakeServer(t)
	out := t.TempDir()
	var stdout bytes.Buffer
	o := fakeOptions(srv, out, &stdout)
	o.NoReport = true
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, d := range []string{a, b} {
		if err := WriteReport(context.Background(), d, []string{out}, ReportOptions{Command: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(a, "*", "*"))
	files = append(files, filepath.Join(a, "README.md"))
	for _, fa := range files {
		rel, _ := filepath.Rel(a, fa)
		da, _ := os.ReadFile(fa)
		db, err := os.ReadFile(filepath.Join(b, rel))
		if err != nil || !bytes.Equal(da, db) {
			t.Errorf("%s differs between two reports of the same data (%v)", rel, err)
		}
	}
}

func newFakeServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(newFakeProvider().handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

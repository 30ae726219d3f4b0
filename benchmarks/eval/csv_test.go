package eval

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A run chunk written and loaded back is the same run; the per-request
// file starts with the artifact's eight columns, so its notebooks read it.
func TestRunChunkRoundTrips(t *testing.T) {
	dir := t.TempDir()
	r := RunResult{
		Chunk:    Chunk{Kind: KindRun, Benchmark: "bfs", Strategy: StrategyRequestCentric, Rate: 4, Seed: 2, Requests: 2},
		Protocol: Protocol{Requests: 2, IntervalMS: 200, Mutability: 0.25, PoolCapacity: 12, CheckpointAt: 1},
		Function: "bfs-rc-e4-s2-x", Errors: 1, Env: "abc", Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Duration: 1500 * time.Millisecond,
		LoadStart: 0.5, LoadEnd: 0.75, CPUSampled: true,
		Samples: []Sample{
			{Index: 0, Benchmark: "bfs", Mutability: 0.25, Strategy: StrategyRequestCentric, Rate: 4, ClientUS: 1500, ServerUS: 1200, Seed: 2,
				Lineage: 1, Worker: 0, Served: 1, Start: StartCold, CPUProviderUS: 300, CPUWorkersUS: 9000, SentMS: 0},
			// Clock skew: a negative overhead stays as measured.
			{Index: 1, Benchmark: "bfs", Mutability: 0.25, Strategy: StrategyRequestCentric, Rate: 4, ClientUS: 900, ServerUS: 950, Seed: 2,
				Lineage: 2, Worker: 0, Served: 2, CPUProviderUS: -1, CPUWorkersUS: -1, SentMS: 201.5},
		},
		Events: []Event{{Kind: EventDump, Index: 0, Seconds: 0.08}, {Kind: EventCheckpoint, Index: 0, RequestNumber: 1, Seconds: 0.08,
			FrozenSeconds: 0.03, UploadSeconds: 0.1, PackedBytes: 5, RawBytes: 20}},
		State:         EngineState{Strategy: StrategyRequestCentric, ColdStarts: 1, Checkpoints: 1, Pool: []PoolEntry{{RequestNumber: 1, Score: 2.5}, {RequestNumber: 3, Score: 7}}},
		PeakPoolBytes: 10, PeakPoolSnapshots: 2, PackedBytes: 5, RawBytes: 20, UploadBytes: 5, DownloadBytes: 10,
	}
	if err := writeRunChunk(dir, r); err != nil {
		t.Fatal(err)
	}
	ds, err := LoadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Runs) != 1 {
		t.Fatalf("%d runs", len(ds.Runs))
	}
	got := ds.Runs[0]
	// Pool keys and sizes are not kept: request numbers and scores are.
	r.State.Pool = []PoolEntry{{RequestNumber: 1, Score: 2.5}, {RequestNumber: 3, Score: 7}}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, r)
	}
	if got.bestRequestNumber() != 3 {
		t.Errorf("best request number %d, want 3", got.bestRequestNumber())
	}
	samples, err := ReadSamples(filepath.Join(dir, r.Chunk.Dir(), requestsFile))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(samples, r.Samples) {
		t.Errorf("ReadSamples %+v", samples)
	}
}

func TestEncodeTableHeaderAndCompression(t *testing.T) {
	s := Sample{Index: 3, Benchmark: "bfs", Strategy: "cold", Rate: 20, ClientUS: 1500, ServerUS: 1200, Lineage: 4}
	var plain, packed bytes.Buffer
	if err := encodeTable(&plain, sampleHeader(), [][]string{s.record()}, false); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(plain.String(), "index,benchmark,mutability,strategy,rate,client_us,server_us,overhead_us,") ||
		!strings.Contains(plain.String(), "\n3,bfs,0,cold,20,1500,1200,300,") {
		t.Errorf("csv:\n%s", plain.String())
	}
	if err := encodeTable(&packed, sampleHeader(), [][]string{s.record()}, true); err != nil {
		t.Fatal(err)
	}
	// The same rows make the same bytes (a regenerated file shows no diff).
	var again bytes.Buffer
	_ = encodeTable(&again, sampleHeader(), [][]string{s.record()}, true)
	if !bytes.Equal(packed.Bytes(), again.Bytes()) || bytes.Equal(packed.Bytes(), plain.Bytes()) {
		t.Error("compressed output not deterministic, or not compressed")
	}
}

func TestReadTableRejectsBadRows(t *testing.T) {
	tests := []struct{ name, body string }{
		{"no header", ""},
		{"bad number", "index,benchmark,mutability,strategy,rate,client_us,server_us\n0,bfs,0,cold,20,abc,1\n"},
		{"missing column", "index,benchmark\n0,bfs\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "l.csv")
			if err := os.WriteFile(path, []byte(tt.body), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadSamples(path); err == nil {
				t.Error("want an error")
			}
		})
	}
}

// Columns added later default: a file without lineage or CPU reads as
// unknown, not as zero.
func TestReadSamplesDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.csv")
	body := "index,benchmark,mutability,strategy,rate,client_us,server_us,overhead_us\n0,bfs,0,cold,20,1500,1200,300\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSamples(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Lineage != -1 || got[0].CPUWorkersUS != -1 || got[0].ClientUS != 1500 {
		t.Errorf("%+v", got)
	}
}

package eval

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestChunkDir(t *testing.T) {
	tests := []struct {
		c    Chunk
		want string
	}{
		{Chunk{Kind: KindRun, Benchmark: "bfs", Strategy: StrategyRequestCentric, Rate: 4, Seed: 1}, "runs/bfs/request-centric-e4-s1"},
		{Chunk{Kind: KindWarmup, Benchmark: "bfs", Strategy: StrategyCold, Seed: 2}, "runs/bfs/warmup-s2"},
		{Chunk{Kind: KindProbe, Benchmark: "word-count", Seed: 3}, "runs/word-count/probe-s3"},
	}
	for _, tt := range tests {
		if got := filepath.ToSlash(tt.c.Dir()); got != tt.want {
			t.Errorf("%+v: %s, want %s", tt.c, got, tt.want)
		}
	}
}

// A chunk whose writing fails leaves nothing behind: a directory that
// exists is a complete chunk.
func TestCommitChunkIsAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	c := Chunk{Kind: KindRun, Benchmark: "bfs", Strategy: StrategyCold, Rate: 4, Seed: 1}
	err := commitChunk(dir, c, map[string]func(io.Writer) error{
		"a.csv": func(w io.Writer) error { _, err := io.WriteString(w, "x\n"); return err },
		"b.csv": func(io.Writer) error { return errors.New("disk full") },
	})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "runs", "bfs"))
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
	ok := map[string]func(io.Writer) error{"a.csv": func(w io.Writer) error { _, err := io.WriteString(w, "x\n"); return err }}
	if err := commitChunk(dir, c, ok); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, c.Dir(), "a.csv")); err != nil {
		t.Error(err)
	}
	// Committing the same chunk again does not merge into it.
	if err := commitChunk(dir, c, ok); err == nil {
		t.Error("a second commit of the same chunk succeeded")
	}
}

func TestLoadResultsRefusesDuplicates(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	r := run(KindRun, "bfs", StrategyCold, 4, 1, 1, 2)
	for _, d := range []string{a, b} {
		if err := writeRunChunk(d, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadResults(a, b); err == nil || !strings.Contains(err.Error(), "in both") {
		t.Errorf("err = %v", err)
	}
}

func TestCompatible(t *testing.T) {
	o, err := Options{Gateway: "http://x:1", Requests: 10}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	c := Chunk{Kind: KindRun, Benchmark: "bfs", Strategy: StrategyCold, Rate: 4, Seed: 1, Requests: 10}
	done := RunResult{Chunk: c, Protocol: o.protocol(c)}
	if err := o.compatible(c, done); err != nil {
		t.Errorf("same protocol: %v", err)
	}
	other := o
	other.Mutability = 0.5
	if err := other.compatible(c, done); err == nil || !strings.Contains(err.Error(), "mutability=0") {
		t.Errorf("another mutability: %v", err)
	}
}

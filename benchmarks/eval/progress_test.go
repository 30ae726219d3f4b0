package eval

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestETAModel(t *testing.T) {
	o, err := Options{Gateway: "http://x:1", Benchmarks: []string{"bfs", "simple-hash"}, Requests: 100, ProbeReps: 2, ProbeAt: 10}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	m := newETAModel(o)
	pypy4 := Chunk{Kind: KindRun, Benchmark: "bfs", Strategy: StrategyCold, Rate: 4, Requests: 100}
	jvm1 := Chunk{Kind: KindRun, Benchmark: "simple-hash", Strategy: StrategyCold, Rate: 1, Requests: 100}
	probe := Chunk{Kind: KindProbe, Benchmark: "bfs", Requests: 10}
	tests := []struct {
		name string
		c    Chunk
		want time.Duration
	}{
		{"pypy at E=4: the pause plus a little", pypy4, chunkOverhead + 100*(200+50)*time.Millisecond},
		{"jvm at E=1: a worker start per request", jvm1, chunkOverhead + 100*(100+350)*time.Millisecond},
		{"probe: its repetitions", probe, chunkOverhead + 24*(200+500)*time.Millisecond},
	}
	for _, tt := range tests {
		if got := m.estimate(tt.c); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	// Learned: a PyPy E=4 run took 3 s + 100 × 230 ms.
	m.learn(pypy4, chunkOverhead+100*230*time.Millisecond)
	if got, want := m.estimate(pypy4), chunkOverhead+100*230*time.Millisecond; got != want {
		t.Errorf("after learning: %v, want %v", got, want)
	}
	// Other classes keep their guesses.
	if got := m.estimate(jvm1); got != chunkOverhead+100*450*time.Millisecond {
		t.Errorf("jvm E=1 changed to %v", got)
	}
}

// Without a terminal, progress is plain lines with the chunk, the request
// and an ETA, and every chunk ends with its summary.
func TestProgressLines(t *testing.T) {
	var out bytes.Buffer
	o, _ := Options{Gateway: "http://x:1", Benchmarks: []string{"bfs"}, Requests: 2, Stdout: &out, Progress: ProgressLines}.withDefaults()
	chunks := []Chunk{{Kind: KindRun, Benchmark: "bfs", Strategy: StrategyCold, Rate: 4, Seed: 1, Requests: 2},
		{Kind: KindRun, Benchmark: "bfs", Strategy: StrategyFixed, Rate: 4, Seed: 1, Requests: 2}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newProgress(o, chunks)
	p.now = func() time.Time { return now }
	p.begin = now
	p.startChunk(0)
	now = now.Add(31 * time.Second)
	p.request()
	p.request()
	p.doneChunk("p50=1ms")
	p.startChunk(1)
	p.finish()
	text := out.String()
	for _, want := range []string{"[chunk 1/2] bfs cold E=4 seed=1, request 0/2; elapsed 0s, eta ", "request 1/2; elapsed 31s",
		"eval: done bfs cold E=4 seed=1 in 31s: p50=1ms", "[chunk 2/2] bfs fixed E=4 seed=1"} {
		if !strings.Contains(text, want) {
			t.Errorf("progress lacks %q:\n%s", want, text)
		}
	}
}

package eval

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLatencyCSVAppendsAndRoundTrips(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latency.csv")
	first := []Sample{
		{Index: 0, Benchmark: "bfs", Mutability: 0.25, Strategy: "cold", Rate: 20, ClientUS: 1500, ServerUS: 1200},
		{Index: 1, Benchmark: "bfs", Mutability: 0.25, Strategy: "cold", Rate: 20, ClientUS: 900, ServerUS: 950}, // clock skew: negative overhead stays as measured
	}
	second := []Sample{{Index: 0, Benchmark: "word-count", Strategy: "request-centric", Rate: 1, ClientUS: 70000, ServerUS: 20000}}
	for _, batch := range [][]Sample{first, second} {
		lw, err := openLatencyCSV(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range batch {
			if err := lw.Write(s); err != nil {
				t.Fatal(err)
			}
		}
		if err := lw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	wantLines := []string{
		"index,benchmark,mutability,strategy,rate,client_us,server_us,overhead_us",
		"0,bfs,0.25,cold,20,1500,1200,300",
		"1,bfs,0.25,cold,20,900,950,-50",
		"0,word-count,0,request-centric,1,70000,20000,50000",
	}
	if !reflect.DeepEqual(lines, wantLines) {
		t.Errorf("file:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(wantLines, "\n"))
	}
	got, err := ReadLatencyCSV(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(append([]Sample{}, first...), second...); !reflect.DeepEqual(got, want) {
		t.Errorf("read back %+v, want %+v", got, want)
	}
}

func TestReadLatencyCSVRejectsBadRows(t *testing.T) {
	tests := []struct{ name, body string }{
		{"short row", "index,benchmark,mutability,strategy,rate,client_us,server_us,overhead_us\n1,bfs,0,cold\n"},
		{"bad number", "0,bfs,0,cold,20,abc,1,1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "l.csv")
			if err := os.WriteFile(path, []byte(tt.body), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadLatencyCSV(path); err == nil {
				t.Error("want an error")
			}
		})
	}
}

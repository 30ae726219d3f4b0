package eval

import (
	"math"
	"strings"
	"testing"
)

const sampleMetrics = `# HELP pronghorn_dump_seconds CRIU dump time.
# TYPE pronghorn_dump_seconds histogram
pronghorn_dump_seconds_bucket{function_name="f.openfaas-fn",le="0.005"} 0
pronghorn_dump_seconds_bucket{function_name="f.openfaas-fn",le="+Inf"} 2
pronghorn_dump_seconds_sum{function_name="f.openfaas-fn"} 0.25
pronghorn_dump_seconds_count{function_name="f.openfaas-fn"} 2
pronghorn_dump_seconds_sum{function_name="g.openfaas-fn"} 9
pronghorn_pool_bytes{function_name="f.openfaas-fn"} 1.2e+07
pronghorn_snapshot_transfer_bytes_total{direction="upload",function_name="f.openfaas-fn"} 3000
pronghorn_snapshot_transfer_bytes_total{direction="download",function_name="f.openfaas-fn"} 4000
gateway_function_invocation_total{code="200",function_name="f.openfaas-fn"} 7
`

func TestParseMetrics(t *testing.T) {
	s, err := ParseMetrics(strings.NewReader(sampleMetrics), "f.openfaas-fn")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		want float64
		ok   bool
	}{
		{mDump + "_sum", 0.25, true},
		{mDump + "_count", 2, true},
		{mPoolBytes, 12e6, true},
		{mTransferUp, 3000, true},
		{mTransferDown, 4000, true},
		{mDump + "_bucket{le=\"+Inf\"}", 0, false},                    // buckets are dropped
		{"gateway_function_invocation_total{code=\"200\"}", 0, false}, // not ours
	}
	for _, tt := range tests {
		got, ok := s[tt.key]
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s = %v, %v; want %v, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
	if len(s) != 5 {
		t.Errorf("parsed %d samples, want 5 (other functions excluded): %v", len(s), s)
	}
}

func TestParseMetricsBadValue(t *testing.T) {
	if _, err := ParseMetrics(strings.NewReader(`pronghorn_pool_bytes{function_name="f"} x`+"\n"), "f"); err == nil {
		t.Error("want an error for a non-numeric value")
	}
}

func TestSplitLabels(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{`a="x"`, []string{`a="x"`}},
		{`a="x",b="y"`, []string{`a="x"`, `b="y"`}},
		{`a="x,y",b="q\"z,"`, []string{`a="x,y"`, `b="q\"z,"`}},
		{``, nil},
	}
	for _, tt := range tests {
		got := splitLabels(tt.in)
		if strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("splitLabels(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEventTracker(t *testing.T) {
	tr := &eventTracker{name: mDump, kind: EventDump, sum: 1, cnt: 10} // leftovers of an earlier function
	steps := []struct {
		sum, cnt  float64
		want      []float64
		wantIndex []int
	}{
		{1, 10, nil, nil},                                           // nothing new
		{1.1, 11, []float64{0.1}, []int{1}},                         // one event: exact
		{1.1, 11, []float64{0.1}, []int{1}},                         // unchanged
		{1.5, 13, []float64{0.1, 0.2, 0.2}, []int{1, 3, 3}},         // two events: their mean each
		{1.8, 14, []float64{0.1, 0.2, 0.2, 0.3}, []int{1, 3, 3, 4}}, // one more
		{1.8, 14, []float64{0.1, 0.2, 0.2, 0.3}, []int{1, 3, 3, 4}}, // idle
	}
	for i, st := range steps {
		tr.observe(Scrape{mDump + "_sum": st.sum, mDump + "_count": st.cnt}, i)
		if len(tr.events) != len(st.want) {
			t.Fatalf("step %d: events %v, want %v", i, tr.events, st.want)
		}
		for j := range st.want {
			e := tr.events[j]
			if math.Abs(e.Seconds-st.want[j]) > 1e-9 || e.Index != st.wantIndex[j] || e.Kind != EventDump {
				t.Fatalf("step %d: events %+v, want seconds %v at %v", i, tr.events, st.want, st.wantIndex)
			}
		}
	}
}

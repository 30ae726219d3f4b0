package handlers

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counterValue returns the value of the series with exactly these labels
// (a histogram's sample count), or -1 if there is none.
func counterValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !labelsMatch(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return -1
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	if len(m.GetLabel()) != len(want) {
		return false
	}
	for _, l := range m.GetLabel() {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}

func TestMetrics(t *testing.T) {
	e, _ := newInvokeEnv(t, nil)
	if res, _ := e.do(t, "POST", "/function/figlet", "hi", nil); res.StatusCode != 201 {
		t.Fatalf("invoke: %d", res.StatusCode)
	}
	if res, _ := e.do(t, "POST", "/function/nope", "hi", nil); res.StatusCode != 404 {
		t.Fatalf("invoke unknown: %d", res.StatusCode)
	}
	if err := e.fb.Scale(context.Background(), "dev", "figlet", 3); err != nil {
		t.Fatal(err)
	}
	e.do(t, "GET", "/system/functions", "", nil)

	fn := map[string]string{"function_name": "figlet.openfaas-fn", "code": "201"}
	if v := counterValue(t, e.reg, "gateway_function_invocation_total", fn); v != 1 {
		t.Errorf("gateway_function_invocation_total = %v", v)
	}
	if v := counterValue(t, e.reg, "gateway_functions_seconds", fn); v != 1 {
		t.Errorf("gateway_functions_seconds count = %v", v)
	}
	if v := counterValue(t, e.reg, "gateway_function_invocation_total",
		map[string]string{"function_name": "nope.openfaas-fn", "code": "404"}); v != -1 {
		t.Errorf("unknown function got a series")
	}
	for label, want := range map[string]float64{"figlet.openfaas-fn": 1, "figlet.dev": 3} {
		if v := counterValue(t, e.reg, "gateway_service_count", map[string]string{"function_name": label}); v != want {
			t.Errorf("gateway_service_count{%s} = %v, want %v", label, v, want)
		}
	}
	if v := counterValue(t, e.reg, "provider_http_requests_total",
		map[string]string{"code": "200", "method": "GET", "path": "/system/functions"}); v != 1 {
		t.Errorf("provider_http_requests_total = %v", v)
	}

	// And the same over HTTP, in the text format Prometheus scrapes.
	res, body := e.do(t, "GET", "/metrics", "", nil)
	if res.StatusCode != 200 {
		t.Fatalf("/metrics: %d", res.StatusCode)
	}
	for _, want := range []string{
		`gateway_function_invocation_total{code="201",function_name="figlet.openfaas-fn"} 1`,
		`gateway_functions_seconds_count{code="201",function_name="figlet.openfaas-fn"} 1`,
		`gateway_service_count{function_name="figlet.dev"} 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

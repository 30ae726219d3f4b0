package handlers

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

const (
	maxUint64 = "18446744073709551615" // 2^64-1
	twoTo63   = "9223372036854775808"
)

// TestDeployBounds: a deploy or update that asks for more than the provider
// allows is a 400 naming the field and value, and the backend stores nothing.
func TestDeployBounds(t *testing.T) {
	cases := []struct {
		name    string
		fields  string // JSON members added to {"service":...,"image":...}
		bodyHas string
	}{
		{"scale.max 2^64-1", `"labels":{"com.openfaas.scale.max":"` + maxUint64 + `"}`, `com.openfaas.scale.max="` + maxUint64 + `"`},
		{"scale.max 2^63", `"labels":{"com.openfaas.scale.max":"` + twoTo63 + `"}`, twoTo63},
		{"scale.max 21", `"labels":{"com.openfaas.scale.max":"21"}`, "1..20"},
		{"scale.max -1", `"labels":{"com.openfaas.scale.max":"-1"}`, `"-1"`},
		{"scale.max abc", `"labels":{"com.openfaas.scale.max":"abc"}`, `"abc"`},
		{"scale.max 1e3", `"labels":{"com.openfaas.scale.max":"1e3"}`, `"1e3"`},
		{"scale.max empty", `"labels":{"com.openfaas.scale.max":""}`, `com.openfaas.scale.max=""`},
		{"scale.min 2^64-1", `"labels":{"com.openfaas.scale.min":"` + maxUint64 + `"}`, `com.openfaas.scale.min="` + maxUint64 + `"`},
		{"scale.min 2^63", `"labels":{"com.openfaas.scale.min":"` + twoTo63 + `"}`, twoTo63},
		{"scale.min 40", `"labels":{"com.openfaas.scale.min":"40"}`, "more than 20"},
		{"scale.min above scale.max", `"labels":{"com.openfaas.scale.min":"5","com.openfaas.scale.max":"4"}`, "more than 4"},
		{"limits.memory 2^64-1", `"limits":{"memory":"` + maxUint64 + `"}`, `limits.memory "` + maxUint64 + `"`},
		{"limits.memory -1", `"limits":{"memory":"-1"}`, `limits.memory "-1"`},
		{"limits.memory abc", `"limits":{"memory":"abc"}`, `limits.memory "abc"`},
		{"requests.cpu 2^63", `"requests":{"cpu":"` + twoTo63 + `"}`, `requests.cpu "` + twoTo63 + `"`},
		{"requests.cpu abc", `"requests":{"cpu":"abc"}`, `requests.cpu "abc"`},
		{"requests above limits", `"limits":{"cpu":"1"},"requests":{"cpu":"2"}`, `requests.cpu "2" is more than limits.cpu "1"`},
		{"upstream_url remote", `"envVars":{"upstream_url":"http://169.254.169.254:80"}`, "upstream_url"},
		{"upstream_url no port", `"envVars":{"upstream_url":"http://127.0.0.1"}`, "explicit port"},
		{"env name with =", `"envVars":{"A=B":"1"}`, `"A=B"`},
		{"env value with NUL", `"envVars":{"A":"x\u0000"}`, "NUL"},
	}
	for _, tc := range cases {
		for _, op := range []struct{ method, service string }{{"POST", "env"}, {"PUT", "figlet"}} {
			t.Run(op.method+" "+tc.name, func(t *testing.T) {
				e := newEnv(t, nil)
				before, _ := e.fb.Function(context.Background(), "openfaas-fn", "figlet")
				body := fmt.Sprintf(`{"service":%q,"image":"x:2",%s}`, op.service, tc.fields)
				res, got := e.do(t, op.method, "/system/functions", body, nil)
				if res.StatusCode != http.StatusBadRequest {
					t.Fatalf("status = %d, want 400; body %q", res.StatusCode, got)
				}
				assertReason(t, res, got)
				if !strings.Contains(got, tc.bodyHas) {
					t.Errorf("body %q does not contain %q", got, tc.bodyHas)
				}
				if _, err := e.fb.Function(context.Background(), "openfaas-fn", "env"); err == nil {
					t.Error("deploy stored the function")
				}
				if after, _ := e.fb.Function(context.Background(), "openfaas-fn", "figlet"); after.Image != before.Image {
					t.Errorf("update stored image %q", after.Image)
				}
			})
		}
	}
}

func TestDeployWithinBounds(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxReplicas = 50 })
	body := `{"service":"env","image":"x","labels":{"com.openfaas.scale.min":"40","com.openfaas.scale.max":"50"},` +
		`"limits":{"memory":"1Ti","cpu":"1024"},"requests":{"memory":"1Gi","cpu":"100m"},` +
		`"envVars":{"upstream_url":"http://127.0.0.1:5000"}}`
	res, got := e.do(t, "POST", "/system/functions", body, nil)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status = %d, body %q", res.StatusCode, got)
	}
	// faas-netes ignores a scale.min that is not a positive integer rather
	// than refusing the deploy.
	res, got = e.do(t, "PUT", "/system/functions", `{"service":"figlet","image":"x","labels":{"com.openfaas.scale.min":"abc"}}`, nil)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("update with scale.min=abc: status = %d, body %q", res.StatusCode, got)
	}
}

func TestScaleBounds(t *testing.T) {
	for _, tc := range []struct {
		name        string
		maxReplicas uint64
		replicas    string
		status      int
		bodyHas     string
	}{
		{"at default max", 0, "20", http.StatusAccepted, ""},
		{"above default max", 0, "21", http.StatusBadRequest, "replicas 21 is more than 20, the provider's maximum"},
		{"40", 0, "40", http.StatusBadRequest, "the provider's maximum"},
		{"2^64-1", 0, maxUint64, http.StatusBadRequest, "replicas " + maxUint64 + " is more than 20"},
		{"2^63", 0, twoTo63, http.StatusBadRequest, "replicas " + twoTo63 + " is more than 20"},
		{"2^64", 0, "18446744073709551616", http.StatusBadRequest, "whole number"},
		{"exponent", 0, "1e3", http.StatusBadRequest, "whole number"},
		{"string", 0, `"abc"`, http.StatusBadRequest, "malformed JSON"},
		{"configured max", 50, "40", http.StatusAccepted, ""},
		{"above configured max", 50, "51", http.StatusBadRequest, "more than 50"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.MaxReplicas = tc.maxReplicas })
			res, got := e.do(t, "POST", "/system/scale-function/figlet", `{"serviceName":"figlet","replicas":`+tc.replicas+`}`, nil)
			if res.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d; body %q", res.StatusCode, tc.status, got)
			}
			if tc.status >= 400 {
				assertReason(t, res, got)
				if !strings.Contains(got, tc.bodyHas) {
					t.Errorf("body %q does not contain %q", got, tc.bodyHas)
				}
				if fn, _ := e.fb.Function(context.Background(), "openfaas-fn", "figlet"); fn.Replicas != 1 {
					t.Errorf("backend scaled to %d", fn.Replicas)
				}
			}
		})
	}
}

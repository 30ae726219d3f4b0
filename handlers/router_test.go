package handlers

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/openfaas/faas-provider/auth"
	"github.com/openfaas/faas-provider/types"
	"github.com/prometheus/client_golang/prometheus"
)

type testEnv struct {
	srv *httptest.Server
	fb  *fakeBackend
	reg *prometheus.Registry
}

// newEnv serves a router over a fresh fake backend seeded with one function
// (figlet) and one secret (s1) in the default namespace. A real server, not a
// ResponseRecorder, because the log stream needs a CloseNotifier.
func newEnv(t testing.TB, mutate func(*Config)) *testEnv {
	t.Helper()
	fb := newFakeBackend()
	ctx := context.Background()
	if err := fb.Deploy(ctx, types.FunctionDeployment{Service: "figlet", Image: "figlet:latest", Namespace: "openfaas-fn"}); err != nil {
		t.Fatal(err)
	}
	if err := fb.CreateSecret(ctx, types.Secret{Name: "s1", Namespace: "openfaas-fn", Value: "hunter2"}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := Config{ProviderName: "pronghorn", Version: "0.1.0", SHA: "abc123", Orchestration: "local"}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := NewRouter(cfg, fb, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testEnv{srv: srv, fb: fb, reg: reg}
}

func (e *testEnv) do(t testing.TB, method, path, body string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// assertJSON compares semantically, so field order and spacing do not matter
// but every field and value does.
func assertJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("response is not JSON: %v: %q", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("JSON mismatch\n got: %s\nwant: %s", got, want)
	}
}

// assertReason checks the error contract: text/plain, one non-empty line.
func assertReason(t *testing.T, res *http.Response, body string) {
	t.Helper()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	line := strings.TrimSuffix(body, "\n")
	if strings.TrimSpace(line) == "" || strings.Contains(line, "\n") {
		t.Errorf("want one non-empty line of reason, got %q", body)
	}
}

const figletJSON = `{"name":"figlet","image":"figlet:latest","namespace":"openfaas-fn",
	"replicas":1,"availableReplicas":1,"createdAt":"2025-01-02T03:04:05Z"}`

func TestSystemRoutes(t *testing.T) {
	fn := func(fb *fakeBackend, ns, name string) (types.FunctionStatus, bool) {
		s, err := fb.Function(context.Background(), ns, name)
		return s, err == nil
	}
	cases := []struct {
		name          string
		method, path  string
		body          string
		hdr           http.Header
		setup         func(*fakeBackend)
		status        int
		json          string // exact JSON body, when set
		bodyHas       string // substring of a text body, when set
		check         func(*testing.T, *fakeBackend)
		skipReasonChk bool
	}{
		// Happy paths, with faas-netes' status codes.
		{name: "list", method: "GET", path: "/system/functions", status: 200, json: "[" + figletJSON + "]"},
		{name: "list other namespace empty", method: "GET", path: "/system/functions?namespace=dev", status: 200, json: "[]"},
		{name: "status", method: "GET", path: "/system/function/figlet", status: 200, json: figletJSON},
		{name: "deploy", method: "POST", path: "/system/functions",
			body:   `{"service":"env","image":"functions/env:latest","envProcess":"env","envVars":{"A":"1"},"labels":{"l":"v"},"annotations":{"a":"b"},"secrets":["s1"],"limits":{"memory":"128Mi"}}`,
			status: 202,
			check: func(t *testing.T, fb *fakeBackend) {
				got, ok := fn(fb, "openfaas-fn", "env")
				if !ok || got.Image != "functions/env:latest" || got.EnvProcess != "env" || got.EnvVars["A"] != "1" ||
					(*got.Labels)["l"] != "v" || (*got.Annotations)["a"] != "b" || got.Limits.Memory != "128Mi" || got.Secrets[0] != "s1" {
					t.Errorf("stored %+v", got)
				}
			}},
		{name: "deploy namespace from body", method: "POST", path: "/system/functions",
			body: `{"service":"env","image":"x","namespace":"dev"}`, status: 202,
			check: func(t *testing.T, fb *fakeBackend) {
				if _, ok := fn(fb, "dev", "env"); !ok {
					t.Error("not deployed to dev")
				}
			}},
		{name: "deploy namespace from query", method: "POST", path: "/system/functions?namespace=dev",
			body: `{"service":"env","image":"x"}`, status: 202,
			check: func(t *testing.T, fb *fakeBackend) {
				if _, ok := fn(fb, "dev", "env"); !ok {
					t.Error("not deployed to dev")
				}
			}},
		{name: "update", method: "PUT", path: "/system/functions",
			body: `{"service":"figlet","image":"figlet:2"}`, status: 202,
			check: func(t *testing.T, fb *fakeBackend) {
				if got, _ := fn(fb, "openfaas-fn", "figlet"); got.Image != "figlet:2" {
					t.Errorf("image = %q", got.Image)
				}
			}},
		{name: "delete", method: "DELETE", path: "/system/functions", body: `{"functionName":"figlet"}`, status: 202,
			check: func(t *testing.T, fb *fakeBackend) {
				if _, ok := fn(fb, "openfaas-fn", "figlet"); ok {
					t.Error("still there")
				}
			}},
		{name: "scale", method: "POST", path: "/system/scale-function/figlet",
			body: `{"serviceName":"figlet","replicas":3}`, status: 202,
			check: func(t *testing.T, fb *fakeBackend) {
				if got, _ := fn(fb, "openfaas-fn", "figlet"); got.Replicas != 3 {
					t.Errorf("replicas = %d", got.Replicas)
				}
			}},
		{name: "scale to zero without serviceName", method: "POST", path: "/system/scale-function/figlet",
			body: `{"replicas":0}`, status: 202,
			check: func(t *testing.T, fb *fakeBackend) {
				if got, _ := fn(fb, "openfaas-fn", "figlet"); got.Replicas != 0 {
					t.Errorf("replicas = %d", got.Replicas)
				}
			}},
		{name: "info", method: "GET", path: "/system/info", status: 200,
			json: `{"provider":"pronghorn","orchestration":"local","version":{"sha":"abc123","release":"0.1.0"}}`},
		{name: "namespaces", method: "GET", path: "/system/namespaces", status: 200, json: `["openfaas-fn","dev"]`},
		{name: "secrets list has names only", method: "GET", path: "/system/secrets", status: 200,
			json: `[{"name":"s1","namespace":"openfaas-fn"}]`},
		{name: "secret create", method: "POST", path: "/system/secrets", body: `{"name":"s2","value":"v"}`, status: 202,
			check: func(t *testing.T, fb *fakeBackend) {
				if fb.secret("openfaas-fn", "s2").Value != "v" {
					t.Error("not stored")
				}
			}},
		{name: "secret create raw", method: "POST", path: "/system/secrets", body: `{"name":"s2","rawValue":"AAE="}`, status: 202,
			check: func(t *testing.T, fb *fakeBackend) {
				if got := fb.secret("openfaas-fn", "s2").RawValue; string(got) != "\x00\x01" {
					t.Errorf("raw = %q", got)
				}
			}},
		{name: "secret update", method: "PUT", path: "/system/secrets", body: `{"name":"s1","value":"new"}`, status: 202,
			check: func(t *testing.T, fb *fakeBackend) {
				if fb.secret("openfaas-fn", "s1").Value != "new" {
					t.Error("not updated")
				}
			}},
		{name: "secret delete", method: "DELETE", path: "/system/secrets", body: `{"name":"s1"}`, status: 202,
			check: func(t *testing.T, fb *fakeBackend) {
				if fb.secret("openfaas-fn", "s1").Name != "" {
					t.Error("still there")
				}
			}},
		{name: "healthz", method: "GET", path: "/healthz", status: 200, bodyHas: "OK", skipReasonChk: true},
		{name: "namespace mutation not implemented", method: "GET", path: "/system/namespace/dev", status: 501, bodyHas: "not implemented"},

		// Bad input: each a 4xx with a one-line reason.
		{name: "deploy malformed JSON", method: "POST", path: "/system/functions", body: `{"service":`, status: 400, bodyHas: "malformed JSON"},
		{name: "deploy wrong JSON type", method: "POST", path: "/system/functions", body: `{"service":3}`, status: 400, bodyHas: "malformed JSON"},
		{name: "deploy trailing garbage", method: "POST", path: "/system/functions", body: `{"service":"a","image":"b"} x`, status: 400},
		{name: "deploy empty body", method: "POST", path: "/system/functions", status: 400, bodyHas: "empty"},
		{name: "deploy missing service", method: "POST", path: "/system/functions", body: `{"image":"x"}`, status: 400, bodyHas: "service is required"},
		{name: "deploy uppercase name", method: "POST", path: "/system/functions", body: `{"service":"Figlet","image":"x"}`, status: 400, bodyHas: "DNS-1123"},
		{name: "deploy underscore name", method: "POST", path: "/system/functions", body: `{"service":"fig_let","image":"x"}`, status: 400, bodyHas: "DNS-1123"},
		{name: "deploy dotted name", method: "POST", path: "/system/functions", body: `{"service":"fig.let","image":"x"}`, status: 400, bodyHas: "DNS-1123"},
		{name: "deploy trailing dash", method: "POST", path: "/system/functions", body: `{"service":"figlet-","image":"x"}`, status: 400, bodyHas: "DNS-1123"},
		{name: "deploy 64-char name", method: "POST", path: "/system/functions", body: `{"service":"` + strings.Repeat("a", 64) + `","image":"x"}`, status: 400, bodyHas: "DNS-1123"},
		{name: "deploy 63-char name ok", method: "POST", path: "/system/functions", body: `{"service":"` + strings.Repeat("a", 63) + `","image":"x"}`, status: 202},
		{name: "deploy missing image", method: "POST", path: "/system/functions", body: `{"service":"env"}`, status: 400, bodyHas: "image is required"},
		{name: "deploy bad secret name", method: "POST", path: "/system/functions", body: `{"service":"env","image":"x","secrets":["../etc"]}`, status: 400, bodyHas: "secret name"},
		{name: "deploy duplicate", method: "POST", path: "/system/functions", body: `{"service":"figlet","image":"x"}`, status: 409, bodyHas: "already exists"},
		{name: "deploy bad namespace", method: "POST", path: "/system/functions", body: `{"service":"env","image":"x","namespace":"Bad NS"}`, status: 400, bodyHas: "namespace"},
		{name: "deploy namespace conflict", method: "POST", path: "/system/functions?namespace=dev", body: `{"service":"env","image":"x","namespace":"openfaas-fn"}`, status: 400, bodyHas: "differs"},
		{name: "update unknown", method: "PUT", path: "/system/functions", body: `{"service":"nope","image":"x"}`, status: 404, bodyHas: "not found"},
		{name: "update malformed", method: "PUT", path: "/system/functions", body: `[`, status: 400},
		{name: "update missing image", method: "PUT", path: "/system/functions", body: `{"service":"figlet"}`, status: 400},
		{name: "delete malformed", method: "DELETE", path: "/system/functions", body: `{`, status: 400},
		{name: "delete missing name", method: "DELETE", path: "/system/functions", body: `{}`, status: 400, bodyHas: "required"},
		{name: "delete invalid name", method: "DELETE", path: "/system/functions", body: `{"functionName":"Nope!"}`, status: 400},
		{name: "delete unknown", method: "DELETE", path: "/system/functions", body: `{"functionName":"nope"}`, status: 404},
		{name: "status unknown", method: "GET", path: "/system/function/nope", status: 404, bodyHas: "not found"},
		{name: "status invalid name", method: "GET", path: "/system/function/No_Pe", status: 400},
		{name: "status bad namespace", method: "GET", path: "/system/function/figlet?namespace=-x", status: 400},
		{name: "list bad namespace", method: "GET", path: "/system/functions?namespace=UPPER", status: 400},
		{name: "scale negative", method: "POST", path: "/system/scale-function/figlet", body: `{"serviceName":"figlet","replicas":-1}`, status: 400, bodyHas: "replicas must be >= 0"},
		{name: "scale fractional", method: "POST", path: "/system/scale-function/figlet", body: `{"replicas":1.5}`, status: 400, bodyHas: "whole number"},
		{name: "scale missing replicas", method: "POST", path: "/system/scale-function/figlet", body: `{"serviceName":"figlet"}`, status: 400, bodyHas: "replicas is required"},
		{name: "scale malformed", method: "POST", path: "/system/scale-function/figlet", body: `{"replicas":`, status: 400},
		{name: "scale name mismatch", method: "POST", path: "/system/scale-function/figlet", body: `{"serviceName":"other","replicas":1}`, status: 400, bodyHas: "differs"},
		{name: "scale unknown", method: "POST", path: "/system/scale-function/nope", body: `{"replicas":1}`, status: 404},
		{name: "secret create duplicate", method: "POST", path: "/system/secrets", body: `{"name":"s1","value":"v"}`, status: 409},
		{name: "secret update unknown", method: "PUT", path: "/system/secrets", body: `{"name":"s9","value":"v"}`, status: 404},
		{name: "secret delete unknown", method: "DELETE", path: "/system/secrets", body: `{"name":"s9"}`, status: 404},
		{name: "secret missing name", method: "POST", path: "/system/secrets", body: `{"value":"v"}`, status: 400, bodyHas: "required"},
		{name: "secret bad name", method: "POST", path: "/system/secrets", body: `{"name":"../passwd","value":"v"}`, status: 400},
		{name: "secret malformed", method: "POST", path: "/system/secrets", body: `{"name":`, status: 400},
		{name: "logs missing name", method: "GET", path: "/system/logs", status: 400, bodyHas: "name is required"},
		{name: "logs unknown function", method: "GET", path: "/system/logs?name=nope", status: 404},
		{name: "method not allowed", method: "PATCH", path: "/system/functions", status: 405, bodyHas: "not allowed"},
		{name: "unknown route", method: "GET", path: "/system/nope", status: 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			if tc.setup != nil {
				tc.setup(e.fb)
			}
			res, body := e.do(t, tc.method, tc.path, tc.body, tc.hdr)
			if res.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d; body %q", res.StatusCode, tc.status, body)
			}
			if tc.json != "" {
				if ct := res.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
				assertJSON(t, body, tc.json)
			}
			if tc.bodyHas != "" && !strings.Contains(body, tc.bodyHas) {
				t.Errorf("body %q does not contain %q", body, tc.bodyHas)
			}
			if tc.status >= 400 && !tc.skipReasonChk {
				assertReason(t, res, body)
			}
			if tc.check != nil {
				tc.check(t, e.fb)
			}
		})
	}
}

func TestOversizeBody(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBodyBytes = 1024 })
	big := `{"service":"env","image":"x","envVars":{"A":"` + strings.Repeat("x", 2048) + `"}}`
	for _, path := range []string{"/system/functions", "/system/secrets", "/system/scale-function/figlet"} {
		t.Run("content-length "+path, func(t *testing.T) {
			res, body := e.do(t, "POST", path, big, nil)
			if res.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("status = %d, body %q", res.StatusCode, body)
			}
			assertReason(t, res, body)
		})
	}
	t.Run("chunked", func(t *testing.T) {
		// No Content-Length: the limit must hold while reading, too.
		req, _ := http.NewRequest("PUT", e.srv.URL+"/system/functions", io.MultiReader(strings.NewReader(big)))
		req.ContentLength = -1
		res, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status = %d, body %q", res.StatusCode, b)
		}
		assertReason(t, res, string(b))
	})
	t.Run("default limit is 1 MiB", func(t *testing.T) {
		e := newEnv(t, nil)
		res, _ := e.do(t, "POST", "/system/functions", `{"service":"env","image":"x","envProcess":"`+strings.Repeat("x", 1<<20)+`"}`, nil)
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status = %d", res.StatusCode)
		}
	})
}

func TestBasicAuth(t *testing.T) {
	creds := &auth.BasicAuthCredentials{User: "admin", Password: "s3cret"}
	e := newEnv(t, func(c *Config) { c.BasicAuth = creds })
	e.fb.upstream = mustURL(t, newEchoUpstream(t).URL)

	basic := func(user, pass string) http.Header {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(user, pass)
		return r.Header
	}
	protected := []struct{ method, path, body string }{
		{"GET", "/system/functions", ""},
		{"POST", "/system/functions", `{"service":"a","image":"b"}`},
		{"PUT", "/system/functions", `{"service":"figlet","image":"b"}`},
		{"DELETE", "/system/functions", `{"functionName":"a"}`}, // deployed by the POST above
		{"GET", "/system/function/figlet", ""},
		{"POST", "/system/scale-function/figlet", `{"replicas":1}`},
		{"GET", "/system/info", ""},
		{"GET", "/system/secrets", ""},
		{"POST", "/system/secrets", `{"name":"x","value":"y"}`},
		{"GET", "/system/logs?name=figlet", ""},
		{"GET", "/system/namespaces", ""},
		{"GET", "/system/namespace/dev", ""},
	}
	for _, p := range protected {
		t.Run(p.method+" "+p.path, func(t *testing.T) {
			for _, h := range []http.Header{nil, basic("admin", "wrong"), basic("other", "s3cret")} {
				res, body := e.do(t, p.method, p.path, p.body, h)
				if res.StatusCode != http.StatusUnauthorized {
					t.Fatalf("without valid creds: status %d", res.StatusCode)
				}
				if res.Header.Get("WWW-Authenticate") == "" || body == "" {
					t.Errorf("401 without WWW-Authenticate or reason")
				}
			}
			res, _ := e.do(t, p.method, p.path, p.body, basic("admin", "s3cret"))
			if res.StatusCode == http.StatusUnauthorized {
				t.Fatalf("with creds: 401")
			}
		})
	}
	for _, path := range []string{"/function/figlet", "/healthz", "/metrics"} {
		res, _ := e.do(t, "GET", path, "", nil)
		if res.StatusCode == http.StatusUnauthorized || res.StatusCode >= 300 {
			t.Errorf("%s is open in faas-provider, got %d", path, res.StatusCode)
		}
	}
	res, _ := e.do(t, "GET", "/system/functions", "", basic("admin", "s3cret"))
	if res.StatusCode != 200 {
		t.Errorf("list with creds: %d", res.StatusCode)
	}
}

func TestExtraRoutes(t *testing.T) {
	creds := &auth.BasicAuthCredentials{User: "u", Password: "p"}
	e := newEnv(t, func(c *Config) {
		c.BasicAuth = creds
		c.Extra = func(r *mux.Router, system func(http.HandlerFunc) http.HandlerFunc) {
			r.HandleFunc("/system/pronghorn/functions/{name}", system(func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, map[string]string{"name": mux.Vars(r)["name"]})
			})).Methods(http.MethodGet)
		}
	})
	res, _ := e.do(t, "GET", "/system/pronghorn/functions/figlet", "", nil)
	if res.StatusCode != 401 {
		t.Fatalf("extra /system route without creds: %d", res.StatusCode)
	}
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth("u", "p")
	res, body := e.do(t, "GET", "/system/pronghorn/functions/figlet", "", req.Header)
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	assertJSON(t, body, `{"name":"figlet"}`)

	// Labelled by template, not by function name.
	if v := counterValue(t, e.reg, "provider_http_requests_total", map[string]string{
		"code": "200", "method": "GET", "path": "/system/pronghorn/functions/{name}"}); v != 1 {
		t.Errorf("provider_http_requests_total for the template = %v", v)
	}
}

func TestNewRouterRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewRouter(Config{}, newFakeBackend(), reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRouter(Config{}, newFakeBackend(), reg); err == nil {
		t.Error("second router on the same registry: want an error, not a silent duplicate")
	}
	if _, err := NewRouter(Config{}, newFakeBackend(), nil); err != nil {
		t.Errorf("nil registry should get a private one: %v", err)
	}
	if _, err := NewRouter(Config{}, nil, nil); err == nil {
		t.Error("nil backend accepted")
	}
}

func TestValidateNames(t *testing.T) {
	for name, ok := range map[string]bool{
		"a": true, "a-b": true, "0abc": true, "abc0": true, strings.Repeat("a", 63): true,
		"": false, "-a": false, "a-": false, "A": false, "a_b": false, "a.b": false, "a b": false,
		strings.Repeat("a", 64): false, "ä": false,
	} {
		if got := isDNS1123Label(name); got != ok {
			t.Errorf("isDNS1123Label(%q) = %v", name, got)
		}
	}
	for name, ok := range map[string]bool{
		"s": true, "a.b": true, "my-secret.v1": true,
		"": false, ".": false, "..": false, "a..b": false, "../x": false, "a/b": false, "A": false,
	} {
		if got := validateSecretName(name) == nil; got != ok {
			t.Errorf("validateSecretName(%q) ok = %v", name, got)
		}
	}
}

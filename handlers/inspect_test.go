package handlers

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// inspectingBackend is a fake backend with an orchestration engine.
type inspectingBackend struct{ *fakeBackend }

func (b inspectingBackend) Inspect(ctx context.Context, namespace, name string) (any, error) {
	if _, err := b.Function(ctx, namespace, name); err != nil {
		return nil, err
	}
	if namespace == "broken" {
		return nil, fmt.Errorf("engine: %w", errdefs.ErrUnavailable)
	}
	return map[string]any{"strategy": "request-centric", "function": name + "." + namespace}, nil
}

func TestInspectRoute(t *testing.T) {
	e := newEnv(t, nil)
	h, err := NewRouter(Config{}, inspectingBackend{e.fb}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/system/pronghorn/functions/figlet", 200, `"strategy":"request-centric"`},
		{"/system/pronghorn/functions/figlet?namespace=openfaas-fn", 200, `"function":"figlet.openfaas-fn"`},
		{"/system/pronghorn/functions/nope", 404, "nope"},
		{"/system/pronghorn/functions/Bad_Name", 400, "name"},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.body) {
			t.Errorf("%s = %d %q, want %d containing %q", tc.path, resp.StatusCode, body, tc.code, tc.body)
		}
	}

	// A backend without an engine has no such route.
	resp, body := e.do(t, http.MethodGet, "/system/pronghorn/functions/figlet", "", nil)
	if resp.StatusCode != http.StatusNotFound || strings.Contains(body, "strategy") {
		t.Errorf("route on a backend without Inspect: %d %q", resp.StatusCode, body)
	}
}

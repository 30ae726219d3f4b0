package cmd

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pronghorn-openfaas/pronghorn/handlers"
)

func TestFetchState(t *testing.T) {
	// The provider: state for counter, its own 404 for anything else.
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case handlers.InspectPath + "counter":
			if r.URL.Query().Get("namespace") != "dev" {
				t.Errorf("namespace = %q", r.URL.Query().Get("namespace"))
			}
			_, _ = w.Write([]byte(`{"strategy":"request-centric"}`))
		default:
			http.Error(w, "function nope.dev: not found", http.StatusNotFound)
		}
	}))
	defer provider.Close()
	// The OpenFaaS gateway: no /system/pronghorn/* route at all.
	gateway := httptest.NewServer(http.NotFoundHandler())
	defer gateway.Close()

	ctx := context.Background()
	body, err := fetchState(ctx, provider.Client(), provider.URL+"/", "counter", "dev", "", "")
	if err != nil || !strings.Contains(string(body), "request-centric") {
		t.Fatalf("from the provider: %q, %v", body, err)
	}

	_, err = fetchState(ctx, provider.Client(), provider.URL, "nope", "dev", "", "")
	if err == nil || !strings.Contains(err.Error(), "function nope.dev: not found") {
		t.Fatalf("unknown function: %v", err)
	}
	if strings.Contains(err.Error(), "gateway") {
		t.Errorf("the provider's own 404 blamed on the gateway: %v", err)
	}

	_, err = fetchState(ctx, gateway.Client(), gateway.URL, "counter", "", "", "")
	const want = "the OpenFaaS gateway does not forward /system/pronghorn/*; point --gateway at the provider itself, " +
		"e.g. http://127.0.0.1:8081, or kubectl port-forward to it"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("through the gateway: %v", err)
	}
	if strings.ContainsAny(err.Error(), "\r\n") {
		t.Errorf("error is not one line: %q", err)
	}
}

func TestInspectHelpMentionsGateway(t *testing.T) {
	cmd := newInspectCommand()
	if !strings.Contains(cmd.Long, "does not forward /system/pronghorn/*") {
		t.Errorf("help text lacks the gateway note: %q", cmd.Long)
	}
	if f := cmd.Flags().Lookup("gateway"); f == nil || !strings.Contains(f.Usage, "not the OpenFaaS gateway") {
		t.Errorf("--gateway usage lacks the gateway note")
	}
}

package eval

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/auth"
)

// The driver sends its credentials on the API calls a provider guards, and
// none on the measured invocations, which must time the function alone.
func TestClientBasicAuth(t *testing.T) {
	creds := &auth.BasicAuthCredentials{User: "admin", Password: "pw"}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /system/functions", auth.DecorateWithBasicAuth(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}, creds))
	mux.HandleFunc("/function/f", func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := r.BasicAuth(); ok {
			t.Error("credentials sent on an invocation")
		}
		_, _ = w.Write([]byte(`{"server_us": 1}`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()

	c := newClient(srv.URL, "admin", "pw", 5*time.Second)
	if err := c.deploy(ctx, "f", "bfs", nil); err != nil {
		t.Errorf("deploy with credentials: %v", err)
	}
	if _, err := c.invoke(ctx, "f", 1, 0); err != nil {
		t.Errorf("invoke: %v", err)
	}
	err := newClient(srv.URL, "admin", "", 5*time.Second).deploy(ctx, "f", "bfs", nil)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("deploy without credentials: %v, want a 401", err)
	}

	o, err := Options{Gateway: srv.URL, Password: "pw"}.withDefaults()
	if err != nil || o.User != "admin" {
		t.Errorf("default user %q, %v", o.User, err)
	}
}

package eval

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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

// A run's final counts wait for the checkpoints still in progress, and
// no longer than the limit.
func TestCheckpointsDone(t *testing.T) {
	var scrapes, busyFor atomic.Int32
	busyFor.Store(3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := scrapes.Add(1)
		busy := 0
		if n <= busyFor.Load() {
			busy = 1
		}
		fmt.Fprintf(w, "pronghorn_checkpoints_in_progress{function_name=\"f\"} %d\npronghorn_checkpoints_total{function_name=\"f\"} %d\n", busy, n)
	}))
	defer srv.Close()
	c := newClient(srv.URL, "admin", "pw", 5*time.Second)

	sc, err := c.checkpointsDone(t.Context(), "f", time.Minute)
	if err != nil || sc[mInProgress] != 0 || sc[mCheckpoints] != 4 {
		t.Errorf("got %v, %v; want the fourth scrape, the first with none in progress", sc, err)
	}

	scrapes.Store(0)
	busyFor.Store(1 << 30)
	start := time.Now()
	sc, err = c.checkpointsDone(t.Context(), "f", 200*time.Millisecond)
	if err != nil || sc[mInProgress] != 1 || time.Since(start) > 10*time.Second {
		t.Errorf("a checkpoint that never ends: %v, %v after %s; want the last scrape at the limit", sc, err, time.Since(start))
	}
}

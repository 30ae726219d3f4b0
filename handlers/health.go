package handlers

import "net/http"

// MakeHealthHandler serves GET /healthz. It answers from the process alone:
// readiness of individual functions is reported per function, and a slow
// backend must not make orchestrators restart the whole provider.
func MakeHealthHandler() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("OK"))
	}
}

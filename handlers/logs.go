package handlers

import (
	"fmt"
	"net/http"
	"time"

	"github.com/openfaas/faas-provider/logs"
)

// DefaultLogTimeout bounds a log request (follow=true included) when the
// router has no WriteTimeout to go by.
const DefaultLogTimeout = time.Minute

// LogSource queries function logs and can tell whether a function exists.
type LogSource interface {
	logs.Requester
	StatusReader
}

// MakeLogsHandler serves GET /system/logs with faas-provider's own streaming
// handler (ndjson of logs.Message; follow, tail, since, instance), after
// checking what it does not: that a name is given and the function exists,
// so a typo is a 400/404 instead of an empty 200 stream. The resolved default
// namespace is written back into the query so the Requester always sees one.
func MakeLogsHandler(src LogSource, defaults RequestDefaults, timeout time.Duration) http.HandlerFunc {
	if timeout <= 0 {
		timeout = DefaultLogTimeout
	}
	stream := logs.NewLogHandlerFunc(src, timeout)
	return func(w http.ResponseWriter, r *http.Request) {
		name := lastQueryValue(r, "name")
		if name == "" {
			httpError(w, http.StatusBadRequest, "name is required: ?name=<function>")
			return
		}
		if err := validateFunctionName(name); err != nil {
			httpError(w, http.StatusBadRequest, "%v", err)
			return
		}
		ns, ok := resolveNamespace(w, r, defaults, "")
		if !ok {
			return
		}
		if _, err := src.Function(r.Context(), ns, name); err != nil {
			backendError(w, r, fmt.Sprintf("logs of %s.%s", name, ns), err)
			return
		}

		if lastQueryValue(r, "namespace") != ns {
			// Shallow copies: handlers must not mutate the caller's request.
			q := r.URL.Query()
			q.Set("namespace", ns)
			u := *r.URL
			u.RawQuery = q.Encode()
			r = r.WithContext(r.Context())
			r.URL = &u
		}
		stream(w, r)
	}
}

package handlers

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gorilla/mux"
)

// InspectPath is where a function's snapshot orchestration state is served.
const InspectPath = "/system/pronghorn/functions/"

// Inspector reports a function's snapshot orchestration state (strategy,
// pool, weights, counters) as a JSON-encodable value. Backends with an
// orchestration engine implement it; the route exists only for them.
type Inspector interface {
	Inspect(ctx context.Context, namespace, name string) (any, error)
}

// MakeInspectHandler serves GET /system/pronghorn/functions/{name}?namespace=.
func MakeInspectHandler(i Inspector, defaults RequestDefaults) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := mux.Vars(r)["name"]
		if err := validateFunctionName(name); err != nil {
			httpError(w, http.StatusBadRequest, "%v", err)
			return
		}
		ns, ok := resolveNamespace(w, r, defaults, "")
		if !ok {
			return
		}
		state, err := i.Inspect(r.Context(), ns, name)
		if err != nil {
			backendError(w, r, fmt.Sprintf("function %s.%s", name, ns), err)
			return
		}
		writeJSON(w, state)
	}
}

package handlers

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gorilla/mux"
	"github.com/openfaas/faas-provider/types"
)

// StatusReader reads one function's status; errdefs.ErrNotFound when absent.
type StatusReader interface {
	Function(ctx context.Context, namespace, name string) (types.FunctionStatus, error)
}

// MakeStatusHandler serves GET /system/function/{name}?namespace= with one
// types.FunctionStatus as JSON, or 404.
func MakeStatusHandler(s StatusReader, defaults RequestDefaults) http.HandlerFunc {
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
		fn, err := s.Function(r.Context(), ns, name)
		if err != nil {
			backendError(w, r, fmt.Sprintf("function %s.%s", name, ns), err)
			return
		}
		if fn.Namespace == "" {
			fn.Namespace = ns
		}
		writeJSON(w, fn)
	}
}

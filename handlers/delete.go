package handlers

import (
	"context"
	"fmt"
	"net/http"

	"github.com/openfaas/faas-provider/types"
)

// Deleter removes a function and its replicas; errdefs.ErrNotFound when absent.
type Deleter interface {
	Delete(ctx context.Context, namespace, name string) error
}

// MakeDeleteHandler serves DELETE /system/functions with a
// types.DeleteFunctionRequest body, answering 202 Accepted like faas-netes.
func MakeDeleteHandler(d Deleter, defaults RequestDefaults) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req types.DeleteFunctionRequest
		if !readJSON(w, r, defaults.maxBody(), &req) {
			return
		}
		if err := validateFunctionName(req.FunctionName); err != nil {
			httpError(w, http.StatusBadRequest, "%v", err)
			return
		}
		ns, ok := resolveNamespace(w, r, defaults, req.Namespace)
		if !ok {
			return
		}
		if err := d.Delete(r.Context(), ns, req.FunctionName); err != nil {
			backendError(w, r, fmt.Sprintf("delete %s.%s", req.FunctionName, ns), err)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}
}

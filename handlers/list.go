package handlers

import (
	"context"
	"fmt"
	"net/http"

	"github.com/openfaas/faas-provider/types"
)

// Lister lists the functions of one namespace.
type Lister interface {
	Functions(ctx context.Context, namespace string) ([]types.FunctionStatus, error)
}

// MakeListHandler serves GET /system/functions?namespace= with a JSON array
// of types.FunctionStatus; an empty namespace is [] (not null), which is what
// faas-cli and the gateway's UI expect.
func MakeListHandler(l Lister, defaults RequestDefaults) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ns, ok := resolveNamespace(w, r, defaults, "")
		if !ok {
			return
		}
		fns, err := l.Functions(r.Context(), ns)
		if err != nil {
			backendError(w, r, fmt.Sprintf("list functions in %s", ns), err)
			return
		}
		if fns == nil {
			fns = []types.FunctionStatus{}
		}
		for i := range fns {
			if fns[i].Namespace == "" {
				fns[i].Namespace = ns
			}
		}
		writeJSON(w, fns)
	}
}

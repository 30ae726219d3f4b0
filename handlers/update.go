package handlers

import (
	"context"
	"fmt"
	"net/http"

	"github.com/openfaas/faas-provider/types"
)

// Updater replaces a function's spec; it fails with errdefs.ErrNotFound when
// there is no such function.
type Updater interface {
	Update(ctx context.Context, req types.FunctionDeployment) error
}

// MakeUpdateHandler serves PUT /system/functions with the same validation as
// deploy and faas-netes' 202 Accepted.
func MakeUpdateHandler(u Updater, defaults RequestDefaults) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, ok := readDeployment(w, r, defaults)
		if !ok {
			return
		}
		if err := u.Update(r.Context(), req); err != nil {
			backendError(w, r, fmt.Sprintf("update %s.%s", req.Service, req.Namespace), err)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}
}

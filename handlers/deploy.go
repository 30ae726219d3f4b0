package handlers

import (
	"context"
	"fmt"
	"net/http"

	"github.com/openfaas/faas-provider/types"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/funcspec"
)

// Deployer creates a function; it fails with errdefs.ErrAlreadyExists when
// the name is taken.
type Deployer interface {
	Deploy(ctx context.Context, req types.FunctionDeployment) error
}

// MakeDeployHandler serves POST /system/functions. Like faas-netes it answers
// 202 Accepted: the function is stored, its replicas come up asynchronously.
func MakeDeployHandler(d Deployer, defaults RequestDefaults) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, ok := readDeployment(w, r, defaults)
		if !ok {
			return
		}
		if err := d.Deploy(r.Context(), req); err != nil {
			backendError(w, r, fmt.Sprintf("deploy %s.%s", req.Service, req.Namespace), err)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}
}

// readDeployment decodes and validates a deploy or update body with
// faas-netes' rules (service required and a DNS-1123 label, image required)
// and funcspec's bounds, and fills in the resolved namespace, so backends see
// a complete request. Everything is checked before the backend stores
// anything: a value stored unchecked is read back on every restart.
func readDeployment(w http.ResponseWriter, r *http.Request, defaults RequestDefaults) (types.FunctionDeployment, bool) {
	var req types.FunctionDeployment
	if !readJSON(w, r, defaults.maxBody(), &req) {
		return req, false
	}
	if err := validateDeployment(req); err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return req, false
	}
	if err := funcspec.Validate(req, defaults.maxReplicas()); err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return req, false
	}
	ns, ok := resolveNamespace(w, r, defaults, req.Namespace)
	if !ok {
		return req, false
	}
	req.Namespace = ns
	return req, true
}

func validateDeployment(req types.FunctionDeployment) error {
	if req.Service == "" {
		return fmt.Errorf("%w: service is required", errdefs.ErrInvalid)
	}
	if err := validateFunctionName(req.Service); err != nil {
		return err
	}
	if req.Image == "" {
		return fmt.Errorf("%w: image is required", errdefs.ErrInvalid)
	}
	for _, s := range req.Secrets {
		if err := validateSecretName(s); err != nil {
			return err
		}
	}
	return nil
}

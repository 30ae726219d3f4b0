package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
)

// Scaler sets a function's desired replica count; errdefs.ErrNotFound when
// the function is absent.
type Scaler interface {
	Scale(ctx context.Context, namespace, name string, replicas uint64) error
}

// scaleBody mirrors types.ScaleServiceRequest but reads replicas as a
// json.Number: decoding -1 straight into a uint64 fails with Go's generic
// "cannot unmarshal number -1 into ... uint64", and we want to say exactly
// what is wrong.
type scaleBody struct {
	ServiceName string      `json:"serviceName"`
	Replicas    json.Number `json:"replicas"`
	Namespace   string      `json:"namespace,omitempty"`
}

// MakeScaleHandler serves POST /system/scale-function/{name}. The path names
// the function (as in faas-netes); a body serviceName, when present, must
// agree. Replicas above the provider's maximum get a 400. Answers 202
// Accepted: replicas converge asynchronously.
func MakeScaleHandler(s Scaler, defaults RequestDefaults) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := mux.Vars(r)["name"]
		if err := validateFunctionName(name); err != nil {
			httpError(w, http.StatusBadRequest, "%v", err)
			return
		}
		var body scaleBody
		if !readJSON(w, r, defaults.maxBody(), &body) {
			return
		}
		if body.ServiceName != "" && body.ServiceName != name {
			httpError(w, http.StatusBadRequest, "serviceName %q in the body differs from %q in the path", body.ServiceName, name)
			return
		}
		replicas, err := parseReplicas(body.Replicas)
		if err != nil {
			httpError(w, http.StatusBadRequest, "%v", err)
			return
		}
		// The function's own com.openfaas.scale.max is the backend's to
		// check: only it knows the labels.
		if limit := defaults.maxReplicas(); replicas > limit {
			httpError(w, http.StatusBadRequest, "replicas %d is more than %d, the provider's maximum", replicas, limit)
			return
		}
		ns, ok := resolveNamespace(w, r, defaults, body.Namespace)
		if !ok {
			return
		}
		if err := s.Scale(r.Context(), ns, name, replicas); err != nil {
			backendError(w, r, fmt.Sprintf("scale %s.%s", name, ns), err)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}
}

// parseReplicas requires the field: types.ScaleServiceRequest always
// marshals it, so a body without it is a hand-written mistake, and reading it
// as 0 would silently scale the function to zero.
func parseReplicas(n json.Number) (uint64, error) {
	s := n.String()
	switch {
	case s == "":
		return 0, fmt.Errorf("replicas is required")
	case strings.HasPrefix(s, "-"):
		return 0, fmt.Errorf("replicas must be >= 0, got %s", s)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("replicas must be a whole number >= 0, got %s", s)
	}
	return v, nil
}

package handlers

import (
	"context"
	"fmt"
	"net/http"

	"github.com/openfaas/faas-provider/types"
)

// SecretStore manages secrets. Secrets lists names only; values never leave
// the backend. Create fails with errdefs.ErrAlreadyExists, Update and Delete
// with errdefs.ErrNotFound.
type SecretStore interface {
	Secrets(ctx context.Context, namespace string) ([]types.Secret, error)
	CreateSecret(ctx context.Context, secret types.Secret) error
	UpdateSecret(ctx context.Context, secret types.Secret) error
	DeleteSecret(ctx context.Context, namespace, name string) error
}

// MakeSecretsHandler serves GET/POST/PUT/DELETE /system/secrets on one route
// like faas-provider does: GET lists (namespace from the query), the others
// take a types.Secret body (namespace from the body or the query). Mutations
// answer 202 Accepted as faas-netes does.
func MakeSecretsHandler(s SecretStore, defaults RequestDefaults) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			listSecrets(w, r, s, defaults)
			return
		}

		var secret types.Secret
		if !readJSON(w, r, defaults.maxBody(), &secret) {
			return
		}
		if err := validateSecretName(secret.Name); err != nil {
			httpError(w, http.StatusBadRequest, "%v", err)
			return
		}
		ns, ok := resolveNamespace(w, r, defaults, secret.Namespace)
		if !ok {
			return
		}
		secret.Namespace = ns

		var err error
		switch r.Method {
		case http.MethodPost:
			err = s.CreateSecret(r.Context(), secret)
		case http.MethodPut:
			err = s.UpdateSecret(r.Context(), secret)
		case http.MethodDelete:
			err = s.DeleteSecret(r.Context(), ns, secret.Name)
		default:
			// The router only sends the four methods; this guards direct use.
			httpError(w, http.StatusMethodNotAllowed, "method %s not allowed on /system/secrets", r.Method)
			return
		}
		if err != nil {
			backendError(w, r, fmt.Sprintf("%s secret %s.%s", r.Method, secret.Name, ns), err)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}
}

func listSecrets(w http.ResponseWriter, r *http.Request, s SecretStore, defaults RequestDefaults) {
	ns, ok := resolveNamespace(w, r, defaults, "")
	if !ok {
		return
	}
	list, err := s.Secrets(r.Context(), ns)
	if err != nil {
		backendError(w, r, fmt.Sprintf("list secrets in %s", ns), err)
		return
	}
	// Only names leave the provider, whatever the backend filled in.
	out := make([]types.Secret, 0, len(list))
	for _, sec := range list {
		if sec.Namespace == "" {
			sec.Namespace = ns
		}
		out = append(out, types.Secret{Name: sec.Name, Namespace: sec.Namespace})
	}
	writeJSON(w, out)
}

package handlers

import (
	"context"
	"net/http"
)

// NamespaceLister lists the namespaces functions may live in.
type NamespaceLister interface {
	Namespaces(ctx context.Context) ([]string, error)
}

// MakeNamespacesHandler serves GET /system/namespaces as a JSON array of
// names, [] rather than null when there are none.
func MakeNamespacesHandler(n NamespaceLister) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		nss, err := n.Namespaces(r.Context())
		if err != nil {
			backendError(w, r, "list namespaces", err)
			return
		}
		if nss == nil {
			nss = []string{}
		}
		writeJSON(w, nss)
	}
}

// namespaceMutationNotImplemented mirrors faas-provider, which registers
// /system/namespace/{name} with a 501 when the provider cannot create
// namespaces, so clients get a clear answer rather than a 404.
func namespaceMutationNotImplemented(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "Feature not implemented in this version of OpenFaaS", http.StatusNotImplemented)
}

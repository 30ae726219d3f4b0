package handlers

import (
	"net/http"

	"github.com/openfaas/faas-provider/types"
)

// MakeInfoHandler serves GET /system/info. The answer never changes, so it
// is built once.
func MakeInfoHandler(providerName, orchestration, release, sha string) http.HandlerFunc {
	info := types.ProviderInfo{
		Name:          providerName,
		Orchestration: orchestration,
		Version:       &types.VersionInfo{Release: release, SHA: sha},
	}
	return func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, info)
	}
}

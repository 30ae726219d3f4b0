#!/usr/bin/env bash
# install-helm.sh [BINDIR] — builds helm (helm.sh/helm/v3, pinned) from the Go
# module proxy into BINDIR (default /opt/pronghorn/bin), for the cluster tests
# that render and install charts (e2e/cluster_*_test.go, scripts/test.sh).
# There is no other way to get helm here: no download site is reachable. The
# build takes a few minutes on two cores, so the binary is cached and rebuilt
# only when HELM_VERSION changes (BINDIR/helm.version records it).
set -euo pipefail

BINDIR="${1:-/opt/pronghorn/bin}"
HELM_VERSION="v3.22.0"

if [[ -x "$BINDIR/helm" && "$(cat "$BINDIR/helm.version" 2>/dev/null)" == "$HELM_VERSION" ]]; then
	echo "helm: cached at $BINDIR/helm ($HELM_VERSION)"
	exit 0
fi

command -v go >/dev/null || { echo "helm: go not found in PATH" >&2; exit 1; }
mkdir -p "$BINDIR"
# Built into a temporary GOBIN and moved into place, so an interrupted build
# never leaves a binary that the check above would trust.
tmp="$(mktemp -d "$BINDIR/.helm-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "helm: building helm.sh/helm/v3/cmd/helm@$HELM_VERSION (a few minutes the first time)"
t0=$(date +%s)
# The version stamp `helm version` prints, as helm's own release builds set it.
CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath \
	-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
	"helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
mv -f "$tmp/helm" "$BINDIR/helm"
echo "$HELM_VERSION" >"$BINDIR/helm.version"
echo "helm: installed $BINDIR/helm in $(($(date +%s) - t0))s"

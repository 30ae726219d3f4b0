#!/usr/bin/env bash
# install-minio.sh [BINDIR] — builds a real MinIO server from the Go module proxy
# for the snapshot store tests (DESIGN §5). The build takes ~2 minutes, so the
# binary is cached: if BINDIR/minio already exists nothing is done.
set -euo pipefail

BINDIR="${1:-/opt/pronghorn/bin}"
# Pinned: the module proxy serves this pseudo-version; listing versions is refused.
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"

if [[ -x "$BINDIR/minio" ]]; then
	echo "minio: cached at $BINDIR/minio"
	exit 0
fi

command -v go >/dev/null || { echo "minio: go not found in PATH" >&2; exit 1; }
mkdir -p "$BINDIR"
# Build into a temporary GOBIN and move into place, so an interrupted build never
# leaves a half-written binary that the cache check above would trust.
tmp="$(mktemp -d "$BINDIR/.minio-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "minio: building github.com/minio/minio@$MINIO_VERSION (takes a few minutes)"
GOBIN="$tmp" go install "github.com/minio/minio@$MINIO_VERSION"
mv -f "$tmp/minio" "$BINDIR/minio"
echo "minio: installed $BINDIR/minio"

#!/usr/bin/env bash
# test.sh — the project's test command (README, CI): installs what the tests
# need (scripts/setup.sh, cached), then vets and runs every test, including
# the root-only namespace, CRIU, MinIO and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
export PRONGHORN_CRIU="${PRONGHORN_CRIU:-/opt/pronghorn/criu/bin/criu}"
export PRONGHORN_MINIO="${PRONGHORN_MINIO:-/opt/pronghorn/bin/minio}"

unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [[ -n "$unformatted" ]]; then
	echo "gofmt needed:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 20m ./...

#!/usr/bin/env bash
# test.sh — the project's test command (README, CI): installs what the tests
# need (scripts/setup.sh, cached), then vets and runs every test, including
# the root-only namespace, CRIU, MinIO and end-to-end tests, and last the
# Kubernetes tests on a real one-node cluster (make cluster).
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

# The Kubernetes tests run on a real one-node cluster brought up here
# (make cluster: cached binaries, ~15 s), after the rest so its processes do
# not compete with them, and torn down afterwards, leaving no trace: the
# snapshot flow in pods, the upstream openfaas chart with our image, a
# server-side dry run of every manifest, RBAC with the chart's
# ServiceAccount, the API server crashing under the provider, and the
# function templates.
# PRONGHORN_CLUSTER_TESTS=0 skips them.
if [[ "${PRONGHORN_CLUSTER_TESTS:-1}" != 0 ]]; then
	cluster_log="$(mktemp)"
	trap 'make -s cluster-down >/dev/null 2>&1 || true; rm -f "$cluster_log"' EXIT
	if make -s cluster >"$cluster_log" 2>&1; then
		cluster/images/build.sh
		# helm (built once from the Go module proxy, cached) renders and
		# installs the charts; cluster/openfaas.sh prepares the pinned
		# upstream openfaas chart and gateway image, or says why it cannot
		# (the tests that need them then skip, saying so).
		scripts/install-helm.sh
		cluster/openfaas.sh
		go test -race -count=1 -timeout 20m -v -run '^TestCluster' ./e2e/ 2>&1 | grep -v '^=== '
		exit "${PIPESTATUS[0]}"
	fi
	# The cluster is infrastructure of this machine: say so loudly, but a
	# machine that cannot run it still tests everything else.
	echo "test: the Kubernetes cluster did not come up; the cluster tests did not run:" >&2
	tail -20 "$cluster_log" >&2
	# The exit trap's teardown deletes the components' logs, and a component
	# that died at start is otherwise undiagnosable afterwards.
	(
		source cluster/env.sh
		for component_log in "$LOGS"/*.log; do
			[[ -f "$component_log" ]] || continue
			echo "--- last lines of $component_log:" >&2
			tail -15 "$component_log" >&2
		done
	)
fi

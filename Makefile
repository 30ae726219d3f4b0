GO       ?= go
BIN      ?= bin/pronghorn
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all build setup test test-unit vet fmt demo bench clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

# Installs pypy3, CRIU (private prefix), MinIO and compiles the JVM sample.
setup:
	scripts/setup.sh

# The full test suite, as CI runs it (installs what it needs first; run as root).
test:
	scripts/test.sh

# Unit tests only: no installs; root/CRIU/MinIO tests skip with a reason.
test-unit:
	$(GO) test ./...

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Set up, start the provider on :8080 and deploy the sample function.
demo: build
	scripts/demo.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin

# The evaluation of issue 9 (as root, on a quiet machine): the full protocol
# (13 benchmarks x cold, fixed(1), request-centric, bandit x E in {20, 4, 1} x
# 500 requests on the artifact's spacing) in resumable chunks under
# docs/evaluation/data/full, then the report in docs/evaluation. About 6-7
# hours on two cores; rerun to resume after an interruption. Overrides in
# scripts/eval.sh (e.g. make eval BENCHMARKS=bfs,simple-hash RATES=4).
.PHONY: eval eval-quick eval-report
eval:
	scripts/eval.sh

# The reduced grid: bfs (PyPy) and simple-hash (JVM), every strategy and
# rate, seeds 1-3, with a progress bar and ETA; under 15 minutes. Data in
# docs/evaluation/data/quick, report in docs/evaluation/quick.
eval-quick:
	QUICK=1 scripts/eval.sh

# Regenerates both reports from the data alone (no provider, no root).
eval-report:
	REPORT_ONLY=1 scripts/eval.sh

# A real one-node Kubernetes cluster on this machine (root): etcd, apiserver,
# controller-manager, scheduler, containerd and kubelet as background
# processes; state and logs in /var/lib/pronghorn-cluster, binaries cached in
# /opt/pronghorn/k8s. Last line: export KUBECONFIG=... See cluster/up.sh.
.PHONY: cluster cluster-down
cluster:
	@cluster/up.sh

# Stops it and removes every trace (keeps the binary cache); safe to rerun.
cluster-down:
	@cluster/down.sh

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

# The paper's evaluation (Figures 4-5, Tables 4-5) into results/<timestamp>;
# hours with the full protocol, see scripts/eval.sh for quick-run overrides
# (e.g. make eval REQUESTS=50 BENCHMARKS=bfs,simple-hash).
.PHONY: eval
eval:
	scripts/eval.sh

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

#!/usr/bin/env bash
# cluster/openfaas.sh — prepares what the upstream-chart tests need
# (e2e/cluster_upstream_test.go, chart/upstream/): the upstream openfaas
# helm chart and an OpenFaaS gateway image, both pinned, in
# $PRONGHORN_UPSTREAM_DIR (default /opt/pronghorn/upstream):
#
#   chart/openfaas/    the chart of faas-netes $FAAS_NETES_TAG, verified
#                      against CHART_SHA256 (a digest of every file)
#   gateway.tar        the gateway of openfaas/faas $FAAS_TAG (the version the
#                      chart names), built from its source with its vendored
#                      modules and packed with mkimage: no registry, no Docker
#   gateway.ref        its image reference
#
# Neither is copied into this repository. Sources, in order:
#   1. what an earlier run left in the cache, if it still verifies;
#   2. the Go module proxy: the module zips of github.com/openfaas/faas-netes
#      and github.com/openfaas/faas/gateway at the pinned commits;
#   3. git repositories of openfaas/faas-netes and openfaas/faas named by
#      FAAS_NETES_SRC and FAAS_SRC (a clone or a bare mirror holding the
#      pinned commits; read with git archive).
# When none has them it says so and exits 0 (the tests then skip, saying
# why): the Go module proxy this project reaches refuses both modules today
# ("403 This module version is not available"), so a machine without a
# cache needs source 3 once. Idempotent; the build takes ~30 s.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UP="${PRONGHORN_UPSTREAM_DIR:-/opt/pronghorn/upstream}"

# faas-netes 0.18.17 ships chart openfaas 15.0.5, which names gateway 0.27.13.
FAAS_NETES_TAG=0.18.17
FAAS_NETES_COMMIT=e000629a3b94e27aacb34ce54698997e9e60de9b
FAAS_NETES_MODULE="github.com/openfaas/faas-netes@v0.0.0-20260513143546-e000629a3b94"
CHART_VERSION=15.0.5
CHART_SHA256=1d7799949b619fc0deff0fafacd8f3a250d2b0bce4a35de3827695ceff0a8a62
FAAS_TAG=0.27.13
FAAS_COMMIT=7926181684e5fed8b915d035fe652232d708463d
GATEWAY_MODULE="github.com/openfaas/faas/gateway@v0.0.0-20250829142319-7926181684e5"
GATEWAY_REPO=pronghorn.local/openfaas-gateway

log() { echo "openfaas: $*"; }
die() { echo "openfaas: ERROR: $*" >&2; exit 1; }

# tree_sha256 DIR: one digest of every file's path, mode and content.
tree_sha256() {
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z |
    xargs -0 -r sh -c 'for f; do printf "%s %s %s\n" "$f" "$(stat -c %a "$f")" "$(sha256sum <"$f" | cut -d" " -f1)"; done' _ |
    sha256sum | cut -d' ' -f1)
}

# module_dir MODULE@VERSION: the unpacked module from the Go module proxy, or
# nothing (and a note) if the proxy will not serve it.
module_dir() {
  local out dir
  if ! out="$(cd "$UP/.work" && go mod download -json "$1" 2>&1)"; then
    log "the Go module proxy does not serve $1: $(grep -o '"Error": "[^"]*' <<<"$out" | cut -c11- | head -c 200)" >&2
    return 0
  fi
  dir="$(sed -n 's/^\t"Dir": "\(.*\)",$/\1/p' <<<"$out")"
  [[ -d $dir ]] && echo "$dir"
}

# from_git REPO_DIR COMMIT PATH DEST: PATH of COMMIT in the git repository
# REPO_DIR, unpacked to DEST (PATH's own directory level included).
from_git() {
  local repo=$1 commit=$2 path=$3 dest=$4
  git -C "$repo" cat-file -e "$commit^{commit}" 2>/dev/null || { log "$repo lacks commit $commit"; return 1; }
  mkdir -p "$dest"
  git -C "$repo" archive --format=tar "$commit" "$path" | tar -x -C "$dest"
}

mkdir -p "$UP/.work"
[[ -f $UP/.work/go.mod ]] || printf 'module openfaas-fetch\n\ngo 1.24\n' >"$UP/.work/go.mod"

# --- the chart --------------------------------------------------------------
chart_ok() { [[ -f $UP/chart/openfaas/Chart.yaml && "$(tree_sha256 "$UP/chart/openfaas")" == "$CHART_SHA256" ]]; }
if chart_ok; then
  log "chart openfaas $CHART_VERSION cached in $UP/chart/openfaas"
else
  rm -rf "$UP/.chart.tmp" "$UP/chart"
  src=""
  if dir="$(module_dir "$FAAS_NETES_MODULE")" && [[ -n $dir && -d $dir/chart/openfaas ]]; then
    mkdir -p "$UP/.chart.tmp/chart" && cp -r "$dir/chart/openfaas" "$UP/.chart.tmp/chart/" && chmod -R u+w "$UP/.chart.tmp"
    src="$FAAS_NETES_MODULE"
  elif [[ -n ${FAAS_NETES_SRC:-} ]] && from_git "$FAAS_NETES_SRC" "$FAAS_NETES_COMMIT" chart/openfaas "$UP/.chart.tmp"; then
    src="$FAAS_NETES_SRC at $FAAS_NETES_TAG"
  fi
  if [[ -z $src ]]; then
    rm -rf "$UP/.chart.tmp"
    log "UNAVAILABLE: the openfaas chart of faas-netes $FAAS_NETES_TAG (set FAAS_NETES_SRC to a git repository of openfaas/faas-netes); the upstream-chart tests will skip"
    exit 0
  fi
  got="$(tree_sha256 "$UP/.chart.tmp/chart/openfaas")"
  [[ $got == "$CHART_SHA256" ]] || die "the chart from $src has digest $got, not the pinned $CHART_SHA256"
  mv "$UP/.chart.tmp/chart" "$UP/chart"
  rm -rf "$UP/.chart.tmp"
  log "chart openfaas $CHART_VERSION from $src into $UP/chart/openfaas"
fi

# --- the gateway image -------------------------------------------------------
if [[ -f $UP/gateway.tar && -f $UP/gateway.ref && "$(cat "$UP/gateway.commit" 2>/dev/null)" == "$FAAS_COMMIT" ]]; then
  log "gateway $FAAS_TAG cached: $(cat "$UP/gateway.ref")"
  exit 0
fi
rm -rf "$UP/.gateway.tmp"
src=""
if dir="$(module_dir "$GATEWAY_MODULE")" && [[ -n $dir && -f $dir/main.go ]]; then
  mkdir -p "$UP/.gateway.tmp" && cp -r "$dir" "$UP/.gateway.tmp/gateway" && chmod -R u+w "$UP/.gateway.tmp"
  src="$GATEWAY_MODULE"
elif [[ -n ${FAAS_SRC:-} ]] && from_git "$FAAS_SRC" "$FAAS_COMMIT" gateway "$UP/.gateway.tmp"; then
  src="$FAAS_SRC at $FAAS_TAG"
fi
if [[ -z $src ]]; then
  rm -rf "$UP/.gateway.tmp"
  log "UNAVAILABLE: the OpenFaaS gateway $FAAS_TAG (set FAAS_SRC to a git repository of openfaas/faas); the upstream-chart tests will run without a gateway"
  exit 0
fi
t0=$(date +%s)
# Its own vendored modules: nothing more is downloaded. The version stamps
# are the ones its release build sets.
(cd "$UP/.gateway.tmp/gateway" && CGO_ENABLED=0 GOFLAGS=-mod=vendor go build -trimpath -buildvcs=false \
  -ldflags "-s -w -X github.com/openfaas/faas/gateway/version.Version=$FAAS_TAG -X github.com/openfaas/faas/gateway/version.GitCommitSHA=$FAAS_COMMIT -X github.com/openfaas/faas/gateway/types.Arch=amd64" \
  -o "$UP/.gateway.tmp/gateway-bin" .)
# As its Dockerfile lays it out: /home/app/gateway and the UI's assets, run
# from /home/app (the chart's command is ./gateway).
printf '%s\n' "dir /tmp 1777" "copy /home/app/gateway $UP/.gateway.tmp/gateway-bin" "copy /home/app/assets $UP/.gateway.tmp/gateway/assets" >"$UP/.gateway.tmp/layer.list"
(cd "$ROOT/cluster" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -o "$UP/.gateway.tmp/mkimage" ./cmd/mkimage)
"$UP/.gateway.tmp/mkimage" -o "$UP/gateway.tar" -name "$GATEWAY_REPO" -tag "$FAAS_TAG" -ref-file "$UP/gateway.ref" \
  -layer "$UP/.gateway.tmp/layer.list" -workdir /home/app -entrypoint '["./gateway"]'
echo "$FAAS_COMMIT" >"$UP/gateway.commit"
rm -rf "$UP/.gateway.tmp"
log "gateway $FAAS_TAG from $src: $(cat "$UP/gateway.ref") in $(($(date +%s) - t0))s"

#!/usr/bin/env bash
# eval.sh — the paper's whole evaluation (DESIGN.md §6) in one command, as
# root: installs what it needs (scripts/setup.sh: pypy3, CRIU, compiles the
# JVM benchmarks), builds bin/pronghorn, then runs
#   bin/pronghorn bench eval --start-provider --out results/<timestamp>
# which starts its own provider on a free port with a temporary data dir
# (basic auth on, with credentials the driver writes there first) and writes latency.csv, summary/table4/table5 (.csv, .md), runs.csv, one
# latency CDF per (benchmark, rate) under figures/ and index.html.
#
# Full protocol: 13 benchmarks x {cold, fixed(1), request-centric C=12} x
# E in {20, 4, 1} x 500 sequential requests, 200 ms apart (PyPy) / 100 ms
# (JVM). Expected duration on a 2-core machine: about 4-6 hours (~3 h of
# pauses alone, plus the requests, worker starts and restores — at E=1
# every request lands on a new worker). Interrupting keeps every measured
# row in latency.csv; tables and figures are written for the runs that
# completed.
#
# Environment overrides (e.g. a quick run:
#   REQUESTS=50 BENCHMARKS=bfs,simple-hash RATES=4 scripts/eval.sh):
#   BENCHMARKS   comma-separated function names (default: all 13)
#   STRATEGIES   default cold,fixed,request-centric (bandit also available)
#   RATES        default 20,4,1
#   REQUESTS     default 500
#   INTERVAL_PYPY, INTERVAL_JVM   Go durations, default 200ms / 100ms
#   MUTABILITY   default 0;  SEED default 1;  POOL_CAPACITY default 12
#   OUT          output dir (default results/<timestamp>)
#   SKIP_SETUP=1 skip scripts/setup.sh;  EVAL_ARGS  extra flags for bench eval
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
	echo "eval: run as root (workers run in their own namespaces; CRIU needs root)" >&2
	exit 1
fi

if [[ -z ${SKIP_SETUP:-} ]]; then
	scripts/setup.sh
fi
make build

out=${OUT:-results/$(date -u +%Y%m%dT%H%M%SZ)}
args=(bench eval --start-provider --functions-dir benchmarks/functions --out "$out")
[[ -n ${BENCHMARKS:-} ]] && args+=(--benchmarks "$BENCHMARKS")
[[ -n ${STRATEGIES:-} ]] && args+=(--strategies "$STRATEGIES")
[[ -n ${RATES:-} ]] && args+=(--rates "$RATES")
[[ -n ${REQUESTS:-} ]] && args+=(--requests "$REQUESTS")
[[ -n ${INTERVAL_PYPY:-} ]] && args+=(--interval-pypy "$INTERVAL_PYPY")
[[ -n ${INTERVAL_JVM:-} ]] && args+=(--interval-jvm "$INTERVAL_JVM")
[[ -n ${MUTABILITY:-} ]] && args+=(--mutability "$MUTABILITY")
[[ -n ${SEED:-} ]] && args+=(--seed "$SEED")
[[ -n ${POOL_CAPACITY:-} ]] && args+=(--pool-capacity "$POOL_CAPACITY")
# shellcheck disable=SC2206 # EVAL_ARGS is meant to split into flags
[[ -n ${EVAL_ARGS:-} ]] && args+=(${EVAL_ARGS})

echo "eval: bin/pronghorn ${args[*]}"
mkdir -p "$out"
bin/pronghorn "${args[@]}" 2>&1 | tee "$out/eval.log"

#!/usr/bin/env bash
# eval.sh — the evaluation of issue 9 in one command, as root: installs what
# it needs (scripts/setup.sh: pypy3, CRIU, compiles the JVM benchmarks),
# builds bin/pronghorn, then runs
#   bin/pronghorn bench eval --start-provider --out <data> --report-dir <report>
# which starts its own provider on a free port with a temporary data dir and
# measures the protocol in chunks: one directory per (benchmark, strategy,
# rate, seed) run, written when the run completes. Rerunning resumes: the
# chunks already in <data> are skipped. At the end the report is written
# from the chunks alone (README.md, PNG/SVG figures, CSV tables).
#
# Modes:
#   scripts/eval.sh               the full protocol: 13 benchmarks x {cold,
#                                 fixed(1), request-centric, bandit} x E in
#                                 {20, 4, 1} x 500 requests, 200 ms apart on
#                                 PyPy, 100 ms on the JVM, plus a never-evicted
#                                 warm-up run and a mechanism probe per
#                                 benchmark. About 6-7 hours on two cores
#                                 (the driver prints its own estimate and an
#                                 ETA). Data in docs/evaluation/data/full,
#                                 report in docs/evaluation.
#   QUICK=1 scripts/eval.sh       the reduced grid: bfs (PyPy) and simple-hash
#                                 (JVM), every strategy and rate, seeds 1,2,3,
#                                 25 requests per run: about 12 minutes. Data in
#                                 docs/evaluation/data/quick, report in
#                                 docs/evaluation/quick.
#   REPORT_ONLY=1 scripts/eval.sh regenerate both reports from the data; no
#                                 provider, no root.
#
# Run it on a quiet machine: the report flags runs that started with the load
# average above half the CPUs, because they measure contention.
#
# Environment overrides (e.g. BENCHMARKS=bfs,simple-hash RATES=4 scripts/eval.sh):
#   BENCHMARKS, STRATEGIES, RATES, SEEDS   comma-separated
#   REQUESTS, WARMUP_REQUESTS, PROBE_REPS, PROBE_AT
#   INTERVAL_PYPY, INTERVAL_JVM            Go durations (default 200ms / 100ms)
#   MUTABILITY (default 0), POOL_CAPACITY (default 12)
#   OUT, REPORT_DIR                        data and report directories
#   PRONGHORN_CRIU                         criu binary (default /opt/pronghorn/criu/bin/criu)
#   SKIP_SETUP=1 skip scripts/setup.sh;  EVAL_ARGS  extra flags for bench eval
set -euo pipefail
cd "$(dirname "$0")/.."

full_data=docs/evaluation/data/full
full_report=docs/evaluation
quick_data=docs/evaluation/data/quick
quick_report=docs/evaluation/quick

report() { # data report-dir title
	if compgen -G "$1/runs/*/*/run.csv" >/dev/null; then
		bin/pronghorn bench eval report "$1" -o "$2" --title "$3"
	fi
}

if [[ -n ${REPORT_ONLY:-} ]]; then
	make build
	# The quick report first: the full one links it.
	report "$quick_data" "$quick_report" "Pronghorn evaluation: quick grid"
	report "$full_data" "$full_report" "Pronghorn evaluation"
	exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	echo "eval: run as root (workers run in their own namespaces; CRIU needs root)" >&2
	exit 1
fi

if [[ -z ${SKIP_SETUP:-} ]]; then
	scripts/setup.sh
fi
make build

if [[ -n ${QUICK:-} ]]; then
	out=${OUT:-$quick_data}
	report_dir=${REPORT_DIR:-$quick_report}
	title="Pronghorn evaluation: quick grid"
	args=(bench eval --quick)
else
	out=${OUT:-$full_data}
	report_dir=${REPORT_DIR:-$full_report}
	title="Pronghorn evaluation"
	args=(bench eval)
fi
args+=(--start-provider --functions-dir benchmarks/functions --out "$out" --no-report
	--criu "${PRONGHORN_CRIU:-/opt/pronghorn/criu/bin/criu}")
[[ -n ${BENCHMARKS:-} ]] && args+=(--benchmarks "$BENCHMARKS")
[[ -n ${STRATEGIES:-} ]] && args+=(--strategies "$STRATEGIES")
[[ -n ${RATES:-} ]] && args+=(--rates "$RATES")
[[ -n ${SEEDS:-} ]] && args+=(--seeds "$SEEDS")
[[ -n ${REQUESTS:-} ]] && args+=(--requests "$REQUESTS")
[[ -n ${WARMUP_REQUESTS:-} ]] && args+=(--warmup-requests "$WARMUP_REQUESTS")
[[ -n ${PROBE_REPS:-} ]] && args+=(--probe-reps "$PROBE_REPS")
[[ -n ${PROBE_AT:-} ]] && args+=(--probe-at "$PROBE_AT")
[[ -n ${INTERVAL_PYPY:-} ]] && args+=(--interval-pypy "$INTERVAL_PYPY")
[[ -n ${INTERVAL_JVM:-} ]] && args+=(--interval-jvm "$INTERVAL_JVM")
[[ -n ${MUTABILITY:-} ]] && args+=(--mutability "$MUTABILITY")
[[ -n ${POOL_CAPACITY:-} ]] && args+=(--pool-capacity "$POOL_CAPACITY")
# shellcheck disable=SC2206 # EVAL_ARGS is meant to split into flags
[[ -n ${EVAL_ARGS:-} ]] && args+=(${EVAL_ARGS})

echo "eval: bin/pronghorn ${args[*]}"
mkdir -p "$out/logs"
# The driver's own log goes next to the provider's (logs/ stays out of git).
# Without a pipe the driver sees the terminal and draws a progress bar.
status=0
# Ctrl-C stops the driver (which removes its functions and stops its
# provider); the script goes on to write the report of what completed.
trap ':' INT
if [[ -t 1 ]]; then
	bin/pronghorn "${args[@]}" || status=$?
else
	bin/pronghorn "${args[@]}" 2>&1 | tee -a "$out/logs/eval.log" || status=$?
fi

# The report covers every chunk completed so far, also after a failure or
# an interrupt; rerunning the same command resumes the protocol.
report "$out" "$report_dir" "$title"
if [[ -z ${OUT:-} && -n ${QUICK:-} ]]; then
	# The full report links the quick one: refresh it if it exists.
	report "$full_data" "$full_report" "Pronghorn evaluation"
fi
exit "$status"

#!/usr/bin/env bash
# bench-first-response.sh — time from zero replicas to the first response,
# through the whole provider (agent in fresh namespaces, then a cold start or
# a CRIU restore, then the call), for each sample runtime: the median of 10
# scale-from-zero invocations, cold strategy vs fixed(5) (restores the
# snapshot taken at request 5). Run as root after `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8091}"
G="http://127.0.0.1:$PORT"
DATA="$(mktemp -d)"
bin/pronghorn provider --port "$PORT" --data-dir "$DATA" --functions-dir "$PWD/benchmarks/functions" >"$DATA/provider.log" 2>&1 &
PROVIDER=$!
trap 'kill $PROVIDER; wait $PROVIDER 2>/dev/null; rm -rf "$DATA"' EXIT
until curl -fs "$G/healthz" >/dev/null; do sleep 0.1; done
# api calls /system/* with the credentials the provider generated in its data
# dir; curl reads them as config from stdin, so the password never shows in ps.
api() {
  curl -K - "$@" <<<"user = \"$(cat "$DATA/secrets/basic-auth-user"):$(cat "$DATA/secrets/basic-auth-password")\""
}
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for img in counter-jvm counter-pypy counter-node; do
  for strat in cold fixed; do
    name=${img#counter-}-$strat
    api -fsS -XPOST $G/system/functions -d "{\"service\":\"$name\",\"image\":\"$img\",\"annotations\":{\"com.pronghorn.strategy\":\"$strat\",\"com.pronghorn.checkpoint-at\":\"5\"}}" >/dev/null
    for i in 1 2 3 4 5 6; do curl -s $G/function/$name -o /dev/null; done   # warm + checkpoint at 5
    sleep 1
    for i in $(seq 10); do
      api -fsS $G/system/scale-function/$name -d '{"replicas":0}' >/dev/null
      while [ "$(api -fsS $G/system/function/$name | grep -o '"availableReplicas":[0-9]*' || true)" != "" ]; do sleep 0.05; done
      sleep 0.3
      s=$(date +%s%N); curl -s $G/function/$name -o /dev/null; e=$(date +%s%N); echo $(( (e-s)/1000000 ))
    done | med | xargs echo "$img $strat first-response-from-zero median ms:"
  done
done
curl -s "$G/metrics" | grep -E "pronghorn_restore_seconds_(sum|count)"

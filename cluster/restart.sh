#!/usr/bin/env bash
# cluster/restart.sh [--kill] COMPONENT [DOWN_SECONDS] — stop one component
# of the running dev cluster, keep it down for DOWN_SECONDS (default 0), and
# start it again with exactly the command line it had (read from /proc), its
# log appended to, its pid file renewed. For failure tests: e.g.
# `cluster/restart.sh --kill kube-apiserver 5` crashes the API server under
# whatever talks to it and brings it back 5 s later. Without --kill it is
# stopped gracefully (SIGTERM; SIGKILL after 20 s: kube-apiserver v1.34 here
# takes that long to exit after it has stopped serving). Waits until the
# component answers again (kube-apiserver: /readyz; others: alive) and
# prints how long it was away.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
[[ $EUID -eq 0 ]] || die "must run as root"
signal=TERM
if [[ ${1:-} == --kill ]]; then
  signal=KILL
  shift
fi
(($# >= 1 && $# <= 2)) || die "usage: $0 [--kill] COMPONENT [DOWN_SECONDS] (COMPONENT: ${COMPONENTS[*]})"
name=$1
down=${2:-0}
[[ " ${COMPONENTS[*]} " == *" $name "* ]] || die "unknown component $name (want one of: ${COMPONENTS[*]})"
[[ $down =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "DOWN_SECONDS must be a number of seconds"
alive "$name" || die "$name is not running (make cluster)"

pid="$(cat "$RUN/$name.pid")"
mapfile -d '' argv <"/proc/$pid/cmdline"
t0=$(date +%s%N)
log "restart: stopping $name (pid $pid, SIG$signal)"
kill "-$signal" "$pid"
for ((i = 0; i < 80; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
if kill -0 "$pid" 2>/dev/null; then
  log "restart: $name still running after 20s; sending SIGKILL"
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
fi
sleep "$down"
log "restart: starting $name"
launch "$name" "${argv[@]}"
case $name in
  kube-apiserver) wait_for 60 "kube-apiserver /readyz" kctl get --raw /readyz ;;
  *) wait_for 30 "$name" alive "$name" ;;
esac
alive "$name" || die "$name exited right after its restart (log: $LOGS/$name.log)"
log "restart: $name back after $(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')s"

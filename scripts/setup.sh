#!/usr/bin/env bash
# setup.sh — installs everything Pronghorn and its tests need on a Debian
# machine, idempotently: pypy3 (Debian package), a CRIU that works on this
# kernel (private prefix, see install-criu.sh), a MinIO server built from the
# Go module proxy, and the compiled JVM sample function. Safe to run again:
# each step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "setup: $*"; }

if [[ $(id -u) -ne 0 ]]; then
	echo "setup: run as root (workers run in their own namespaces; CRIU needs root)" >&2
	exit 1
fi

need_apt=()
command -v pypy3 >/dev/null || need_apt+=(pypy3)
command -v javac >/dev/null || need_apt+=(openjdk-17-jdk-headless)
command -v node >/dev/null || need_apt+=(nodejs)
if ((${#need_apt[@]})); then
	log "installing ${need_apt[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

scripts/install-criu.sh
scripts/install-minio.sh

# The JVM sample ships as source; compile it when the class is missing or stale.
for dir in benchmarks/functions/*/; do
	for src in "$dir"*.java; do
		[[ -e "$src" ]] || continue
		cls="${src%.java}.class"
		if [[ ! -e "$cls" || "$src" -nt "$cls" ]]; then
			log "javac $src"
			javac -d "$dir" "$src"
		fi
	done
done
log "done"

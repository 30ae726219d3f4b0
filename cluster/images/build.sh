#!/usr/bin/env bash
# cluster/images/build.sh [--import] [IMAGE...]
#
# Builds the images the dev cluster (cluster/up.sh) runs Pronghorn with, from
# this machine's own binaries, without Docker or a registry: docker-archive
# tars in $PRONGHORN_IMAGES_DIR (default /opt/pronghorn/images) that
# `ctr -n k8s.io images import` reads. IMAGE is any of
#
#   pronghorn      the provider/agent: static /usr/bin/pronghorn (the function
#                  pods' init container copies it out with cp), CRIU, and
#                  /home/app/faas-netes (its working directory), the entry
#                  the upstream openfaas chart runs (cluster/images/faas-netes)
#   counter-node   node + its shared libraries, CRIU, benchmarks/functions/counter-node
#   counter-pypy   pypy3 + its stdlib and libraries, CRIU, .../counter-pypy
#   counter-jvm    a jlinked Java runtime (java.base, jdk.httpserver), CRIU, .../counter-jvm
#   template-node, template-pypy, template-jvm
#                  the function templates (template/pronghorn-*) with their
#                  handler skeletons, as `faas-cli build --shrinkwrap` lays
#                  them out, on the same base and runtime layers
#
# (default: all of them; a runtime missing on this machine is skipped with a
# note). Function images hold the function at /home/app (their WorkingDir)
# and its function.json's fprocess and env in their environment, as an
# OpenFaaS template's `ENV fprocess=...` would. They have no entrypoint: the
# pod runs the agent, which reads that fprocess. The provider cannot see an
# image's ENV, so deploy them with the annotation com.pronghorn.agent=true
# (or give the fprocess in the request: envProcess, envVars or the
# com.pronghorn.fprocess annotation); otherwise the provider runs them
# agentless, as faas-netes would, and the container fails with "no command
# specified". CRIU lives in every image at the agent's default path,
# /opt/pronghorn/criu/bin/criu (scripts/install-criu.sh's private prefix: the
# criu binary, its own glibc and loader, and the sh its wrapper needs).
#
# Layers: base (sh, cp, their libraries, CRIU, /etc/passwd, /tmp), runtime,
# app. The base layer is byte-identical in every image, so containerd stores
# it once. Layers are written deterministically (sorted, owner 0:0, mtime 0)
# and every image is tagged with its image ID, so an image is rewritten only
# when its inputs change: <name>.tar, <name>.tar.id and <name>.ref (the full
# reference, e.g. pronghorn.local/counter-node:1a2b3c4d5e6f) per image.
#
# --import also imports them into the dev cluster's containerd (namespace
# k8s.io) when it runs, skipping those already there under the same reference.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${PRONGHORN_IMAGES_DIR:-/opt/pronghorn/images}"
WORK="$OUT/.work"
CRIU_PREFIX=/opt/pronghorn/criu
CRIU_LIBDIR="$CRIU_PREFIX/usr/lib/x86_64-linux-gnu"
CLUSTER_STATE="${PRONGHORN_CLUSTER_DIR:-/var/lib/pronghorn-cluster}"
CONTAINERD_SOCK="$CLUSTER_STATE/containerd/containerd.sock"
REPO=pronghorn.local
FUNCTIONS="$ROOT/benchmarks/functions"
# The function's PATH; the JVM image puts its runtime first.
PATH_ENV=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
JRE=/opt/java/openjdk

T0=$(date +%s%N)
since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }
log() { echo "images: $*"; }
die() { echo "images: ERROR: $*" >&2; exit 1; }

import=0
want=()
for a in "$@"; do
  case $a in
    --import) import=1 ;;
    pronghorn | counter-node | counter-pypy | counter-jvm | template-node | template-pypy | template-jvm) want+=("$a") ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
    *) die "unknown argument $a (want --import and/or pronghorn, counter-{node,pypy,jvm}, template-{node,pypy,jvm})" ;;
  esac
done
((${#want[@]})) || want=(pronghorn counter-node counter-pypy counter-jvm template-node template-pypy template-jvm)

command -v go >/dev/null || die "go is needed to build pronghorn and mkimage"
mkdir -p "$OUT" "$WORK/bin" "$WORK/lists" "$WORK/etc"
rm -f "$WORK"/lists/*.done # runtime lists are made afresh once per run

# --- mkimage (go's build cache makes reruns quick) ---------------------------
(cd "$ROOT/cluster" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -o "$WORK/bin/mkimage" ./cmd/mkimage)
MKIMAGE="$WORK/bin/mkimage"

# --- CRIU: scripts/install-criu.sh's private prefix -------------------------
if [[ ! -x $CRIU_PREFIX/bin/criu || ! -x $CRIU_PREFIX/usr/sbin/criu ]]; then
  [[ $EUID -eq 0 ]] || die "CRIU is not installed in $CRIU_PREFIX and installing it needs root"
  "$ROOT/scripts/install-criu.sh" "$CRIU_PREFIX"
fi

# closure FILE...: the shared libraries the host's loader gives FILE (and
# the loader itself), one per line; libraries not found are left out with a
# note (a module of a runtime that nothing here imports).
closure() {
  ldd "$@" 2>/dev/null | awk '
    $2 == "=>" && $3 ~ /^\// { print $3; next }
    $2 == "=>" && $3 == "not" { missing[$1] = 1; next }
    $1 ~ /^\// && $2 ~ /^\(0x/ { print $1 }
    END { for (m in missing) print "images: note: " m " not found (needed by a module nothing here loads?)" > "/dev/stderr" }' | sort -u
}
# elf_files DIR: the ELF files under DIR.
elf_files() {
  find "$1" -type f \( -perm -u+x -o -name '*.so' -o -name '*.so.*' \) -print0 |
    while IFS= read -r -d '' f; do
      [[ "$(head -c4 "$f" | od -An -c | tr -d ' ')" == '177ELF' ]] && echo "$f"
    done
  return 0
}

# --- the base layer: identical in every image -------------------------------
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin' >"$WORK/etc/passwd"
printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$WORK/etc/group"
{
  echo "# generated by cluster/images/build.sh"
  echo "dir /tmp 1777"
  echo "dir /root 700"
  echo "dir /home/app"
  echo "copy /etc/passwd $WORK/etc/passwd"
  echo "copy /etc/group $WORK/etc/group"
  # sh runs the criu wrapper; cp is the init container's command.
  echo "path /bin/sh"
  echo "path /bin/cp"
  closure /bin/sh /bin/cp | sed 's/^/path /'
  # CRIU: the wrapper, the binary, its loader and the libraries that loader
  # resolves from the prefix (not the whole dependency closure apt fetched).
  echo "path $CRIU_PREFIX/bin/criu"
  echo "path $CRIU_PREFIX/usr/sbin/criu"
  echo "path $CRIU_LIBDIR/ld-linux-x86-64.so.2"
  "$CRIU_LIBDIR/ld-linux-x86-64.so.2" --library-path "$CRIU_LIBDIR:$CRIU_PREFIX/lib/x86_64-linux-gnu" --list "$CRIU_PREFIX/usr/sbin/criu" |
    awk '$2 == "=>" && $3 ~ /^\// { print "path " $3 }'
} >"$WORK/lists/base.list"

# --- runtimes: one layer list each, shared by the counter and template images -
# node_runtime, pypy_runtime, jvm_runtime write $WORK/lists/<runtime>.list
# (once per run) and fail when this machine lacks the runtime.
node_runtime() {
  local node
  node=$(command -v node) || return 1
  [[ -f $WORK/lists/node.list.done ]] && return 0
  { echo "path $node"; closure "$node" | sed 's/^/path /'; } >"$WORK/lists/node.list"
  touch "$WORK/lists/node.list.done"
}
pypy_runtime() {
  local pypy lib
  pypy=$(command -v pypy3) || return 1
  [[ -f $WORK/lists/pypy.list.done ]] && return 0
  lib=$(readlink -f "$(dirname "$(readlink -f "$pypy")")/../lib/pypy3.9")
  [[ -d $lib ]] || die "pypy3's standard library is not at $lib"
  {
    echo "path $pypy"
    echo "path $lib"
    # What no function needs: the IDE, Tk, demos, tests, pip bootstrap.
    for d in idlelib tkinter turtledemo test ensurepip lib2to3/tests distutils/tests; do echo "exclude $lib/$d"; done
    { echo "$pypy"; elf_files "$lib"; } | grep -v -e _tkinter -e /tkinter/ | xargs -d '\n' bash -c "$(declare -f closure); closure \"\$@\"" _ |
      sed 's/^/path /'
  } >"$WORK/lists/pypy.list"
  touch "$WORK/lists/pypy.list.done"
}
jvm_runtime() {
  command -v jlink >/dev/null && command -v javac >/dev/null || return 1
  [[ -f $WORK/lists/jvm.list.done ]] && return 0
  # A runtime of just the modules the functions use, rebuilt only when
  # the JDK changes.
  local jdk modules stamp
  jdk=$(dirname "$(dirname "$(readlink -f "$(command -v jlink)")")")
  modules=java.base,jdk.httpserver
  stamp="$(cat "$jdk/release") $modules $(stat -c '%s %Y' "$jdk/lib/modules")"
  if [[ ! -f $WORK/jre.stamp || "$(cat "$WORK/jre.stamp")" != "$stamp" ]]; then
    rm -rf "$WORK/jre" "$WORK/jre.stamp"
    jlink --add-modules "$modules" --strip-debug --no-header-files --no-man-pages --output "$WORK/jre"
    echo "$stamp" >"$WORK/jre.stamp"
    log "jlinked $modules from $jdk into $WORK/jre"
  fi
  {
    echo "copy $JRE $WORK/jre"
    # Libraries inside the runtime resolve through $ORIGIN; those are in
    # the copy above already.
    elf_files "$WORK/jre" | LD_LIBRARY_PATH="$WORK/jre/lib/server" xargs -d '\n' bash -c "$(declare -f closure); closure \"\$@\"" _ |
      grep -v "^$WORK/jre/" | sed 's/^/path /'
  } >"$WORK/lists/jvm.list"
  touch "$WORK/lists/jvm.list.done"
}

# app_image NAME RUNTIME MKIMAGE-FLAGS...: a function image, base + runtime
# + the app at /home/app. counter-X is benchmarks/functions/counter-X;
# template-X is what `faas-cli build --shrinkwrap` makes of template/pronghorn-X
# with its own handler skeleton: the template's files with the function in
# function/. Java sources are compiled here (the repo keeps no classes in
# the templates; the counter's are build products), into the place the
# fprocess names.
app_image() {
  local name=$1 runtime=$2 src app stamp
  shift 2
  case $name in
    counter-*) src="$FUNCTIONS/$name" ;;
    template-*) src="$ROOT/template/pronghorn-${name#template-}" ;;
  esac
  app="$src"
  if [[ $runtime == jvm ]]; then
    app="$WORK/$name"
    stamp="$(cd "$src" && find . -name '*.java' -o -name function.json | LC_ALL=C sort | xargs sha256sum | sha256sum) $(javac -version 2>&1)"
    if [[ ! -f $app.stamp || "$(cat "$app.stamp")" != "$stamp" ]]; then
      rm -rf "$app"
      mkdir -p "$app"
      case $name in
        counter-*) javac --release 17 -d "$app" "$src/Handler.java"; cp "$src/Handler.java" "$src/function.json" "$app/" ;;
        template-*) javac --release 17 -d "$app/classes" "$src"/*.java "$src"/function/*.java; cp "$src/function.json" "$app/" ;;
      esac
      echo "$stamp" >"$app.stamp"
    fi
  fi
  # (Local mode may have left a __pycache__ there.)
  printf '%s\n' "copy /home/app $app" "exclude /home/app/__pycache__" "exclude /home/app/function/__pycache__" >"$WORK/lists/$name.list"
  build "$name" "$WORK/lists/base.list" "$WORK/lists/$runtime.list" "$WORK/lists/$name.list" -- \
    -function "$src" -workdir /home/app "$@"
}

# build NAME LAYER-LIST... -- MKIMAGE-FLAGS...: one image.
built=()
build() {
  local name=$1 layers=()
  shift
  while [[ $1 != -- ]]; do layers+=(-layer "$1"); shift; done
  shift
  "$MKIMAGE" -o "$OUT/$name.tar" -name "$REPO/$name" -tag auto -ref-file "$OUT/$name.ref" "${layers[@]}" "$@"
  built+=("$name")
}

for name in "${want[@]}"; do
  case $name in
    pronghorn)
      # Static, and without VCS stamps: the same source gives the same
      # binary, hence the same image.
      t=$(date +%s%N)
      bin="$(mktemp "$WORK/.pronghorn.XXXXXX")"
      (cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=cluster-dev" -o "$bin" .) ||
        { rm -f "$bin"; die "go build of pronghorn failed"; }
      chmod 755 "$bin"
      mv -f "$bin" "$WORK/pronghorn"
      log "built the static pronghorn binary in $(since "$t")s"
      printf '%s\n' "copy /usr/bin/pronghorn $WORK/pronghorn" "copy /home/app/faas-netes $ROOT/cluster/images/faas-netes" >"$WORK/lists/pronghorn.list"
      build pronghorn "$WORK/lists/base.list" "$WORK/lists/pronghorn.list" -- \
        -entrypoint '["/usr/bin/pronghorn"]' -workdir /home/app -env "PATH=$PATH_ENV"
      ;;
    counter-node | template-node)
      node_runtime || { log "skipping $name: no node here"; continue; }
      app_image "$name" node -env "PATH=$PATH_ENV"
      ;;
    counter-pypy | template-pypy)
      pypy_runtime || { log "skipping $name: no pypy3 here"; continue; }
      app_image "$name" pypy -env "PATH=$PATH_ENV"
      ;;
    counter-jvm | template-jvm)
      jvm_runtime || { log "skipping $name: needs a JDK (jlink, javac) here"; continue; }
      app_image "$name" jvm -env "PATH=$JRE/bin:$PATH_ENV" -env "JAVA_HOME=$JRE"
      ;;
  esac
done

# --- optional: import into the dev cluster's containerd ---------------------
if ((import)); then
  if ! ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; then
    log "--import: the dev cluster's containerd ($CONTAINERD_SOCK) does not answer; nothing imported (make cluster)"
  else
    have="$(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q)"
    for name in "${built[@]}"; do
      ref="$(cat "$OUT/$name.ref")"
      if grep -qxF "$ref" <<<"$have"; then
        log "$ref already in the cluster"
      else
        t=$(date +%s%N)
        ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$OUT/$name.tar" >/dev/null
        log "imported $ref in $(since "$t")s"
      fi
    done
  fi
fi

for name in "${built[@]}"; do
  log "$(cat "$OUT/$name.ref")  $(du -h "$OUT/$name.tar" | cut -f1)  $OUT/$name.tar"
done
log "done in $(since "$T0")s"

# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Shared settings of the local dev cluster, sourced by up.sh, down.sh and
# smoke.sh. Everything the cluster writes lives under $STATE, except what
# upstream code hard-codes (see down.sh), and the cached binaries under
# $K8S_HOME, which survive `make cluster-down` so the next bring-up is quick.

CLUSTER_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The Kubernetes version is whatever cluster/go.mod requires.
K8S_VERSION="$(awk '{ for (i = 1; i < NF; i++) if ($i == "k8s.io/kubernetes" && $(i + 1) ~ /^v/) { print $(i + 1); exit } }' "$CLUSTER_SRC/go.mod")"
K8S_HOME="/opt/pronghorn/k8s/$K8S_VERSION"
K8S_BIN="$K8S_HOME/bin"          # kube-* binaries and kubectl (PATH-able)
TOOLS="$K8S_HOME/tools"          # pause, smoke-httpd, mkimage, cri-reset
IMAGES="$K8S_HOME/images"        # docker-archive tars of the local images

STATE="${PRONGHORN_CLUSTER_DIR:-/var/lib/pronghorn-cluster}"
LOGS="$STATE/logs"               # <component>.log
RUN="$STATE/run"                 # <component>.pid and ownership markers
PKI="$STATE/pki"
KUBECONFIG_ADMIN="$STATE/admin.kubeconfig"
CONTAINERD_SOCK="$STATE/containerd/containerd.sock"

# Everything listens on loopback only.
ETCD_PORT=2379
ETCD_PEER_PORT=2380
APISERVER_PORT=6443
CONTAINERD_STREAM_PORT=10010
SERVICE_CIDR=10.96.0.0/16
POD_CIDR=10.244.0.0/24
CNI_NETWORK=pronghorn
CNI_BRIDGE=pronghorn0
NODE_NAME=127.0.0.1              # --hostname-override: apiserver reaches the kubelet on loopback
# The `kubernetes` Service's ClusterIP (the first of SERVICE_CIDR), where pods
# find the API server (KUBERNETES_SERVICE_HOST/_PORT): up.sh puts it on the
# host's loopback, routes it from pods through the bridge, and relays it to
# the API server (cluster/cmd/apiserver-proxy), in place of kube-proxy.
APISERVER_SERVICE_IP="${SERVICE_CIDR%.*/*}.1"
APISERVER_SERVICE_PORT=443

# Images built here (no registry): the sandbox image and the smoke server.
PAUSE_IMAGE=pronghorn.local/pause:1
SMOKE_IMAGE=pronghorn.local/smoke-httpd:1

# Start order; down.sh stops them in reverse.
COMPONENTS=(etcd kube-apiserver apiserver-proxy containerd kube-controller-manager kube-scheduler kubelet)

log() { echo "cluster: $*"; }
die() { echo "cluster: ERROR: $*" >&2; exit 1; }
# down.sh deletes $STATE: insist on a real absolute directory of its own.
[[ $STATE == /[!/]* ]] || die "PRONGHORN_CLUSTER_DIR must be an absolute path below /"

# alive NAME: its pid file names a live process that is ours (its command
# line mentions $STATE), so a recycled pid is never mistaken for it.
alive() {
  local f="$RUN/$1.pid" pid
  [[ -s $f ]] || return 1
  pid="$(cat "$f")"
  [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *"$STATE"* ]]
}

# launch NAME CMD...: run CMD detached, in its own session, logging to
# $LOGS/NAME.log, its pid in $RUN/NAME.pid; return once the pid runs CMD
# (or has exited).
launch() {
  local name=$1 exe pid i
  shift
  exe="$(readlink -f "$(command -v "$1")" || true)"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$RUN/$name.pid"
  # The pid execs twice (the subshell becomes setsid, setsid becomes CMD).
  # Before the first its command line is the caller's, and while the
  # kernel loads CMD it reads empty: alive() would call it dead either way.
  for ((i = 0; i < 100; i++)); do
    if { [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]] && alive "$name"; } || ! kill -0 "$pid" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
}

# (--cache-dir: keep kubectl's discovery cache out of ~/.kube.)
kctl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" --cache-dir "$STATE/kubectl-cache" "$@"; }

# wait_for SECONDS WHAT CMD...: retry CMD every 0.5 s.
wait_for() {
  local limit=$1 what=$2 i
  shift 2
  for ((i = 0; i < limit * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  die "timed out after ${limit}s waiting for $what (logs: $LOGS)"
}

# Host paths that containerd, the kubelet and CNI hard-code. up.sh marks the
# ones that did not exist before it started (owner_marker); down.sh removes
# exactly those.
# (/run/mount is libmount's utab, written when the kubelet mounts volumes.)
HOST_PATHS=(/run/containerd /var/lib/cni /var/lib/kubelet /var/log/pods /var/log/containers /run/netns /run/mount)
owner_marker() { echo "$RUN/created${1//\//_}"; }

# Kernel settings the kubelet (and the CNI bridge plugin) change; up.sh saves
# them, down.sh restores them.
SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward)

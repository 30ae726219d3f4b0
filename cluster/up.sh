#!/usr/bin/env bash
# `make cluster`: bring up a real one-node Kubernetes cluster on this machine
# (root, no Docker, no registry): etcd, kube-apiserver, containerd + runc,
# kube-controller-manager, kube-scheduler and kubelet run as background
# processes with logs and pid files under $STATE (cluster/env.sh). There is
# no kube-proxy and no DNS: ClusterIP Services do not route, pod IPs do (from
# the host). Idempotent: when the cluster is up it only verifies it. The last
# line printed is `export KUBECONFIG=...`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
[[ $EUID -eq 0 ]] || die "must run as root (it starts containerd and the kubelet)"
[[ -n $K8S_VERSION ]] || die "no k8s.io/kubernetes version in $CLUSTER_SRC/go.mod"

T0=$(date +%s%N)
since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

node_ready() {
  [[ "$(kctl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

finish() {
  log "kubectl: $K8S_BIN/kubectl (export PATH=$K8S_BIN:\$PATH)"
  log "logs: $LOGS/<component>.log; pids: $RUN; stop with: make cluster-down"
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
}

# --- 0. Already up? Then only verify. A partial cluster is torn down. -------
healthy() { kctl get --raw /readyz >/dev/null 2>&1 && node_ready; }
up=0
for c in "${COMPONENTS[@]}"; do alive "$c" && up=$((up + 1)); done
if ((up == ${#COMPONENTS[@]})); then
  # All running: give a just-started or busy cluster 30 s to report ready.
  for ((i = 0; i < 60; i++)); do if healthy; then break; fi; sleep 0.5; done
  if healthy; then
    log "already up: all ${#COMPONENTS[@]} components running, apiserver ready, node $NODE_NAME Ready"
    kctl get nodes -o wide
    finish
    exit 0
  fi
fi
if ((up > 0)) || [[ -e $STATE ]]; then
  log "found a stopped or partial cluster in $STATE ($up/${#COMPONENTS[@]} running); tearing it down first"
  "$CLUSTER_SRC/down.sh"
fi

# --- 1. Debian packages (etcd 3.4, containerd 1.6, runc, CNI plugins). ------
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  log "installing Debian packages: ${need[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
command -v go >/dev/null || die "go is needed to build the Kubernetes binaries"

# --- 2. Binaries, built once per version and cached under $K8S_HOME. -------
# build_cached DIR NAME CMD...: go build the given ./cmd/* packages into DIR
# unless DIR/.stamp matches the hash of go.mod, go.sum and their main.go.
build_cached() {
  local dir=$1 what=$2 note=$3 stamp tmp ldflags
  shift 3
  stamp="$(cd "$CLUSTER_SRC" && cat go.mod go.sum "${@/%//main.go}" | sha256sum | cut -d' ' -f1)"
  if [[ -f $dir/.stamp && "$(cat "$dir/.stamp")" == "$stamp" ]]; then
    log "$what cached in $dir"
    return
  fi
  # Version stamps as upstream's release builds set them (kubectl version,
  # the node's kubeletVersion); otherwise they say v0.0.0-master.
  local v=${K8S_VERSION#v} p
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=${v%%.*} -X $p.gitMinor=$(cut -d. -f2 <<<"$v") -X $p.gitTreeState=clean"
  done
  log "building $what into $dir$note"
  local t
  t=$(date +%s%N)
  mkdir -p "$K8S_HOME"
  rm -rf "$K8S_HOME"/.build.* # left by an interrupted build
  tmp="$(mktemp -d "$K8S_HOME/.build.XXXXXX")"
  chmod 755 "$tmp" # PATH-able for everyone (mktemp makes it 0700)
  (cd "$CLUSTER_SRC" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$tmp/" "$@")
  echo "$stamp" >"$tmp/.stamp"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  log "built $what in $(since "$t")s"
}
build_cached "$K8S_BIN" "Kubernetes $K8S_VERSION" " (from nothing, with module downloads: ~6 min on 2 cores)" \
  ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kubelet ./cmd/kubectl
build_cached "$TOOLS" "cluster tools" "" ./cmd/pause ./cmd/smoke-httpd ./cmd/mkimage ./cmd/cri-reset ./cmd/apiserver-proxy
# Images from those static binaries; a docker-archive tar is imported with ctr.
mkdir -p "$IMAGES"
while read -r bin ref; do
  if [[ ! -f $IMAGES/$bin.tar || $IMAGES/$bin.tar -ot $TOOLS/$bin ]]; then
    "$TOOLS/mkimage" -o "$IMAGES/$bin.tar" -name "$ref" -bin "$TOOLS/$bin"
  fi
done <<<"pause $PAUSE_IMAGE
smoke-httpd $SMOKE_IMAGE"

# --- 3. State directory, PKI, kubeconfigs. ---------------------------------
log "state in $STATE"
mkdir -p "$LOGS" "$RUN" "$PKI" "$STATE"/{etcd,containerd,cni/net.d,cni/networks,kubelet,pod-logs,kubeconfigs}
chmod 700 "$STATE" "$PKI"

# Remember which host paths (that upstream code hard-codes) exist before we
# start, so down.sh removes only what this cluster created.
for p in "${HOST_PATHS[@]}"; do [[ -e $p ]] || touch "$(owner_marker "$p")"; done
# The kubelet sets kernel.panic, vm.overcommit_memory, ... and the CNI bridge
# plugin sets net.ipv4.ip_forward=1; down.sh puts the old values back.
for k in "${SYSCTLS[@]}"; do echo "$k=$(sysctl -n "$k")"; done >"$RUN/sysctl.saved"
ls -1 /run/netns >"$RUN/netns.before" 2>/dev/null || true

# A CA for the apiserver's serving cert and its client cert to the kubelet
# (the kubelet trusts it for x509 client auth), and the service-account key.
cd "$PKI"
openssl genrsa -out ca.key 2048 2>/dev/null
openssl req -x509 -new -key ca.key -subj /CN=pronghorn-cluster-ca -days 3650 -out ca.crt
sign() { # sign NAME SUBJECT EXTENSIONS
  openssl genrsa -out "$1.key" 2048 2>/dev/null
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile <(printf '%s\n' "$3") -out "$1.crt" 2>/dev/null
}
sign apiserver /CN=kube-apiserver "subjectAltName=IP:127.0.0.1,IP:${SERVICE_CIDR%.*/*}.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
# The front-proxy (requestheader) client: without a requestheader CA the
# controller-manager and scheduler log "missing content for CA bundle" every
# few seconds; it also lets aggregated APIs work. One CA is enough here.
sign front-proxy-client /CN=front-proxy-client "extendedKeyUsage=clientAuth"
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
cd - >/dev/null

# Static bearer tokens (--token-auth-file): one identity per component, so
# the built-in RBAC roles and the Node authorizer apply as in a real cluster.
: >"$PKI/tokens.csv"
kubeconfig() { # kubeconfig FILE USER GROUPS
  local token
  token="$(openssl rand -hex 24)"
  echo "$token,$2,$2${3:+,\"$3\"}" >>"$PKI/tokens.csv"
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pronghorn
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $2
  user:
    token: $token
contexts:
- name: pronghorn
  context: {cluster: pronghorn, user: "$2"}
current-context: pronghorn
EOF
  chmod 600 "$1"
}
kubeconfig "$KUBECONFIG_ADMIN" pronghorn-admin system:masters
kubeconfig "$STATE/kubeconfigs/controller-manager" system:kube-controller-manager ""
kubeconfig "$STATE/kubeconfigs/scheduler" system:kube-scheduler ""
kubeconfig "$STATE/kubeconfigs/kubelet" "system:node:$NODE_NAME" system:nodes

# --- 4. Start the components. ----------------------------------------------
start() { # start NAME CMD...: detached, logging to $LOGS/NAME.log
  log "starting $1"
  launch "$@"
}
# wait_up NAME SECONDS CMD...: like wait_for, but fail at once with the log
# tail if the component died.
wait_up() {
  local name=$1 limit=$2 i
  shift 2
  for ((i = 0; i < limit * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    alive "$name" || { tail -n 30 "$LOGS/$name.log" >&2; die "$name exited (log: $LOGS/$name.log)"; }
    sleep 0.5
  done
  tail -n 30 "$LOGS/$name.log" >&2
  die "timed out after ${limit}s waiting for $name (log: $LOGS/$name.log)"
}
# Fail early and clearly if another process holds one of our loopback ports
# (etcd, apiserver, kubelet, kubelet healthz, controller-manager, scheduler,
# containerd streaming), and the Service address of the API server.
for port in "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" 10250 10248 10257 10259 "$CONTAINERD_STREAM_PORT"; do
  if ss -Hltn "sport = :$port" | grep -q .; then die "port $port is already in use: $(ss -Hltnp "sport = :$port")"; fi
done
if ss -Hltn "src = $APISERVER_SERVICE_IP" | grep -q .; then
  die "$APISERVER_SERVICE_IP is already in use: $(ss -Hltnp "src = $APISERVER_SERVICE_IP")"
fi
T_START=$(date +%s%N)

start etcd etcd --name pronghorn --data-dir "$STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "pronghorn=http://127.0.0.1:$ETCD_PEER_PORT"
wait_up etcd 30 curl -fsS --noproxy '*' "http://127.0.0.1:$ETCD_PORT/health"

# --endpoint-reconciler-type=none: the "kubernetes" Service would get the
# advertise address 127.0.0.1 as endpoint, which validation rejects (loopback)
# and would be logged every 10 s; with no kube-proxy nothing uses it anyway.
start kube-apiserver "$K8S_BIN/kube-apiserver" \
  --advertise-address=127.0.0.1 --bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --cert-dir="$PKI" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
  --authorization-mode=Node,RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" --endpoint-reconciler-type=none \
  --allow-privileged=true \
  --kubelet-preferred-address-types=Hostname,InternalIP \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --requestheader-client-ca-file="$PKI/ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key"
wait_up kube-apiserver 60 kctl get --raw /readyz
log "apiserver ready after $(since "$T_START")s"

# Pods reach the API server at the kubernetes Service's ClusterIP, as in any
# cluster, so a provider can run in a pod (the upstream openfaas chart's
# path): that address on the host's loopback (down.sh removes it), a route to
# it in every pod (the CNI config below), and a TCP relay to the API server.
# (The relay, not a DNAT to loopback: that needs route_localnet and iptables
# rules on the host.)
if ! ip -o addr show dev lo | grep -qF " $APISERVER_SERVICE_IP/32 "; then
  ip addr add "$APISERVER_SERVICE_IP/32" dev lo
  touch "$RUN/created-lo-address"
fi
start apiserver-proxy "$TOOLS/apiserver-proxy" -listen "$APISERVER_SERVICE_IP:$APISERVER_SERVICE_PORT" \
  -upstream "127.0.0.1:$APISERVER_PORT" -owner "$STATE"
wait_up apiserver-proxy 10 curl -fsS --noproxy '*' --cacert "$PKI/ca.crt" "https://$APISERVER_SERVICE_IP:$APISERVER_SERVICE_PORT/livez"

# containerd, private: own root/state/socket under $STATE, so it never
# touches (or needs) the system's containerd.
#  - restrict_oom_score_adj = true is REQUIRED here: this VM lacks
#    CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj for the pause
#    container, and every sandbox fails with "can't get final child's PID
#    from pipe: EOF". With it, containerd never asks for a lower value than
#    its own.
#  - SystemdCgroup = false: no systemd; cgroupfs (matches the kubelet).
#  - sandbox_image: the pause image built above; there is no registry.
#  - runc's state Root under $STATE; the opt plugin (it creates
#    /opt/containerd) and snapshotters we do not use are disabled.
cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "$CONTAINERD_SOCK"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "$CONTAINERD_STREAM_PORT"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$STATE/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
# One bridge, host-local IPs with their store under $STATE. The bridge gets
# the gateway address, so the host reaches pod IPs directly; no masquerade and
# no default route in pods, so pods reach only the pod subnet and the host:
# the one route they get is to the API server's Service address, through the
# bridge to the relay above. (containerd adds the loopback plugin for lo itself.)
cat >"$STATE/cni/net.d/10-$CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NETWORK",
  "plugins": [{
    "type": "bridge",
    "bridge": "$CNI_BRIDGE",
    "isGateway": true,
    "ipMasq": false,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": "$POD_CIDR"}]],
      "routes": [{"dst": "$APISERVER_SERVICE_IP/32"}],
      "dataDir": "$STATE/cni/networks"
    }
  }]
}
EOF
start containerd containerd --config "$STATE/containerd/config.toml"
wait_up containerd 30 ctr --address "$CONTAINERD_SOCK" version
for t in pause smoke-httpd; do
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$IMAGES/$t.tar" >/dev/null
done
log "imported $PAUSE_IMAGE and $SMOKE_IMAGE into containerd"

# nodeipam is off: no podCIDR is allocated; the CNI config has the range.
start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig="$STATE/kubeconfigs/controller-manager" \
  --authentication-kubeconfig="$STATE/kubeconfigs/controller-manager" \
  --authorization-kubeconfig="$STATE/kubeconfigs/controller-manager" \
  --bind-address=127.0.0.1 --controllers='*,-nodeipam' --leader-elect=false \
  --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --service-cluster-ip-range="$SERVICE_CIDR"
start kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig="$STATE/kubeconfigs/scheduler" \
  --authentication-kubeconfig="$STATE/kubeconfigs/scheduler" \
  --authorization-kubeconfig="$STATE/kubeconfigs/scheduler" \
  --bind-address=127.0.0.1 --leader-elect=false

# kubelet: cgroupfs (no systemd), swap tolerated, serving on loopback only,
# no read-only port, no node-allocatable enforcement and loose eviction
# thresholds (a dev VM's disk may be fuller than the defaults allow), image
# GC off (images cannot be pulled back: there is no registry), and no
# iptables chains (nothing here uses them; the host's rules stay untouched).
cat >"$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failSwapOn: false
enforceNodeAllocatable: []
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
  imagefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
makeIPTablesUtilChains: false
podLogsDir: $STATE/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
EOF
start kubelet "$K8S_BIN/kubelet" \
  --config="$STATE/kubelet/config.yaml" --kubeconfig="$STATE/kubeconfigs/kubelet" \
  --root-dir="$STATE/kubelet" --cert-dir="$STATE/kubelet/pki" --hostname-override="$NODE_NAME"
wait_up kubelet 120 node_ready
log "node $NODE_NAME Ready after $(since "$T_START")s (from starting etcd)"

# Pods need the namespace's default ServiceAccount (made by the controller-manager).
wait_for 60 "the default ServiceAccount" kctl -n default get serviceaccount default
for c in "${COMPONENTS[@]}"; do alive "$c" || die "$c is not running (log: $LOGS/$c.log)"; done
kctl get nodes -o wide
log "cluster up in $(since "$T0")s"

if [[ ${CLUSTER_SMOKE:-1} != 0 ]]; then
  "$CLUSTER_SRC/smoke.sh"
fi
finish

#!/usr/bin/env bash
# `make cluster-down`: stop the local dev cluster and remove every trace of
# it: processes, pods (through CRI, so CNI frees their IPs and network
# namespaces), mounts, the CNI bridge, the pod cgroups, the host paths that
# upstream code hard-codes (only those up.sh saw it create), the kernel
# settings the kubelet changed, and $STATE. Safe to run twice or when nothing
# is up. The cached binaries under /opt/pronghorn/k8s stay.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
[[ $EUID -eq 0 ]] || die "must run as root"

if [[ ! -e $STATE ]] && ! ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
  log "nothing to tear down (no $STATE, no $CNI_BRIDGE bridge)"
  exit 0
fi

# stop NAME...: SIGTERM the processes in NAME.pid together (each takes ~2 s
# to shut down gracefully), SIGKILL those still running after 10 s.
stop() {
  local name pids=() pid i running
  for name in "$@"; do
    if alive "$name"; then
      pid="$(cat "$RUN/$name.pid")"
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for ((i = 0; i < 40; i++)); do
    running=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    ((running)) || break
    sleep 0.25
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid still running after 10s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for name in "$@"; do rm -f "$RUN/$name.pid"; done
}

# umount_under DIR: unmount everything mounted at or below DIR, deepest first
# (a path mounted twice, like the kubelet's rshared root, is unmounted twice).
# Repeated while mounts remain (up to 5 passes): a mount stacked on top of a
# directory (`ip netns` bind-mounts /run/netns onto itself, possibly after
# network namespaces were mounted inside it) hides the mounts below it until
# it is gone.
umount_under() {
  local pass m left
  for pass in 1 2 3 4 5; do
    left=0
    while read -r m; do
      left=1
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(awk -v p="$1" '$2 == p || index($2, p "/") == 1 { print $2 }' /proc/self/mounts | sort -r)
    ((left)) || return 0
  done
}

# 1. The kubelet first, so it does not restart the pods we remove next.
stop kubelet kube-scheduler kube-controller-manager

# 2. Pods: stop and remove every sandbox through CRI while containerd runs.
if alive containerd && [[ -x $TOOLS/cri-reset ]]; then
  log "removing pods through CRI"
  "$TOOLS/cri-reset" -endpoint "unix://$CONTAINERD_SOCK" 2>&1 | sed 's/^/cluster: /' ||
    log "cri-reset failed; falling back to killing what is left"
fi
stop containerd apiserver-proxy kube-apiserver etcd
if [[ -f $RUN/created-lo-address ]]; then
  log "removing $APISERVER_SERVICE_IP/32 from lo"
  ip addr del "$APISERVER_SERVICE_IP/32" dev lo 2>/dev/null || true
fi

# 3. Whatever survived (containerd died early, or cri-reset failed): pod
# processes are in the kubelet's kubepods cgroups; runc shims name our
# containerd socket on their command line.
find /sys/fs/cgroup -path '*/kubepods*' -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u |
  while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done
for p in /proc/[0-9]*; do
  if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "-address $CONTAINERD_SOCK"; then
    log "killing leftover shim ${p#/proc/}"
    kill -KILL "${p#/proc/}" 2>/dev/null || true
  fi
done

# 4. Network: leftover pod network namespaces (not there before up.sh), the bridge.
if [[ -d /run/netns ]]; then
  for ns in /run/netns/cni-*; do
    [[ -e $ns ]] || continue
    if ! grep -qxF "${ns##*/}" "$RUN/netns.before" 2>/dev/null; then
      umount "$ns" 2>/dev/null || true
      # Still busy if a later bind mount of /run/netns onto itself hides
      # its mount: step 5 unmounts both when this cluster made /run/netns.
      rm -f "$ns" 2>/dev/null || log "$ns is still mounted (below a bind mount of /run/netns)"
    fi
  done
fi
if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
  log "deleting bridge $CNI_BRIDGE"
  ip link delete "$CNI_BRIDGE"
fi

# 5. Mounts (kubelet root, volumes, container rootfs and shm) and host paths.
umount_under "$STATE"
for p in "${HOST_PATHS[@]}"; do
  if [[ -f $(owner_marker "$p") && -e $p ]]; then
    log "removing $p (created by this cluster)"
    umount_under "$p"
    rm -rf --one-file-system "$p"
  fi
done
# Where those paths were there before us, remove only our entries in them:
# libcni's result cache and the kubelet's log symlinks into $STATE.
rm -f /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null || true
[[ -d /var/log/containers ]] && find /var/log/containers -maxdepth 1 -type l -lname "$STATE/*" -delete

# 6. Pod cgroups the kubelet created (cgroupfs: <controller>/kubepods/...).
for d in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
  if [[ -d $d ]]; then find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
done

# 7. Kernel settings back to what they were before up.sh.
if [[ -f $RUN/sysctl.saved ]]; then
  while IFS='=' read -r k v; do
    [[ "$(sysctl -n "$k")" == "$v" ]] || { log "restoring $k=$v"; sysctl -qw "$k=$v"; }
  done <"$RUN/sysctl.saved"
fi

# 8. The private directory. Refuse to delete through a mount that survived.
if [[ -e $STATE ]]; then
  if awk -v p="$STATE" 'index($2, p "/") == 1 || $2 == p { found = 1 } END { exit !found }' /proc/self/mounts; then
    die "still mounted below $STATE; not deleting it (see /proc/self/mounts)"
  fi
  rm -rf --one-file-system "$STATE"
fi
log "down: all components stopped, $STATE removed"

#!/usr/bin/env bash
# Smoke check of the running dev cluster (up.sh runs it after a fresh
# bring-up; CLUSTER_SMOKE=0 skips that). It runs a pod from the locally
# imported smoke-httpd image (imagePullPolicy: Never, no registry), waits for
# it to be Ready (the kubelet's HTTP readiness probe), reaches its pod IP from
# the host, checks `kubectl logs` and `kubectl exec` (apiserver -> kubelet ->
# containerd streaming) and that the pod reaches the API server at the
# kubernetes Service's address, then deletes it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

POD=pronghorn-smoke
t0=$(date +%s%N)
cleanup() { kctl -n default delete pod "$POD" --ignore-not-found --wait=false >/dev/null 2>&1 || true; }
trap 'log "smoke: FAILED (logs: $LOGS)"; cleanup' ERR

kctl -n default delete pod "$POD" --ignore-not-found --wait=true --timeout=60s >/dev/null
kctl -n default apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $POD
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: $SMOKE_IMAGE
    imagePullPolicy: Never
    ports: [{containerPort: 8080}]
    readinessProbe:
      httpGet: {port: 8080, path: /}
      periodSeconds: 1
EOF
log "smoke: pod $POD created; waiting for Ready"
kctl -n default wait --for=condition=Ready "pod/$POD" --timeout=90s >/dev/null

ip="$(kctl -n default get pod "$POD" -o 'jsonpath={.status.podIP}')"
# Only ever contact the pod subnet of our own bridge.
[[ $ip == "${POD_CIDR%.*}".* ]] || { log "smoke: pod IP '$ip' is not in $POD_CIDR"; false; }
body="$(curl -fsS --noproxy '*' --max-time 5 "http://$ip:8080/")"
[[ $body == "pronghorn-smoke $POD" ]] || { log "smoke: unexpected answer from $ip: $body"; false; }
log "smoke: host reached pod IP $ip:8080 -> '$body'"

kctl -n default logs "$POD" | grep -q "listening on" || { log "smoke: kubectl logs lacks the start line"; false; }
out="$(kctl -n default exec "$POD" -- /smoke-httpd -get http://127.0.0.1:8080/)"
[[ $out == "pronghorn-smoke $POD" ]] || { log "smoke: kubectl exec said: $out"; false; }
log "smoke: kubectl logs and exec work"
# In-cluster clients (a provider in a pod) find the API server at the
# kubernetes Service's address (up.sh's relay).
out="$(kctl -n default exec "$POD" -- /smoke-httpd -dial "$APISERVER_SERVICE_IP:$APISERVER_SERVICE_PORT")"
[[ $out == "connected to $APISERVER_SERVICE_IP:$APISERVER_SERVICE_PORT" ]] || { log "smoke: a pod cannot reach the API server's Service address: $out"; false; }
log "smoke: a pod reaches the API server at $APISERVER_SERVICE_IP:$APISERVER_SERVICE_PORT"

kctl -n default delete pod "$POD" --wait=true --timeout=60s >/dev/null
log "smoke: OK in $(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')s (pod deleted)"

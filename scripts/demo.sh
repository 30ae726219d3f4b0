#!/usr/bin/env bash
# demo.sh — the main job on the embedded defaults: set up, start the provider
# on :8080 (local mode, state in /var/lib/pronghorn, snapshots in a local
# directory), deploy the PyPy sample function with Pronghorn's request-centric
# strategy and workers retired every 4 requests, invoke it, and show how new
# workers were restored from snapshots (the counter carries on instead of
# restarting at 1). Basic auth is on: the provider generates its credentials
# in $DATA_DIR/secrets at first start and keeps them. The provider keeps
# running; stop it with:
#   kill "$(cat /var/lib/pronghorn/provider.pid)"
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-8080}"
DATA_DIR="${DATA_DIR:-/var/lib/pronghorn}"
GATEWAY="http://127.0.0.1:$PORT"

scripts/setup.sh
make --no-print-directory build
mkdir -p "$DATA_DIR"

if [[ -f "$DATA_DIR/provider.pid" ]] && kill -0 "$(cat "$DATA_DIR/provider.pid")" 2>/dev/null; then
	echo "demo: stopping the provider started by an earlier demo"
	kill "$(cat "$DATA_DIR/provider.pid")"
	while kill -0 "$(cat "$DATA_DIR/provider.pid")" 2>/dev/null; do sleep 0.1; done
fi

nohup bin/pronghorn provider --port "$PORT" --data-dir "$DATA_DIR" \
	--functions-dir "$PWD/benchmarks/functions" >"$DATA_DIR/provider.log" 2>&1 &
echo $! >"$DATA_DIR/provider.pid"
for _ in $(seq 100); do
	curl -fsS "$GATEWAY/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fsS "$GATEWAY/healthz" >/dev/null || { cat "$DATA_DIR/provider.log"; exit 1; }
echo "demo: provider up at $GATEWAY (log: $DATA_DIR/provider.log)"

AUTH_USER_FILE="$DATA_DIR/secrets/basic-auth-user"
AUTH_PASSWORD_FILE="$DATA_DIR/secrets/basic-auth-password"
# api calls /system/* with the provider's credentials; curl reads them as
# config from stdin, so the password never shows in ps.
api() {
	curl -K - "$@" <<<"user = \"$(cat "$AUTH_USER_FILE"):$(cat "$AUTH_PASSWORD_FILE")\""
}

# The same request faas-cli deploy sends.
code=$(api -sS -o /dev/null -w '%{http_code}' -X POST "$GATEWAY/system/functions" \
	-d '{"service":"counter","image":"counter-pypy","annotations":{"com.pronghorn.strategy":"request-centric","com.pronghorn.evict-after":"4"}}')
case "$code" in
202) echo "demo: deployed counter (benchmarks/functions/counter-pypy)" ;;
409) echo "demo: counter already deployed" ;;
*) echo "demo: deploy answered $code" >&2; exit 1 ;;
esac

for i in $(seq 16); do
	echo "demo: invoke $i: $(curl -fsS "$GATEWAY/function/counter" -d "request $i")"
	sleep 0.2
done
echo "demo: status: $(api -fsS "$GATEWAY/system/function/counter")"
echo
basic_auth_user="$(cat "$AUTH_USER_FILE")" basic_auth_password="$(cat "$AUTH_PASSWORD_FILE")" \
	bin/pronghorn inspect counter --gateway "$GATEWAY"
echo
echo "demo: try: faas-cli login -g $GATEWAY --password-stdin < $AUTH_PASSWORD_FILE"
echo "demo:      faas-cli list -g $GATEWAY; faas-cli invoke counter -g $GATEWAY <<< hi"

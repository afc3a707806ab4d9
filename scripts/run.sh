#!/usr/bin/env bash
# `make run`: start Redis (unless one answers), make sure the busybox base
# image exists, migrate the database and serve the panel in the foreground.
# `make stop` (scripts/stop.sh) stops what this started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=.venv/bin
VAR_DIR=${HOSTPANEL_VAR_DIR:-$PWD/var}
RUN_DIR=$VAR_DIR/run
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
(umask 077 && mkdir -p "$VAR_DIR" && chmod 0700 "$VAR_DIR")  # secrets, database, uploads
mkdir -p "$RUN_DIR" "$VAR_DIR/redis" "$VAR_DIR/log"

# Redis (requires a password; sets and exports REDIS_URL): see scripts/redis.sh.
source scripts/redis.sh

# Caddy, the edge proxy (admin API on a private unix socket): see scripts/caddy.sh. The agent
# configures it; Caddy asks the panel (this address) before it gets a certificate.
export HOSTPANEL_EDGE_PANEL_URL=${HOSTPANEL_EDGE_PANEL_URL:-http://$HOST:$PORT}
source scripts/caddy.sh

# The busybox base image, so `hpctl run busybox ...` works right away.
has_busybox() {
    "$BIN/hpctl" images --json 2>/dev/null | "$BIN/python" -c '
import json, sys

def strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for x in v.values():
            yield from strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from strings(x)

try:
    listing = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
found = any(s == "busybox" or s.startswith("busybox:") for s in strings(listing))
sys.exit(0 if found else 1)
'
}
if has_busybox; then
    echo "images: busybox present"
elif "$BIN/hpctl" image bootstrap busybox; then
    echo "images: bootstrapped busybox"
else
    echo "images: WARNING: could not bootstrap busybox (see above); the panel starts anyway" >&2
fi

"$BIN/python" manage.py migrate --noinput

# The demo data (idempotent): an admin, a tenant "demo" and its owner, a fresh API token.
SEED_OUT=$("$BIN/python" manage.py seed_demo --token)

# The panel's periodic host checks (`manage.py watchhosts`): dead hosts, drains and evacuations,
# placing pending replicas. The agent below has no database, so it leaves them to the panel.
if [[ -f $RUN_DIR/watchhosts.pid ]] && kill -0 "$(<"$RUN_DIR/watchhosts.pid")" 2>/dev/null; then
    echo "host checks: already running (pid $(<"$RUN_DIR/watchhosts.pid"))"
else
    nohup "$BIN/python" manage.py watchhosts >>"$VAR_DIR/log/watchhosts.log" 2>&1 &
    echo $! >"$RUN_DIR/watchhosts.pid"
    echo "host checks: manage.py watchhosts (log: $VAR_DIR/log/watchhosts.log)"
fi

# One local host agent, enrolled like any other host (`manage.py enroll_local`: its X25519 key pair
# and credentials in $VAR_DIR/agent, 0700, made on the first run and reused after; README "Hosts").
# It runs WITHOUT the database, the panel's REDIS_URL or its secret keys: it reaches the panel
# through its internal API at http://$HOST:$PORT (this machine only) and Redis as its own ACL user,
# on this machine's engine (HOSTPANEL_ROOT / HOSTPANEL_INSTANCE) and Caddy (HOSTPANEL_CADDY_ADMIN).
# The panel starts last (below): the agent waits for it (hostagent --panel-wait).
AGENT_NAME=${AGENT_NAME:-local}
AGENT_DIR=$VAR_DIR/agent
case $HOST in
    0.0.0.0 | '::' | '') PANEL_HOST=127.0.0.1 ;;
    *:*) PANEL_HOST="[$HOST]" ;;
    *) PANEL_HOST=$HOST ;;
esac
if [[ -f $RUN_DIR/hostagent.pid ]] && kill -0 "$(<"$RUN_DIR/hostagent.pid")" 2>/dev/null; then
    echo "host agent: already running (pid $(<"$RUN_DIR/hostagent.pid"))"
else
    "$BIN/python" manage.py enroll_local --name "$AGENT_NAME" --state-dir "$AGENT_DIR" \
        --panel "http://$PANEL_HOST:$PORT"
    (umask 077 && mkdir -p "$AGENT_DIR/var")  # its own var: its secret key, its edge state
    env -u DATABASE_URL -u REDIS_URL -u HOSTPANEL_SECRET_KEY -u HOSTPANEL_SECRET_KEYS \
        HOSTPANEL_AGENT_STATE_DIR="$AGENT_DIR" HOSTPANEL_VAR_DIR="$AGENT_DIR/var" \
        nohup "$BIN/python" manage.py hostagent --state-dir "$AGENT_DIR" \
        >>"$VAR_DIR/log/hostagent.log" 2>&1 &
    echo $! >"$RUN_DIR/hostagent.pid"
    echo "host agent: $AGENT_NAME, enrolled, no database (state: $AGENT_DIR; log: $VAR_DIR/log/hostagent.log)"
fi

# The operator's Docker Engine API on a root-only unix socket: the stock docker CLI, docker-py and
# docker-compose drive this machine's engine (`hpctl docker serve`; log: var/log/docker-api.log).
DOCKER_SOCKET=${HOSTPANEL_DOCKER_SOCKET:-/run/hostpanel/docker.sock}
if [[ -f $RUN_DIR/docker-api.pid ]] && kill -0 "$(<"$RUN_DIR/docker-api.pid")" 2>/dev/null; then
    echo "docker API: already running (pid $(<"$RUN_DIR/docker-api.pid"))"
else
    nohup "$BIN/hpctl" docker serve --socket "$DOCKER_SOCKET" >>"$VAR_DIR/log/docker-api.log" 2>&1 &
    echo $! >"$RUN_DIR/docker-api.pid"
    for _ in $(seq 50); do [[ -S $DOCKER_SOCKET ]] && break; sleep 0.1; done
    echo "docker API: unix://$DOCKER_SOCKET (log: $VAR_DIR/log/docker-api.log)"
fi

# The tenants' Docker Engine API (TLS with client certificates; README "Docker API").
DOCKER_API_PORT=${HOSTPANEL_DOCKER_API_PORT:-2376}
if [[ -f $RUN_DIR/tenant-docker-api.pid ]] && kill -0 "$(<"$RUN_DIR/tenant-docker-api.pid")" 2>/dev/null; then
    echo "tenants' docker API: already running (pid $(<"$RUN_DIR/tenant-docker-api.pid"))"
else
    nohup "$BIN/python" manage.py dockerapi >>"$VAR_DIR/log/tenant-docker-api.log" 2>&1 &
    echo $! >"$RUN_DIR/tenant-docker-api.pid"
    echo "tenants' docker API: port $DOCKER_API_PORT (log: $VAR_DIR/log/tenant-docker-api.log)"
fi

cat <<EOT

HostPanel is running on http://$HOST:$PORT/
  pages:   http://$HOST:$PORT/   (log in as demo or admin, passwords below)
  health:  http://$HOST:$PORT/healthz
  admin:   http://$HOST:$PORT/admin/
  API:     http://$HOST:$PORT/api/v1/   docs: http://$HOST:$PORT/api/docs/
  apps:    an app with an http_port answers at http://<app>-<tenant>.${HOSTPANEL_APPS_DOMAIN:-localhost}:${HOSTPANEL_PROXY_HTTP_PORT:-8080}/
           and https://...:${HOSTPANEL_PROXY_HTTPS_PORT:-8443}/ (trust $HOSTPANEL_CADDY_DATA/pki/authorities/local/root.crt)
$SEED_OUT
  try:     curl -H "Authorization: Token <demo API token>" http://$HOST:$PORT/api/v1/tenants/demo/apps/
           curl -H "Authorization: Token <demo API token>" -H 'Content-Type: application/json' \\
                -d '{"name":"hello","image":"busybox:latest","command":["sh","-c","echo hi; sleep 3600"]}' \\
                http://$HOST:$PORT/api/v1/tenants/demo/apps/
  tenants: the tenants' Docker API on tcp://${HOSTPANEL_DOCKER_API_HOST:-${HOSTPANEL_DOCKER_API_BIND:-127.0.0.1}}:$DOCKER_API_PORT (TLS): issue
           a certificate at http://$HOST:$PORT/t/demo/docker/ and run the docker context create command it shows
  engine:  $BIN/hpctl images
           $BIN/hpctl run --rm busybox echo hello
           $BIN/hpctl run -d --name ticker busybox sh -c 'while true; do date; sleep 1; done'
           $BIN/hpctl ps; $BIN/hpctl logs -f ticker; $BIN/hpctl rm -f ticker
           $BIN/hpctl host info
  docker:  DOCKER_HOST=unix://$DOCKER_SOCKET docker ps
           DOCKER_HOST=unix://$DOCKER_SOCKET docker run --rm busybox echo hello
  stop:    Ctrl-C stops the panel; 'make stop' also stops the host agent, the host checks, the Docker APIs and the Redis started here

EOT

# The panel on $HOST:$PORT: Caddy in front, gunicorn (HOSTPANEL_HTTP_WORKERS processes, default two
# per CPU, of HOSTPANEL_HTTP_THREADS threads) for HTTP, daphne for the /ws/ sockets (hostpanel/serve.py).
echo $$ >"$RUN_DIR/panel.pid"
exec "$BIN/python" -m hostpanel.serve --host "$HOST" --port "$PORT"

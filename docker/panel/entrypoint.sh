#!/bin/sh
# The panel image's entrypoint, run as root only to own the data directory (the volume at
# $HOSTPANEL_VAR_DIR) and to drop to the hostpanel user:
# - `web` migrates the database, then serves HTTP with gunicorn on :8000;
# - `ws` serves the WebSockets (/ws/) with daphne on :8001;
# - `scheduler` runs the panel's periodic host checks (`manage.py watchhosts`: dead hosts,
#   drains, evacuations);
# - `manage.py ...` runs a management command (`manage.py createsuperuser` ...); anything
#   else is run as given (`sh`).
# Without DATABASE_URL / REDIS_URL they are made from POSTGRES_PASSWORD / REDIS_PASSWORD and
# the compose file's service names (postgres, redis).
set -eu
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$HOSTPANEL_VAR_DIR"
    chown hostpanel:hostpanel "$HOSTPANEL_VAR_DIR"
    chmod 0700 "$HOSTPANEL_VAR_DIR"
    HOME=$HOSTPANEL_VAR_DIR exec setpriv --reuid=hostpanel --regid=hostpanel --init-groups --inh-caps=-all -- "$0" "$@"
fi
if [ -z "${DATABASE_URL:-}" ] && [ -n "${POSTGRES_PASSWORD:-}" ]; then
    export DATABASE_URL="postgres://${POSTGRES_USER:-hostpanel}:$POSTGRES_PASSWORD@${POSTGRES_HOST:-postgres}:5432/${POSTGRES_DB:-hostpanel}"
fi
if [ -z "${REDIS_URL:-}" ] && [ -n "${REDIS_PASSWORD:-}" ]; then
    export REDIS_URL="redis://${REDIS_USER:-hostpanel}:$REDIS_PASSWORD@${REDIS_HOST:-redis}:6379/0"
fi
: "${HOSTPANEL_HTTP_WORKERS:=2}"
: "${HOSTPANEL_HTTP_THREADS:=4}"
case "${1:-web}" in
web)
    python3 manage.py migrate --noinput
    exec gunicorn hostpanel.wsgi:application --bind 0.0.0.0:8000 \
        --workers "$HOSTPANEL_HTTP_WORKERS" --threads "$HOSTPANEL_HTTP_THREADS" --worker-class gthread \
        --access-logfile -
    ;;
ws)
    exec daphne --bind 0.0.0.0 --port 8001 hostpanel.asgi:application
    ;;
scheduler)
    shift
    exec python3 manage.py watchhosts "$@"
    ;;
manage.py)
    shift
    exec python3 manage.py "$@"
    ;;
*)
    exec "$@"
    ;;
esac

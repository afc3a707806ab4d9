#!/bin/sh
# The panel image's entrypoint: `web` migrates the database, then serves HTTP with gunicorn on
# :8000; `ws` serves the WebSockets (/ws/) with daphne on :8001; anything else is run as a
# `manage.py` command (`manage.py migrate`, `manage.py shell` ...) or as given (`sh`).
set -eu
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
manage.py)
    shift
    exec python3 manage.py "$@"
    ;;
*)
    exec "$@"
    ;;
esac

#!/bin/sh
# Start Caddy as the caddy user, its data directory (the volume at /data) its own.
set -eu
if [ "$(id -u)" = 0 ]; then
    mkdir -p /data
    chown caddy:caddy /data
    HOME=/data exec setpriv --reuid=caddy --regid=caddy --init-groups --inh-caps=-all -- "$0" "$@"
fi
exec "$@"

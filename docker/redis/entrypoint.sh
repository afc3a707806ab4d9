#!/bin/sh
# Write the ACL users (default off; the panel's user with REDIS_PASSWORD, stored as its SHA-256)
# and start Redis as the redis user.
set -eu
if [ "$(id -u)" = 0 ]; then
    mkdir -p /data
    chown redis:redis /data
    chmod 0700 /data
    HOME=/data exec setpriv --reuid=redis --regid=redis --init-groups --inh-caps=-all -- "$0" "$@"
fi
: "${REDIS_PASSWORD:?set REDIS_PASSWORD (docker/compose.yaml reads it from redis.env)}"
user=${REDIS_USER:-hostpanel}
hash=$(printf '%s' "$REDIS_PASSWORD" | sha256sum | cut -d' ' -f1)
umask 077
touch /data/users.acl
{
    grep -v -e '^user default ' -e "^user $user " /data/users.acl || true
    echo "user default off"
    echo "user $user on #$hash ~* &* +@all"
} >/data/users.acl.new
mv /data/users.acl.new /data/users.acl
exec "$@"

#!/usr/bin/env bash
# Make the control plane's secrets, once: docker/secrets.sh [DIR]   (default var/docker/secrets)
#   panel.env     HOSTPANEL_SECRET_KEY
#   postgres.env  POSTGRES_PASSWORD   (the panel's database role)
#   redis.env     REDIS_PASSWORD      (the panel's Redis ACL user)
# docker/compose.yaml gives each service only the files it needs (HOSTPANEL_SECRETS=DIR).
# Existing files are kept; new ones are mode 0600 in a 0700 directory.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${1:-${HOSTPANEL_SECRETS:-$REPO/var/docker/secrets}}
(umask 077 && mkdir -p "$DIR")
chmod 0700 "$DIR"
secret() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
make_env() {
    local file=$DIR/$1 name=$2
    if [[ ! -s $file ]]; then
        (umask 077 && echo "$name=$(secret)" >"$file.part" && mv "$file.part" "$file")
        echo "docker/secrets.sh: made $file" >&2
    fi
}
make_env panel.env HOSTPANEL_SECRET_KEY
make_env postgres.env POSTGRES_PASSWORD
make_env redis.env REDIS_PASSWORD

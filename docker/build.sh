#!/usr/bin/env bash
# Build the control plane's images with HostPanel's own engine (`hpctl build`), offline:
#
#   docker/build.sh [base|panel|postgres|redis|caddy ...]     (default: all of them)
#
# - hostpanel/debian:bookworm, the base: `debootstrap --variant=minbase` on this host, once; the
#   result is kept as an OCI archive in $CACHE/debian-bookworm.tar and imported from there after.
# - hostpanel/panel, hostpanel/postgres, hostpanel/redis, hostpanel/caddy: FROM the base. Build
#   containers have no network, so the Debian packages each image needs (and nothing the base
#   already has) are downloaded here with the host's apt, and the panel's Python wheels with pip;
#   both go into the image's build context ($CACHE/context/NAME) and are installed offline.
#
# Idempotent: downloads are cached under $CACHE, and unchanged contexts hit the build cache.
# The engine is hpctl's (HOSTPANEL_ROOT / HOSTPANEL_INSTANCE, as for `hpctl`); needs root.
# Env: HPCTL (the hpctl command), HOSTPANEL_DOCKER_CACHE (default var/docker), TAG (default latest).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${HOSTPANEL_DOCKER_CACHE:-$REPO/var/docker}
TAG=${TAG:-latest}
BASE=hostpanel/debian:bookworm
read -r -a HPCTL <<<"${HPCTL:-$REPO/.venv/bin/python -m engine.cli}"
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

# The Debian packages of each image (beyond the base), installed from debs/ in its context.
declare -A PACKAGES=(
    [panel]="python3 python3-venv ca-certificates"
    [postgres]="postgresql-15"
    [redis]="redis-server"
    [caddy]="caddy ca-certificates"
)
ALL=(base panel postgres redis caddy)

hpctl() { "${HPCTL[@]}" "$@"; }
say() { echo "docker/build.sh: $*" >&2; }

# The base image: present in the engine, else imported from the cache, else bootstrapped.
base() {
    mkdir -p "$CACHE"
    if hpctl image inspect "$BASE" >/dev/null 2>&1; then
        say "$BASE present"
    elif [[ -f $CACHE/debian-bookworm.tar ]]; then
        hpctl image import "$CACHE/debian-bookworm.tar" "$BASE" >/dev/null
        say "$BASE imported from $CACHE/debian-bookworm.tar"
    else
        say "bootstrapping $BASE with debootstrap (once; about a minute)"
        hpctl image bootstrap debian --tag "$BASE" >/dev/null
        hpctl image export "$BASE" "$CACHE/debian-bookworm.tar.part" >/dev/null
        mv "$CACHE/debian-bookworm.tar.part" "$CACHE/debian-bookworm.tar"
        rm -f "$CACHE/base-status"
    fi
    # The base's dpkg status: apt resolves each image's packages against it, so only what the
    # base lacks is downloaded.
    if [[ ! -s $CACHE/base-status ]]; then
        hpctl run --rm "$BASE" cat /var/lib/dpkg/status >"$CACHE/base-status.part"
        mv "$CACHE/base-status.part" "$CACHE/base-status"
    fi
}

# apt-get on the host's package lists, as if the base's packages were the installed ones.
apt_for_base() {
    apt-get -q -y --no-install-recommends -o Debug::NoLocking=1 \
        -o Dir::State::status="$CACHE/base-status" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= \
        "$@"
}

# debs/ of a context: the .debs of PACKAGES[name] and their dependencies the base lacks.
fetch_debs() {
    local name=$1 context=$2 empty names
    local archive=$CACHE/debs
    mkdir -p "$archive/partial" "$context/debs"
    empty=$(mktemp -d)
    mkdir -p "$empty/partial"
    # --print-uris lists only what is not in the archive dir yet: ask against an empty one.
    # shellcheck disable=SC2086
    if ! names=$(apt_for_base -qq --print-uris -o Dir::Cache::archives="$empty" install ${PACKAGES[$name]} |
        awk '{print $2}'); then
        rm -rf "$empty"
        say "apt cannot resolve ${PACKAGES[$name]} for hostpanel/$name (above); run apt-get update and try again"
        exit 1
    fi
    rm -rf "$empty"
    # shellcheck disable=SC2086
    apt_for_base --download-only -o Dir::Cache::archives="$archive" install ${PACKAGES[$name]} >/dev/null
    rm -f "$context"/debs/*.deb
    for deb in $names; do
        ln "$archive/$deb" "$context/debs/$deb" 2>/dev/null || cp "$archive/$deb" "$context/debs/$deb"
    done
}

# The panel's extra context: its runtime requirements (not the test tools), their wheels, and the
# project's tracked source (engine/, hostpanel/, templates/, static/, manage.py).
panel_context() {
    local context=$1
    sed '/^# Development and tests/,$d' "$REPO/requirements.txt" >"$context/requirements.txt"
    mkdir -p "$CACHE/wheels"
    local stamp=$CACHE/wheels/.requirements
    # pip runs under Debian's python3 (the image's: 3.11.2), so markers such as
    # python_full_version pick the wheels the image needs, not the venv's interpreter's;
    # skipped while the requirements are those of the last successful run.
    if ! cmp -s "$context/requirements.txt" "$stamp"; then
        "$REPO/.venv/bin/pip" --python /usr/bin/python3 wheel -q --disable-pip-version-check \
            --wheel-dir "$CACHE/wheels" --find-links "$CACHE/wheels" -r "$context/requirements.txt" \
            2> >(grep -v '^WARNING: Location' >&2)
        cp "$context/requirements.txt" "$stamp"
    fi
    rm -rf "$context/wheels" "$context/src"
    cp -al "$CACHE/wheels" "$context/wheels" 2>/dev/null || cp -a "$CACHE/wheels" "$context/wheels"
    mkdir -p "$context/src"
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard -- \
        engine hostpanel templates static manage.py pyproject.toml |
        tar --null --no-recursion -cf - -T -) | tar -xf - -C "$context/src"
}

image() {
    local name=$1 context=$CACHE/context/$1
    mkdir -p "$context"
    fetch_debs "$name" "$context"
    rm -rf "$context/docker"
    mkdir -p "$context/docker"
    cp -a "$REPO/docker/$name" "$context/docker/$name"
    if [[ $name == panel ]]; then
        panel_context "$context"
    fi
    say "building hostpanel/$name:$TAG"
    hpctl build -q -t "hostpanel/$name:$TAG" -f "$context/docker/$name/Dockerfile" "$context"
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL[@]}")
for target in "${targets[@]}"; do
    if [[ " ${ALL[*]} " != *" $target "* ]]; then
        say "unknown image $target (one of: ${ALL[*]}); nothing was built"
        exit 2
    fi
done
base
for target in "${targets[@]}"; do
    [[ $target == base ]] || image "$target"
done

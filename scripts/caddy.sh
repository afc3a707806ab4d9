# Sourced by scripts/run.sh (`make run`) with BIN, VAR_DIR and RUN_DIR set: make sure this
# host's Caddy (the edge proxy) runs, with its admin API on a unix socket only root reaches
# ($HOSTPANEL_CADDY_ADMIN, default $VAR_DIR/run/caddy/admin.sock in a 0700 directory) and its
# data (certificates, the internal CA) under $HOSTPANEL_CADDY_DATA (default $VAR_DIR/caddy).
# Caddy starts with only its admin API; the host agent loads the proxy config through it.
CADDY_ADMIN=${HOSTPANEL_CADDY_ADMIN-$VAR_DIR/run/caddy/admin.sock}
CADDY_DATA=${HOSTPANEL_CADDY_DATA:-$VAR_DIR/caddy}
export HOSTPANEL_CADDY_ADMIN=$CADDY_ADMIN HOSTPANEL_CADDY_DATA=$CADDY_DATA
caddy_answers() {
    "$BIN/python" -c 'import sys; from pathlib import Path; from hostpanel.edge.caddy import CaddyAdmin
CaddyAdmin(Path(sys.argv[1]), timeout=1).config()' "$CADDY_ADMIN" 2>/dev/null
}
if [[ -z $CADDY_ADMIN ]]; then
    echo "caddy: HOSTPANEL_CADDY_ADMIN is empty: no edge proxy on this host"
elif ! command -v caddy >/dev/null; then
    echo "caddy: not installed ('make install' installs it); apps get no hostnames here" >&2
elif caddy_answers; then
    echo "caddy: already answering on $CADDY_ADMIN"
else
    (umask 077 && mkdir -p "$(dirname "$CADDY_ADMIN")" "$CADDY_DATA" "$VAR_DIR/caddy-home")
    chmod 0700 "$(dirname "$CADDY_ADMIN")"
    rm -f "$CADDY_ADMIN"  # a stale socket of a Caddy that died
    printf '{"admin": {"listen": "unix/%s", "config": {"persist": false}}}\n' "$CADDY_ADMIN" \
        >"$VAR_DIR/caddy-home/boot.json"
    HOME=$VAR_DIR/caddy-home XDG_CONFIG_HOME=$VAR_DIR/caddy-home XDG_DATA_HOME=$VAR_DIR/caddy-home \
        nohup caddy run --config "$VAR_DIR/caddy-home/boot.json" --pidfile "$RUN_DIR/caddy.pid" \
        >>"$VAR_DIR/log/caddy.log" 2>&1 &
    for _ in $(seq 50); do
        caddy_answers && break
        sleep 0.1
    done
    if caddy_answers; then
        echo "caddy: started (admin $CADDY_ADMIN, log: $VAR_DIR/log/caddy.log)"
    else
        echo "caddy: did not answer after starting; see $VAR_DIR/log/caddy.log" >&2
        return 1 2>/dev/null || exit 1
    fi
fi

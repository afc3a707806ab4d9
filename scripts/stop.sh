#!/usr/bin/env bash
# `make stop`: stop the processes `make run` started, found by their pid files
# (a process is only signalled if it is still the program that wrote the file).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUN_DIR=${HOSTPANEL_VAR_DIR:-$PWD/var}/run

stop_pidfile() {
    local name=$1 pidfile=$2 pattern=$3 pid
    if [[ ! -f $pidfile ]]; then
        echo "$name: not started by make run"
        return 0
    fi
    pid=$(<"$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern"; then
        kill -TERM "$pid"
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid"
        fi
        echo "$name: stopped (pid $pid)"
    else
        echo "$name: not running (stale pid file)"
    fi
    rm -f "$pidfile"
}

stop_pidfile panel "$RUN_DIR/panel.pid" 'hostpanel.serve\|daphne'  # stops its gunicorn, daphne and Caddy (or is the lone daphne)
stop_pidfile panel "$RUN_DIR/daphne.pid" daphne  # started by older versions
stop_pidfile "host agent" "$RUN_DIR/hostagent.pid" hostagent
stop_pidfile "host checks" "$RUN_DIR/watchhosts.pid" "manage.py watchhosts"
stop_pidfile "docker API" "$RUN_DIR/docker-api.pid" "docker serve"
stop_pidfile "tenants' docker API" "$RUN_DIR/tenant-docker-api.pid" "manage.py dockerapi"
stop_pidfile monitor "$RUN_DIR/monitor.pid" "system monitor"  # started by older versions
stop_pidfile caddy "$RUN_DIR/caddy.pid" caddy
stop_pidfile redis "$RUN_DIR/redis.pid" redis-server

# Sourced by scripts/run.sh (`make run`) with BIN, VAR_DIR and RUN_DIR set: make sure the
# Redis that REDIS_URL names answers, with a password, and export REDIS_URL.
#
# Redis is the Celery broker and the Channels layer, so it requires a password: by default
# the one in $VAR_DIR/redis_password (mode 0600, made once by `make install` or here) on
# 127.0.0.1:${REDIS_PORT:-6379}, carried by REDIS_URL to the panel and the host agent.
# Redis is started here (config file with `requirepass`, mode 0600) only when REDIS_URL
# points at this machine and nothing answers there yet; one answering without a
# password is refused.
REDIS_PASSWORD=$("$BIN/python" -m hostpanel.config redis-password "$VAR_DIR")
REDIS_URL=${REDIS_URL:-redis://:$REDIS_PASSWORD@127.0.0.1:${REDIS_PORT:-6379}/0}
export REDIS_URL
redis_hostport=${REDIS_URL#*://}
redis_auth=""
if [[ $redis_hostport == *@* ]]; then
    redis_auth=${redis_hostport%%@*}
    redis_auth=${redis_auth#*:}
fi
redis_hostport=${redis_hostport##*@}
redis_hostport=${redis_hostport%%/*}
redis_host=${redis_hostport%%:*}
redis_port=6379
[[ $redis_hostport == *:* ]] && redis_port=${redis_hostport##*:}
redis_ping() {  # PONG if Redis answers with the password of REDIS_URL (none: without one)
    REDISCLI_AUTH=$1 redis-cli --no-auth-warning -h "$redis_host" -p "$redis_port" ping 2>/dev/null || true
}
if [[ $(redis_ping "") == PONG ]]; then
    echo "redis: $redis_host:$redis_port answers without a password; stop it ('make stop' if" \
        "'make run' started it) or give it requirepass, then run this again" >&2
    return 1 2>/dev/null || exit 1
elif [[ $(redis_ping "$redis_auth") == PONG ]]; then
    echo "redis: already answering on $redis_host:$redis_port"
elif [[ -z $redis_auth ]]; then
    echo "redis: REDIS_URL has no password; use redis://:PASSWORD@HOST:PORT/0" >&2
    return 1 2>/dev/null || exit 1
elif [[ $redis_host == 127.0.0.1 || $redis_host == localhost ]]; then
    (
        umask 077
        cat >"$VAR_DIR/redis/redis.conf" <<EOC
bind 127.0.0.1
port $redis_port
dir $VAR_DIR/redis
pidfile $RUN_DIR/redis.pid
logfile $VAR_DIR/log/redis.log
daemonize yes
requirepass $redis_auth
EOC
    )
    redis-server "$VAR_DIR/redis/redis.conf"
    for _ in $(seq 50); do
        [[ $(redis_ping "$redis_auth") == PONG ]] && break
        sleep 0.1
    done
    if [[ $(redis_ping "$redis_auth") != PONG ]]; then
        echo "redis: did not answer after starting; see $VAR_DIR/log/redis.log" >&2
        return 1 2>/dev/null || exit 1
    fi
    echo "redis: started on 127.0.0.1:$redis_port with a password (log: $VAR_DIR/log/redis.log)"
else
    echo "redis: nothing answers at $redis_host:$redis_port with REDIS_URL's password;" \
        "start it there or set REDIS_URL" >&2
    return 1 2>/dev/null || exit 1
fi

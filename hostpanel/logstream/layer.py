"""The Channels layers of HostPanel: channels-redis, made to survive idle channels with redis-py 8,
the layer live-log line batches travel on (:func:`lines_layer`), and each host's own layer of
live log following (:func:`host_layer`).

redis-py 8 gives every socket a 5 s read timeout by default, and channels-redis
blocks for a message (BZPOPMIN) for 5 s too: a consumer that waits 5 s without a
message then fails with ``redis.exceptions.TimeoutError``. Blocking for 2 s at a
time stays inside that timeout (an idle channel costs one cheap Redis call every 2 s).

Following a replica's log is all on its host's layer: Redis pub/sub (channels-redis's
``RedisPubSubChannelLayer``) with the prefix ``hostlogs.<host>.``
(:func:`hostpanel.hosts.redis_acl.logs_prefix`), so every channel of it begins with that prefix:
the group :data:`hostpanel.logstream.watch.WATCH_GROUP` the host's follower listens on for
viewers' leases, each viewer's own channel (``<prefix>specific.<uuid>``: backfill and line
batches arrive there) and the replicas' line groups. The panel reaches it with its own Redis
URL; an enrolled host's agent with its own ACL user, whose only channels are those
(``&hostlogs.<host>.*``): it cannot reach another host's viewers or replicas' streams.
"""

from __future__ import annotations

import threading
from typing import Any

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from hostpanel.hosts.redis_acl import logs_prefix

LINES_ALIAS = "logs"


class RedisChannelLayer(_RedisChannelLayer):  # type: ignore[misc]
    brpop_timeout = 2


def lines_layer() -> Any:
    """The layer of log line batches: the ``logs`` alias (Redis pub/sub: one PUBLISH per batch,
    fanned out in each panel process, so 100 viewers cost Redis and the agent what one does),
    or the default layer where no ``logs`` alias is configured (tests' in-memory layer)."""
    from channels.layers import get_channel_layer

    return get_channel_layer(_lines_alias())


def _lines_alias() -> str:
    return LINES_ALIAS if LINES_ALIAS in settings.CHANNEL_LAYERS else "default"


_host_layers: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def host_layer(host: str, redis_url: str = "") -> Any:
    """The layer of ``host``'s live log following (one per host and process): Redis pub/sub with the
    prefix :func:`logs_prefix` on ``redis_url`` (an enrolled agent's own user) or the lines layer's
    Redis (the panel's); where the lines layer is not Redis (tests' in-memory layer), a layer of that
    backend of its own per host."""
    with _lock:
        layer = _host_layers.get((host, redis_url))
        if layer is None:
            layer = _host_layers[(host, redis_url)] = _make_host_layer(host, redis_url)
        return layer


def _make_host_layer(host: str, redis_url: str) -> Any:
    config = settings.CHANNEL_LAYERS[_lines_alias()]
    backend = import_string(config["BACKEND"])
    options = dict(config.get("CONFIG") or {})
    if not issubclass(backend, _RedisChannelLayer | RedisPubSubChannelLayer):
        return backend(**options)
    options = {k: v for k, v in options.items() if k in ("hosts", "symmetric_encryption_keys")}
    if redis_url:
        options["hosts"] = [redis_url]
    return RedisPubSubChannelLayer(prefix=logs_prefix(host), **options)


def _forget_host_layers(*, setting: str, **kwargs: Any) -> None:
    if setting == "CHANNEL_LAYERS":
        with _lock:
            _host_layers.clear()


setting_changed.connect(_forget_host_layers)

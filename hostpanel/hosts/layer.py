"""Each host's own Channels layer: Redis pub/sub under the host's prefix ``hostlogs.<host>.``.

Everything the panel and one host's agent say to each other live, besides Celery tasks, travels on
this layer (channels-redis's ``RedisPubSubChannelLayer`` with the prefix
:func:`hostpanel.hosts.redis_acl.logs_prefix`), so every channel of it begins with that prefix:

- live log following (hostpanel/logstream/: the viewers' leases, backfill, line batches);
- the terminal relay and ``docker cp`` (hostpanel/terminal/, hostpanel/dockerapi/relayed.py,
  hostpanel/agent/relay.py and archive.py): the panel side's reply channel
  (``<prefix>specific.<uuid>``: output, exit, copy chunks) and the session's input group.

The panel reaches it with its own Redis URL; an enrolled host's agent with its own ACL user, whose
only channels are those (``&hostlogs.<host>.*``): it can neither reach another host's viewers,
terminals or copies nor read what is typed into them. Pub/sub has no "channel full": the
terminal and copies bound what is in flight themselves (hostpanel/terminal/flow.py). A layer's
connections of one event loop close with that loop (channels-redis wraps ``loop.close``).
"""

from __future__ import annotations

import threading
from typing import Any

from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from hostpanel.hosts.redis_acl import logs_prefix

PUBSUB_ALIAS = "logs"  # the panel's pub/sub layer (settings.CHANNEL_LAYERS), whose Redis hosts use

_host_layers: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def pubsub_alias() -> str:
    """The alias of the panel's pub/sub layer, or ``default`` where none is configured (tests)."""
    return PUBSUB_ALIAS if PUBSUB_ALIAS in settings.CHANNEL_LAYERS else "default"


def host_layer(host: str, redis_url: str = "") -> Any:
    """The layer of ``host`` (one per host and process; channels-redis keeps one connection per
    event loop): Redis pub/sub with the prefix :func:`logs_prefix` on ``redis_url`` (an enrolled
    agent's own user) or the pub/sub layer's Redis (the panel's); where that layer is not Redis
    (tests' in-memory layer), a layer of that backend of its own per host."""
    with _lock:
        layer = _host_layers.get((host, redis_url))
        if layer is None:
            layer = _host_layers[(host, redis_url)] = _make_host_layer(host, redis_url)
        return layer


def _make_host_layer(host: str, redis_url: str) -> Any:
    config = settings.CHANNEL_LAYERS[pubsub_alias()]
    backend = import_string(config["BACKEND"])
    options = dict(config.get("CONFIG") or {})
    if not issubclass(backend, RedisChannelLayer | RedisPubSubChannelLayer):
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

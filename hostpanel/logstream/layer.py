"""The Channels layers of HostPanel: channels-redis, made to survive idle channels with redis-py 8,
the layer live-log line batches travel on (:func:`lines_layer`), and each host's own layer
(:func:`host_layer`, hostpanel/hosts/layer.py), which live log following uses.

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

from typing import Any

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer

from hostpanel.hosts.layer import PUBSUB_ALIAS, host_layer, pubsub_alias

__all__ = ["LINES_ALIAS", "RedisChannelLayer", "host_layer", "lines_layer"]

LINES_ALIAS = PUBSUB_ALIAS


class RedisChannelLayer(_RedisChannelLayer):  # type: ignore[misc]
    brpop_timeout = 2


def lines_layer() -> Any:
    """The layer of log line batches: the ``logs`` alias (Redis pub/sub: one PUBLISH per batch,
    fanned out in each panel process, so 100 viewers cost Redis and the agent what one does),
    or the default layer where no ``logs`` alias is configured (tests' in-memory layer)."""
    from channels.layers import get_channel_layer

    return get_channel_layer(pubsub_alias())

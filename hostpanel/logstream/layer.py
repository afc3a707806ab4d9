"""The Channels layers of HostPanel: channels-redis, made to survive idle channels with redis-py 8,
and the layer live-log line batches travel on (:func:`lines_layer`).

redis-py 8 gives every socket a 5 s read timeout by default, and channels-redis
blocks for a message (BZPOPMIN) for 5 s too: a consumer or the log follower that
waits 5 s without a message then fails with ``redis.exceptions.TimeoutError``.
Blocking for 2 s at a time stays inside that timeout (an idle channel costs one
cheap Redis call every 2 s).
"""

from __future__ import annotations

from typing import Any

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer

LINES_ALIAS = "logs"


class RedisChannelLayer(_RedisChannelLayer):  # type: ignore[misc]
    brpop_timeout = 2


def lines_layer() -> Any:
    """The layer of log line batches: the ``logs`` alias (Redis pub/sub: one PUBLISH per batch,
    fanned out in each panel process, so 100 viewers cost Redis and the agent what one does),
    or the default layer where no ``logs`` alias is configured (tests' in-memory layer)."""
    from channels.layers import get_channel_layer
    from django.conf import settings

    return get_channel_layer(LINES_ALIAS if LINES_ALIAS in settings.CHANNEL_LAYERS else "default")

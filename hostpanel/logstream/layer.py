"""The Channels layer of HostPanel: channels-redis, made to survive idle channels with redis-py 8.

redis-py 8 gives every socket a 5 s read timeout by default, and channels-redis
blocks for a message (BZPOPMIN) for 5 s too: a consumer or the log follower that
waits 5 s without a message then fails with ``redis.exceptions.TimeoutError``.
Blocking for 2 s at a time stays inside that timeout (an idle channel costs one
cheap Redis call every 2 s).
"""

from __future__ import annotations

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer


class RedisChannelLayer(_RedisChannelLayer):  # type: ignore[misc]
    brpop_timeout = 2

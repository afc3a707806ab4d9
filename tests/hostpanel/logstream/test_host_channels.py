"""Each host's live log following on its own Redis pub/sub channels, with real Redis ACL users.

Hosts h1 and h10 are enrolled (h10's name begins with h1's); the replica runs on h1. h1's real
follower serves the panel's real consumer as h1's own Redis user (the engine is tests' FileEngine
over a plain file). Host h10, with its own credentials, tries to reach h1's viewers: Redis refuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hostpanel.agent import follower
from hostpanel.deployments.models import Replica
from hostpanel.hosts import enrollment, redis_acl
from hostpanel.logstream import publish
from hostpanel.logstream.layer import host_layer
from hostpanel.logstream.watch import WATCH_GROUP
from hostpanel.tenants.models import Role
from tests.hostpanel.hosts.enrolled_hosts import pem
from tests.hostpanel.logstream.fakes import FileEngine
from tests.hostpanel.logstream.logfiles import append
from tests.hostpanel.logstream.test_consumers import collect_until_ready, open_socket, run_with_agent, texts
from tests.stack import redis_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def redis_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis-logs")) as url:
        yield url


@pytest.fixture
def host_urls(redis_admin_url: str, settings: Any, host: Any) -> Iterator[dict[str, str]]:
    """h1 (the ``host`` fixture's) and h10 enrolled; the panel's layers on this Redis. Name -> Redis URL."""
    settings.REDIS_URL = redis_admin_url
    settings.HOSTPANEL_PUBLIC_URL = "https://panel.example"
    layers = settings.CHANNEL_LAYERS  # the project's (Redis core and pub/sub), on this Redis
    assert "redis" in layers["logs"]["BACKEND"].lower()
    settings.CHANNEL_LAYERS = {a: x | {"CONFIG": {"hosts": [redis_admin_url]}} for a, x in layers.items()}
    urls = {}
    for name in ("h1", "h10"):
        creds = enrollment.register(enrollment.add_host(None, name).token, pem(X25519PrivateKey.generate()))
        urls[name] = creds.redis_url
    yield urls
    redis.Redis.from_url(redis_admin_url).flushall()


def refused_subscription(url: str, channel: str) -> bool:
    """Whether Redis answers NOPERM to ``url``'s user subscribing to ``channel``."""
    listener = redis.Redis.from_url(url).pubsub()
    try:
        listener.subscribe(channel)
        listener.get_message(timeout=2)
    except redis.exceptions.NoPermissionError:
        return True
    finally:
        listener.close()
    return False


def test_a_host_user_may_use_exactly_its_own_log_channels(
    host_urls: dict[str, str], redis_admin_url: str
) -> None:
    h1, h10 = (redis.Redis.from_url(host_urls[name]) for name in ("h1", "h10"))
    mine = redis_acl.logs_prefix("h1")
    assert mine == "hostlogs.h1."
    h1.publish(f"{mine}__group__logs.container.7", "batch")
    h1.publish(f"{mine}specific.abc", "backfill")
    assert not refused_subscription(host_urls["h1"], f"{mine}__group__{WATCH_GROUP}")
    for denied in (
        lambda: h10.publish(f"{mine}__group__logs.container.7", "forged"),  # h10 begins with h1: no leak
        lambda: h10.publish(f"{mine}specific.abc", "forged backfill"),
        lambda: h1.publish("hostlogs.h10.__group__logs.container.7", "forged"),
        lambda: h1.publish("asgi__group__logs.container.7", "forged"),  # the panel's lines layer
        lambda: h1.publish("asgi__group__logs.build.3", "forged"),
        lambda: h1.get(f"{mine}x"),  # channels only: no key of its prefix
        lambda: h1.set(f"{mine}x", "1"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            denied()
    assert refused_subscription(host_urls["h10"], f"{mine}__group__{WATCH_GROUP}")  # h1's viewers' leases
    assert refused_subscription(host_urls["h10"], f"{mine}__group__logs.container.7")
    assert refused_subscription(host_urls["h1"], "asgi__group__logs.container.7")
    with pytest.raises(redis.exceptions.NoPermissionError):
        listener = h1.pubsub()
        listener.psubscribe("*")
        listener.get_message(timeout=2)


def test_a_user_an_older_panel_made_gets_the_log_channels_at_the_next_check(
    host_urls: dict[str, str], redis_admin_url: str
) -> None:
    digest = redis_acl.password_hash("pw")
    rules = redis_acl.acl_rules("h1", digest)
    old = [r for r in rules if r not in ("+subscribe", "+unsubscribe", "&hostlogs.h1.*")]
    admin = redis.Redis.from_url(redis_admin_url)
    admin.execute_command("ACL", "SETUSER", "host-h1", *old)
    assert redis_acl.ensure_host_user("h1", digest) is True
    granted = admin.execute_command("ACL", "GETUSER", "host-h1")
    assert b"&hostlogs.h1.*" in granted[b"channels"] and b"+subscribe" in granted[b"commands"]
    assert redis_acl.ensure_host_user("h1", digest) is False  # as this version makes it: left alone


def test_a_host_serves_its_viewers_as_its_own_user_and_another_host_cannot_reach_them(
    host_urls: dict[str, str],
    tenant: Any,
    member: Callable[..., Any],
    make_app: Callable[..., Any],
    tmp_path: Path,
) -> None:
    make_app(tenant)
    replica = Replica.objects.get(app__tenant=tenant)
    viewer = member(tenant, Role.VIEWER)
    engine = FileEngine()
    log = engine.add_log(replica.container_name, tmp_path)
    append(log, [(1, "stdout", "old line")])
    agent = follower.LogFollower(engine, "h1", host_urls["h1"])  # type: ignore[arg-type]
    stream = publish.group_name("container", str(replica.pk))
    forged = publish.prepare_batch("container", str(replica.pk), [{"stream": "stdout", "text": "FORGED"}])

    async def body() -> None:
        communicator = await open_socket(viewer, f"/ws/logs/{replica.pk}/")
        assert texts(await collect_until_ready(communicator)) == ["old line"]  # backfill from h1's agent
        append(log, [(2, "stdout", "live line")])
        assert texts([await communicator.receive_json_from(timeout=10)]) == ["live line"]

        # host h10, with its own credentials, aims at h1's replica's viewers
        with pytest.raises(redis.exceptions.NoPermissionError):
            await host_layer("h1", host_urls["h10"]).group_send(stream, forged)
        with pytest.raises(redis.exceptions.NoPermissionError):  # a forged lease to h1's follower
            await host_layer("h1", host_urls["h10"]).group_send(WATCH_GROUP, {"type": "logs.watch"})
        await host_layer("h10", host_urls["h10"]).group_send(
            stream, forged
        )  # its own channels: nobody listens
        refused = await sync_to_async(refused_subscription)(
            host_urls["h10"], f"{redis_acl.logs_prefix('h1')}__group__{WATCH_GROUP}"
        )
        assert refused  # nor can it read h1's viewers' leases
        append(log, [(3, "stdout", "still served")])
        assert texts([await communicator.receive_json_from(timeout=10)]) == ["still served"]
        assert await communicator.receive_nothing(timeout=0.5)  # no FORGED line came
        await communicator.disconnect()
        await asyncio.sleep(0)

    run_with_agent(engine, body, agent)

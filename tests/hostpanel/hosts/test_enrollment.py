"""Enrollment services, the internal API and the ACL rules, against a real Redis with ACLs.

The whole join (subprocess, HTTPS, a running agent) is tests/hostpanel/e2e/test_e2e_enrollment.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from hostpanel.agent import join
from hostpanel.errors import Conflict, InvalidRequest
from hostpanel.hosts import enrollment, redis_acl
from hostpanel.hosts.models import Host, HostCredential, HostJoinToken
from tests.stack import redis_server


@pytest.fixture(scope="module")
def redis_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis-acl")) as url:
        yield url


@pytest.fixture
def broker(redis_admin_url: str, settings: Any) -> redis.Redis:
    settings.REDIS_URL = redis_admin_url
    settings.HOSTPANEL_PUBLIC_URL = "https://panel.example"
    return redis.Redis.from_url(redis_admin_url)


def public_pem() -> str:
    key = X25519PrivateKey.generate().public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def post_register(token: str, public_key: str, **extra: Any) -> Any:
    return APIClient().post(
        "/internal/v1/register", {"token": token, "public_key": public_key, **extra}, format="json"
    )


@pytest.mark.django_db
def test_host_add_prints_a_join_command_and_keeps_only_a_hash(broker: redis.Redis) -> None:
    out = StringIO()
    call_command("host", "add", "node-1", stdout=out)
    text = out.getvalue()
    assert "sh deploy/join.sh --panel https://panel.example --token hpjoin_" in text
    token = text.split("--token ")[1].split()[0]
    host = Host.objects.get(name="node-1")
    assert host.state == "down" and host.cpu_millis == 0  # pending: nothing is placed on it
    stored = HostJoinToken.objects.get(host=host)
    assert stored.token_hash == enrollment.token_hash(token) and token not in str(vars(stored))
    assert enrollment.enrollment_state(host) == "pending"
    with pytest.raises(CommandError, match="lowercase letters"):
        call_command("host", "add", "Bad_Name*", stdout=StringIO())


@pytest.mark.django_db
def test_register_once_then_the_token_is_spent(broker: redis.Redis) -> None:
    invitation = enrollment.add_host(None, "node-1")
    answer = post_register(invitation.token, public_pem())
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["name"] == "node-1" and body["queues"] == ["host.node-1", "build.node-1"]
    assert body["redis_url"].startswith("redis://host-node-1:")
    credential = HostCredential.objects.get(host__name="node-1")
    assert credential.token_hash == enrollment.token_hash(body["api_token"])
    assert body["api_token"] not in str(vars(credential))
    own = redis.Redis.from_url(body["redis_url"])
    assert own.llen("host.node-1") == 0  # its own queue
    again = post_register(invitation.token, public_pem())
    assert again.status_code == 403
    assert "join token already used" in again.json()["error"]["message"]
    with pytest.raises(Conflict, match="already enrolled"):
        enrollment.add_host(None, "node-1")  # revoke first


@pytest.mark.django_db
def test_expired_unknown_and_bad_key_are_refused_and_change_nothing(broker: redis.Redis) -> None:
    invitation = enrollment.add_host(None, "node-2")
    HostJoinToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    late = post_register(invitation.token, public_pem())
    assert late.status_code == 403 and "join token expired" in late.json()["error"]["message"]
    unknown = post_register("hpjoin_nope", public_pem())
    assert unknown.status_code == 403 and "join token unknown" in unknown.json()["error"]["message"]
    fresh = enrollment.add_host(None, "node-2")  # a new token replaces the old
    ed = Ed25519PrivateKey.generate().public_key()
    ed_pem = ed.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for bad, message in ((ed_pem.decode(), "X25519"), ("not a key", "not a PEM public key")):
        answer = post_register(fresh.token, bad)
        assert answer.status_code == 400 and message in answer.json()["error"]["message"]
    extra = post_register(fresh.token, public_pem(), redis_user="default")
    assert extra.status_code == 400 and "redis_user" in json.dumps(extra.json())
    assert not HostCredential.objects.exists()
    assert broker.acl_getuser("host-node-2") is None
    assert HostJoinToken.objects.get(host__name="node-2").used_at is None  # still usable
    assert post_register(fresh.token, public_pem()).status_code == 201


@pytest.mark.django_db
def test_a_registration_redis_refuses_leaves_the_token_usable(broker: redis.Redis, settings: Any) -> None:
    invitation = enrollment.add_host(None, "node-3")
    settings.REDIS_URL = "redis://:x@127.0.0.1:9/0"  # nothing listens there
    answer = post_register(invitation.token, public_pem())
    assert (
        answer.status_code == 503
        and "cannot change the host's Redis user" in answer.json()["error"]["message"]
    )
    assert not HostCredential.objects.exists()
    assert HostJoinToken.objects.get(host__name="node-3").used_at is None


@pytest.mark.django_db
def test_internal_api_needs_a_live_host_token_and_revoke_ends_it_at_once(broker: redis.Redis) -> None:
    a = post_register(enrollment.add_host(None, "node-a").token, public_pem()).json()
    b = post_register(enrollment.add_host(None, "node-b").token, public_pem()).json()
    client = APIClient()
    assert client.get("/internal/v1/host").status_code == 401
    client.credentials(HTTP_AUTHORIZATION="Bearer hphost_forged")
    assert client.get("/internal/v1/host").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {a['api_token']}")
    me = client.get("/internal/v1/host")
    assert me.status_code == 200 and me.json()["name"] == "node-a"
    beat = client.post("/internal/v1/heartbeat")
    assert beat.status_code == 200 and beat.json()["state"] == "up"
    assert Host.objects.get(name="node-a").last_heartbeat is not None
    held = redis.Redis.from_url(a["redis_url"])
    assert held.llen("host.node-a") == 0  # a connection held open
    call_command("host", "revoke", "node-a", stdout=StringIO())
    assert client.get("/internal/v1/host").status_code == 401
    assert client.post("/internal/v1/heartbeat").status_code == 401
    with pytest.raises(redis.exceptions.ConnectionError):  # the open connection was dropped
        held.llen("host.node-a")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(a["redis_url"]).ping()
    assert enrollment.enrollment_state(Host.objects.get(name="node-a")) == "revoked"
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {b['api_token']}")
    assert other.get("/internal/v1/host").json()["name"] == "node-b"  # B untouched
    # enrolled again after the revoke: a new token works, the old credentials stay dead
    assert post_register(enrollment.add_host(None, "node-a").token, public_pem()).status_code == 201
    assert client.get("/internal/v1/host").status_code == 401


@pytest.mark.django_db
def test_the_acl_confines_a_host_to_its_own_keys(broker: redis.Redis) -> None:
    a = post_register(enrollment.add_host(None, "h1").token, public_pem()).json()
    b = post_register(enrollment.add_host(None, "h10").token, public_pem()).json()
    h1, h10 = redis.Redis.from_url(a["redis_url"]), redis.Redis.from_url(b["redis_url"])
    broker.lpush("host.h1", "task for h1")
    assert h1.brpop(["host.h1"], 1) == (b"host.h1", b"task for h1")
    h1.lpush("host.h1", "restored")  # its own queue: a message put back
    h1.sadd("_kombu.binding.host.h1", "host.h1\x06\x16\x06\x16host.h1")
    h1.set("celery-task-meta-host.h1.abc", "{}", ex=10)
    h1.publish("celery-task-meta-host.h1.abc", "{}")
    for denied in (
        lambda: h10.lpush("host.h1", "forged"),  # h10's name starts with h1's: no prefix leak
        lambda: h10.brpop(["host.h1"], 1),
        lambda: h10.smembers("_kombu.binding.host.h1"),
        lambda: h10.get("celery-task-meta-host.h1.abc"),
        lambda: h10.publish("celery-task-meta-host.h1.abc", "{}"),
        lambda: h1.lpush("celery", "forged"),
        lambda: h1.keys("*"),
        lambda: h1.get("asgi:group:x"),
        lambda: h1.execute_command("CONFIG", "GET", "requirepass"),
        lambda: h1.execute_command("ACL", "LIST"),
        lambda: h1.flushall(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            denied()
    assert broker.lrange("host.h1", 0, -1) == [b"restored"]


@pytest.mark.django_db
def test_a_name_that_would_widen_the_acl_patterns_is_refused() -> None:
    with pytest.raises(ValueError, match="lowercase"):
        redis_acl.acl_rules("h*", "pw")
    with pytest.raises(InvalidRequest, match="lowercase"):
        enrollment.add_host(None, "h*")
    assert not Host.objects.exists()


def test_join_installs_by_default_and_refuses_plain_http(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    args, extra = join.parse(["--panel", "https://p", "--token", "t", "--", "--engine-root", "/x"])
    assert args.skip_install is False and args.insecure_http is False and extra == ["--engine-root", "/x"]
    assert args.state_dir == Path("/var/lib/hostpanel-agent")
    calls: list[str] = []
    monkeypatch.setattr(join, "install", lambda: calls.append("install"))

    def refuse(args: Any, key: str) -> Any:
        raise join.JoinError("registration refused: 403: join token unknown")

    monkeypatch.setattr(join, "register", refuse)
    assert join.main(["--panel", "https://p", "--token", "t", "--state-dir", str(tmp_path / "s")]) == 1
    assert calls == ["install"]  # the install step runs unless asked not to
    assert (tmp_path / "s" / "host.key").stat().st_mode & 0o777 == 0o600
    calls.clear()
    assert join.main(["--panel", "http://p", "--token", "t", "--state-dir", str(tmp_path / "s")]) == 1
    assert calls == []  # refused before anything


# ---- the API (admins) and the staff page ---------------------------------------------------


@pytest.mark.django_db
def test_api_enroll_and_revoke_are_admin_only(
    broker: redis.Redis, api: Any, admin_user: Any, tenant: Any, member: Any
) -> None:
    outsider = api(member(tenant, "owner"))
    refused = outsider.post("/api/v1/hosts/enroll/", {"name": "node-9"}, format="json")
    assert refused.status_code == 403 and not Host.objects.filter(name="node-9").exists()
    admin = api(admin_user)
    assert (
        admin.post("/api/v1/hosts/enroll/", {"name": "node-9", "state": "up"}, format="json").status_code
        == 400
    )
    made = admin.post("/api/v1/hosts/enroll/", {"name": "node-9"}, format="json")
    assert made.status_code == 201 and made.json()["command"].endswith(made.json()["token"])
    post_register(made.json()["token"], public_pem())
    host = Host.objects.get(name="node-9")
    assert outsider.post(f"/api/v1/hosts/{host.pk}/revoke/").status_code == 403
    assert broker.acl_getuser("host-node-9") is not None
    revoked = admin.post(f"/api/v1/hosts/{host.pk}/revoke/")
    assert revoked.status_code == 200 and revoked.json() == {"name": "node-9", "enrollment": "revoked"}
    assert broker.acl_getuser("host-node-9") is None
    from hostpanel.audit.models import AuditLog

    assert list(
        AuditLog.objects.filter(object_repr="node-9").values_list("action", flat=True).order_by("id")
    ) == [
        "host.enroll",
        "host.revoke",
    ]


@pytest.mark.django_db
def test_staff_page_adds_a_host_shows_the_command_once_and_revokes(
    broker: redis.Redis, client: Any, admin_user: Any, tenant: Any, member: Any
) -> None:
    client.force_login(member(tenant, "owner"))
    assert client.post("/staff/hosts/add/", {"name": "node-7"}).status_code == 403
    assert not Host.objects.filter(name="node-7").exists()
    client.force_login(admin_user)
    page = client.get("/staff/")
    assert b'id="enrollment"' in page.content
    shown = client.post("/staff/hosts/add/", {"name": "node-7"})
    assert shown.status_code == 200 and shown["Cache-Control"] == "no-store"
    text = shown.content.decode()
    token = text.split("--token ")[1].split("<")[0].strip()
    assert token.startswith("hpjoin_") and HostJoinToken.objects.get(
        host__name="node-7"
    ).token_hash == enrollment.token_hash(token)
    listed = client.get("/staff/").content.decode()
    assert 'data-enrollment-host="node-7"' in listed and "pending" in listed and token not in listed
    bad = client.post("/staff/hosts/add/", {"name": "Bad Name"}, follow=True)
    assert "lowercase letters" in bad.content.decode()
    gone = client.post("/staff/hosts/node-7/revoke/", follow=True)
    assert "credentials revoked" in gone.content.decode()
    assert enrollment.enrollment_state(Host.objects.get(name="node-7")) == "unenrolled"


@pytest.mark.django_db
def test_a_redis_that_lost_its_acl_users_gets_them_back(broker: redis.Redis) -> None:
    """Redis keeps ACL users in memory: after its restart the panel re-creates them from the stored
    password hash (at the host's next heartbeat, or `manage.py host restore-acl`); never a revoked one."""
    a = post_register(enrollment.add_host(None, "node-a").token, public_pem()).json()
    b = post_register(enrollment.add_host(None, "node-b").token, public_pem()).json()
    call_command("host", "revoke", "node-b", stdout=StringIO())
    assert b["redis_url"].split("@")[0].split(":")[-1] not in str(list(HostCredential.objects.values()))
    broker.execute_command("ACL", "DELUSER", "host-node-a")  # what a restart does
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(a["redis_url"]).ping()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {a['api_token']}")
    assert client.post("/internal/v1/heartbeat").status_code == 200
    assert redis.Redis.from_url(a["redis_url"]).llen("host.node-a") == 0  # back, same password
    broker.execute_command("ACL", "DELUSER", "host-node-a")
    out = StringIO()
    call_command("host", "restore-acl", stdout=out)
    assert out.getvalue().strip() == "host node-a: Redis user re-created"  # node-b stays revoked
    assert broker.acl_getuser("host-node-b") is None
    assert redis.Redis.from_url(a["redis_url"]).ping()


@pytest.mark.django_db
def test_host_list_shows_each_enrollment_state(broker: redis.Redis, host: Host) -> None:
    post_register(enrollment.add_host(None, "node-e").token, public_pem())
    enrollment.add_host(None, "node-p")
    post_register(enrollment.add_host(None, "node-r").token, public_pem())
    enrollment.revoke(None, "node-r")
    out = StringIO()
    call_command("host", "list", stdout=out)
    rows = {line.split("\t")[0]: line.split("\t")[2] for line in out.getvalue().splitlines()}
    assert rows == {"h1": "unenrolled", "node-e": "enrolled", "node-p": "pending", "node-r": "revoked"}

"""`manage.py enroll_local` (hostpanel/agent/local.py): the panel machine's own agent enrolled
in-process against a real Redis with ACLs, idempotent, re-enrolled cleanly when its credentials
are revoked or gone, and a failure leaves no credentials behind. The agent's wait for a panel
that starts after it (hostagent.wait_for_panel) too.

The whole `make run` (the agent running without the database) is tests/hostpanel/e2e/test_e2e_make_run.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives import serialization
from django.core.management import CommandError, call_command

from hostpanel.agent import credentials as store
from hostpanel.agent import local
from hostpanel.agent.management.commands.hostagent import wait_for_panel
from hostpanel.hosts import enrollment, redis_acl
from hostpanel.hosts.models import HostCredential
from tests.stack import free_port, redis_server

PANEL = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def redis_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis-local")) as url:
        yield url


@pytest.fixture
def broker(redis_admin_url: str, settings: Any) -> Iterator[redis.Redis]:
    settings.REDIS_URL = redis_admin_url
    r = redis.Redis.from_url(redis_admin_url)
    yield r
    r.flushall()
    for user in r.acl_users():
        if user != "default":
            r.acl_deluser(user)


def enroll_local(state: Path, *extra: str) -> str:
    out = StringIO()
    call_command("enroll_local", "--state-dir", str(state), "--panel", PANEL, *extra, stdout=out)
    return out.getvalue()


def public_key_of(state: Path) -> str:
    key = serialization.load_pem_private_key((state / store.KEY_FILE).read_bytes(), None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.django_db
def test_first_run_enrolls_with_a_host_side_key_and_later_runs_reuse_it(
    broker: redis.Redis, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    assert "host local: enrolled (no credentials yet)" in enroll_local(state)
    assert state.stat().st_mode & 0o777 == 0o700
    for name in (store.KEY_FILE, store.CREDENTIALS_FILE):
        assert (state / name).stat().st_mode & 0o777 == 0o600
    creds = store.load(state)
    assert (
        creds.name == "local" and creds.panel == PANEL and creds.redis_url.startswith("redis://host-local:")
    )
    credential = HostCredential.objects.get(host__name="local")
    assert credential.public_key == public_key_of(state)  # the private key never left the state dir
    assert enrollment.authenticate(creds.api_token).name == "local"
    assert enrollment.enrollment_state(credential.host) == "enrolled"

    broker.acl_deluser(redis_acl.user_name("local"))  # `make stop` stopped Redis: its users are gone
    again = enroll_local(state)
    assert "host local: already enrolled (credentials reused)" in again
    assert store.load(state) == creds and HostCredential.objects.count() == 1
    assert HostCredential.objects.get().public_key == credential.public_key
    assert redis.Redis.from_url(creds.redis_url).ping()  # its Redis user is back

    call_command(
        "enroll_local", "--state-dir", str(state), "--panel", "http://localhost:9000", stdout=StringIO()
    )
    moved = store.load(state)
    assert moved.panel == "http://localhost:9000" and moved.api_token == creds.api_token  # same enrollment


@pytest.mark.django_db
@pytest.mark.parametrize("loss", ["revoked", "credentials gone", "damaged", "another host's"])
def test_lost_or_revoked_credentials_enroll_again_cleanly(
    broker: redis.Redis, tmp_path: Path, loss: str
) -> None:
    state = tmp_path / "agent"
    enroll_local(state)
    old = store.load(state)
    old_key = public_key_of(state)
    if loss == "revoked":
        call_command("host", "revoke", "local", stdout=StringIO())
    elif loss == "credentials gone":
        (state / store.CREDENTIALS_FILE).unlink()
    elif loss == "damaged":
        (state / store.CREDENTIALS_FILE).write_text("{not json")
    else:
        data = json.loads((state / store.CREDENTIALS_FILE).read_text()) | {"name": "other"}
        (state / store.CREDENTIALS_FILE).write_text(json.dumps(data))
    assert "host local: enrolled (" in enroll_local(state)
    new = store.load(state)
    assert new.api_token != old.api_token and public_key_of(state) != old_key
    assert enrollment.authenticate(old.api_token) is None  # the lost token works no more
    live = HostCredential.objects.get(host__name="local", revoked_at=None)
    assert live.public_key == public_key_of(state) and HostCredential.objects.count() == 1


@pytest.mark.django_db
def test_a_failed_enrollment_leaves_no_credentials_and_says_why(
    broker: redis.Redis, redis_admin_url: str, tmp_path: Path, settings: Any
) -> None:
    state = tmp_path / "agent"
    settings.REDIS_URL = f"redis://:x@127.0.0.1:{free_port()}/0"  # the panel's Redis does not answer
    with pytest.raises(
        CommandError, match=r"enrolling host local failed: the panel cannot change the host's Redis"
    ):
        enroll_local(state)
    assert sorted(p.name for p in state.iterdir()) == []  # no key, no (half-written) credentials
    assert not HostCredential.objects.exists()

    settings.REDIS_URL = redis_admin_url  # Redis is back: the next run enrolls from scratch
    assert "host local: enrolled (no credentials yet)" in enroll_local(state)


@pytest.mark.django_db
def test_plain_http_only_to_this_machine(broker: redis.Redis, tmp_path: Path) -> None:
    for url in ("http://192.0.2.1:8000", "http://example.com", "ftp://127.0.0.1/", "127.0.0.1:8000"):
        with pytest.raises(CommandError, match="give the panel's https:// URL"):
            call_command(
                "enroll_local", "--state-dir", str(tmp_path / "s"), "--panel", url, stdout=StringIO()
            )
    assert not (tmp_path / "s").exists() and not HostCredential.objects.exists()
    assert local.is_local_address("127.0.0.1") and local.is_local_address("localhost")
    local.check_panel_url("https://panel.example")  # a remote panel over HTTPS is fine


def test_the_agent_waits_a_bounded_time_for_a_panel_that_starts_after_it() -> None:
    said: list[str] = []
    port = free_port()
    client = store.InternalClient(f"http://127.0.0.1:{port}", "hphost_x")
    with pytest.raises(
        store.PanelError, match=rf"no answer from the panel at http://127.0.0.1:{port} within 1 s"
    ):
        wait_for_panel(client.me, f"http://127.0.0.1:{port}", 1, said.append)
    assert len(said) == 1 and "does not answer yet" in said[0]

    calls = iter([store.PanelError("starting", 502), store.PanelError("down", 0), {"name": "local"}])

    def me() -> dict[str, Any]:
        answer = next(calls)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_for_panel(me, "p", 30, said.append) == {"name": "local"}

    def revoked() -> dict[str, Any]:
        raise store.PanelError("401: host token unknown or revoked", 401)

    with pytest.raises(store.PanelError, match="401"):  # a refusal is not waited out
        wait_for_panel(revoked, "p", 30, said.append)


def test_is_local_address_refuses_what_this_machine_cannot_bind() -> None:
    assert not local.is_local_address("192.0.2.1") and not local.is_local_address("no-such-host.invalid")

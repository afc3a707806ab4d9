"""Brute force on every door that takes a password: thirty bad passwords, then the real user.

Each door is attacked the way a script would: /login/ (the dashboard), /api-auth/login/
(the API's browsable login), /admin/login/ and the registry's HTTP basic auth on /v2/.
After AXES_FAILURE_LIMIT failures the attacker gets 429s without the password being
checked (even the right one), each try leaves an audit row, and the lock is listed in
the Django admin. Once the lock window has passed (the attempts are moved back in time
instead of sleeping), the real user logs in.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.test import Client

from hostpanel.audit.models import AuditLog
from hostpanel.tenants.logins import LOCKED_OUT, LOGIN_FAILED
from tests.hostpanel.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
LIMIT = 5


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _form(path: str, ok_status: int) -> Callable[[Client, str, str], tuple[int, bool]]:
    def attempt(client: Client, username: str, password: str) -> tuple[int, bool]:
        r = client.post(path, {"username": username, "password": password})
        return r.status_code, r.status_code == ok_status and "_auth_user_id" in client.session

    return attempt


def _registry(client: Client, username: str, password: str) -> tuple[int, bool]:
    r = client.get("/v2/", headers={"authorization": _basic(username, password)})
    return r.status_code, r.status_code == 200


DOOR_PATHS = {"dashboard": "/login/", "api-auth": "/api-auth/login/", "admin": "/admin/login/?next=/admin/"}
DOORS: dict[str, Callable[[Client, str, str], tuple[int, bool]]] = {
    **{door: _form(path, 302) for door, path in DOOR_PATHS.items()},
    "registry": _registry,
}


@pytest.fixture(autouse=True)
def lockout_settings(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


@pytest.mark.parametrize("door", sorted(DOORS))
def test_thirty_bad_passwords_are_locked_out_then_the_user_gets_in(door: str, settings: Any) -> None:
    attempt = DOORS[door]
    UserFactory(username="victim", password=PASSWORD, is_staff=True)
    attacker = Client(REMOTE_ADDR="203.0.113.7")

    statuses = [attempt(attacker, "victim", f"guess-{i}")[0] for i in range(30)]

    assert 429 not in statuses[: LIMIT - 1], statuses
    assert statuses[LIMIT - 1 :] == [429] * (31 - LIMIT), statuses
    # while locked, even the right password is refused without a hint that it was right
    assert attempt(attacker, "victim", PASSWORD) == (429, False)
    r = (
        attacker.get("/v2/", headers={"authorization": _basic("victim", PASSWORD)})
        if door == "registry"
        else None
    )
    if r is not None:
        assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert int(r["Retry-After"]) == 15 * 60
    else:
        page = attacker.post(DOOR_PATHS[door], {"username": "victim", "password": PASSWORD})
        assert page.status_code == 429 and b"Try again in 15 minutes" in page.content

    failed = AuditLog.objects.filter(action=LOGIN_FAILED, result=AuditLog.Result.DENIED)
    locked = AuditLog.objects.filter(action=LOCKED_OUT, result=AuditLog.Result.DENIED)
    assert failed.count() >= LIMIT - 1
    tries = 32  # the bad ones, the right one, the answer's format check
    assert failed.count() + locked.count() == tries  # one row per try
    assert set(locked.values_list("source_address", flat=True)) == {"203.0.113.7"}
    assert "'victim'" in locked.first().message  # type: ignore[union-attr]
    assert AccessAttempt.objects.filter(username="victim", failures_since_start__gte=LIMIT).exists()

    # the lock window passes (moved back in time rather than slept through)
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16)
    )
    status, logged_in = attempt(Client(REMOTE_ADDR="198.51.100.2"), "victim", PASSWORD)
    assert logged_in, status


def test_a_locked_account_is_listed_for_admins(settings: Any) -> None:
    UserFactory(username="victim", password=PASSWORD)
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for i in range(LIMIT + 1):
        attacker.post("/login/", {"username": "victim", "password": f"guess-{i}"})
    staff = UserFactory(username="ops", is_staff=True, is_superuser=True)
    admin = Client()
    admin.force_login(staff)
    r = admin.get("/admin/axes/accessattempt/")
    assert r.status_code == 200
    assert b"victim" in r.content and b"203.0.113.7" in r.content


def test_the_lock_is_per_username_across_addresses(settings: Any) -> None:
    """An attacker spreading guesses over many addresses still locks the username."""
    UserFactory(username="victim", password=PASSWORD)
    statuses = [
        _form("/login/", 302)(Client(REMOTE_ADDR=f"203.0.113.{i}"), "victim", "wrong")[0] for i in range(10)
    ]
    assert statuses[LIMIT - 1 :] == [429] * (10 - LIMIT + 1), statuses


def test_logging_into_an_own_account_between_guesses_does_not_reset_the_count(settings: Any) -> None:
    """The attacker has an account of its own; its successful logins clear only its own failures."""
    UserFactory(username="victim", password=PASSWORD)
    UserFactory(username="mallory", password="mallorys own password")
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    login = _form("/login/", 302)
    statuses = []
    for i in range(12):
        statuses.append(login(attacker, "victim", f"guess-{i}")[0])
        if i % 3 == 2:
            Client(REMOTE_ADDR="203.0.113.7").post(
                "/login/", {"username": "mallory", "password": "mallorys own password"}
            )
    assert statuses[LIMIT - 1 :] == [429] * (12 - LIMIT + 1), statuses


def test_the_real_user_is_not_slowed_by_a_few_typos(settings: Any) -> None:
    UserFactory(username="alice", password=PASSWORD)
    client = Client(REMOTE_ADDR="198.51.100.9")
    for _ in range(LIMIT - 1):
        assert _form("/login/", 302)(client, "alice", "typo")[0] == 200
    assert _form("/login/", 302)(client, "alice", PASSWORD)[1]
    assert not AccessAttempt.objects.filter(username="alice").exists()  # reset on success

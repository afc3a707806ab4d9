"""The kept answers of the tenant lists besides apps (hostpanel/api/kept_lists.py): images,
volumes, secrets, members, tokens, audit and containers. Each shows every committed write at
once (through the API, the ORM and raw SQL), keeps the JSON it built, reads only watched tables
and columns, and serves no other tenant; a write moves only the generations of the lists that
read its table (test_answer_cache.py holds the apps list's and the mechanism's own tests).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from hostpanel.api import answer_cache, kept_lists
from hostpanel.audit.services import Actor, record
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import Replica
from hostpanel.hosts.models import Host
from hostpanel.images.models import Image
from hostpanel.images.services import register_base_images
from hostpanel.secrets import services as secrets
from hostpanel.secrets.models import Secret
from hostpanel.tenants.models import ApiToken, Membership, Role, Tenant
from hostpanel.tenants.services import create_token
from hostpanel.volumes import services as volumes
from hostpanel.volumes.models import Volume
from tests.hostpanel.api.kept import assert_seen_at_once, assert_watched, built, committing, get, listing_sql
from tests.hostpanel.factories import MembershipFactory, TenantFactory, UserFactory

MIB = 2**20
SECRET_VALUE = "hunter2-never-shown"
Write = Callable[[Tenant, APIClient], None]


def _owner(tenant: Tenant) -> Actor:
    return Actor(user=tenant.memberships.get(role=Role.OWNER).user)


def _url(tenant: Tenant, path: str) -> str:
    return f"/api/v1/tenants/{tenant.slug}/{path}/"


def _raw(sql: str, *params: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))


def _ok(response: Any, code: int) -> None:
    assert response.status_code == code, response.content[:300]


# ---- what each list holds, and the writes it shows ----------------------------------------
def _fill_images(tenant: Tenant) -> None:
    Image.objects.create(tenant=tenant, reference=f"{tenant.slug}/web:1", size=10, sha256="ab" * 32)


def _fill_volumes(tenant: Tenant) -> None:
    volumes.create_volume(_owner(tenant), tenant, "data", 8 * MIB)


def _fill_secrets(tenant: Tenant) -> None:
    secrets.create_secret(_owner(tenant), tenant, "DB_PASSWORD", SECRET_VALUE)


def _fill_members(tenant: Tenant) -> None:
    MembershipFactory(tenant=tenant, role=Role.DEVELOPER, user=UserFactory(username=f"{tenant.slug}-dev"))


def _fill_tokens(tenant: Tenant) -> None:
    create_token(_owner(tenant), tenant, "second")


def _fill_audit(tenant: Tenant) -> None:
    record(_owner(tenant), "test.event", tenant=tenant, obj=tenant)


def _fill_containers(tenant: Tenant) -> None:
    spec = deployments.AppSpec(image="busybox:latest", command=["sleep", "1"], replicas=2)
    deployments.create_app(_owner(tenant), tenant, "app0", spec)


def _another_connection(write: Callable[[], None]) -> None:
    """``write`` by another thread's connection: the generations are the database's."""

    def run() -> None:
        try:
            write()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def _image_id(tenant: Tenant) -> int:
    return Image.objects.get(tenant=tenant).pk


def _member(tenant: Tenant) -> Membership:
    return Membership.objects.get(tenant=tenant, role=Role.DEVELOPER)


def _second_token(tenant: Tenant) -> int:
    return ApiToken.objects.get(tenant=tenant, name="second").pk


def _in_a_transaction(tenant: Tenant) -> None:
    with transaction.atomic():
        record(_owner(tenant), "test.first", tenant=tenant)
        with transaction.atomic():  # a savepoint that commits with it
            record(_owner(tenant), "test.second", tenant=tenant)


@dataclass(frozen=True)
class Kept:
    """A kept list: its path under the tenant, what fills it, the writes it shows, and the
    tables its SQL must read (at least)."""

    path: str
    fill: Callable[[Tenant], None]
    writes: dict[str, Write]
    reads: set[str] = field(default_factory=set)


LISTS: dict[str, Kept] = {
    "images": Kept(
        "images",
        _fill_images,
        {
            "uploaded (ORM)": lambda t, c: Image.objects.create(tenant=t, reference=f"{t.slug}/api:2"),
            "deleted (API)": lambda t, c: _ok(c.delete(f"{_url(t, 'images')}{_image_id(t)}/"), 204),
            "base image registered": lambda t, c: register_base_images(["nginx:1.27"]) and None,
            "size (update)": lambda t, c: Image.objects.filter(tenant=t).update(size=99) and None,
            "raw SQL": lambda t, c: _raw(
                "UPDATE images_image SET sha256 = %s WHERE tenant_id = %s", "cd", t.pk
            ),
        },
        {"images_image"},
    ),
    "volumes": Kept(
        "volumes",
        _fill_volumes,
        {
            "created (API)": lambda t, c: _ok(
                c.post(_url(t, "volumes"), {"name": "logs", "size_bytes": 8 * MIB}, format="json"), 201
            ),
            "deleted (API)": lambda t, c: _ok(
                c.delete(f"{_url(t, 'volumes')}{Volume.objects.get(tenant=t).pk}/"), 204
            ),
            "resized (update)": lambda t, c: (
                Volume.objects.filter(tenant=t).update(size_bytes=16 * MIB) and None
            ),
            "raw SQL": lambda t, c: _raw(
                "UPDATE volumes_volume SET name = %s WHERE tenant_id = %s", "raw", t.pk
            ),
            "another connection": lambda t, c: _another_connection(
                lambda: Volume.objects.filter(tenant=t).update(name="elsewhere") and None
            ),
        },
        {"volumes_volume"},
    ),
    "secrets": Kept(
        "secrets",
        _fill_secrets,
        {
            "created (API)": lambda t, c: _ok(
                c.post(_url(t, "secrets"), {"name": "API_KEY", "value": "v"}, format="json"), 201
            ),
            "value changed (API)": lambda t, c: _ok(
                c.put(f"{_url(t, 'secrets')}DB_PASSWORD/", {"value": "new"}, format="json"), 200
            ),
            "deleted (API)": lambda t, c: _ok(c.delete(f"{_url(t, 'secrets')}DB_PASSWORD/"), 204),
            "renamed (update)": lambda t, c: Secret.objects.filter(tenant=t).update(name="RENAMED") and None,
            "raw SQL": lambda t, c: _raw(
                "UPDATE secrets_secret SET name = %s WHERE tenant_id = %s", "RAW", t.pk
            ),
        },
        {"secrets_secret"},
    ),
    "members": Kept(
        "members",
        _fill_members,
        {
            "added (API)": lambda t, c: _ok(
                c.post(
                    _url(t, "members"),
                    {"username": UserFactory(username="newbie").username, "role": "viewer"},
                    format="json",
                ),
                201,
            ),
            "role changed (API)": lambda t, c: _ok(
                c.patch(f"{_url(t, 'members')}{_member(t).pk}/", {"role": "viewer"}, format="json"), 200
            ),
            "removed (API)": lambda t, c: _ok(c.delete(f"{_url(t, 'members')}{_member(t).pk}/"), 204),
            "user renamed (update)": lambda t, c: (
                get_user_model().objects.filter(pk=_member(t).user_id).update(username="renamed") and None
            ),
            "raw SQL": lambda t, c: _raw(
                "UPDATE tenants_membership SET role = %s WHERE tenant_id = %s AND role = %s",
                "viewer",
                t.pk,
                "developer",
            ),
        },
        {"tenants_membership", "auth_user"},
    ),
    "tokens": Kept(
        "tokens",
        _fill_tokens,
        {
            "created (API)": lambda t, c: _ok(c.post(_url(t, "tokens"), {"name": "ci"}, format="json"), 201),
            "revoked (API)": lambda t, c: _ok(c.delete(f"{_url(t, 'tokens')}{_second_token(t)}/"), 204),
            "renamed (update)": lambda t, c: (
                ApiToken.objects.filter(pk=_second_token(t)).update(name="x") and None
            ),
            "used (update)": lambda t, c: (
                ApiToken.objects.filter(pk=_second_token(t)).update(last_used_at=timezone.now()) and None
            ),
            "owner renamed (update)": lambda t, c: (
                get_user_model()
                .objects.filter(pk=_owner(t).user.pk)  # type: ignore[union-attr]
                .update(username="renamed-owner")
                and None
            ),
            "raw SQL": lambda t, c: _raw(
                "UPDATE tenants_apitoken SET name = %s WHERE tenant_id = %s", "raw", t.pk
            ),
        },
        {"tenants_apitoken", "auth_user"},
    ),
    "audit": Kept(
        "audit",
        _fill_audit,
        {
            "an action (API)": lambda t, c: _ok(
                c.post(_url(t, "volumes"), {"name": "logs", "size_bytes": 8 * MIB}, format="json"), 201
            ),
            "recorded": lambda t, c: record(_owner(t), "test.other", tenant=t) and None,
            "raw SQL": lambda t, c: _raw(
                "UPDATE audit_auditlog SET message = %s WHERE tenant_id = %s", "raw", t.pk
            ),
            "in a transaction": lambda t, c: _in_a_transaction(t),
        },
        {"audit_auditlog"},
    ),
    "containers": Kept(
        "containers",
        _fill_containers,
        {
            "state (update)": lambda t, c: (
                Replica.objects.filter(app__tenant=t).update(state="running") and None
            ),
            "scaled (API)": lambda t, c: _ok(
                c.post(f"{_url(t, 'apps')}app0/scale/", {"replicas": 3}, format="json"), 200
            ),
            "host renamed": lambda t, c: Host.objects.filter(name="h1").update(name="h1-renamed") and None,
            "health failures (update)": lambda t, c: (
                Replica.objects.filter(app__tenant=t).update(health_failures=2) and None
            ),
            "raw SQL": lambda t, c: _raw(
                "UPDATE deployments_replica SET message = %s WHERE app_id IN "
                "(SELECT id FROM deployments_app WHERE tenant_id = %s)",
                "raw",
                t.pk,
            ),
            "another connection": lambda t, c: _another_connection(
                lambda: Replica.objects.filter(app__tenant=t).update(restart_count=5) and None
            ),
        },
        {"deployments_replica", "deployments_app", "hosts_host", "deployments_release"},
    ),
}

WRITES = [(name, write) for name, kept in LISTS.items() for write in kept.writes]


def _member_client(tenant: Tenant, role: str) -> APIClient:
    """A client with the token of a new member of ``tenant`` in ``role``."""
    user = MembershipFactory(tenant=tenant, role=role).user
    _, secret = create_token(Actor(user=user), tenant, f"{role}'s")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def _stranger(tenant_slug: str = "other") -> tuple[Tenant, APIClient]:
    """Another tenant with its own owner's token."""
    other = TenantFactory(slug=tenant_slug)
    return other, _member_client(other, Role.OWNER)


def _filled(name: str, owner_token: tuple[Tenant, APIClient]) -> tuple[Tenant, APIClient, str]:
    """The owner's tenant filled for list ``name``, its client and the list's URL."""
    tenant, client = owner_token
    LISTS[name].fill(tenant)
    return tenant, client, _url(tenant, LISTS[name].path)


# ---- the tests ------------------------------------------------------------------------------
@committing
@pytest.mark.parametrize("name", sorted(LISTS))
def test_a_kept_answer_is_the_one_built_and_costs_two_queries(
    name: str, owner_token: tuple[Tenant, APIClient], cache_on: None, settings: Any
) -> None:
    _, client, url = _filled(name, owner_token)
    first, built_queries = get(client, url)
    again, kept_queries = get(client, url)
    assert again == first == built(client, url, settings)
    assert first["results"], first
    assert kept_queries == 2 and built_queries >= 2  # the token, the generation
    paged, _ = get(client, f"{url}?page_size=1")  # another URL, another answer
    assert len(paged["results"]) == 1 and get(client, f"{url}?page_size=1") == (paged, 2)


@committing
@pytest.mark.parametrize(("name", "write"), WRITES)
def test_every_committed_write_a_list_shows_is_seen_at_once(
    name: str, write: str, owner_token: tuple[Tenant, APIClient], cache_on: None, settings: Any
) -> None:
    tenant, client, url = _filled(name, owner_token)
    get(client, url)  # the token's first use is written (its last use, shown by the tokens list)
    assert_seen_at_once(client, url, lambda: LISTS[name].writes[write](tenant, client), settings)


@pytest.mark.parametrize("name", sorted(LISTS))
def test_every_table_and_column_a_list_reads_is_watched(
    name: str, owner_token: tuple[Tenant, APIClient]
) -> None:
    _, client, url = _filled(name, owner_token)
    read, _ = assert_watched(listing_sql(client, url), kept_lists.WATCHED.groups[name])
    assert LISTS[name].reads <= read


@committing
@pytest.mark.parametrize("name", sorted(LISTS))
def test_another_tenant_gets_a_404_and_its_own_rows(
    name: str, owner_token: tuple[Tenant, APIClient], cache_on: None, settings: Any
) -> None:
    other, stranger = _stranger()
    get(stranger, _url(other, "tokens"))  # its token's first use is written (the tokens lists show it)
    _, client, url = _filled(name, owner_token)
    kept = LISTS[name]
    mine, _ = get(client, url)
    get(client, url)
    assert stranger.get(url).status_code == 404
    assert APIClient().get(url).status_code in (401, 403)
    assert get(client, url) == (mine, 2)  # acme's kept answer is still its own
    kept.fill(other)
    theirs, _ = get(stranger, _url(other, kept.path))
    assert theirs != mine and theirs == built(stranger, _url(other, kept.path), settings)


@committing
def test_the_audit_list_is_refused_below_owner_after_an_owner_kept_it(
    owner_token: tuple[Tenant, APIClient], cache_on: None
) -> None:
    tenant, client, url = _filled("audit", owner_token)
    get(client, url)
    assert _member_client(tenant, Role.DEVELOPER).get(url).status_code == 403


@committing
def test_the_tokens_list_is_kept_for_who_asks(
    owner_token: tuple[Tenant, APIClient], cache_on: None, settings: Any
) -> None:
    tenant, client, url = _filled("tokens", owner_token)
    owners, _ = get(client, url)
    assert {row["name"] for row in owners["results"]} == {"automation", "second"}
    mine = _member_client(tenant, Role.DEVELOPER)
    get(mine, url)
    theirs, queries = get(mine, url)
    assert queries == 2 and [row["name"] for row in theirs["results"]] == ["developer's"]
    assert theirs == built(mine, url, settings)
    assert all("secret" not in row and "digest" not in row for row in theirs["results"] + owners["results"])


@committing
def test_a_kept_tokens_list_ends_when_a_token_it_shows_expires(
    owner_token: tuple[Tenant, APIClient], cache_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, client = owner_token
    url = _url(tenant, "tokens")
    now = [1000.0]
    monkeypatch.setattr(answer_cache, "clock", lambda: now[0])
    get(client, url)
    assert get(client, url)[1] == 2
    now[0] += 20  # no token expires: kept for the whole bound
    assert get(client, url)[1] == 2
    create_token(_owner(tenant), tenant, "short", timezone.now() + timedelta(seconds=10))
    get(client, url)  # built: a token was made
    assert get(client, url)[1] == 2
    now[0] += 11  # its is_active turns false: not kept past it
    assert get(client, url)[1] > 2


@committing
def test_a_kept_secrets_list_shows_no_value(owner_token: tuple[Tenant, APIClient], cache_on: None) -> None:
    tenant, client = owner_token
    _fill_secrets(tenant)
    url = _url(tenant, "secrets")
    get(client, url)
    kept, queries = get(client, url)
    assert queries == 2 and [row["name"] for row in kept["results"]] == ["DB_PASSWORD"]
    assert set(kept["results"][0]) == {"name", "created_at", "updated_at"}
    assert SECRET_VALUE not in repr(answer_cache.answers._entries)


def _generations() -> dict[str, int | None]:
    return {group: answer_cache.read_generation(group) for group in kept_lists.GROUPS}


def _token_row(tenant: Tenant) -> None:
    user = _owner(tenant).user
    ApiToken.objects.create(user=user, tenant=tenant, name="bare", prefix="p", digest="d" * 64)


# A write and the groups it must move: exactly those whose lists read what it changed.
MOVES: dict[str, tuple[Callable[[Tenant], None], set[str]]] = {
    "an audit entry": (lambda t: record(_owner(t), "test.event", tenant=t) and None, {"audit"}),
    "a volume": (
        lambda t: Volume.objects.create(tenant=t, name="v", size_bytes=8 * MIB) and None,
        {"volumes"},
    ),
    "a secret": (
        lambda t: Secret.objects.create(tenant=t, name="S", ciphertext=secrets.encrypt("x")) and None,
        {"secrets"},
    ),
    "a secret's ciphertext alone": (
        lambda t: Secret.objects.filter(tenant=t).update(ciphertext=secrets.encrypt("y")) and None,
        set(),
    ),
    "an image": (lambda t: Image.objects.create(tenant=t, reference="acme/x:1") and None, {"images"}),
    "a membership": (
        lambda t: Membership.objects.filter(tenant=t).update(role=Role.OWNER) and None,
        {"members"},
    ),
    "a token": (_token_row, {"tokens"}),
    "a replica's state": (
        lambda t: Replica.objects.filter(app__tenant=t).update(state="running") and None,
        {"apps", "containers"},
    ),
    "a replica's health check time": (
        lambda t: Replica.objects.filter(app__tenant=t).update(health_checked_at=timezone.now()) and None,
        set(),
    ),
    "a host's address": (lambda t: Host.objects.update(address="10.1.2.3") and None, {"containers"}),
    "a user's name": (
        lambda t: get_user_model().objects.filter(pk=_owner(t).user.pk).update(username="x") and None,  # type: ignore[union-attr]
        {"apps", "members", "tokens"},
    ),
    "a user's login time": (
        lambda t: (
            get_user_model().objects.filter(pk=_owner(t).user.pk).update(last_login=timezone.now())  # type: ignore[union-attr]
            and None
        ),
        set(),
    ),
    "an audit entry in a transaction with a volume": (
        lambda t: _in_one_transaction(t),
        {"audit", "volumes"},
    ),
}


def _in_one_transaction(tenant: Tenant) -> None:
    with transaction.atomic():
        record(_owner(tenant), "test.event", tenant=tenant)
        with transaction.atomic():
            Volume.objects.create(tenant=tenant, name="w", size_bytes=8 * MIB)


@committing
@pytest.mark.parametrize("write", sorted(MOVES))
def test_a_write_moves_only_the_generations_of_the_lists_that_show_it(write: str, host: Host) -> None:
    tenant = TenantFactory(slug="acme")
    MembershipFactory(tenant=tenant, role=Role.OWNER)
    _fill_containers(tenant)
    _fill_secrets(tenant)
    answer_cache.move_generations(kept_lists.GROUPS)  # every row there (a flush between tests drops them)
    before = _generations()
    assert None not in before.values(), before
    make, groups = MOVES[write]
    make(tenant)
    after = _generations()
    moved = {group for group in before if after[group] != before[group]}
    assert moved == groups
    assert all(after[group] == before[group] + 1 for group in moved)  # once each


@committing
def test_a_missing_group_row_is_made_anew_by_its_next_write(host: Host) -> None:
    tenant = TenantFactory(slug="acme")
    MembershipFactory(tenant=tenant, role=Role.OWNER)
    _raw("DELETE FROM api_cachegeneration WHERE name = %s", "volumes")
    assert answer_cache.read_generation("volumes") is None
    audit = answer_cache.read_generation("audit")
    Volume.objects.create(tenant=tenant, name="v", size_bytes=8 * MIB)
    assert answer_cache.read_generation("volumes") is not None
    assert answer_cache.read_generation("audit") == audit

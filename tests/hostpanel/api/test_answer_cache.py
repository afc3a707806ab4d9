"""The apps list's kept answers (hostpanel/api/answer_cache.py): the same JSON as built, and never
an answer older than a committed write to what it shows, whoever wrote it and how.

These tests commit (``transaction=True``): inside a test's transaction nothing is kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from hostpanel.api import answer_cache, kept_lists
from hostpanel.audit.services import Actor
from hostpanel.deployments import desired
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Release, Replica, Rollout
from hostpanel.hosts import services as hosts
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import create_token
from tests.hostpanel.api.kept import assert_seen_at_once, assert_watched, built, committing, get, listing_sql
from tests.hostpanel.factories import HostFactory, MembershipFactory, TenantFactory


def _owner(tenant: Tenant) -> Actor:
    return Actor(user=tenant.memberships.get(role=Role.OWNER).user)


def _apps(tenant: Tenant, count: int = 2) -> list[App]:
    made = []
    for i in range(count):
        spec = deployments.AppSpec(
            image="busybox:latest", command=["sleep", "1"], replicas=2, http_port=80 if i == 0 else None
        )  # app0 rolls (a rollout)
        app = deployments.create_app(_owner(tenant), tenant, f"app{i}", spec)
        deployments.deploy(_owner(tenant), app, env={"V": "2"})  # a second release and a rollout
        made.append(app)
    return made


@committing
def test_a_kept_answer_is_the_one_built_and_costs_two_queries(
    owner_token: tuple[Tenant, APIClient], cache_on: None, settings: Any
) -> None:
    tenant, client = owner_token
    _apps(tenant)
    url = f"/api/v1/tenants/{tenant.slug}/apps/?page_size=1"  # with a next link (the request's host)
    first, built_queries = get(client, url)
    again, kept_queries = get(client, url)
    assert again == first == built(client, url, settings)
    assert first["next"].startswith("http://testserver/") and len(first["results"]) == 1
    assert first["results"][0]["replicas"] and first["results"][0]["rollout"]["release"] == 2
    assert kept_queries == 2 < built_queries  # the token, the generation
    other, _ = get(client, url.replace("page_size=1", "page_size=2"))  # another URL, another answer
    assert len(other["results"]) == 2


def _replica_state(tenant: Tenant) -> None:  # as an agent's report writes it
    Replica.objects.filter(app__tenant=tenant).update(state=Replica.State.RUNNING, message="up")


def _agent_report(tenant: Tenant) -> None:  # POST /internal/v1/host/report's writer
    replicas = Replica.objects.filter(app__tenant=tenant).select_related("host")
    entries = [
        {"replica": r.pk, "generation": r.generation, "state": "running", "message": "ok"} for r in replicas
    ]
    written, ignored = desired.apply_report(replicas[0].host, entries)
    assert written and not ignored


def _replica_saved(tenant: Tenant) -> None:
    replica = Replica.objects.filter(app__tenant=tenant).first()
    assert replica is not None
    replica.health = "unhealthy"
    replica.save()


def _replica_inserted(tenant: Tenant) -> None:  # one INSERT ... RETURNING alone, in autocommit
    replica = Replica.objects.filter(app__tenant=tenant).first()
    assert replica is not None
    replica.pk, replica.index, replica.container_name = None, 9, "acme-app0-9"
    replica.save()


def _rollout(tenant: Tenant) -> None:
    Rollout.objects.filter(app__tenant=tenant).update(state=Rollout.State.FAILED, message="it broke")


def _release_status(tenant: Tenant) -> None:
    Release.objects.filter(app__tenant=tenant).update(status="live", status_message="all good")


def _app_stopped(tenant: Tenant) -> None:
    deployments.set_state(_owner(tenant), App.objects.get(tenant=tenant, name="app0"), App.State.STOPPED)


def _app_deleted(tenant: Tenant) -> None:
    deployments.delete_app(_owner(tenant), App.objects.get(tenant=tenant, name="app1"))


def _app_created(tenant: Tenant) -> None:
    spec = deployments.AppSpec(image="busybox:latest", command=["sleep", "1"])
    deployments.create_app(_owner(tenant), tenant, "app9", spec)


def _host_renamed(tenant: Tenant) -> None:
    Host.objects.filter(name="h1").update(name="h1-renamed")


def _creator_renamed(tenant: Tenant) -> None:
    owner = tenant.memberships.get(role=Role.OWNER).user_id
    get_user_model().objects.filter(pk=owner).update(username="renamed-owner")


def _in_a_transaction(tenant: Tenant) -> None:
    with transaction.atomic():
        Replica.objects.filter(app__tenant=tenant).update(restart_count=7)
        with transaction.atomic():  # a savepoint that commits with it
            Release.objects.filter(app__tenant=tenant).update(note="noted")


def _raw_sql(tenant: Tenant) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE deployments_replica SET message = %s WHERE app_id IN "
            "(SELECT id FROM deployments_app WHERE tenant_id = %s)",
            ["raw", tenant.pk],
        )


def _from_another_connection(tenant: Tenant) -> None:
    """A write by another thread's connection: the generation is the database's, not this one's."""

    def write() -> None:
        try:
            Replica.objects.filter(app__tenant=tenant).update(message="from elsewhere")
        finally:
            connection.close()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()


WRITES: dict[str, Callable[[Tenant], None]] = {
    "replica state (update)": _replica_state,
    "agent's report": _agent_report,
    "replica health (save)": _replica_saved,
    "replica inserted": _replica_inserted,
    "rollout": _rollout,
    "release status": _release_status,
    "app stopped": _app_stopped,
    "app deleted": _app_deleted,
    "app created": _app_created,
    "host renamed": _host_renamed,
    "creator renamed": _creator_renamed,
    "in a transaction": _in_a_transaction,
    "raw SQL": _raw_sql,
    "another connection": _from_another_connection,
}


@committing
@pytest.mark.parametrize("write", sorted(WRITES))
def test_every_committed_write_the_list_shows_is_seen_at_once(
    write: str, owner_token: tuple[Tenant, APIClient], cache_on: None, settings: Any
) -> None:
    tenant, client = owner_token
    _apps(tenant)
    assert_seen_at_once(
        client, f"/api/v1/tenants/{tenant.slug}/apps/", lambda: WRITES[write](tenant), settings
    )


@committing
def test_a_transaction_moves_the_generation_once_when_it_commits(host: Host) -> None:
    tenant = TenantFactory(slug="acme")
    MembershipFactory(tenant=tenant, role=Role.OWNER)
    _apps(tenant, 1)
    start = answer_cache.read_generation("apps")
    assert start is not None
    with transaction.atomic():
        Replica.objects.filter(app__tenant=tenant).update(message="x")
        Rollout.objects.filter(app__tenant=tenant).update(message="y")
        assert answer_cache.read_generation("apps") == start  # not committed yet
    assert answer_cache.read_generation("apps") == start + 1
    with pytest.raises(RuntimeError), transaction.atomic():
        Replica.objects.filter(app__tenant=tenant).update(message="rolled back")
        raise RuntimeError
    assert answer_cache.read_generation("apps") == start + 1  # nothing changed
    Tenant.objects.filter(pk=tenant.pk).update(name="renamed")  # autocommit: at once
    assert answer_cache.read_generation("apps") == start + 2
    HostFactory(name="h2")  # an INSERT ... RETURNING: no row counted before its row is read
    assert answer_cache.read_generation("apps") == start + 3


@committing
def test_a_missing_generation_is_made_anew_and_nothing_is_kept_without_it(
    owner_token: tuple[Tenant, APIClient], cache_on: None
) -> None:
    tenant, client = owner_token
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM api_cachegeneration")
    url = f"/api/v1/tenants/{tenant.slug}/apps/"
    assert get(client, url)[1] > 2 and get(client, url)[1] > 2  # built each time
    _apps(tenant, 1)
    assert answer_cache.read_generation("apps") is not None
    get(client, url)
    assert get(client, url)[1] == 2


@committing
def test_access_is_checked_before_a_kept_answer(
    owner_token: tuple[Tenant, APIClient], cache_on: None
) -> None:
    tenant, client = owner_token
    _apps(tenant, 1)
    url = f"/api/v1/tenants/{tenant.slug}/apps/"
    get(client, url)
    other = TenantFactory(slug="other")
    outsider = MembershipFactory(tenant=other, role=Role.OWNER).user
    _, secret = create_token(Actor(user=outsider), other, "outsider")
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert stranger.get(url).status_code == 404  # another tenant's token
    assert APIClient().get(url).status_code in (401, 403)


@committing
def test_an_answer_is_rebuilt_after_its_bound(
    owner_token: tuple[Tenant, APIClient], cache_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, client = owner_token
    _apps(tenant, 1)
    url = f"/api/v1/tenants/{tenant.slug}/apps/"
    now = [1000.0]
    monkeypatch.setattr(answer_cache, "clock", lambda: now[0])
    get(client, url)
    assert get(client, url)[1] == 2
    now[0] += 31
    assert get(client, url)[1] > 2


@committing
def test_what_a_process_keeps_is_bounded(
    owner_token: tuple[Tenant, APIClient], cache_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, client = owner_token
    _apps(tenant)
    monkeypatch.setattr(answer_cache.AnswerCache, "MAX_ROWS", 1)
    monkeypatch.setattr(answer_cache.AnswerCache, "MAX_ENTRIES", 2)
    url = f"/api/v1/tenants/{tenant.slug}/apps/"
    get(client, url)
    assert get(client, url)[1] > 2  # two rows: a longer page than kept
    for junk in range(3):
        get(client, f"{url}?page_size=1&junk={junk}")
    assert len(answer_cache.answers._entries) <= 2


def test_nothing_is_kept_inside_a_transaction(owner_token: tuple[Tenant, APIClient], cache_on: None) -> None:
    tenant, client = owner_token
    _apps(tenant, 1)
    url = f"/api/v1/tenants/{tenant.slug}/apps/"
    get(client, url)
    assert get(client, url)[1] > 2  # the test's transaction: uncommitted writes may be seen


def test_every_table_and_column_the_list_reads_is_watched(owner_token: tuple[Tenant, APIClient]) -> None:
    tenant, client = owner_token
    _apps(tenant)
    read, columns = assert_watched(
        listing_sql(client, f"/api/v1/tenants/{tenant.slug}/apps/"), kept_lists.WATCHED.groups["apps"]
    )
    assert {
        "deployments_app",
        "deployments_replica",
        "deployments_rollout",
        "hosts_host",
        "auth_user",
    } <= read
    assert ("deployments_replica", "state") in columns and ("hosts_host", "name") in columns


def test_a_write_is_one_that_may_change_a_shown_column_of_a_watched_table() -> None:
    watcher = answer_cache.WriteWatcher(
        {"apps": {"deployments_replica": ["state", "host_id"], "deployments_app": None}}
    )

    def writes(sql: str) -> bool:
        return watcher.moved(sql) == {"apps"}

    assert writes('UPDATE "deployments_replica" SET "state" = %s WHERE "deployments_replica"."id" = %s')
    assert writes("update deployments_replica set host_id = 3 where id in (select id from x where y = 1)")
    assert writes('UPDATE "deployments_replica" SET "a" = (SELECT 1 WHERE 1), "state" = %s WHERE "id" = 1')
    assert not writes('UPDATE "deployments_replica" SET "health_checked_at" = %s WHERE "state" = %s')
    assert not writes('UPDATE "deployments_replica" SET "health_checked_at" = %s')
    assert not writes(
        'UPDATE "deployments_replica" SET "health_failures" = %s WHERE "deployments_replica"."host_id" IN '
        '(SELECT U0."id" FROM "hosts_host" U0 WHERE U0."name" = %s)'
    )
    assert writes("UPDATE deployments_replica SET message = 'a (', state = %s WHERE id = 1")
    assert writes('UPDATE "deployments_app" SET "updated_at" = %s WHERE "id" = %s')
    assert writes('  insert into "deployments_replica" ("app_id") VALUES (%s)')
    assert writes('INSERT OR IGNORE INTO "deployments_replica" ("app_id") VALUES (%s)')
    assert writes('DELETE FROM "deployments_replica" WHERE "id" IN (%s)')
    assert writes('ALTER TABLE "deployments_replica" ADD COLUMN "x" integer')
    assert not writes('SELECT "deployments_replica"."id" FROM "deployments_replica"')
    assert not writes(
        'UPDATE "hosts_host" SET "state" = %s WHERE "id" IN (SELECT "host_id" FROM "deployments_replica")'
    )
    assert not writes('DELETE FROM "django_session" WHERE "expire_date" < %s')


def test_only_an_update_or_delete_that_counted_no_row_changed_nothing() -> None:
    changed_nothing = answer_cache._changed_nothing
    assert changed_nothing('UPDATE "deployments_replica" SET "state" = %s WHERE "id" = %s', 0)
    assert changed_nothing('DELETE FROM "deployments_replica" WHERE "id" = %s', 0)
    assert not changed_nothing('UPDATE "deployments_replica" SET "state" = %s WHERE "id" = %s', 1)
    assert not changed_nothing('INSERT INTO "deployments_replica" ("app_id") VALUES (%s) RETURNING "id"', 0)
    assert not changed_nothing('DELETE FROM "deployments_replica" WHERE "id" = %s RETURNING "id"', 0)
    assert not changed_nothing('ALTER TABLE "deployments_replica" ADD COLUMN "x" integer', 0)


@committing
def test_writes_the_list_does_not_show_keep_the_answer(
    owner_token: tuple[Tenant, APIClient], cache_on: None
) -> None:
    tenant, client = owner_token
    _apps(tenant)
    url = f"/api/v1/tenants/{tenant.slug}/apps/"
    kept, _ = get(client, url)
    hosts.heartbeat(Host.objects.get(name="h1").pk)  # an agent's beat, every few seconds
    Replica.objects.filter(app__tenant=tenant).update(health_checked_at=timezone.now(), health_failures=1)
    Replica.objects.filter(app__tenant=tenant, state="no such state").update(message="none matches")
    assert get(client, url) == (kept, 2)

"""An enrolled agent's reconcile (no database: the panel's internal API in this process) against an
in-memory engine: idempotent, removes extras, restarts by policy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from engine.cgroups.resources import HostCapacity, Resources
from hostpanel.agent import restarts
from hostpanel.agent.remote import ReconcileReport
from hostpanel.deployments import desired
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Replica
from hostpanel.hosts.models import Host
from hostpanel.secrets.services import create_secret
from hostpanel.tenants.models import Tenant
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents, spec_of
from tests.hostpanel.hosts.fake_engine import FakeEngine

pytestmark = pytest.mark.django_db

Run = Callable[[FakeEngine, Host], ReconcileReport]


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def run(agents: EnrolledAgents) -> Run:
    """One reconcile of a host as its enrolled agent does it."""
    return agents.reconcile


def test_starts_missing_and_is_idempotent(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any
) -> None:
    app = make_app(tenant, replicas=2)
    report = run(engine, host)
    assert sorted(report.started) == ["acme-web-0", "acme-web-1"]
    for _ in range(3):
        assert run(engine, host).started == []
    assert engine.runs == 2
    replica = Replica.objects.get(app=app, index=0)
    assert replica.state == Replica.State.RUNNING and replica.engine_id
    spec = engine.specs[replica.engine_id]
    assert spec.tenant == "acme" and spec.labels[desired.LABEL_REPLICA] == str(replica.pk)


def test_removes_extras_on_scale_down_and_delete(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any, admin_actor: Any
) -> None:
    app = make_app(tenant, replicas=2)
    run(engine, host)
    engine.run(spec_of(Replica.objects.get(app=app, index=0)).__class__(image="busybox", name="operator-own"))
    deployments.scale(admin_actor, App.objects.get(pk=app.pk), 1)
    assert run(engine, host).removed == ["acme-web-1"]
    deployments.delete_app(admin_actor, App.objects.get(pk=app.pk))
    run(engine, host)
    assert [c.name for c in engine.list(all=True)] == ["operator-own"]  # never touches others' containers


def test_new_release_replaces_the_container(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any, admin_actor: Any
) -> None:
    app = make_app(tenant)
    run(engine, host)
    deployments.deploy(admin_actor, App.objects.get(pk=app.pk), env={"V": "2"})
    report = run(engine, host)
    assert report.removed == ["acme-web-0"] and report.started == ["acme-web-0"]
    (container,) = engine.list(all=True)
    assert "V=2" in container.env


def test_crash_is_restarted_after_backoff(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any, settings: Any
) -> None:
    settings.HOSTPANEL_RESTART_BACKOFF_BASE = 10
    make_app(tenant, restart_policy="always")
    run(engine, host)
    engine.crash("acme-web-0", 2)
    report = run(engine, host)
    assert report.restarted == [] and report.retry_in is not None and 9 < report.retry_in <= 10
    replica = Replica.objects.get()
    assert replica.state == Replica.State.BACKOFF and replica.exit_code == 2
    Replica.objects.update(next_restart_at=timezone.now() - timedelta(seconds=1))
    assert run(engine, host).restarted == ["acme-web-0"]
    replica.refresh_from_db()
    assert (
        replica.state == Replica.State.RUNNING
        and replica.restart_count == 1
        and replica.next_restart_at is None
    )


def test_on_failure_limit_and_clean_exit(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any, settings: Any
) -> None:
    settings.HOSTPANEL_RESTART_BACKOFF_BASE = 0
    make_app(tenant, restart_policy="on-failure:1")
    run(engine, host)
    engine.crash("acme-web-0", 1)
    assert run(engine, host).restarted == ["acme-web-0"]
    engine.crash("acme-web-0", 1)
    assert run(engine, host).restarted == []  # one retry used up
    assert Replica.objects.get().state == Replica.State.EXITED


def test_policy_no_leaves_it_exited(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any
) -> None:
    make_app(tenant, restart_policy="no")
    run(engine, host)
    engine.crash("acme-web-0", 0)
    assert run(engine, host).restarted == []
    assert Replica.objects.get().state == Replica.State.EXITED


def test_stop_start_and_restart_generation(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any, admin_actor: Any
) -> None:
    app = make_app(tenant)
    run(engine, host)
    deployments.set_state(admin_actor, app, App.State.STOPPED)
    assert run(engine, host).stopped == ["acme-web-0"]
    assert Replica.objects.get().state == Replica.State.STOPPED
    deployments.set_state(admin_actor, App.objects.get(pk=app.pk), App.State.RUNNING)
    run(engine, host)
    assert engine.get("acme-web-0").is_running
    deployments.restart(admin_actor, App.objects.get(pk=app.pk))
    assert run(engine, host).restarted == ["acme-web-0"]
    assert run(engine, host).restarted == []


def test_adopts_a_container_left_by_an_interrupted_run(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any
) -> None:
    make_app(tenant)
    replica = Replica.objects.get()
    engine.set_tenant_quota(tenant.slug, Resources(pids=100))  # written by the interrupted run
    engine.run(spec_of(replica))  # the agent died before writing back
    Replica.objects.update(engine_id="")
    run(engine, host)
    assert len(engine.list(all=True)) == 1
    assert Replica.objects.get().engine_id == engine.list()[0].id


def test_secret_reaches_the_container_env_when_asked(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any, admin_actor: Any
) -> None:
    create_secret(admin_actor, tenant, "api-key", "s3cr3t")
    make_app(tenant, secrets=[{"name": "api-key", "env": "API_KEY"}])
    run(engine, host)
    assert "API_KEY=s3cr3t" in engine.list()[0].env


def test_other_hosts_replicas_are_not_ours(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any
) -> None:
    other = Host.objects.create(name="h2", cpu_millis=1000, memory_bytes=2**30)
    make_app(tenant)
    assert run(engine, other).started == []
    assert engine.list(all=True) == []


def test_backoff_grows_and_is_capped(settings: Any) -> None:
    settings.HOSTPANEL_RESTART_BACKOFF_BASE = 1
    settings.HOSTPANEL_RESTART_BACKOFF_MAX = 60
    assert [restarts.backoff_delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_health_check_failures_restart_the_container(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any
) -> None:
    make_app(tenant, health_check={"command": ["test", "-f", "/ready"], "interval": 5, "retries": 2})
    run(engine, host)
    run(engine, host)  # first pass marks it starting; the first check is one interval later
    assert Replica.objects.get().health == "starting" and engine.execs == []

    def probe() -> ReconcileReport:
        """A check falls due: one pass submits the probe, the next counts its result."""
        Replica.objects.update(health_checked_at=timezone.now() - timedelta(seconds=6))
        run(engine, host)
        return run(engine, host)

    probe()
    assert engine.execs == [("test", "-f", "/ready")]
    assert Replica.objects.get().health == "healthy"
    engine.exec_exit_code = 1
    assert probe().restarted == []
    assert Replica.objects.get().health_failures == 1
    # the second failure makes it unhealthy, and the container is restarted
    assert probe().restarted == ["acme-web-0"]
    replica = Replica.objects.get()
    assert (
        replica.restart_count == 1
        and replica.health == "starting"
        and "2 failed health checks" in replica.message
    )


def test_the_engine_spec_never_asks_for_privileged_features(
    tenant: Tenant, host: Host, make_app: Any, admin_actor: Any
) -> None:
    from hostpanel.volumes.services import create_volume

    create_volume(admin_actor, tenant, "data", 2**30)
    make_app(tenant, ports=[{"container_port": 80}], volumes=[{"name": "data", "path": "/data"}])
    spec = spec_of(Replica.objects.get())
    assert spec.allow_privileged is False
    assert spec.network in ("none", "bridge")
    assert all(m.kind == "volume" and m.source.startswith("acme.") for m in spec.mounts)
    assert spec.tenant == "acme" and spec.user is None
    assert spec.resources.memory == 128 * 1024**2 and spec.resources.pids == 128


def test_backoff_grows_with_a_crash_streak_and_resets_after_a_long_run(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any, settings: Any
) -> None:
    from dataclasses import replace as dc_replace

    settings.HOSTPANEL_RESTART_BACKOFF_BASE = 10
    make_app(tenant, restart_policy="always")
    run(engine, host)

    def crash_and_wait() -> float:
        engine.crash("acme-web-0")
        report = run(engine, host)
        assert report.retry_in is not None
        Replica.objects.update(next_restart_at=timezone.now() - timedelta(seconds=1))
        assert run(engine, host).restarted == ["acme-web-0"]
        return report.retry_in

    assert 9 < crash_and_wait() <= 10
    assert 19 < crash_and_wait() <= 20
    c = engine.get("acme-web-0")
    engine.containers[c.id] = dc_replace(c, started_at="2020-01-01T00:00:00Z")  # it ran for years
    assert 9 < crash_and_wait() <= 10
    assert Replica.objects.get().restart_count == 3


def test_bridge_network_reaches_the_engine_spec(tenant: Tenant, host: Host, make_app: Any) -> None:
    make_app(tenant, network="bridge")
    spec = spec_of(Replica.objects.get())
    assert spec.network == "bridge" and spec.ports == ()


def test_a_steady_state_writes_nothing(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_app(tenant, replicas=3)
    run(engine, host)
    run(engine, host)
    with CaptureQueriesContext(connection) as queries:
        run(engine, host)
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith(("UPDATE", "INSERT"))
    ]
    assert writes == []


def test_a_new_release_replaces_one_replica_at_a_time_across_hosts(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any, admin_actor: Any
) -> None:
    other = Host.objects.create(name="h2", cpu_millis=8000, memory_bytes=16 * 1024**3, state="up")
    other_engine = FakeEngine()
    app = make_app(tenant, replicas=2)
    assert set(Replica.objects.values_list("host__name", flat=True)) == {"h1", "h2"}
    run(engine, host)
    run(other_engine, other)
    deployments.deploy(admin_actor, App.objects.get(pk=app.pk), env={"V": "2"})
    # h2's replica is being replaced right now (its agent is in the middle of it)
    Replica.objects.filter(host=other).update(state=Replica.State.UPDATING, updated_at=timezone.now())
    report = run(engine, host)
    assert report.removed == [] and report.retry_in is not None  # h1 waits, its old container still serves
    assert engine.get("acme-web-0").is_running and "V=2" not in engine.get("acme-web-0").env
    Replica.objects.filter(host=other).update(state=Replica.State.RUNNING)
    assert run(engine, host).started == ["acme-web-0"]
    assert "V=2" in engine.get("acme-web-0").env
    assert Replica.objects.get(host=host).state == Replica.State.RUNNING


def test_a_stale_update_claim_does_not_block_forever(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any, admin_actor: Any
) -> None:
    app = make_app(tenant, replicas=2)
    run(engine, host)
    deployments.deploy(admin_actor, App.objects.get(pk=app.pk), env={"V": "2"})
    Replica.objects.filter(index=1).update(
        state=Replica.State.UPDATING,
        updated_at=timezone.now() - timedelta(seconds=desired.UPDATE_CLAIM_SECONDS + 1),
    )
    assert "acme-web-0" in run(engine, host).started


def test_the_tenants_egress_allow_list_reaches_the_engine_before_its_containers(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any, admin_actor: Any
) -> None:
    from hostpanel.tenants.services import update_quota

    update_quota(admin_actor, tenant, egress_allow=["10.20.0.0/16", "192.168.1.9"])
    app = make_app(tenant)
    run(engine, host)
    (container,) = engine.list()
    assert engine.egress_at_run[container.id] == ("10.20.0.0/16", "192.168.1.9/32")
    run(engine, host)
    assert engine.egress_sets == 1  # steady state: not sent again
    update_quota(admin_actor, tenant, egress_allow=[])
    run(engine, host)
    assert engine.egress["acme"] == () and App.objects.filter(pk=app.pk).exists()


def test_the_panels_redis_and_other_hosts_are_protected_but_their_published_ports_stay_open(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any, settings: Any
) -> None:
    from tests.hostpanel.factories import HostFactory

    settings.REDIS_URL = "redis://:secret@192.0.2.50:6379/0"
    h2 = HostFactory(name="h2", address="198.51.100.7")
    HostFactory(name="h3", address="localhost")  # loopback: the input chain already closes it
    make_app(tenant, ports=[{"container_port": 80}])
    Replica.objects.update(host=h2, ports=[{"host_port": 30080, "container_port": 80, "protocol": "tcp"}])
    run(engine, host)
    assert engine.protected == {"192.0.2.50": (), "198.51.100.7": ("30080/tcp",)}
    run(engine, host)
    assert engine.protected_sets == 1  # steady state: not sent again


def test_a_tenants_quota_is_written_before_anything_of_it_runs_here_and_only_its_hosts_learn_it(
    run: Run, engine: FakeEngine, tenant: Tenant, host: Host, make_app: Any
) -> None:
    """The document names the tenants of the host's replicas (a build writes its tenant's quota
    itself: build_runner.py); the in-memory engine refuses a labelled container without it."""
    quota = tenant.quota
    other = Tenant.objects.create(slug="other", name="Other")
    run(engine, host)
    assert engine.tenant_quota(tenant.slug).memory is None  # nothing of acme placed here yet
    make_app(tenant)
    run(engine, host)
    assert engine.get("acme-web-0").is_running
    written = engine.tenant_quota(tenant.slug)
    capacity = HostCapacity.detect()
    assert written.memory == min(quota.memory_bytes, capacity.memory) and written.pids == quota.pids
    assert written.cpus == min(quota.cpu_millis / 1000, capacity.cpus)
    assert engine.tenant_storage(tenant.slug).size == quota.disk_bytes  # bounds its rootfs writes
    assert engine.tenant_quota(other.slug).memory is None  # a tenant of no replica here: not told

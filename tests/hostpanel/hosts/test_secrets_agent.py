"""The host agent and secrets as files: the engine spec, rotation and reboots (in-memory engine; the
agent is an enrolled one: its secrets come sealed to its key from the internal API)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.model import ContainerSpec, SecretFile
from hostpanel.agent.remote import ReconcileReport
from hostpanel.deployments import desired
from hostpanel.hosts.models import Host
from hostpanel.secrets.models import Secret
from hostpanel.secrets.services import create_secret, update_secret
from hostpanel.tenants.models import Tenant
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents
from tests.hostpanel.hosts.fake_engine import FakeEngine

pytestmark = pytest.mark.django_db

Run = Callable[[FakeEngine, Host], ReconcileReport]


@pytest.fixture
def run(agents: EnrolledAgents) -> Run:
    return agents.reconcile


def spec_run(run: Run, host: Host) -> ContainerSpec:
    """The spec of the one container the host's agent runs."""
    engine = FakeEngine()
    run(engine, host)
    (container,) = engine.list(all=True)
    return engine.specs[container.id]


def test_every_secret_is_a_file_and_env_only_when_asked(
    run: Run, tenant: Tenant, host: Host, make_app: Any, admin_actor: Any
) -> None:
    create_secret(admin_actor, tenant, "api-key", "k-value")
    create_secret(admin_actor, tenant, "tls.pem", "pem-value")
    make_app(
        tenant,
        secrets=[
            {"name": "api-key", "env": "API_KEY"},
            {"name": "tls.pem"},
            {"name": "api-key", "env": "KEY2"},
        ],
    )
    spec = spec_run(run, host)
    assert spec.secrets == (SecretFile("api-key", b"k-value"), SecretFile("tls.pem", b"pem-value"))
    assert [e for e in spec.env if "value" in e] == ["API_KEY=k-value", "KEY2=k-value"]
    assert "value" not in repr(spec.secrets)


def test_an_app_without_secrets_gets_none(run: Run, tenant: Tenant, host: Host, make_app: Any) -> None:
    make_app(tenant)
    assert spec_run(run, host).secrets == ()


def test_a_replaced_value_rolls_the_container_onto_it(
    run: Run, tenant: Tenant, host: Host, make_app: Any, admin_actor: Any
) -> None:
    engine = FakeEngine()
    create_secret(admin_actor, tenant, "api-key", "old")
    make_app(tenant, secrets=[{"name": "api-key"}])
    run(engine, host)
    assert run(engine, host).removed == []  # steady: the same secret version keeps the container
    update_secret(admin_actor, Secret.objects.get(name="api-key"), "new")
    report = run(engine, host)
    assert report.removed == ["acme-web-0"] and report.started == ["acme-web-0"]
    (container,) = engine.list(all=True)
    assert engine.specs[container.id].secrets == (SecretFile("api-key", b"new"),)
    assert run(engine, host).removed == []


def test_after_a_reboot_containers_with_secrets_are_made_anew(
    run: Run,
    tenant: Tenant,
    host: Host,
    make_app: Any,
    admin_actor: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    engine = FakeEngine()
    create_secret(admin_actor, tenant, "api-key", "v")
    make_app(tenant, secrets=[{"name": "api-key"}], restart_policy="always")
    make_app(tenant, name="plain", restart_policy="always")
    run(engine, host)
    before = {c.name: c.id for c in engine.list(all=True)}
    for name in before:
        engine.crash(name)  # what a reboot leaves: exited containers

    boot_id = tmp_path / "boot_id"
    boot_id.write_text("another-boot\n")
    monkeypatch.setattr(desired, "BOOT_ID", boot_id)
    report = run(engine, host)
    # the engine cannot restart it (its in-memory secrets are gone): it is replaced at once;
    # the app without secrets keeps its container and waits for its restart back-off
    assert report.removed == ["acme-web-0"] and report.started == ["acme-web-0"]
    assert engine.get("acme-plain-0").id == before["acme-plain-0"]

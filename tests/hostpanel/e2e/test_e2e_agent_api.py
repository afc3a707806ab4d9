"""An enrolled agent: its desired state from the internal API, states back.

The agent joins the real panel over HTTPS (the fixtures of test_e2e_enrollment.py) with NO
``DATABASE_URL`` in its environment (asserted, on the running process too): it registers its
capacity (``POST /internal/v1/host/start``), reconciles from ``GET /internal/v1/host/desired``
(hostpanel/agent/remote.py) and reports with ``POST /internal/v1/host/report``, and its engine's
usage with ``POST /internal/v1/host/usage`` (hostpanel/agent/usage.py): the tenant's and the
app's hourly rows appear. The panel's placement runs here, in the test (what ``manage.py
watchhosts`` does on the panel). A release's health check runs in the agent's probe pool and its
result reaches the panel in the report; a restart of the app asked for on the panel restarts its
container.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from engine.runtime.model import ExecSpec
from tests.hostpanel.e2e.test_e2e_enrollment import panel  # noqa: F401
from tests.stack import Panel, remove_agent_leftovers, start_without_database, wait_for

pytestmark = pytest.mark.usefixtures("privileged")


def test_an_agent_without_the_database_runs_and_reports_a_replica(panel: Panel, tmp_path: Path) -> None:  # noqa: F811
    from hostpanel.audit.services import Actor
    from hostpanel.deployments import services as deployments
    from hostpanel.deployments.models import Replica
    from hostpanel.hosts import dispatch
    from hostpanel.hosts import services as hosts
    from hostpanel.hosts.models import Host
    from hostpanel.images.models import Image
    from hostpanel.secrets.services import create_secret
    from hostpanel.tenants import services as tenants
    from hostpanel.usage.models import AppUsageHour, UsageHour
    from tests.hostpanel.factories import UserFactory

    agent = start_without_database(panel, "nodb", tmp_path, "--usage-interval", "1")
    engine, log = agent.engine, agent.log
    try:
        assert "DATABASE_URL" not in agent.env and "REDIS_URL" not in agent.env  # its own Redis user only
        database = panel.env["DATABASE_URL"]
        assert not [k for k, v in agent.env.items() if database in v or (v in database and len(v) > 8)]
        host = Host.objects.get(name="nodb")
        assert host.state == "up" and host.cpu_millis == 4000 and host.engine_instance == agent.instance

        # its engine's base images were registered with its start (POST host/start)
        assert Image.objects.filter(reference="busybox:latest", tenant=None).exists()
        assert "registered base image busybox:latest" in log.read_text()
        admin = Actor(UserFactory(username="nd-admin", is_staff=True, is_superuser=True))
        tenant = tenants.create_tenant(admin, "ndacme")
        value = "nodb-" + secrets.token_hex(8)
        create_secret(admin, tenant, "token", value)
        deployments.create_app(
            admin,
            tenant,
            "web",
            deployments.AppSpec(
                image="busybox:latest",
                command=["sleep", "600"],
                env={"GREETING": "hi"},
                secrets=[{"name": "token", "env": "TOKEN"}],
            ),
        )

        def running() -> bool:
            hosts.watch_hosts()  # the panel's placement (manage.py watchhosts)
            return Replica.objects.filter(app__tenant=tenant, state="running", host__name="nodb").exists()

        wait_for(running, 60, f"the replica to run on nodb\n{agent.log_tail()}")
        replica = Replica.objects.get(app__tenant=tenant, app__name="web")
        container = engine.get(replica.container_name)
        assert container.is_running and replica.engine_id == container.id  # reported by the agent
        shown = engine.exec(
            replica.container_name,
            ExecSpec(command=("sh", "-c", 'echo "$GREETING $TOKEN"; cat /run/secrets/token')),
            stdout=subprocess.PIPE,
        )
        out, _ = shown.communicate(timeout=30)
        assert out.decode().split() == ["hi", value, value]
        assert value not in log.read_text()
        # the panel's questions about the container are answered with no database too
        stats = dispatch.fetch_stats(replica.pk, "host.nodb")
        assert stats["id"] == container.id and stats["pids"] >= 1, stats
        top = dispatch.fetch_top(replica.pk, "host.nodb")
        assert any("sleep" in " ".join(map(str, p.values())) for p in top["processes"]), top

        # its usage, sampled from its engine and sent through the internal API, becomes hourly rows
        tenant_hour = wait_for(
            lambda: UsageHour.objects.filter(tenant=tenant, host=host, memory_gb_hours__gt=0).first(),
            30,
            f"the tenant's usage to be collected\n{agent.log_tail()}",
        )
        assert tenant_hour.cpu_seconds > 0
        app_hour = wait_for(  # its container's counters, by its app label
            lambda: AppUsageHour.objects.filter(
                app=replica.app, host=host, memory_gb_hours__gt=0, cpu_seconds__gt=0
            ).first(),
            30,
            f"the app's usage to be collected\n{agent.log_tail()}",
        )
        assert app_hour.app.tenant == tenant
        assert "usage collection failed" not in log.read_text()
        assert "usage: the panel ignored" not in log.read_text()
        assert "ImproperlyConfigured" not in log.read_text()  # no query was tried

        # A release with a health check: the agent runs it in its probe pool, with no database,
        # and reports the result; the panel's row says healthy and ready (the edge routes to it).
        deployments.create_app(
            admin,
            tenant,
            "checked",
            deployments.AppSpec(
                image="busybox:latest",
                command=["sleep", "600"],
                health_check={"command": ["true"], "interval": 1, "timeout": 1, "retries": 1},
            ),
        )

        def healthy() -> bool:
            hosts.watch_hosts()
            return Replica.objects.filter(
                app__name="checked", host__name="nodb", health="healthy", ready=True, state="running"
            ).exists()

        wait_for(healthy, 60, f"the health check to pass on nodb\n{agent.log_tail()}")

        # A restart of the app asked for on the panel: the container starts again, once.
        before = engine.get(replica.container_name).started_at
        deployments.restart(admin, replica.app)
        wait_for(
            lambda: (
                Replica.objects.get(pk=replica.pk).restart_generation == 1
                and engine.get(replica.container_name).started_at != before
            ),
            30,
            f"the app's restart\n{agent.log_tail()}",
        )
        assert engine.get(replica.container_name).is_running

        # The app stopped on the panel: the agent stops the container and reports it.
        deployments.set_state(admin, replica.app, "stopped")
        wait_for(
            lambda: Replica.objects.get(pk=replica.pk).state == "stopped",
            30,
            f"the replica to stop\n{agent.log_tail()}",
        )
        assert not engine.get(replica.container_name).is_running
    finally:
        agent.stop()
        remove_agent_leftovers(agent)

"""Host lifecycle end to end (issue 15): two host agents in network namespaces of their own
(test_e2e_networks.two_machines), a host declared dead after a short threshold.

- SIGKILL one agent: its containers keep running, but the panel declares it dead and its
  stateless replicas run on the other host within the threshold plus the restart time;
- start it again: its heartbeat's answer fences the replicas moved away (removed at once),
  and exactly N run;
- drain a host: a web app's replicas roll onto the other host, and at every moment of the
  drain a replica in the rotation answers HTTP.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.underlay import NetnsAgent
from engine.engine import Engine
from tests.hostpanel.e2e.test_e2e_networks import agents_in_namespaces
from tests.stack import stop_process, wait_for

pytestmark = pytest.mark.e2e

THRESHOLD = 8.0  # seconds without a heartbeat before a host is dead (HOSTPANEL_HOST_GRACE_SECONDS)
SITE = {
    "image": "busybox:latest",
    "command": [
        "sh",
        "-c",
        "mkdir -p /www && echo site-up > /www/index.html && exec httpd -f -p 8080 -h /www",
    ],
    "http_port": 8080,
    "health_check": {"http": {"port": 8080, "path": "/"}, "interval": 1, "timeout": 1, "retries": 2},
}


@pytest.fixture
def cluster(
    privileged: None, transactional_db: None, tmp_path: Path, settings: Any
) -> Iterator[dict[str, Any]]:
    settings.HOSTPANEL_ROLL_DRAIN_SECONDS = 1.5
    extra = {"HOSTPANEL_ROLL_DRAIN_SECONDS": "1.5"}
    with agents_in_namespaces(tmp_path, settings, THRESHOLD, extra) as made:
        yield made


def running_here(agent: NetnsAgent, prefix: str) -> list[str]:
    """Names of the running containers of ``agent``'s engine whose names start with ``prefix``."""
    engine = Engine(root=agent.root, instance=agent.instance)
    return sorted(c.name for c in engine.list() if c.name.startswith(prefix) and c.is_running)


def test_a_dead_host_is_replaced_then_fenced_when_it_returns_and_a_drain_keeps_serving(
    cluster: dict[str, Any],
) -> None:
    from hostpanel.audit.services import Actor
    from hostpanel.deployments import rotation
    from hostpanel.deployments import services as deployments
    from hostpanel.deployments.models import App, Replica
    from hostpanel.hosts import services as hosts
    from hostpanel.hosts.models import Host
    from hostpanel.tenants import services as tenants
    from tests.hostpanel.factories import UserFactory

    a, b = cluster["agents"]["a"], cluster["agents"]["b"]
    host_a, host_b = cluster["hosts"]["a"], cluster["hosts"]["b"]
    admin = Actor(UserFactory(username="lc-admin", is_staff=True, is_superuser=True))
    tenant = tenants.create_tenant(admin, "life")
    logs = lambda: f"{a.log_tail()}\n---\n{b.log_tail()}"  # noqa: E731

    def placed(app: str) -> list[tuple[str, str]]:
        return sorted(
            Replica.objects.filter(app__tenant=tenant, app__name=app, state="running").values_list(
                "host__name", "container_name"
            )
        )

    # ---- a dead host: its stateless replicas run elsewhere -------------------------------
    spec = deployments.AppSpec(image="busybox:latest", command=["sleep", "3600"], replicas=2)
    deployments.create_app(admin, tenant, "svc", spec)
    wait_for(lambda: len(placed("svc")) == 2, 60, f"svc to run on both hosts\n{logs()}")
    assert {h for h, _ in placed("svc")} == {host_a.name, host_b.name}  # spread
    (on_a,) = running_here(a, "life-svc-")
    stop_process(a.proc, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(
        lambda: (
            placed("svc") == [(host_b.name, "life-svc-0"), (host_b.name, "life-svc-1")]
            and len(running_here(b, "life-svc-")) == 2
        ),
        THRESHOLD + 60,
        f"svc to run twice on B\n{logs()}",
    )
    print(f"\nhost death to its replica running elsewhere: {time.monotonic() - killed:.2f} s")
    assert Host.objects.get(pk=host_a.pk).state == Host.State.DOWN
    assert running_here(a, "life-svc-") == [on_a]  # the dead agent's container still runs: a zombie

    # ---- it comes back: the moved replica is fenced, exactly two run ----------------------
    a.restart()  # from its state directory, as its systemd unit does
    wait_for(lambda: running_here(a, "life-svc-") == [], 60, f"A to fence {on_a}\n{a.log_tail()}")
    wait_for(lambda: Host.objects.get(pk=host_a.pk).state == Host.State.UP, 30, "A to be up again")
    wait_for(lambda: f"fenced: removed {on_a}" in a.log.read_text(), 10, "A's log to say it fenced")
    assert len(running_here(b, "life-svc-")) == 2 and len(placed("svc")) == 2

    # ---- drain A: a web app rolls onto B and keeps answering -----------------------------
    hosts.change_lifecycle(admin, Host.objects.get(pk=host_b.pk), "cordon")
    deployments.create_app(admin, tenant, "site", deployments.AppSpec(**(SITE | {"replicas": 2})))
    hosts.change_lifecycle(admin, Host.objects.get(pk=host_b.pk), "uncordon")
    wait_for(
        lambda: (
            [h for h, _ in placed("site")] == [host_a.name] * 2
            and len(rotation.serving_ids(App.objects.get(tenant=tenant, name="site"))) == 2
        ),
        90,
        f"site to serve from A\n{logs()}",
    )
    agents = {host_a.pk: a, host_b.pk: b}
    hosts.change_lifecycle(admin, Host.objects.get(pk=host_a.pk), "drain")
    probes, failures = 0, []
    site = App.objects.get(tenant=tenant, name="site")
    deadline = time.monotonic() + 120
    while Host.objects.get(pk=host_a.pk).lifecycle != Host.Lifecycle.DRAINED:
        assert time.monotonic() < deadline, f"the drain to end\n{logs()}"
        serving = list(rotation.serving_replicas(site).select_related("host"))
        if not serving:
            failures.append("nothing in the rotation")
        for replica in serving[:1]:
            agent = agents[replica.host_id]
            done = agent.hpctl("exec", replica.container_name, "wget", "-qO-", "http://127.0.0.1:8080/")
            answer = done.stdout + done.stderr
            probes += 1
            if "site-up" not in answer and Replica.objects.filter(pk=replica.pk).exists():
                failures.append(f"{replica.container_name} on {agent.name}: {answer!r}")
    assert failures == [] and probes > 0
    print(f"drain: {probes} requests to the replicas in the rotation during the drain, none failed")
    assert [h for h, _ in placed("site")] == [host_b.name] * 2
    wait_for(
        lambda: running_here(a, "life-site-") == [], 30, f"A to stop the drained replicas\n{a.log_tail()}"
    )
    assert len(running_here(b, "life-site-")) == 2

"""Tenant networks across two hosts, end to end: two host agents, each in its own network namespace
with its own underlay address and engine, the panel's Redis and database shared; apps find each
other by name on the tenant's default network, names follow a move and a scale without restarting
anyone, and another tenant's apps of the same names neither resolve nor reach the first tenant's.

Machines: namespace A and B joined by a veth (the underlay, 198.18.N.1/.2: the VXLAN carrier), and
each joined to this (test) namespace by a veth of its own, where a private Redis and the panel
listen (the control plane: agents reach it, never forwarding through this namespace). The agents
are enrolled with the join command and hold no database settings.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from pyroute2 import IPRoute

from bench.underlay import JoinedHost, NetnsAgent, Underlay, join_host
from engine.networks import netlink
from tests.stack import (
    add_host,
    celery_pointed_at,
    redis_server,
    serve_panel,
    stop_process,
    wait_for,
    watch_hosts,
)

PORT = 7000
GRACE = 120.0


def _veth(
    ns: Path, outside: str, outside_ip: str | None, inside: str, inside_ip: str, peer_ns: Path | None
) -> None:
    """A veth from ``peer_ns`` (None: this namespace) end ``outside`` to ``ns`` end ``inside``, /24 or /30."""
    prefix = 24 if peer_ns is not None else 30

    def make(ipr: IPRoute) -> None:
        with ns.open("rb") as fd:
            ipr.link("add", ifname=outside, kind="veth", peer={"ifname": inside, "net_ns_fd": fd.fileno()})
        idx = ipr.link_lookup(ifname=outside)[0]
        if outside_ip:
            ipr.addr("add", index=idx, address=outside_ip, prefixlen=prefix)
        ipr.link("set", index=idx, state="up")

    def configure(ipr: IPRoute) -> None:
        idx = ipr.link_lookup(ifname=inside)[0]
        ipr.addr("add", index=idx, address=inside_ip, prefixlen=prefix)
        ipr.link("set", index=idx, state="up")

    if peer_ns is None:
        with IPRoute() as ipr:
            make(ipr)
    else:
        netlink.in_netns(peer_ns, make)
    netlink.in_netns(ns, configure)


@contextlib.contextmanager
def two_machines(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Namespaces A and B with an underlay between them and a control link each to this namespace."""
    n = random.randint(10, 250)
    token = secrets.token_hex(2)
    spaces = {k: tmp_path / f"ns-{k}" for k in ("a", "b")}
    control = {"a": (f"198.19.{n}.1", f"198.19.{n}.2"), "b": (f"198.19.{n}.5", f"198.19.{n}.6")}
    underlay = {"a": f"198.18.{n}.1", "b": f"198.18.{n}.2"}
    links = [f"hpc{token}{k}" for k in ("a", "b")]
    try:
        for ns in spaces.values():
            netlink.create_netns(ns)
        _veth(spaces["b"], "under0", underlay["a"], "under0", underlay["b"], spaces["a"])
        for k, link in zip(("a", "b"), links, strict=True):
            _veth(spaces[k], link, control[k][0], "ctl0", control[k][1], None)
        yield {"spaces": spaces, "control": control, "underlay": underlay}
    finally:
        for link in links:
            netlink.delete_link(link)
        for ns in spaces.values():
            netlink.delete_netns(ns)


@pytest.fixture
def world(
    privileged: None, transactional_db: None, tmp_path: Path, settings: Any
) -> Iterator[dict[str, Any]]:
    """Two host agents, A and B, each in its own namespace, registered and up."""
    # hosts are placed on by hand here: a heartbeat late on a busy machine must not move replicas
    with agents_in_namespaces(tmp_path, settings, GRACE) as made:
        yield made


@contextlib.contextmanager
def agents_in_namespaces(
    tmp_path: Path, settings: Any, grace: float, extra_env: dict[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """Agents A and B in namespaces of their own (two_machines), each enrolled with the join
    command and running WITHOUT the database (bench.underlay.JoinedHost), a host declared dead
    after ``grace`` seconds without a heartbeat; yields {"agents", "hosts"}. The panel they call
    (its HTTPS front) and Redis listen on A's control address, which B reaches through its own control
    link (a route of its own, never forwarded through this namespace); the panel's periodic host
    checks (`manage.py watchhosts`) run beside it. ``extra_env`` goes to the panel and the agents."""
    from hostpanel.hosts.models import Host

    settings.HOSTPANEL_HOST_GRACE_SECONDS = grace
    own = {"HOSTPANEL_HOST_GRACE_SECONDS": str(grace)} | (extra_env or {})
    agents: dict[str, JoinedHost] = {}
    with two_machines(tmp_path) as machines, contextlib.ExitStack() as stack:
        control = machines["control"]
        panel_ip = control["a"][0]
        route = ["ip", "route", "add", f"{panel_ip}/32", "via", control["b"][0]]
        subprocess.run(["nsenter", f"--net={machines['spaces']['b']}", *route], check=True)
        local = stack.enter_context(redis_server(tmp_path, ("127.0.0.1", control["a"][0], control["b"][0])))
        stack.enter_context(celery_pointed_at(local))
        panel = stack.enter_context(
            serve_panel(tmp_path, settings, local, panel_ip, agent_redis=panel_ip, env=own)
        )
        stack.enter_context(watch_hosts(panel))
        names = {k: f"net-{k}" for k in ("a", "b")}
        net = Underlay(
            bridge="",
            panel_ip=panel_ip,
            spaces={names[k]: machines["spaces"][k] for k in names},
            addresses={names[k]: machines["underlay"][k] for k in names},  # the VXLAN carrier
            links={names[k]: "" for k in names},
        )
        env = panel.env | {"HOSTPANEL_CADDY_ADMIN": ""}
        try:
            for k, name in names.items():
                agents[k] = join_host(net, name, tmp_path, (panel.url, panel.ca_file, env), add_host(name))
            for agent in agents.values():
                wait_for(
                    lambda a=agent: (
                        "no database" in a.log.read_text()
                        and Host.objects.filter(name=a.name, state="up", address=a.underlay).exists()
                    ),
                    60,
                    f"agent {agent.name} to start\n{agent.log_tail()}",
                )
            yield {"agents": agents, "hosts": {k: Host.objects.get(name=a.name) for k, a in agents.items()}}
        finally:
            for agent in agents.values():
                stop_process(agent.proc)
            for agent in agents.values():
                agent.clean()


def only_up(host: Any) -> None:
    """Place new replicas on ``host`` only (the others take none, as if cordoned)."""
    from hostpanel.hosts.models import Host

    Host.objects.exclude(pk=host.pk).update(lifecycle=Host.Lifecycle.CORDONED)
    Host.objects.filter(pk=host.pk).update(lifecycle=Host.Lifecycle.ACTIVE)


def listener(answer: str) -> list[str]:
    return ["sh", "-c", f"nc -ll -p {PORT} -e echo {answer}"]


def hosts_file_ips(agent: NetnsAgent, container: str, name: str) -> set[str]:
    """The addresses ``name`` has in the container's /etc/hosts."""
    lines = agent.sh(container, "cat /etc/hosts").splitlines()
    return {line.split()[0] for line in lines if name in line.split()[1:]}


def answer(agent: NetnsAgent, container: str, target: str) -> str:
    return agent.sh(container, f"nc -w 2 {target} {PORT} </dev/null").strip()


def test_apps_find_each_other_by_name_across_hosts_and_names_follow_moves(world: dict[str, Any]) -> None:
    from hostpanel.audit.services import Actor
    from hostpanel.deployments import services as deployments
    from hostpanel.deployments.models import App, Replica
    from hostpanel.errors import InvalidRequest, QuotaExceeded
    from hostpanel.hosts.services import reconcile_hosts
    from hostpanel.networks import services as networks
    from hostpanel.tenants import services as tenants
    from tests.hostpanel.factories import UserFactory

    a, b = world["agents"]["a"], world["agents"]["b"]
    host_a, host_b = world["hosts"]["a"], world["hosts"]["b"]
    admin = Actor(UserFactory(username="net-admin", is_staff=True, is_superuser=True))
    acme, rival = tenants.create_tenant(admin, "acme"), tenants.create_tenant(admin, "rival")

    def create(tenant: Any, name: str, command: list[str], **spec: Any) -> None:
        values = {"image": "busybox:latest", "command": command, "networks": ["default"]} | spec
        deployments.create_app(admin, tenant, name, deployments.AppSpec(**values))

    def running(tenant: Any, name: str, count: int = 1) -> list[Any]:
        replicas = list(Replica.objects.filter(app__tenant=tenant, app__name=name).select_related("host"))
        ok = [r for r in replicas if r.state == "running" and r.network_addresses.get("default")]
        return ok if len(ok) == count == len(replicas) else []

    def wait_running(tenant: Any, name: str, count: int = 1) -> list[Any]:
        logs = f"{a.log_tail()}\n---\n{b.log_tail()}"
        return wait_for(lambda: running(tenant, name, count), 60, f"{tenant}/{name} to run\n{logs}")  # type: ignore[no-any-return]

    for tenant in (acme, rival):
        only_up(host_a)
        create(tenant, "web", ["sleep", "3600"])
        only_up(host_b)
        create(tenant, "db", listener(f"db-{tenant.slug}"))
        create(
            tenant,
            "cache",
            listener(f"cache-{tenant.slug}"),
            networks=[{"name": "default", "aliases": ["kv"]}],
        )
    for tenant in (acme, rival):
        for name in ("web", "db", "cache"):
            wait_running(tenant, name)
    web = {t.slug: running(t, "web")[0] for t in (acme, rival)}
    assert {web["acme"].host_id, web["rival"].host_id} == {host_a.pk}
    assert {r.host_id for t in (acme, rival) for n in ("db", "cache") for r in running(t, n)} == {host_b.pk}
    acme_web, rival_web = web["acme"].container_name, web["rival"].container_name

    # from web on A, db and cache on B resolve and answer, by app name and alias
    for target, expected in (("db", "db-acme"), ("cache", "cache-acme"), ("kv", "cache-acme")):
        wait_for(lambda t=target, e=expected: answer(a, acme_web, t) == e, 30, f"acme web to reach {target}")
    wait_for(lambda: answer(a, rival_web, "db") == "db-rival", 30, "rival web to reach its own db")

    # the other tenant's apps of the same names neither resolve to nor reach acme's
    acme_db_ip = running(acme, "db")[0].network_addresses["default"]
    rival_db_ip = running(rival, "db")[0].network_addresses["default"]
    assert acme_db_ip != rival_db_ip
    assert hosts_file_ips(a, rival_web, "db") == {rival_db_ip}
    assert hosts_file_ips(a, acme_web, "db") == {acme_db_ip}
    assert "db-acme" not in answer(a, rival_web, acme_db_ip)
    assert "db-rival" not in answer(a, acme_web, rival_db_ip)
    assert "db-acme" not in answer(a, rival_web, "db")

    # move acme's db to host A: web's name follows, web is not restarted
    web_id = Replica.objects.get(pk=web["acme"].pk).engine_id
    moved_at = time.monotonic()
    with transaction.atomic():
        Replica.objects.filter(app__tenant=acme, app__name="db").update(host=host_a, ports=[])
        reconcile_hosts([host_a.pk, host_b.pk])
    moved = wait_for(
        lambda: [r for r in running(acme, "db") if r.host_id == host_a.pk],
        60,
        f"db to run on A\n{a.log_tail()}",
    )[0]
    new_ip = moved.network_addresses["default"]
    assert new_ip != acme_db_ip
    wait_for(lambda: hosts_file_ips(a, acme_web, "db") == {new_ip}, 30, "web's db name to follow the move")
    # measured, never asserted: from the move to web's name pointing at the new replica
    print(
        f"\nnames follow: db moved to host A, web resolves it there after {time.monotonic() - moved_at:.2f} s"
    )
    assert answer(a, acme_web, "db") == "db-acme"

    # scale db to two with the new replica on B: web resolves both, still not restarted
    only_up(host_b)
    scaled_at = time.monotonic()
    deployments.scale(admin, App.objects.get(tenant=acme, name="db"), 2)
    both = wait_running(acme, "db", 2)
    ips = {r.network_addresses["default"] for r in both}
    assert {r.host_id for r in both} == {host_a.pk, host_b.pk}
    wait_for(lambda: hosts_file_ips(a, acme_web, "db") == ips, 30, "web's db name to list both replicas")
    print(f"names follow: db scaled to 2, web resolves both after {time.monotonic() - scaled_at:.2f} s")
    # and down to one again: the replica that went leaves web's names
    deployments.scale(admin, App.objects.get(tenant=acme, name="db"), 1)
    left = wait_running(acme, "db", 1)
    wait_for(
        lambda: hosts_file_ips(a, acme_web, "db") == {left[0].network_addresses["default"]},
        30,
        "web's db name to drop the removed replica",
    )
    assert Replica.objects.get(pk=web["acme"].pk).engine_id == web_id
    assert json.loads(a.hpctl("inspect", acme_web).stdout)[0]["restart_count"] == 0

    # bad input creates nothing: an unknown network name, then a refused network past the limit
    apps_before = App.objects.count()
    with pytest.raises(InvalidRequest, match="no network\\(s\\) nope"):
        create(acme, "bad", ["sleep", "1"], networks=["default", "nope"])
    from django.conf import settings

    settings.HOSTPANEL_NETWORKS_PER_TENANT = 1
    with pytest.raises(QuotaExceeded):
        networks.create_network(admin, acme, "back")
    assert App.objects.count() == apps_before
    assert not acme.networks.filter(name="back").exists()

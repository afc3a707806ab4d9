"""A simulated three-host cluster (issue 15): enrolled agents (no database), each in a
network namespace of its own on an underlay bridge, the panel and Redis on a fourth address.

- three "hosts": namespaces with their own address on a veth to a bridge of this namespace,
  each running the join command and then its agent (``nsenter --net``: only the network is
  theirs; the engine's mounts and cgroups are this machine's), its own engine root and instance;
- the panel (HTTPS through a Caddy with its own CA) and Redis listen on the bridge's address, the
  fourth; the test database (PostgreSQL or SQLite) stays on this namespace's loopback, out of
  the hosts' reach, and no agent has its URL in its environment (asserted on the processes);
- an app of three replicas spreads over the three hosts; a tenant secret is opened only on the
  host that runs its container (the others are refused by the internal API);
- one host dies (SIGKILL of its agent and its link cut): its replicas run elsewhere within the
  threshold plus the restart time; it comes back: what was moved away is fenced, exactly three run;
- a host is drained while requests keep coming to the app's replicas in the rotation (an HTTP app
  with a health check): its replicas roll onto the others and no request fails;
- another host's credentials cannot forge a task on a host's queue (Redis refuses), and a revoked
  host can no longer read its queue or call the internal API.

The panel's periodic host checks (``manage.py watchhosts`` in production) run here, in the test.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.management import call_command

from bench.underlay import JoinedHost, Underlay, join_host, set_link, underlay
from tests.hostpanel.e2e.test_e2e_enrollment import broker
from tests.hostpanel.e2e.test_e2e_host_lifecycle import SITE  # an HTTP app with a health check
from tests.stack import (
    Panel,
    add_host,
    celery_pointed_at,
    https_get,
    redis_server,
    serve_panel,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("privileged")

THRESHOLD = 8.0  # seconds without a heartbeat before a host is dead (HOSTPANEL_HOST_GRACE_SECONDS)
HOSTS = ("k1", "k2", "k3")


@pytest.fixture
def cluster(
    privileged: None, transactional_db: None, tmp_path: Path, settings: Any
) -> Iterator[tuple[Panel, dict[str, JoinedHost], str]]:
    """The panel and Redis on the underlay's fourth address, three enrolled hosts up; yields the
    panel, the hosts by name and the panel's own Redis URL."""
    from hostpanel.hosts.models import Host as HostRow

    settings.HOSTPANEL_HOST_GRACE_SECONDS = THRESHOLD
    with contextlib.ExitStack() as stack:
        net = stack.enter_context(underlay(tmp_path, HOSTS))
        local = stack.enter_context(redis_server(tmp_path, ("127.0.0.1", net.panel_ip)))
        stack.enter_context(celery_pointed_at(local))
        agent_redis = local.rsplit("@", 1)[1].split("/")[0].replace("127.0.0.1", net.panel_ip)
        panel = stack.enter_context(serve_panel(tmp_path, settings, local, net.panel_ip, agent_redis))
        hosts: dict[str, JoinedHost] = {}
        try:
            for h in HOSTS:
                hosts[h] = _join(panel, net, h, tmp_path)
            for host in hosts.values():  # up on the panel, and its agent through its start (it says so)
                wait_for(
                    lambda host=host: (
                        HostRow.objects.filter(name=host.name, state="up").exists()
                        and "no database" in host.log.read_text()
                    ),
                    90,
                    f"{host.name} to be up\n{host.log_tail()}",
                )
            yield panel, hosts, local
        finally:
            for host in hosts.values():
                stop_process(host.proc)
            for host in hosts.values():
                host.clean()


def _join(panel: Panel, net: Underlay, name: str, tmp_path: Path) -> JoinedHost:
    """``manage.py host add NAME`` on the panel, then the join command inside the host's namespace
    (nothing of the panel's: no database or Redis URL, no secret keys, a var directory of its own)."""
    return join_host(net, name, tmp_path, (panel.url, panel.ca_file, panel.env), add_host(name))


def environ_of(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def test_three_hosts_spread_keep_secrets_home_survive_a_death_and_fence_the_return(
    cluster: tuple[Panel, dict[str, JoinedHost], str],
) -> None:
    from hostpanel.audit.services import Actor
    from hostpanel.deployments import rotation
    from hostpanel.deployments import services as deployments
    from hostpanel.deployments.models import App, Replica
    from hostpanel.hosts import services as hosts_service
    from hostpanel.hosts.models import Host as HostRow
    from hostpanel.images.models import Image
    from hostpanel.secrets.services import create_secret
    from hostpanel.tenants import services as tenants
    from tests.hostpanel.factories import UserFactory

    panel, hosts, panel_redis = cluster
    database = panel.env["DATABASE_URL"]
    for host in hosts.values():  # the running agents (exec'd by the join command) hold no database
        assert host.proc is not None
        environ = environ_of(host.proc.pid)
        assert not [e for e in environ if e.startswith((b"DATABASE_URL=", b"REDIS_URL="))], host.name
        assert not [e for e in environ if database.encode() in e], host.name
    logs: Callable[[], str] = lambda: "\n---\n".join(h.log_tail(30) for h in hosts.values())  # noqa: E731

    def settled(predicate: Callable[[], bool]) -> Callable[[], bool]:
        def check() -> bool:
            hosts_service.watch_hosts()  # the panel's periodic host checks (manage.py watchhosts)
            return predicate()

        return check

    assert Image.objects.filter(reference="busybox:latest", tenant=None).exists()  # the agents' start
    admin = Actor(UserFactory(username="k-admin", is_staff=True, is_superuser=True))
    tenant = tenants.create_tenant(admin, "kacme")

    def placed(app: str) -> list[str]:
        rows = Replica.objects.filter(app__tenant=tenant, app__name=app, state="running")
        return sorted(rows.values_list("host__name", flat=True))

    # ---- three replicas spread over the three hosts -------------------------------------------
    spec = deployments.AppSpec(image="busybox:latest", command=["sleep", "3600"], replicas=3)
    deployments.create_app(admin, tenant, "svc", spec)
    wait_for(settled(lambda: placed("svc") == sorted(HOSTS)), 120, f"svc on every host\n{logs()}")
    for host in hosts.values():
        assert len(host.running("kacme-svc-")) == 1, host.name

    # ---- a secret is opened only where its container runs ---------------------------------------
    value = "k-secret-" + secrets.token_hex(10)
    create_secret(admin, tenant, "api-key", value)
    vault_spec = deployments.AppSpec(
        image="busybox:latest", command=["sleep", "3600"], secrets=[{"name": "api-key", "env": "API_KEY"}]
    )
    deployments.create_app(admin, tenant, "vault", vault_spec)
    wait_for(settled(lambda: len(placed("vault")) == 1), 120, f"vault to run\n{logs()}")
    vault = Replica.objects.select_related("host").get(app__tenant=tenant, app__name="vault")
    home = hosts[vault.host.name]
    assert home.sh(vault.container_name, 'echo "$API_KEY"; cat /run/secrets/api-key').split() == [
        value,
        value,
    ]
    url = f"{panel.url}/internal/v1/replicas/{vault.pk}/secrets"
    for name, host in hosts.items():
        status, body = https_get(url, panel.ca_file, host.token())
        if host is home:
            assert status == 200 and sorted(body["secrets"]) == ["api-key"], body
            assert value not in json.dumps(body)  # sealed to the home host's key
        else:
            assert status == 404, (name, status, body)
            assert host.running("kacme-vault-") == []
    admin_redis = redis.Redis.from_url(panel_redis)
    assert not [
        k for k in admin_redis.scan_iter(count=1000) if value.encode() in (admin_redis.dump(k) or b"")
    ]

    # ---- another host's credentials cannot forge a task on a host's queue ---------------------
    victim, forger = HOSTS[0], HOSTS[1]
    forged = json.dumps({"body": "", "headers": {"task": "hostpanel.agent.tasks.reconcile_host"}})
    with pytest.raises(redis.exceptions.NoPermissionError):
        broker(hosts[forger].state).execute_command("LPUSH", f"host.{victim}", forged)
    assert admin_redis.llen(f"host.{victim}") == 0

    # ---- a host dies: SIGKILL its agent, cut its link; its replicas run elsewhere -------------
    dead = hosts[vault.host.name]  # the host with the secret's container: the secret must follow it
    others = [h for h in hosts.values() if h is not dead]
    (zombie,) = dead.running("kacme-svc-")
    assert dead.proc is not None
    dead.kill()
    set_link(dead.link, up=False)
    killed = time.monotonic()

    def moved() -> bool:
        svc, vaults = placed("svc"), placed("vault")
        return (
            len(svc) == 3
            and dead.name not in svc + vaults
            and len(vaults) == 1
            and sum(len(h.running("kacme-svc-")) for h in others) == 3
            and sum(len(h.running("kacme-vault-")) for h in others) == 1
        )

    wait_for(settled(moved), THRESHOLD + 90, f"the dead host's replicas to run elsewhere\n{logs()}")
    print(f"\nhost death to its replicas running elsewhere: {time.monotonic() - killed:.2f} s")
    assert HostRow.objects.get(name=dead.name).state == HostRow.State.DOWN
    assert dead.running("kacme-svc-") == [zombie]  # its container still runs, unreachable: a zombie
    vault = Replica.objects.select_related("host").get(app__tenant=tenant, app__name="vault")
    new_home = hosts[vault.host.name]
    assert new_home.sh(vault.container_name, "cat /run/secrets/api-key").strip() == value

    # ---- it comes back: what moved away is fenced, exactly three run ---------------------------
    set_link(dead.link, up=True)
    dead.restart()
    wait_for(settled(lambda: dead.running("kacme-") == []), 90, f"the fence\n{dead.log_tail()}")
    wait_for(
        settled(lambda: HostRow.objects.get(name=dead.name).state == HostRow.State.UP),
        60,
        f"the host to be up again\n{dead.log_tail()}",
    )
    assert sum(len(h.running("kacme-svc-")) for h in hosts.values()) == 3
    assert sum(len(h.running("kacme-vault-")) for h in hosts.values()) == 1
    assert len(placed("svc")) == 3

    # ---- drain a host while requests keep coming: every one is answered ------------------------
    site_spec = deployments.AppSpec(**(SITE | {"replicas": 2}))
    deployments.create_app(admin, tenant, "site", site_spec)
    site = App.objects.get(tenant=tenant, name="site")
    wait_for(
        settled(lambda: len(placed("site")) == 2 and len(rotation.serving_ids(site)) == 2),
        120,
        f"site to serve from two hosts\n{logs()}",
    )
    drained_name = placed("site")[0]
    drained = HostRow.objects.get(name=drained_name)
    hosts_service.change_lifecycle(admin, drained, "drain")
    answered, failures = 0, []
    deadline = time.monotonic() + 180
    while HostRow.objects.get(pk=drained.pk).lifecycle != HostRow.Lifecycle.DRAINED:
        assert time.monotonic() < deadline, f"the drain to end\n{logs()}"
        hosts_service.watch_hosts()
        serving = list(rotation.serving_replicas(site).select_related("host"))
        if not serving:
            failures.append("nothing in the rotation")
        for replica in serving[:1]:
            done = hosts[replica.host.name].hpctl(
                "exec", replica.container_name, "wget", "-qO-", "http://127.0.0.1:8080/"
            )
            answered += 1
            if "site-up" not in done.stdout + done.stderr and Replica.objects.filter(pk=replica.pk).exists():
                failures.append(f"{replica.container_name} on {replica.host.name}: {done.stderr!r}")
    assert failures == [] and answered > 0
    print(f"drain: {answered} requests to the replicas in the rotation during the drain, none failed")
    assert drained_name not in placed("site") and len(placed("site")) == 2
    wait_for(lambda: hosts[drained_name].running("kacme-site-") == [], 60, "the drained host to stop site")

    # ---- revoke a host: its queue and the internal API refuse it at once ----------------------
    revoked = hosts[HOSTS[2]]
    assert https_get(panel.url + "/internal/v1/host", panel.ca_file, revoked.token())[0] == 200
    call_command("host", "revoke", revoked.name, stdout=StringIO())
    with pytest.raises(redis.exceptions.AuthenticationError):
        broker(revoked.state).llen(f"host.{revoked.name}")
    status, body = https_get(panel.url + "/internal/v1/host", panel.ca_file, revoked.token())
    assert status == 401 and "revoked" in body["error"]["message"], body

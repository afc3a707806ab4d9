"""A simulated three-host cluster (issue 15): enrolled agents without the database, each in a
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
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from django.core.management import call_command

from engine.engine import Engine
from engine.networks import netlink
from tests.hostpanel.e2e.test_e2e_enrollment import Panel, add_host, broker, https_get, serve_panel
from tests.hostpanel.e2e.test_e2e_host_lifecycle import SITE  # an HTTP app with a health check
from tests.hostpanel.e2e.test_e2e_networks import NetnsAgent
from tests.stack import (
    REPO,
    celery_pointed_at,
    join_args,
    joined_agent_args,
    redis_server,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("privileged")

THRESHOLD = 8.0  # seconds without a heartbeat before a host is dead (HOSTPANEL_HOST_GRACE_SECONDS)
HOSTS = ("k1", "k2", "k3")


@dataclass
class Underlay:
    """The bridge of this namespace (the panel's address) and each host's namespace and address."""

    bridge: str
    panel_ip: str
    spaces: dict[str, Path]
    addresses: dict[str, str]
    links: dict[str, str]  # the host end of each host's veth, on the bridge


@contextlib.contextmanager
def underlay(tmp_path: Path) -> Iterator[Underlay]:
    """A bridge with the panel's address and a namespace per host plugged into it (a /24)."""
    n, token = random.randint(10, 250), secrets.token_hex(2)
    made = Underlay(
        bridge=f"hpk{token}",
        panel_ip=f"198.19.{n}.1",
        spaces={h: tmp_path / f"ns-{h}" for h in HOSTS},
        addresses={h: f"198.19.{n}.{11 + i}" for i, h in enumerate(HOSTS)},
        links={h: f"hpk{token}{h}" for h in HOSTS},
    )
    try:
        netlink.create_bridge(made.bridge, made.panel_ip, 24, 1500)
        for h in HOSTS:
            plug = netlink.VethPlug(made.links[h], made.bridge, "eth0", made.addresses[h], 24, None, 1500)
            netlink.create_netns_with_veth(made.spaces[h], plug)
        yield made
    finally:
        for link in [*made.links.values(), made.bridge]:
            netlink.delete_link(link)
        for ns in made.spaces.values():
            if ns.exists():
                netlink.delete_netns(ns)


def set_link(name: str, up: bool) -> None:
    subprocess.run(["ip", "link", "set", name, "up" if up else "down"], check=True, capture_output=True)


@dataclass
class Host:
    """One simulated host: its agent (NetnsAgent: log, engine, clean-up), state directory, environment."""

    agent: NetnsAgent
    state: Path
    env: dict[str, str]
    link: str  # its veth's end on the bridge: down is a cut cable

    @property
    def engine(self) -> Engine:
        return Engine(root=self.agent.root, instance=self.agent.instance)

    def agent_args(self) -> list[str]:
        """``manage.py hostagent`` arguments: its engine, its own address, quick beats and reconciles."""
        args = joined_agent_args(self.agent.root, self.agent.instance)
        args[args.index("--address") + 1] = self.agent.underlay
        return args

    def popen(self, command: list[str]) -> None:
        with self.agent.log.open("ab") as out:
            self.agent.proc = subprocess.Popen(
                ["nsenter", f"--net={self.agent.netns}", *command],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def restart(self) -> None:
        """Start the agent again from its state directory, as its systemd unit does."""
        self.popen(
            [sys.executable, "manage.py", "hostagent", "--state-dir", str(self.state), *self.agent_args()]
        )

    def running(self, prefix: str) -> list[str]:
        return sorted(c.name for c in self.engine.list() if c.name.startswith(prefix) and c.is_running)

    def token(self) -> str:
        return str(json.loads((self.state / "credentials.json").read_text())["api_token"])


@pytest.fixture
def cluster(
    privileged: None, transactional_db: None, tmp_path: Path, settings: Any
) -> Iterator[tuple[Panel, dict[str, Host], str]]:
    """The panel and Redis on the underlay's fourth address, three enrolled hosts up; yields the
    panel, the hosts by name and the panel's own Redis URL."""
    from hostpanel.hosts.models import Host as HostRow

    settings.HOSTPANEL_HOST_GRACE_SECONDS = THRESHOLD
    with contextlib.ExitStack() as stack:
        net = stack.enter_context(underlay(tmp_path))
        local = stack.enter_context(redis_server(tmp_path, ("127.0.0.1", net.panel_ip)))
        stack.enter_context(celery_pointed_at(local))
        agent_redis = local.rsplit("@", 1)[1].split("/")[0].replace("127.0.0.1", net.panel_ip)
        panel = stack.enter_context(serve_panel(tmp_path, settings, local, net.panel_ip, agent_redis))
        hosts: dict[str, Host] = {}
        try:
            for h in HOSTS:
                hosts[h] = _join(panel, net, h, tmp_path)
            for host in hosts.values():
                name = host.agent.name
                wait_for(
                    lambda name=name: HostRow.objects.filter(name=name, state="up").exists(),
                    90,
                    f"{name} to be up\n{host.agent.log_tail()}",
                )
            yield panel, hosts, local
        finally:
            for host in hosts.values():
                stop_process(host.agent.proc)
            for host in hosts.values():
                host.agent.clean()


def _join(panel: Panel, net: Underlay, name: str, tmp_path: Path) -> Host:
    """``manage.py host add NAME`` on the panel, then the join command inside the host's namespace."""
    token = add_host(name)
    agent = NetnsAgent(
        name,
        net.spaces[name],
        net.addresses[name],
        tmp_path / f"engine-{name}",
        f"hpk-{secrets.token_hex(3)}",
        tmp_path / f"agent-{name}.log",
    )
    Engine(root=agent.root, instance=agent.instance).images.bootstrap_busybox()
    state = tmp_path / f"state-{name}"
    # Nothing of the panel's: no database or Redis URL, no secret keys, a var directory of its own.
    env = {k: v for k, v in panel.env.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {
        "HOSTPANEL_SECRET_KEYS": Fernet.generate_key().decode(),
        "HOSTPANEL_VAR_DIR": str(tmp_path / f"var-{name}"),
        "HOSTPANEL_AGENT_STATE_DIR": str(state.resolve()),
    }
    host = Host(agent, state, env, net.links[name])
    host.popen(join_args(panel.url, token, panel.ca_file, state, "--foreground", "--", *host.agent_args()))
    return host


def environ_of(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def test_three_hosts_spread_keep_secrets_home_survive_a_death_and_fence_the_return(
    cluster: tuple[Panel, dict[str, Host], str],
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
        assert host.agent.proc is not None
        environ = environ_of(host.agent.proc.pid)
        assert not [e for e in environ if e.startswith((b"DATABASE_URL=", b"REDIS_URL="))], host.agent.name
        assert not [e for e in environ if database.encode() in e], host.agent.name
        assert "no database" in host.agent.log.read_text()
    logs: Callable[[], str] = lambda: "\n---\n".join(h.agent.log_tail(30) for h in hosts.values())  # noqa: E731

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
        assert len(host.running("kacme-svc-")) == 1, host.agent.name

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
    assert home.agent.sh(vault.container_name, 'echo "$API_KEY"; cat /run/secrets/api-key').split() == [
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
    assert dead.agent.proc is not None
    stop_process(dead.agent.proc, signal.SIGKILL)
    set_link(dead.link, up=False)
    killed = time.monotonic()

    def moved() -> bool:
        svc, vaults = placed("svc"), placed("vault")
        return (
            len(svc) == 3
            and dead.agent.name not in svc + vaults
            and len(vaults) == 1
            and sum(len(h.running("kacme-svc-")) for h in others) == 3
            and sum(len(h.running("kacme-vault-")) for h in others) == 1
        )

    wait_for(settled(moved), THRESHOLD + 90, f"the dead host's replicas to run elsewhere\n{logs()}")
    print(f"\nhost death to its replicas running elsewhere: {time.monotonic() - killed:.2f} s")
    assert HostRow.objects.get(name=dead.agent.name).state == HostRow.State.DOWN
    assert dead.running("kacme-svc-") == [zombie]  # its container still runs, unreachable: a zombie
    vault = Replica.objects.select_related("host").get(app__tenant=tenant, app__name="vault")
    new_home = hosts[vault.host.name]
    assert new_home.agent.sh(vault.container_name, "cat /run/secrets/api-key").strip() == value

    # ---- it comes back: what moved away is fenced, exactly three run ---------------------------
    set_link(dead.link, up=True)
    dead.restart()
    wait_for(settled(lambda: dead.running("kacme-") == []), 90, f"the fence\n{dead.agent.log_tail()}")
    wait_for(
        settled(lambda: HostRow.objects.get(name=dead.agent.name).state == HostRow.State.UP),
        60,
        f"the host to be up again\n{dead.agent.log_tail()}",
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
            done = hosts[replica.host.name].agent.hpctl(
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
    call_command("host", "revoke", revoked.agent.name, stdout=StringIO())
    with pytest.raises(redis.exceptions.AuthenticationError):
        broker(revoked.state).llen(f"host.{revoked.agent.name}")
    status, body = https_get(panel.url + "/internal/v1/host", panel.ca_file, revoked.token())
    assert status == 401 and "revoked" in body["error"]["message"], body

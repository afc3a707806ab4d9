"""Enrollment end to end: `manage.py host add`, the join command against the real panel over
HTTPS (a Caddy with its own CA in front of `python -m hostpanel.serve`), the agent consuming as
its own Redis ACL user, the ACL refusing another host's credentials, spent and expired tokens,
and revocation taking effect at once.

The join runs with ``--skip-install`` (the packages are on this machine already) and
``--foreground`` (no systemd here): it registers and then execs the agent in its place.
"""

from __future__ import annotations

import json
import secrets
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.utils import timezone

from bench.enroll import joined_agent_args
from engine.engine import Engine
from engine.runtime.model import ExecSpec
from tests.stack import (
    PANEL_ONLY,
    REPO,
    Agent,
    Panel,
    add_host,
    https_get,
    join,
    remove_agent_leftovers,
    serve_panel,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("privileged")


@pytest.fixture
def panel(
    transactional_db: None, celery_to: str, redis_url: str, tmp_path: Path, settings: Any
) -> Iterator[Panel]:
    """The panel behind HTTPS on 127.0.0.1 (:func:`serve_panel`)."""
    with serve_panel(tmp_path, settings, redis_url) as served:
        yield served


def deploy_on(agent: Agent, slug: str, member: str, role: str, command: list[str]) -> tuple[Any, Any]:
    """Tenant ``slug`` (made by an admin) with user ``member`` of ``role`` in it, and its busybox app
    running ``command``, placed by the panel (``manage.py watchhosts``) and running on ``agent``'s
    host: the member and the replica."""
    from hostpanel.audit.services import Actor
    from hostpanel.deployments import services as deployments
    from hostpanel.deployments.models import Replica
    from hostpanel.hosts import services as hosts
    from hostpanel.tenants import services as tenants
    from tests.hostpanel.factories import UserFactory

    admin = Actor(UserFactory(username=f"{slug}-admin", is_staff=True, is_superuser=True))
    tenant = tenants.create_tenant(admin, slug)
    user = UserFactory(username=member)
    tenants.add_member(admin, tenant, user.username, role)
    spec = deployments.AppSpec(image="busybox:latest", command=command)
    app = deployments.create_app(admin, tenant, "app", spec)

    def running() -> bool:
        hosts.watch_hosts()  # the panel's placement (manage.py watchhosts)
        return Replica.objects.filter(app=app, host__name=agent.name, state="running").exists()

    wait_for(running, 90, f"the replica to run on {agent.name}\n{agent.log_tail()}")
    return user, Replica.objects.get(app=app)


class Monitor:
    """Redis MONITOR in a thread: the text of every command any client runs, until ``stop()``
    (``clients``: the ``ip:port`` of the client of each, as CLIENT LIST's ``addr`` names it)."""

    def __init__(self, redis_url: str) -> None:
        self.url = redis_url
        self.commands: list[str] = []
        self.clients: list[str] = []
        self.done = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "MONITOR did not start"

    def _run(self) -> None:
        with redis.Redis.from_url(self.url).monitor() as m:
            self.ready.set()
            while not self.done.is_set():
                command = m.next_command()
                self.clients.append(f"{command['client_address']}:{command['client_port']}")
                self.commands.append(str(command["command"]))

    def stop(self) -> list[str]:
        self.done.set()
        redis.Redis.from_url(self.url).ping()  # one more command: the loop sees ``done``
        self.thread.join(10)
        assert not self.thread.is_alive()
        return list(self.commands)


def broker(state: Path) -> redis.Redis:
    """A Redis client with the credentials the join wrote to ``state``."""
    creds = json.loads((state / "credentials.json").read_text())
    return redis.Redis.from_url(creds["redis_url"])


def test_join_registers_runs_isolates_and_revokes(panel: Panel, tmp_path: Path, redis_url: str) -> None:
    from hostpanel.audit.services import Actor
    from hostpanel.deployments import services as deployments
    from hostpanel.deployments.models import Replica
    from hostpanel.hosts import dispatch
    from hostpanel.hosts.models import Host, HostCredential, HostJoinToken
    from hostpanel.secrets.services import create_secret
    from hostpanel.tenants import services as tenants
    from tests.hostpanel.factories import UserFactory

    token_a, token_b = add_host("ena"), add_host("enb")
    assert Host.objects.get(name="ena").state == "down"  # pending: nothing is placed on it
    assert token_a not in json.dumps(list(HostJoinToken.objects.values()), default=str)  # only a hash

    # Host A joins (registers over HTTPS, execs its agent); host B registers only.
    root = tmp_path / "engine-ena"
    instance = f"hpen-{secrets.token_hex(3)}"
    engine = Engine(root=root, instance=instance)
    engine.images.bootstrap_busybox()
    state_a, state_b = tmp_path / "state-ena", tmp_path / "state-enb"
    # None of the panel's settings (an agent holds no database), nor its secret keys: this agent
    # could not decrypt a secret from the database, so a value its containers get came sealed to
    # its own key (hostpanel/agent/host_secrets.py).
    agent_env = {k: v for k, v in panel.env.items() if k not in PANEL_ONLY}
    agent_env["HOSTPANEL_SECRET_KEYS"] = Fernet.generate_key().decode()
    proc, log = join(
        panel,
        token_a,
        state_a,
        "--foreground",
        "--",
        *joined_agent_args(root, instance),
        wait=False,
        env=agent_env,
    )
    agent = Agent("ena", engine, root, instance, proc, log, agent_env)
    try:
        done = join(panel, token_b, state_b, "--no-start")
        assert done.returncode == 0, done.stderr
        wait_for(
            lambda: Host.objects.filter(name="ena", state="up").exists(), 60, f"ena up\n{agent.log_tail()}"
        )
        assert HostCredential.objects.get(host__name="ena").public_key.startswith("-----BEGIN PUBLIC KEY")
        for path in (state_a / "host.key", state_a / "credentials.json"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE(state_a.stat().st_mode) == 0o700
        private = (state_a / "host.key").read_text()
        assert "PRIVATE KEY" in private and private not in json.dumps(
            list(HostCredential.objects.values()), default=str
        )

        # The agent consumes its queue as its own ACL user: an app placed on it runs.
        admin = Actor(UserFactory(username="en-admin", is_staff=True, is_superuser=True))
        tenant = tenants.create_tenant(admin, "enacme")
        deployments.create_app(
            admin, tenant, "web", deployments.AppSpec(image="busybox:latest", command=["sleep", "600"])
        )
        wait_for(
            lambda: Replica.objects.filter(app__tenant=tenant, state="running", host__name="ena").exists(),
            60,
            f"the replica to run on ena\n{agent.log_tail()}\n{redis.Redis.from_url(redis_url).acl_log()}",
        )
        replica = Replica.objects.get(app__tenant=tenant, app__name="web")
        assert isinstance(dispatch.fetch_stats(replica.pk, "host.ena"), dict)  # an answer through the ACL
        admin_redis = redis.Redis.from_url(redis_url)
        clients = admin_redis.client_list()
        assert any(c["user"] == "host-ena" for c in clients), clients  # the agent's own Redis user
        denied = [e for e in admin_redis.acl_log() if e.get("username") == "host-ena"]
        assert denied == [], denied  # the ACL lets the agent do all it does

        # A secret reaches the container (file and variable) sealed to A's key; host B, the wire,
        # Redis and the agent's log carry no plain value.
        value = "sealed-" + secrets.token_hex(12)
        seen = Monitor(redis_url)  # every command Redis executes meanwhile: the message log
        create_secret(admin, tenant, "db-password", value)
        deployments.create_app(
            admin,
            tenant,
            "vault",
            deployments.AppSpec(
                image="busybox:latest",
                command=["sleep", "600"],
                secrets=[{"name": "db-password", "env": "DB_PASSWORD"}],
            ),
        )
        wait_for(
            lambda: Replica.objects.filter(app__name="vault", state="running", host__name="ena").exists(),
            60,
            f"the vault replica to run on ena\n{agent.log_tail()}",
        )
        vault = Replica.objects.get(app__tenant=tenant, app__name="vault")
        shown = engine.exec(
            vault.container_name,
            ExecSpec(command=("sh", "-c", 'cat /run/secrets/db-password; echo; echo "$DB_PASSWORD"')),
            stdout=subprocess.PIPE,
        )
        out, _ = shown.communicate(timeout=30)
        assert out.decode().split() == [value, value]
        url = f"{panel.url}/internal/v1/replicas/{vault.pk}/secrets"
        token_of = {
            s: json.loads((s / "credentials.json").read_text())["api_token"] for s in (state_a, state_b)
        }
        status, body = https_get(url, panel.ca_file, token_of[state_b])  # B asks for A's replica
        assert status == 404 and body["error"]["message"] == f"No such replica: {vault.pk}", body
        status, body = https_get(url, panel.ca_file, token_of[state_a])
        assert status == 200 and sorted(body["secrets"]) == ["db-password"], body
        assert value not in json.dumps(body)  # on the wire: only the sealed box
        dumps = [admin_redis.dump(key) or b"" for key in admin_redis.scan_iter(count=1000)]
        assert dumps and not [d for d in dumps if value.encode() in d]
        assert value not in log.read_text()
        commands = seen.stop()
        assert any("host.ena" in c for c in commands)  # the monitor saw the agent's traffic
        assert not [c for c in commands if value in c]

        # Host B's credentials cannot forge a task for A, read A's queue, results or other keys.
        b = broker(state_b)
        forged = json.dumps({"body": "", "headers": {"task": "hostpanel.agent.tasks.reconcile_host"}})
        for command in (
            ("LPUSH", "host.ena", forged),
            ("BRPOP", "host.ena", "1"),
            ("LRANGE", "host.ena", "0", "-1"),
            ("LPUSH", "build.ena", forged),
            ("SMEMBERS", "_kombu.binding.host.ena"),
            ("HGETALL", "unacked.ena"),
            ("GET", "celery-task-meta-x"),
            ("GET", "celery-task-meta-host.ena.x"),
            ("SUBSCRIBE", "celery-task-meta-host.ena.x"),
            ("KEYS", "*"),
            ("LPUSH", "celery", forged),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                b.execute_command(*command)
        assert b.llen("host.enb") == 0  # its own queue: allowed
        assert admin_redis.llen("host.ena") == 0  # nothing forged got in

        # A spent token, an expired one, an unknown one: refused with a clear message.
        again = join(panel, token_a, tmp_path / "state-again", "--no-start")
        assert again.returncode == 1 and "join token already used" in again.stderr, again.stderr
        token_c = add_host("enc")
        HostJoinToken.objects.filter(host__name="enc").update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        late = join(panel, token_c, tmp_path / "state-enc", "--no-start")
        assert late.returncode == 1 and "join token expired" in late.stderr, late.stderr
        assert not (tmp_path / "state-enc" / "credentials.json").exists()
        assert admin_redis.acl_getuser("host-enc") is None
        forged_token = join(panel, "hpjoin_" + secrets.token_urlsafe(32), tmp_path / "state-x", "--no-start")
        assert forged_token.returncode == 1 and "join token unknown" in forged_token.stderr

        # Revoke A: its Redis user and connections are gone and its API token is refused, at once.
        api_token = json.loads((state_a / "credentials.json").read_text())["api_token"]
        assert https_get(panel.url + "/internal/v1/host", panel.ca_file, api_token)[0] == 200
        call_command("host", "revoke", "ena", stdout=StringIO())
        assert not any(c["user"] == "host-ena" for c in admin_redis.client_list())
        with pytest.raises(redis.exceptions.AuthenticationError):
            broker(state_a).llen("host.ena")
        status, body = https_get(panel.url + "/internal/v1/host", panel.ca_file, api_token)
        assert status == 401 and "revoked" in body["error"]["message"], body
        # The running agent's heartbeats are refused; started again, it stops at once, saying why.
        wait_for(lambda: "host token unknown or revoked" in log.read_text(), 30, "a refused heartbeat")
        agent.stop()
        restarted = subprocess.run(
            [sys.executable, "manage.py", "hostagent", "--state-dir", str(state_a)],
            cwd=REPO,
            env=agent_env | {"HOSTPANEL_AGENT_STATE_DIR": str(state_a)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert restarted.returncode != 0 and "the panel refuses this host" in restarted.stderr, (
            restarted.stderr
        )
        assert (
            https_get(
                panel.url + "/internal/v1/host",
                panel.ca_file,
                json.loads((state_b / "credentials.json").read_text())["api_token"],
            )[0]
            == 200
        )
    finally:
        agent.stop()
        remove_agent_leftovers(agent)

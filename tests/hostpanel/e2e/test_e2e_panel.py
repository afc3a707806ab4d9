"""End to end: the API, a real Redis, real host agents (Celery workers) and real containers."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Callable

import pytest
import redis
from rest_framework.test import APIClient

from engine.runtime.model import Container, ExecSpec
from hostpanel.deployments.models import Replica
from hostpanel.hosts.models import Host
from hostpanel.usage.models import AppUsageHour
from tests.hostpanel.e2e.conftest import GRACE_SECONDS, Agent, wait_for
from tests.hostpanel.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]

SLEEPER = {
    "name": "web",
    "image": "busybox:latest",
    "command": ["sh", "-c", "echo started; sleep 3600"],
    "restart_policy": "always",
}


def running(agent: Agent, prefix: str = "") -> list[Container]:
    return sorted(
        (c for c in agent.engine.list() if c.name.startswith(prefix)),
        key=lambda c: c.name,
    )


def tenant_with_token(slug: str) -> APIClient:
    """Through the API: an admin makes the tenant and its owner makes a token; returns a token client."""
    admin = UserFactory(username="e2e-admin", is_staff=True, is_superuser=True)
    UserFactory(username=f"{slug}-owner")
    c = APIClient()
    c.force_authenticate(admin)
    assert (
        c.post("/api/v1/tenants/", {"slug": slug, "owner": f"{slug}-owner"}, format="json").status_code == 201
    )
    owner = APIClient()
    owner.force_authenticate(UserFactory(username=f"{slug}-owner"))
    r = owner.post(f"/api/v1/tenants/{slug}/tokens/", {"name": "e2e"}, format="json")
    assert r.status_code == 201
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {r.json()['secret']}")
    return client


def admin_client() -> APIClient:
    c = APIClient()
    c.force_authenticate(UserFactory(username="e2e-admin", is_staff=True, is_superuser=True))
    return c


def test_deploy_scale_crash_rollback_quota_secret(agents: Callable[[str], Agent], redis_url: str) -> None:
    h1 = agents("e2e-h1")
    wait_for(lambda: Host.objects.filter(name="e2e-h1", state="up").exists(), 30, "the agent to register")
    api = tenant_with_token("shop")
    base = "/api/v1/tenants/shop"

    # deploy: one call, then the container runs in the engine
    r = api.post(f"{base}/apps/", SLEEPER, format="json")
    assert r.status_code == 201, r.json()
    (c0,) = wait_for(lambda: running(h1, "shop-web-"), 30, f"the container to run\n{h1.log_tail()}")
    assert c0.name == "shop-web-0" and c0.tenant == "shop"
    wait_for(lambda: Replica.objects.filter(state="running").count() == 1, 15, "the agent to report running")
    replica_id = Replica.objects.get().pk
    logs = wait_for(
        lambda: [
            x
            for x in api.get(f"{base}/containers/{replica_id}/logs/?tail=10").json()
            if x["text"] == "started"
        ],
        15,
        "the log line through the API",
    )
    assert logs[0]["stream"] == "stdout"

    # usage is collected from the engine into hourly rows
    wait_for(
        lambda: api.get(f"{base}/usage/").json()["total"]["memory_gb_hours"] > 0, 30, "usage to be collected"
    )
    # ... and per app, from the engine's counters of the app's container
    app_hour = wait_for(
        lambda: AppUsageHour.objects.filter(
            app__name="web", memory_gb_hours__gt=0, cpu_seconds__gt=0
        ).first(),
        30,
        "the app's usage to be collected",
    )
    assert app_hour.app.tenant.slug == "shop" and app_hour.host is not None and app_hour.host.name == "e2e-h1"
    assert [a["app"] for a in api.get(f"{base}/usage/").json()["apps"]] == ["web"]

    # scale to 2
    assert api.post(f"{base}/apps/web/scale/", {"replicas": 2}, format="json").status_code == 200
    wait_for(lambda: len(running(h1, "shop-web-")) == 2, 30, "a second container")
    assert running(h1, "shop-web-")[0].id == c0.id  # scaling kept the first container

    # crash it: restarted by the policy, with the restart counted
    h1.engine.kill("shop-web-0")
    wait_for(
        lambda: Replica.objects.filter(index=0, restart_count__gte=1, state="running").exists(),
        30,
        f"the crashed container to be restarted\n{h1.log_tail()}",
    )
    assert h1.engine.get("shop-web-0").is_running

    # a secret as an env var and as the file /run/secrets/api-key; it never comes back through the API
    value = "e2e-s3cret-value-9f1c"
    assert api.post(f"{base}/secrets/", {"name": "api-key", "value": value}, format="json").status_code == 201
    r = api.patch(
        f"{base}/apps/web/",
        {"secrets": [{"name": "api-key", "env": "API_KEY"}], "replicas": 1},
        format="json",
    )
    assert r.status_code == 200 and r.json()["release"]["version"] == 3
    wait_for(
        lambda: (
            [c for c in running(h1, "shop-web-") if f"API_KEY={value}" in c.env] and len(running(h1)) == 1
        ),
        30,
        "the container of release 3",
    )
    (c3,) = running(h1, "shop-web-")
    cat = h1.engine.exec(c3.id, ExecSpec(command=("cat", "/run/secrets/api-key")), stdout=subprocess.PIPE)
    assert cat.communicate(timeout=20)[0] == value.encode() and cat.returncode == 0
    for path in (f"{base}/secrets/", f"{base}/secrets/api-key/", f"{base}/apps/web/", f"{base}/audit/"):
        assert value.encode() not in api.get(path).content

    # roll back to release 1: the secret is gone from the container again
    r = api.post(f"{base}/apps/web/rollback/", {"version": 1}, format="json")
    assert r.status_code == 200 and r.json()["release"]["note"] == "rollback to v1"
    wait_for(
        lambda: [c for c in running(h1, "shop-web-") if not any(e.startswith("API_KEY=") for e in c.env)],
        30,
        "the rolled-back container",
    )

    # over quota: refused with the reason, nothing new runs
    r = admin_client().patch(
        f"{base}/quota/", {"containers": 2, "memory_bytes": 512 * 1024**2}, format="json"
    )
    assert r.status_code == 200
    r = api.post(f"{base}/apps/web/scale/", {"replicas": 3}, format="json")
    assert r.status_code == 422
    assert "containers: 2 asked, 1 left" in r.json()["error"]["message"]  # 1 to 3 of 2

    # the quota change reached the tenant's cgroup on the host
    wait_for(
        lambda: h1.engine.tenant_quota("shop").memory == 512 * 1024**2, 20, "the tenant quota on the host"
    )

    # the agent never logged it
    assert value not in h1.log.read_text(errors="replace")

    # Redis never held the secret
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter():
        dump = client.dump(key) or b""
        assert value.encode() not in dump, f"secret found in redis key {key!r}"

    # delete: the agent removes the containers
    assert api.delete(f"{base}/apps/web/").status_code == 204
    wait_for(lambda: h1.engine.list(all=True) == [], 30, "the containers to be removed")


def test_two_hosts_spread_and_failover(agents: Callable[[str], Agent]) -> None:
    h1, h2 = agents("e2e-a"), agents("e2e-b")
    wait_for(lambda: Host.objects.filter(state="up").count() == 2, 30, "both agents to register")
    api = tenant_with_token("duo")
    # both agents share this machine's network stack: a tenant network cannot span them (README)
    r = api.post("/api/v1/tenants/duo/apps/", SLEEPER | {"replicas": 2, "networks": []}, format="json")
    assert r.status_code == 201, r.json()
    wait_for(lambda: len(running(h1)) == 1 and len(running(h2)) == 1, 30, "one replica on each host")

    # the agent of h2 stops: after the grace period its replica moves to h1
    h2.stop()
    wait_for(
        lambda: Host.objects.filter(name="e2e-b", state="down").exists(),
        GRACE_SECONDS + 15,
        "e2e-b to be marked down",
    )
    wait_for(lambda: len(running(h1)) == 2, 30, f"both replicas on e2e-a\n{h1.log_tail()}")
    assert set(Replica.objects.values_list("host__name", flat=True)) == {"e2e-a"}

    # h2 comes back: its stale container is removed (nothing is duplicated)
    h2.start()
    wait_for(
        lambda: h2.engine.list(all=True) == [], 30, f"e2e-b to drop its stale container\n{h2.log_tail()}"
    )
    assert len(running(h1)) == 2


def test_agent_killed_mid_deploy_ends_with_exactly_the_desired_containers(
    agents: Callable[[str], Agent],
) -> None:
    h1 = agents("e2e-k")
    wait_for(lambda: Host.objects.filter(name="e2e-k", state="up").exists(), 30, "the agent to register")
    api = tenant_with_token("kill")
    assert api.post("/api/v1/tenants/kill/apps/", SLEEPER | {"replicas": 3}, format="json").status_code == 201
    wait_for(lambda: len(h1.engine.list(all=True)) >= 1, 30, "the deploy to begin")
    h1.stop(sig=9)  # SIGKILL in the middle (acks late: the task is redelivered)
    h1.proc = None
    h1.start()
    wait_for(lambda: len(running(h1)) == 3, 60, f"three containers\n{h1.log_tail()}")
    names = sorted(c.name for c in h1.engine.list(all=True))
    assert names == ["kill-web-0", "kill-web-1", "kill-web-2"]


def test_published_port_serves_http(agents: Callable[[str], Agent]) -> None:
    h1 = agents("e2e-web")
    wait_for(lambda: Host.objects.filter(name="e2e-web", state="up").exists(), 30, "the agent to register")
    api = tenant_with_token("webco")
    httpd = {
        "name": "site",
        "image": "busybox:latest",
        "command": [
            "sh",
            "-c",
            "mkdir -p /www && echo hello-from-hostpanel > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
        "ports": [{"container_port": 8080}],
        "health_check": {"http": {"port": 8080, "path": "/"}, "interval": 1, "timeout": 1, "retries": 2},
    }
    assert api.post("/api/v1/tenants/webco/apps/", httpd, format="json").status_code == 201
    wait_for(lambda: running(h1, "webco-site-"), 30, f"the web container\n{h1.log_tail()}")
    (item,) = api.get("/api/v1/tenants/webco/containers/").json()["results"]
    port = item["ports"][0]["host_port"]

    def fetch() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                return response.read().decode()
        except OSError:
            return ""

    assert wait_for(fetch, 20, f"http on published port {port}") == "hello-from-hostpanel\n"
    wait_for(lambda: Replica.objects.filter(health="healthy").exists(), 20, "the http health check to pass")
    assert api.delete("/api/v1/tenants/webco/apps/site/").status_code == 204
    wait_for(lambda: h1.engine.list(all=True) == [], 30, "the container to be removed")


def test_volume_keeps_data_across_releases(agents: Callable[[str], Agent]) -> None:
    h1 = agents("e2e-vol")
    wait_for(lambda: Host.objects.filter(name="e2e-vol", state="up").exists(), 30, "the agent to register")
    api = tenant_with_token("store")
    base = "/api/v1/tenants/store"
    assert (
        api.post(f"{base}/volumes/", {"name": "data", "size_bytes": 16 * 1024**2}, format="json").status_code
        == 201
    )
    app = {
        "name": "db",
        "image": "busybox:latest",
        "command": ["sh", "-c", "cat /data/f 2>/dev/null || echo persisted-1 > /data/f; sleep 3600"],
        "volumes": [{"name": "data", "path": "/data"}],
        "network": "bridge",
    }
    assert api.post(f"{base}/apps/", app, format="json").status_code == 201
    (first,) = wait_for(lambda: running(h1, "store-db-"), 60, f"the container\n{h1.log_tail()}")
    assert first.network == "bridge.store" and first.ip_address  # the tenant's own network
    assert h1.engine.volume("store.data").tenant == "store"
    assert api.patch(f"{base}/apps/db/", {"env": {"V": "2"}}, format="json").status_code == 200
    wait_for(lambda: [c for c in running(h1, "store-db-") if "V=2" in c.env], 60, "release 2")
    replica_id = Replica.objects.get().pk

    def logged() -> bool:
        lines = api.get(f"{base}/containers/{replica_id}/logs/?tail=5").json()
        return any(line["text"] == "persisted-1" for line in lines)

    wait_for(logged, 20, "release 2 to read what release 1 wrote")
    assert api.delete(f"{base}/apps/db/").status_code == 204
    assert (
        api.delete(
            f"{base}/volumes/{h1.engine.volume('store.data').labels['org.hostpanel.volume']}/"
        ).status_code
        == 204
    )
    wait_for(lambda: h1.engine.volume_list() == [], 30, f"the volume to be removed\n{h1.log_tail()}")

"""Stacks end to end: real agents, engines and containers, the panel's API.

A three-service stack (web, a key-value store -- busybox httpd serving files -- and a worker):
depends_on service_healthy observed (web's container never runs before kv is healthy); a
redeploy that changes one service leaves the others' containers untouched (same ids); web
reaches kv and worker by name; another tenant's stack with the same service names resolves its
own and cannot reach the first; down removes every container and network of the stack.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from engine.runtime.model import ExecSpec
from tests.hostpanel.e2e.conftest import LiveTenant, wait_for

pytestmark = pytest.mark.e2e

STACK = """\
services:
  kv:
    image: busybox:latest
    command:
      - sh
      - -c
      - >-
        mkdir -p /www && echo ${VALUE} > /www/value && sleep 3 && touch /tmp/ready
        && exec httpd -f -p 7000 -h /www
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      retries: 3
  worker:
    image: busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo ${WORKER} > /www/status && exec httpd -f -p 7001 -h /www"]
  web:
    image: busybox:latest
    command: ["sh", "-c", "exec sleep 3600"]
    depends_on:
      kv: {condition: service_healthy}
      worker: {condition: service_started}
"""


def containers_by_app(live: LiveTenant) -> dict[str, str]:
    """The running containers of the tenant on its host, by app name (container id)."""
    from hostpanel.deployments.models import Replica

    ids = {}
    for replica in Replica.objects.filter(app__tenant=live.tenant, state="running").select_related("app"):
        ids[replica.app.name] = replica.engine_id
    return ids


def in_container(live: LiveTenant, app: str, *command: str) -> tuple[int, str]:
    from hostpanel.deployments.models import Replica

    replica = Replica.objects.get(app__tenant=live.tenant, app__name=app)
    proc = live.agent.engine.exec(
        replica.engine_id, ExecSpec(command=command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out.decode(errors="replace").strip()


def fetch(live: LiveTenant, app: str, url: str) -> tuple[int, str]:
    """``wget`` of ``url`` from inside ``app``'s container: its exit code and what it printed (busybox
    1.35's own ``wget -T`` crashes once connected, so ``timeout`` bounds it)."""
    return in_container(live, app, "timeout", "5", "wget", "-q", "-O-", url)


def stack_running(live: LiveTenant, name: str) -> bool:
    from hostpanel.stacks.models import Stack

    stack = Stack.objects.get(tenant=live.tenant, name=name)
    assert stack.status != "failed", stack.message
    return stack.status == "running"


def post_stack(api: Any, live: LiveTenant, env: dict[str, str]) -> Any:
    r = api(live.member).post(
        f"/api/v1/tenants/{live.tenant.slug}/stacks/",
        {"name": "shop", "compose": STACK, "env": env},
        format="json",
    )
    assert r.status_code == 201, r.json()
    return r.json()


def test_stack_up_ordered_by_health_redeployed_in_place_and_down(
    live_tenant: Callable[[str, str, str, str], LiveTenant], api: Any
) -> None:
    from hostpanel.deployments.models import Replica

    live = live_tenant("stk", "stk-one", "stk-dev", "developer")
    post_stack(api, live, {"VALUE": "hello-from-kv", "WORKER": "worker-up"})

    samples: list[tuple[bool, bool]] = []  # (web has a running container, kv is healthy)

    def sample() -> bool:
        web = Replica.objects.filter(app__tenant=live.tenant, app__name="web").first()
        kv = Replica.objects.filter(app__tenant=live.tenant, app__name="kv").first()
        engine_web = [c for c in live.agent.engine.list() if c.name.startswith(f"{live.tenant.slug}-web-")]
        samples.append((bool(engine_web), kv is not None and kv.health == "healthy"))
        return web is not None and web.state == "running"

    wait_for(sample, 90, f"web to run after kv is healthy\n{live.agent.log_tail()}", interval=0.2)
    assert (False, False) in samples  # web was seen waiting while kv was not healthy yet
    assert (True, False) not in samples  # and never running before kv was healthy
    wait_for(lambda: stack_running(live, "shop"), 30, "the stack to be running")
    before = containers_by_app(live)
    assert set(before) == {"web", "kv", "worker"}
    # web reaches the others by their service names (the stack's default network)
    assert fetch(live, "web", "http://kv:7000/value") == (0, "hello-from-kv")
    assert fetch(live, "web", "http://worker:7001/status") == (0, "worker-up")

    # redeploy: only worker's definition changes (its env value): only its container is new
    r = api(live.member).put(
        f"/api/v1/tenants/{live.tenant.slug}/stacks/shop/",
        {"env": {"VALUE": "hello-from-kv", "WORKER": "worker-v2"}},
        format="json",
    )
    assert r.status_code == 200, r.json()
    wait_for(
        lambda: containers_by_app(live).get("worker") not in (None, before["worker"]),
        60,
        f"worker's new container\n{live.agent.log_tail()}",
    )
    after = containers_by_app(live)
    assert after["web"] == before["web"] and after["kv"] == before["kv"]
    running_ids = {c.id for c in live.agent.engine.list()}
    assert {before["web"], before["kv"]} <= running_ids

    # down: every container of the stack goes, the stack's networks too
    assert api(live.member).delete(f"/api/v1/tenants/{live.tenant.slug}/stacks/shop/").status_code == 204
    wait_for(
        lambda: not [c for c in live.agent.engine.list(all=True) if c.tenant == live.tenant.slug],
        60,
        f"the stack's containers to be removed\n{live.agent.log_tail()}",
    )


def test_another_tenants_stack_with_the_same_names_resolves_its_own_and_cannot_reach_the_first(
    live_tenant: Callable[[str, str, str, str], LiveTenant], api: Any
) -> None:
    from hostpanel.deployments.models import Replica
    from hostpanel.tenants import services as tenants
    from tests.hostpanel.factories import UserFactory

    one = live_tenant("stx", "stx-one", "stx-dev", "developer")
    tenant_two = tenants.create_tenant(one.admin, "stx-two")
    member_two = UserFactory(username="stx-dev-two")
    tenants.add_member(one.admin, tenant_two, member_two.username, "developer")
    two = LiveTenant(one.agent, one.admin, tenant_two, member_two)
    post_stack(api, one, {"VALUE": "value-of-one", "WORKER": "w1"})
    post_stack(api, two, {"VALUE": "value-of-two", "WORKER": "w2"})
    for live in (one, two):
        wait_for(lambda live=live: stack_running(live, "shop"), 90, f"{live.tenant.slug}'s stack to run")
        wait_for(lambda live=live: set(containers_by_app(live)) == {"web", "kv", "worker"}, 30, "containers")
    # each web resolves "kv" to its own tenant's kv
    assert fetch(one, "web", "http://kv:7000/value") == (0, "value-of-one")
    assert fetch(two, "web", "http://kv:7000/value") == (0, "value-of-two")
    # and tenant two's web cannot reach tenant one's kv at its address either
    kv_one = Replica.objects.get(app__tenant=one.tenant, app__name="kv")
    addresses = list(kv_one.network_addresses.values())
    assert addresses, kv_one.addresses
    for address in addresses:
        code, _ = fetch(two, "web", f"http://{address}:7000/value")
        assert code != 0

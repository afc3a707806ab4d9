"""docker login, push and pull through the operator's Docker API against the panel's own registry
(daphne, the Docker token flow with a tenant API token): the CLI's X-Registry-Auth reaches the
registry, digests survive the round trip, and another tenant's repository stays closed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.engine import Engine
from tests.engine.privileged.dockerapi_clients import operator_api
from tests.hostpanel.registry_client.conftest import PanelRegistry


def test_docker_login_push_pull_against_the_panel_registry(
    panel_registry: PanelRegistry, client_engine: Engine, tenant_token: Callable[..., str], tmp_path: Path
) -> None:
    token = tenant_token("acme")
    other = tenant_token("globex")
    busybox = client_engine.image("busybox")
    host = panel_registry.host
    target = f"{host}/acme/box:1"
    with operator_api(client_engine, tmp_path) as api:
        assert "refused access" in api.fails("login", host, "-u", "ci", "--password-stdin", input="nope\n")
        assert "Login Succeeded" in api.ok("login", host, "-u", "ci", "--password-stdin", input=token + "\n")
        api.ok("tag", "busybox", target)
        assert f"1: digest: {busybox.digest}" in api.ok("push", target)

        api.ok("rmi", target, "busybox")
        assert client_engine.images.list() == []
        out = api.ok("pull", target)
        assert f"Digest: {busybox.digest}" in out and "Downloaded newer image" in out
        assert client_engine.image(target).id == busybox.id

        # globex's token does not open acme's repository, for pull or push
        api.ok("login", host, "-u", "ci", "--password-stdin", input=other + "\n")
        api.ok("tag", target, "keep:1")
        api.ok("rmi", target)
        assert "refused access (repository:acme/box:pull)" in api.fails("pull", target)
        api.ok("tag", "keep:1", target)
        assert "refused access" in api.fails("push", target)

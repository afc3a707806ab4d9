"""Fixtures of the build tests: builds sent to host agents are recorded, not sent.

``engine`` (a real engine with busybox, checked for leaks), ``published`` (lines
sent to the live log pipeline) and ``developer`` (a developer of tenant acme)
serve the modules here; ``context_tar`` and ``plain`` are plain helpers.
"""

from __future__ import annotations

import io
import secrets
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine.engine import Engine
from hostpanel.builds import services
from hostpanel.tenants.models import Role, Tenant
from tests.conftest import require_privileged
from tests.engine.conftest import leaks


@pytest.fixture(autouse=True)
def sent_builds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """(build id, queue) of every build the code under test sent to an agent (the seam builds.dispatch)."""
    sent: list[tuple[int, str]] = []
    if request.node.get_closest_marker("e2e") is None:
        monkeypatch.setattr(
            "hostpanel.builds.dispatch.send_build", lambda build_id, queue: sent.append((build_id, queue))
        )
    return sent


@pytest.fixture
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A real engine with busybox on a fresh root; fails the test if it leaks."""
    require_privileged()  # builds run real containers through crun
    root = tmp_path_factory.mktemp("hpbuild")
    instance = f"hpt-{secrets.token_hex(4)}"
    eng = Engine(root=root, instance=instance)
    eng.images.bootstrap_busybox()
    yield eng
    assert eng.list(all=True) == []
    assert not leaks(root, instance)
    assert [p.name for p in eng.paths.tmp.iterdir()] == []


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """Lines sent to the log pipeline (the adapter's seam; the pipeline has its own tests)."""
    lines: list[dict[str, str]] = []
    monkeypatch.setattr(services, "_publish", lambda key, batch: lines.extend(batch))
    return lines


@pytest.fixture
def developer(tenant: Tenant, member: Callable[[Tenant, str], Any]) -> Any:
    """A developer (user) of tenant acme."""
    return member(tenant, Role.DEVELOPER)


def context_tar(files: dict[str, str], *, gzip: bool = False) -> bytes:
    """A build context as a tar archive of ``files`` (name -> text)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gzip else "w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def plain(lines: list[dict[str, str]]) -> list[dict[str, str]]:
    """Output lines without their cursors (stream and text)."""
    return [{"stream": line["stream"], "text": line["text"]} for line in lines]

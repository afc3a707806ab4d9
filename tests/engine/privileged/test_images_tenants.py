"""Tenant-owned images on the real kernel: builds and runs see only the tenant's images and the base set.

Tenant beta holds a private image; tenant alpha tries to build from it, copy
out of it, run it and tag over it, and tries an image whose /etc/passwd names
a uid beyond the container range.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.build.model import BuildOptions
from engine.engine import Engine
from engine.errors import ImageNotFound, InvalidReference, InvalidSpec
from engine.images.model import Image
from engine.runtime.model import ContainerSpec

pytestmark = pytest.mark.privileged


def _context(path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (path / name).write_text(text)
    return path


def _build(engine: Engine, context: Path, tag: str, tenant: str | None) -> Image:
    return engine.build(BuildOptions(context=context, tag=tag, tenant=tenant)).image


@pytest.fixture()
def beta_private(engine: Engine, busybox: Image, tmp_path: Path) -> Image:
    ctx = _context(
        tmp_path / "beta", "FROM busybox\nCOPY secret.txt /secret.txt\n", {"secret.txt": "beta-only"}
    )
    return _build(engine, ctx, "beta/private:v1", "beta")


def _index(engine: Engine) -> bytes:
    return engine.images.paths.images_index.read_bytes()


@pytest.mark.parametrize(
    ("dockerfile", "error"),
    [
        (
            "FROM beta/private:v1\nRUN cat /secret.txt\n",
            r"line 1: FROM: no image 'beta/private:v1' for tenant 'alpha': use a base image or one of the "
            r"tenant's own images \(alpha/<name>:<tag>\).*earlier stage",
        ),
        (
            "FROM busybox\nCOPY --from=beta/private:v1 /secret.txt /stolen.txt\n",
            r"line 2: COPY: --from=beta/private:v1: no earlier stage and no image of that name for tenant "
            r"'alpha'; copy from an earlier stage, a base image or one of the tenant's own images",
        ),
    ],
    ids=["from", "copy-from"],
)
def test_a_build_cannot_use_another_tenants_image(
    engine: Engine, beta_private: Image, tmp_path: Path, dockerfile: str, error: str
) -> None:
    index = _index(engine)
    ctx = _context(tmp_path / "alpha", dockerfile)
    with pytest.raises(InvalidSpec, match=error):
        _build(engine, ctx, "alpha/stolen:1", "alpha")
    with pytest.raises(InvalidSpec, match=error.replace("beta/private:v1", beta_private.id)):
        _build(
            engine,
            _context(tmp_path / "by-id", dockerfile.replace("beta/private:v1", beta_private.id)),
            "alpha/stolen:1",
            "alpha",
        )
    assert _index(engine) == index, "the refused build stored or moved a name"
    assert engine.list(all=True) == []


def test_a_build_uses_its_own_images_base_images_and_earlier_stages(
    engine: Engine, beta_private: Image, tmp_path: Path
) -> None:
    mine = _build(
        engine,
        _context(tmp_path / "a1", "FROM busybox\nRUN echo mine > /mine.txt\n"),
        "alpha/base:1",
        "alpha",
    )
    df = (
        "FROM alpha/base:1 AS first\nRUN echo staged > /staged.txt\n"
        "FROM busybox\nCOPY --from=first /staged.txt /staged.txt\n"
        "COPY --from=alpha/base:1 /mine.txt /mine.txt\n"
    )
    built = _build(engine, _context(tmp_path / "a2", df), "alpha/app:1", "alpha")
    assert built.repo_tags == ("alpha/app:1",) and mine.id != built.id
    c = engine.run(
        ContainerSpec(image="alpha/app:1", tenant="alpha", command=("cat", "/staged.txt", "/mine.txt"))
    )
    try:
        engine.wait(c.id, timeout=30)
        assert [line.text for line in engine.logs(c.id)] == ["staged", "mine"]
    finally:
        engine.remove(c.id, force=True)


def test_a_build_cannot_tag_outside_its_namespace(
    engine: Engine, beta_private: Image, busybox: Image, tmp_path: Path
) -> None:
    ctx = _context(tmp_path / "evil", "FROM busybox\nRUN echo evil > /evil\n")
    for tag in ("beta/private:v1", "busybox:latest"):
        with pytest.raises(
            InvalidReference, match=r"tenant 'alpha' cannot name an image .*alpha/<name>:<tag>"
        ):
            _build(engine, ctx, tag, "alpha")
    assert engine.image("beta/private:v1").id == beta_private.id
    assert engine.image("busybox:latest").id == busybox.id


def test_a_tenant_cannot_run_another_tenants_image(engine: Engine, beta_private: Image) -> None:
    for ref in ("beta/private:v1", beta_private.id):
        with pytest.raises(ImageNotFound, match="for tenant 'alpha'"):
            engine.run(ContainerSpec(image=ref, tenant="alpha", command=("cat", "/secret.txt")))
    assert engine.list(all=True) == []


def test_a_uid_from_the_images_passwd_beyond_the_range_is_refused(
    engine: Engine, busybox: Image, tmp_path: Path
) -> None:
    """A hostile image names a user whose uid would land past the tenant's range once shifted."""
    passwd = b"root:x:0:0:root:/root:/bin/sh\nevil:x:70000:0::/:/bin/sh\n"
    ctx = _context(tmp_path / "evil", "FROM busybox\nCOPY passwd /etc/passwd\nUSER evil\n")
    (ctx / "passwd").write_bytes(passwd)
    _build(engine, ctx, "alpha/evil:1", "alpha")
    with pytest.raises(InvalidSpec, match=r"invalid user 'evil': uid 70000 is outside 0-65535"):
        engine.run(ContainerSpec(image="alpha/evil:1", tenant="alpha", command=("id",)))
    with pytest.raises(InvalidSpec, match=r"uid 70000 is outside 0-65535"):
        _build(engine, _context(tmp_path / "evil2", "FROM alpha/evil:1\nRUN id\n"), "alpha/evil:2", "alpha")
    assert engine.list(all=True) == []

"""A hostile build context on the real engine: links out, FIFOs, devices and huge files are refused.

Each attack must be refused with a message naming the path inside the context, must
never echo the content of the file it aimed at (a marker written in it), must not hang
(pytest timeout) and must leave nothing behind.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.build.model import BuildOptions, ContextLimits
from engine.engine import Engine
from engine.errors import InvalidSpec
from engine.images.model import Image
from tests.engine.privileged.test_build import assert_nothing_left, run_output

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(120)]

MARKER = "ROOTONLYMARKER"


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    """A root-only file outside the context whose first word would show in a parse error."""
    path = tmp_path / "root-only"
    path.write_text(f"{MARKER} shadow-like content\n")
    path.chmod(0o600)
    return path


@pytest.fixture()
def ctx(tmp_path: Path) -> Path:
    path = tmp_path / "ctx"
    path.mkdir()
    return path


def attempt(engine: Engine, busybox: Image, ctx: Path, match: str, **options: object) -> str:
    """Build ``ctx`` expecting a refusal matching ``match``; the message and output never show MARKER."""
    output: list[tuple[str, str]] = []
    with pytest.raises(InvalidSpec, match=match) as info:
        engine.build(
            BuildOptions(context=ctx, tag="evil:1", **options),  # type: ignore[arg-type]
            lambda stream, text: output.append((stream, text)),
        )
    assert MARKER not in info.value.message and MARKER not in repr(output)
    assert_nothing_left(engine, {busybox.id})
    return info.value.message


def _link(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_link("/etc/shadow"), "'Dockerfile' leads out of the build context"),
        (_link("../root-only"), "'Dockerfile' leads out of the build context"),
        (_link("/dev/zero"), "'Dockerfile' leads out of the build context"),
        (os.mkfifo, "'Dockerfile' in the build context is a FIFO"),
    ],
    ids=["shadow", "root-only", "dev-zero", "fifo"],
)
def test_a_dockerfile_that_is_not_a_file_in_the_context_is_refused(
    engine: Engine, busybox: Image, ctx: Path, secret: Path, make: Callable[[Path], None], match: str
) -> None:
    make(ctx / "Dockerfile")
    attempt(engine, busybox, ctx, match)


def test_an_absolute_link_to_a_root_only_file_is_refused_before_reading(
    engine: Engine, busybox: Image, ctx: Path, secret: Path
) -> None:
    (ctx / "Dockerfile").symlink_to(secret)
    message = attempt(engine, busybox, ctx, "leads out of the build context")
    assert "cannot read the Dockerfile" in message


@pytest.mark.parametrize(
    "make",
    [_link("/etc/shadow"), _link("../root-only"), os.mkfifo, _link("/dev/zero")],
    ids=["shadow", "root-only", "fifo", "dev-zero"],
)
def test_a_dockerignore_that_is_not_a_file_in_the_context_is_refused(
    engine: Engine, busybox: Image, ctx: Path, secret: Path, make: Callable[[Path], None]
) -> None:
    (ctx / "Dockerfile").write_text("FROM busybox\n")
    make(ctx / ".dockerignore")
    message = attempt(engine, busybox, ctx, r"cannot read \.dockerignore: '\.dockerignore'")
    assert "leads out" in message or "FIFO" in message


@pytest.mark.parametrize(
    ("source", "make", "match"),
    [
        ("shadow", _link("/etc/shadow"), "COPY: 'shadow' leads out of the build context"),
        ("secret", _link("../root-only"), "COPY: 'secret' leads out of the build context"),
        ("zero", _link("/dev/zero"), "COPY: 'zero' leads out of the build context"),
        ("pipe", os.mkfifo, "'pipe' in the build context is a FIFO"),
        ("dir/*", None, "'dir/pipe' in the build context is a FIFO"),  # met while walking a directory
        (".", None, "'dir/pipe' in the build context is a FIFO"),
    ],
    ids=["shadow", "root-only", "dev-zero", "fifo", "fifo-in-glob", "fifo-in-dir"],
)
def test_copy_and_add_sources_out_of_the_context_or_special_are_refused(
    engine: Engine,
    busybox: Image,
    ctx: Path,
    secret: Path,
    source: str,
    make: Callable[[Path], None] | None,
    match: str,
) -> None:
    (ctx / "dir").mkdir()
    os.mkfifo(ctx / "dir" / "pipe")
    if make is not None:
        make(ctx / source)
    for instruction in ("COPY", "ADD"):
        (ctx / "Dockerfile").write_text(f"FROM busybox\n{instruction} {source} /x/\n")
        attempt(engine, busybox, ctx, match.replace("COPY", instruction))


def test_a_link_that_stays_inside_is_followed_for_the_dockerfile_and_copied_as_a_link(
    engine: Engine, busybox: Image, ctx: Path
) -> None:
    (ctx / "docker").mkdir()
    (ctx / "docker" / "Dockerfile.real").write_text("FROM busybox\nCOPY tree /tree\nCOPY named /named\n")
    (ctx / "Dockerfile").symlink_to("docker/Dockerfile.real")
    (ctx / "tree").mkdir()
    (ctx / "tree" / "file").write_text("inside\n")
    (ctx / "tree" / "link").symlink_to("file")
    (ctx / "tree" / "abs").symlink_to("/etc/shadow")  # copied as the link itself, never read
    (ctx / "named").symlink_to("tree/file")
    engine.build(BuildOptions(context=ctx, tag="ok:1"), lambda stream, text: None)
    code, lines = run_output(
        engine, "ok:1", "sh", "-c", "readlink /tree/link; readlink /tree/abs; cat /named"
    )
    assert (code, lines) == (0, ["file", "/etc/shadow", "inside"])
    engine.images.remove("ok:1")


def test_files_over_the_bounds_are_refused_before_reading(engine: Engine, busybox: Image, ctx: Path) -> None:
    (ctx / "Dockerfile").write_text("FROM busybox\n# " + MARKER * 100 + "\n")
    attempt(
        engine,
        busybox,
        ctx,
        "'Dockerfile' in the build context is larger than the limit of 1000 bytes",
        limits=ContextLimits(dockerfile=1000),
    )
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY huge /huge\n")
    (ctx / ".dockerignore").write_text("# " + MARKER * 100 + "\n")
    attempt(
        engine,
        busybox,
        ctx,
        "'.dockerignore' in the build context is larger",
        limits=ContextLimits(dockerignore=100),
    )
    os.unlink(ctx / ".dockerignore")
    with open(ctx / "huge", "wb") as f:  # sparse: 5 GiB on paper, nothing on disk
        f.truncate(5 * 1024**3)
    attempt(engine, busybox, ctx, r"add up to 5368709120 bytes, over the limit of 4294967296 bytes")


def test_a_context_swapped_for_a_link_out_of_its_tenant_directory_is_refused(
    engine: Engine, busybox: Image, tmp_path: Path, secret: Path
) -> None:
    """The panel checked the path; the tenant then swaps it for a link: opened beneath, it leads nowhere."""
    within = tmp_path / "roots" / "acme"
    within.mkdir(parents=True)
    (within / "app").symlink_to(tmp_path)  # tmp_path holds root-only and a Dockerfile naming it
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY root-only /x\n")
    attempt(engine, busybox, within / "app", "'app' leads out of the directory", context_within=within)


def test_an_add_archive_that_unpacks_over_the_bound_is_refused(
    engine: Engine, busybox: Image, ctx: Path
) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = 2_000_000
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    (ctx / "bomb.tar.gz").write_bytes(buf.getvalue())
    (ctx / "Dockerfile").write_text("FROM busybox\nADD bomb.tar.gz /x/\n")
    attempt(
        engine,
        busybox,
        ctx,
        "ADD bomb.tar.gz unpacks to more than 1000000 bytes",
        limits=ContextLimits(context=1_000_000),
    )

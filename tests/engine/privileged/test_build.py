"""Dockerfile builds on the real kernel: RUN in crun build containers, layer cache, quotas, bad input."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from engine.build.model import BuildFailed, BuildOptions, BuildResult
from engine.cgroups.resources import Resources
from engine.engine import Engine
from engine.errors import ImageNotFound, InvalidSpec, QuotaExceeded
from engine.images.model import Image
from engine.runtime.model import ContainerSpec

pytestmark = pytest.mark.privileged

MULTI_STAGE = """\
# a "compile" stage: turns the sources into an executable artifact
ARG BASE=busybox
FROM ${BASE} AS compile
ARG FLAVOUR=plain
WORKDIR /src
COPY src/ ./
RUN sh build.sh "$FLAVOUR" > /app.bin && chmod 755 /app.bin && echo compiled-$FLAVOUR

FROM busybox
LABEL org.example.team="web" version=1
ENV APP_HOME=/opt/app GREETING="hello from"
WORKDIR $APP_HOME
COPY --from=compile --chown=nobody /app.bin ./app
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD test -x /opt/app/app
USER nobody
ENTRYPOINT ["/opt/app/app"]
CMD ["world"]
"""


def write_context(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return path


def build(
    engine: Engine, context: Path, tag: str = "app:1", **kw: object
) -> tuple[BuildResult, list[tuple[str, str]]]:
    output: list[tuple[str, str]] = []
    result = engine.build(
        BuildOptions(context=context, tag=tag, **kw),  # type: ignore[arg-type]
        lambda stream, text: output.append((stream, text)),
    )
    return result, output


def run_output(engine: Engine, image: str, *command: str) -> tuple[int | None, list[str]]:
    c = engine.run(ContainerSpec(image=image, command=tuple(command)))
    done = engine.wait(c.id, timeout=30)
    lines = [line.text for line in engine.logs(c.id)]
    engine.remove(c.id, force=True)
    return done.exit_code, lines


def assert_nothing_left(engine: Engine, images_before: set[str]) -> None:
    """No build container, temp image, scratch dir or pin after a build (mounts: the fixture checks)."""
    assert engine.list(all=True) == []
    assert {i.id for i in engine.images.list()} == images_before
    tmp = engine.paths.tmp
    assert not [p.name for p in tmp.iterdir()] if tmp.exists() else True
    pins = engine.paths.root / "build-cache" / "pins"
    assert not list(pins.iterdir()) if pins.exists() else True


@pytest.fixture()
def multi_stage(tmp_path: Path) -> Path:
    return write_context(
        tmp_path / "ctx",
        {
            "Dockerfile": MULTI_STAGE,
            "src/build.sh": 'printf \'#!/bin/sh\\necho "$GREETING $1 (%s)"\\n\' "$1"\n',
        },
    )


def test_multi_stage_build_runs_and_keeps_only_the_last_stage(
    engine: Engine, busybox: Image, multi_stage: Path
) -> None:
    result, output = build(engine, multi_stage, build_args={"FLAVOUR": "fast"})
    assert result.run_steps == 1 and result.cached_steps == 0
    assert ("stdout", "compiled-fast") in output
    assert output[0] == ("step", "STEP 1/17: FROM ${BASE} AS compile")
    assert any(t.startswith("STEP 5/17: RUN sh build.sh") for s, t in output if s == "step")
    image = result.image
    assert image.repo_tags == ("app:1",)
    assert len(image.layers) == len(busybox.layers) + 1  # the compile stage's layers stay out
    config = engine.images.inspect("app:1")["oci_config"]["config"]
    assert config["Entrypoint"] == ["/opt/app/app"] and config["Cmd"] == ["world"]
    assert "GREETING=hello from" in config["Env"] and config["WorkingDir"] == "/opt/app"
    assert config["User"] == "nobody" and config["StopSignal"] == "SIGINT"
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert config["Labels"] == {"org.example.team": "web", "version": "1"}
    assert config["Volumes"] == {"/data": {}}
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "test -x /opt/app/app"],
        "Interval": 5_000_000_000,
        "Retries": 2,
    }
    history = engine.images.inspect("app:1")["oci_config"]["history"]
    assert sum(1 for h in history if not h.get("empty_layer")) == len(image.layers)
    assert run_output(engine, "app:1") == (0, ["hello from world (fast)"])
    assert run_output(engine, "app:1", "x") == (0, ["hello from x (fast)"])
    c = engine.run(
        ContainerSpec(
            image="app:1", entrypoint=("sh", "-c"), command=("id -u; ls /src 2>/dev/null || echo no-src",)
        )
    )
    engine.wait(c.id, timeout=30)
    assert [line.text for line in engine.logs(c.id)] == ["65534", "no-src"]
    engine.remove(c.id, force=True)
    assert_nothing_left(engine, {busybox.id, image.id})


def test_unchanged_rebuild_runs_no_run(engine: Engine, busybox: Image, multi_stage: Path) -> None:
    first, _ = build(engine, multi_stage)
    again, output = build(engine, multi_stage)
    assert again.run_steps == 0
    assert again.cached_steps == 3  # COPY, RUN, COPY --from
    assert not [t for s, t in output if s in ("stdout", "stderr")]
    assert sum(1 for _, t in output if t.startswith("--> Using cache")) == 3
    assert again.image.layers == first.image.layers


def test_changing_one_file_reruns_only_the_steps_after_its_copy(
    engine: Engine, busybox: Image, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {
            "Dockerfile": "FROM busybox\nCOPY a.txt /a.txt\nRUN echo step-a\nCOPY b.txt /b.txt\n"
            "RUN echo step-b && cat /b.txt\n",
            "a.txt": "a1\n",
            "b.txt": "b1\n",
        },
    )
    build(engine, ctx)
    (ctx / "b.txt").write_text("b2\n")
    result, output = build(engine, ctx)
    stdout = [t for s, t in output if s == "stdout"]
    assert stdout == ["step-b", "b2"]
    assert result.run_steps == 1 and result.cached_steps == 2
    (ctx / "b.txt").chmod(0o600)  # a mode change is a change too
    result, _ = build(engine, ctx)
    assert result.run_steps == 1


def test_dockerignore_exclusions_and_exceptions(engine: Engine, busybox: Image, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {
            "Dockerfile": 'FROM busybox\nCOPY . /ctx/\nCMD ["find", "/ctx", "-type", "f"]\n',
            ".dockerignore": "# comments are ignored\n*.env\nlogs\n!logs/keep.log\n**/*.tmp\n/Dockerfile\n",
            "keep.txt": "k",
            "secret.env": "PASSWORD=x",
            "logs/a.log": "a",
            "logs/keep.log": "keep",
            "nested/deep/x.tmp": "t",
            "nested/deep/y.txt": "y",
        },
    )
    build(engine, ctx)
    code, lines = run_output(engine, "app:1")
    assert code == 0
    assert sorted(lines) == [
        "/ctx/.dockerignore",
        "/ctx/keep.txt",
        "/ctx/logs/keep.log",
        "/ctx/nested/deep/y.txt",
    ]
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY secret.env /s\n")
    with pytest.raises(InvalidSpec, match=r"line 2: COPY: 'secret.env' .*excluded by .dockerignore"):
        build(engine, ctx, tag="app:2")


def test_build_over_the_tenant_memory_quota_is_stopped(
    engine: Engine, busybox: Image, tmp_path: Path
) -> None:
    engine.set_tenant_quota("acme", Resources(memory=32 * 1024 * 1024))
    ctx = write_context(
        tmp_path / "ctx",
        {"Dockerfile": "FROM busybox\nRUN echo starting && dd if=/dev/zero of=/dev/null bs=128M count=1\n"},
    )
    with pytest.raises(QuotaExceeded, match=r"line 2: RUN was stopped: .*tenant 'acme'.*memory quota") as err:
        build(engine, ctx, "acme/app:1", tenant="acme")
    assert "starting" in str(err.value)
    assert_nothing_left(engine, {busybox.id})


def test_build_over_the_tenant_process_quota_is_stopped(
    engine: Engine, busybox: Image, tmp_path: Path
) -> None:
    engine.set_tenant_quota("acme", Resources(pids=8))
    ctx = write_context(
        tmp_path / "ctx",
        {"Dockerfile": "FROM busybox\nRUN for i in $(seq 20); do sleep 5 & done; wait\n"},
    )
    with pytest.raises(
        QuotaExceeded, match=r"line 2: RUN failed .*process limit \(8: .*tenant 'acme'.*process quota"
    ):
        build(engine, ctx, "acme/app:1", tenant="acme")
    assert_nothing_left(engine, {busybox.id})


def test_failing_run_shows_its_output_and_exit_code_and_leaves_nothing(
    engine: Engine, busybox: Image, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {
            "Dockerfile": "FROM busybox\nCOPY f /f\nRUN echo about-to-fail; echo to-stderr >&2; exit 3\n",
            "f": "x",
        },
    )
    with pytest.raises(BuildFailed, match=r"line 3: RUN .* failed with exit code 3") as err:
        build(engine, ctx)
    assert "about-to-fail" in str(err.value) and "to-stderr" in str(err.value)
    assert_nothing_left(engine, {busybox.id})
    with pytest.raises(ImageNotFound):
        engine.images.resolve("app:1")


BAD_INPUT = [
    ("FROM busybox\nFROOB x\n", {}, {}, r"line 2: unknown instruction FROOB"),
    ("# escape=x\nFROM busybox\n", {}, {}, r"syntax error: invalid escape token"),
    ("RUN true\nFROM busybox\n", {}, {}, r"line 1: RUN: only ARG may come before the first FROM"),
    ("FROM busybox\nENV\n", {}, {}, r"line 2: ENV: needs at least one argument"),
    (
        "FROM busybox\nCOPY ../outside /x\n",
        {},
        {},
        r"line 2: COPY: '../outside' is outside the build context",
    ),
    ("FROM busybox\nCOPY missing.txt /x\n", {}, {}, r"line 2: COPY: 'missing.txt' does not exist"),
    ("FROM busybox\nCOPY *.nothing /x/\n", {}, {}, r"line 2: COPY: '\*.nothing' matches no file"),
    ("FROM busybox\nADD https://example.com/a.tgz /\n", {}, {}, r"line 2: ADD: remote source .* is refused"),
    (
        "FROM busybox AS a\nCOPY --from=a /bin/sh /x\n",
        {},
        {},
        r"line 2: COPY: stage 'a' is this stage.*cycle",
    ),
    (
        "FROM busybox\nCOPY --from=nowhere /x /x\n",
        {},
        {},
        r"line 2: COPY: --from=nowhere: no stage and no image",
    ),
    (
        "FROM busybox AS a\nFROM busybox\n",
        {},
        {"target": "b"},
        r"no stage 'b' in the Dockerfile \(stages: a, 1\)",
    ),
    ("FROM nosuchimage:1\n", {}, {}, r"line 1: FROM: no image 'nosuchimage:1'"),
    ("ARG BASE\nFROM ${BASE}\n", {}, {}, r"line 2: FROM: '\$\{BASE\}' expands to an empty name"),
    ("FROM scratch\nRUN true\n", {}, {}, r"line 2: RUN: the stage has no files yet"),
    (
        "FROM busybox\nCOPY f /f\nCOPY --chown=nobody:nogroup-x f /g\n",
        {"f": "x"},
        {},
        r"line 3: COPY: --chown",
    ),
    ("FROM busybox\nRUN --mount=type=cache true\n", {}, {}, r"line 2: RUN: unsupported flag --mount"),
    ("FROM busybox\nEXPOSE 99999\n", {}, {}, r"line 2: EXPOSE: invalid port"),
    ("FROM busybox\nRUN nosuchcommand-xyz\n", {}, {}, r"line 2: RUN .* failed with exit code 127"),
]


@pytest.mark.parametrize(("dockerfile", "files", "options", "message"), BAD_INPUT)
def test_bad_input_is_refused_clearly_and_leaves_nothing(
    engine: Engine,
    busybox: Image,
    tmp_path: Path,
    dockerfile: str,
    files: dict[str, str],
    options: dict[str, str],
    message: str,
) -> None:
    (tmp_path / "outside").write_text("secret")
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": dockerfile, **files})
    with pytest.raises((InvalidSpec, BuildFailed), match=message):
        build(engine, ctx, **options)
    assert_nothing_left(engine, {busybox.id})


def test_add_extracts_local_archives_and_copies_other_files(
    engine: Engine, busybox: Image, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx", {"Dockerfile": "FROM busybox\nADD site.tar.gz /srv/\nADD note.txt /srv/\n"}
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"<h1>hi</h1>\n"
        info = tarfile.TarInfo("www/index.html")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (ctx / "site.tar.gz").write_bytes(buf.getvalue())
    (ctx / "note.txt").write_text("note\n")
    build(engine, ctx)
    assert run_output(engine, "app:1", "cat", "/srv/www/index.html", "/srv/note.txt") == (
        0,
        ["<h1>hi</h1>", "note"],
    )


def test_rmi_and_prune_drop_the_cache_of_removed_images(
    engine: Engine, busybox: Image, multi_stage: Path
) -> None:
    build(engine, multi_stage)
    cache = engine.build_cache
    assert cache.entry_count("default") == 3  # the compile stage's entries too, though not in the image
    engine.images.gc()
    again, _ = build(engine, multi_stage)
    assert again.run_steps == 0, "a GC must keep the cache of images that still exist"
    engine.images.remove("app:1")
    assert cache.entry_count("default") == 0
    assert engine.images.blobs.digests() == {busybox.id, busybox.digest, *busybox.layers}
    rebuilt, _ = build(engine, multi_stage)
    assert rebuilt.run_steps == 1
    engine.images.prune(all=True)
    assert cache.entry_count("default") == 0
    assert engine.images.blobs.digests() == set()


def test_the_cache_is_per_tenant(engine: Engine, busybox: Image, multi_stage: Path) -> None:
    build(engine, multi_stage, "alpha/app:1", tenant="alpha")
    other, output = build(engine, multi_stage, "beta/app:1", tenant="beta")
    assert other.run_steps == 1 and not any(t.startswith("--> Using cache") for _, t in output)
    again, _ = build(engine, multi_stage, "alpha/app:1", tenant="alpha")
    assert again.run_steps == 0


def test_from_an_earlier_stage_exec_form_target_and_no_cache(
    engine: Engine, busybox: Image, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {
            "Dockerfile": "FROM busybox AS base\nENV WHO=stage\nRUN echo from-$WHO > /f\n"
            'FROM base AS second\nRUN ["sh", "-c", "echo exec-form; cat /f"]\n'
            'SHELL ["/bin/sh", "-ec"]\nRUN echo shell-$WHO\n'
            "FROM busybox\nRUN echo never-built\n",
        },
    )
    result, output = build(engine, ctx, target="second")
    stdout = [t for s, t in output if s == "stdout"]
    assert stdout == ["exec-form", "from-stage", "shell-stage"]  # the last stage is not built
    assert result.run_steps == 3
    assert engine.images.inspect("app:1")["oci_config"]["config"]["Shell"] == ["/bin/sh", "-ec"]
    again, _ = build(engine, ctx, target="second", no_cache=True)
    assert again.run_steps == 3 and again.cached_steps == 0

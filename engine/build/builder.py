"""The builder: runs a Dockerfile's stages step by step with the layer cache.

Filesystem steps make one layer each: RUN in a build container created
through the normal runtime (the tenant's user namespace, cgroup and quota;
network "none" since hosts need not reach the internet), COPY and ADD in a
scratch overlay. The upper directory of either becomes a tar layer
(:mod:`engine.build.diff`). Metadata steps only change the config. Only the
target (default: last) stage and the stages it needs are built; only the
target goes into the image. A failed build leaves no container, mount, temp
directory or image behind.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import posixpath
import re
import secrets
import tarfile
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.build import beneath
from engine.build.cache import BuildCache, LayerInfo, Pin, StageState, step_key
from engine.build.config import apply_metadata, env_dict, shell_form
from engine.build.context import Bounded, Entry, SourceTree, content_hash
from engine.build.diff import write_layer
from engine.build.dockerfile import Dockerfile, Instruction, Stage, parse_dockerfile
from engine.build.fs import Workspace, copy_sources
from engine.build.ignore import IgnoreRules
from engine.build.model import (
    BuildCancelled,
    BuildFailed,
    BuildOptions,
    BuildResult,
    BuildTimedOut,
    OutputCallback,
)
from engine.build.recover import BUILD_LABEL
from engine.build.words import process_word
from engine.cgroups.controller import host_driver
from engine.cgroups.resources import capped
from engine.errors import EngineError, InvalidSpec, NotFound, QuotaExceeded
from engine.images.archive import make_staged_image
from engine.images.blobs import TMP_PREFIX, StagedBlob
from engine.images.compression import Compression, decompressed, sniff
from engine.images.extract import extract_layer, remove_tree
from engine.images.model import Image
from engine.images.namespace import check_writable
from engine.images.oci import (
    MT_LAYER_TAR,
    LayerRef,
    canonical_json,
    host_architecture,
    parse_config,
    parse_manifest,
    utc_now_iso,
)
from engine.images.reference import normalize_tag
from engine.images.staging import StagedLayer, Staging
from engine.runtime.model import ContainerSpec
from engine.runtime.users import resolve_user

if TYPE_CHECKING:
    from engine.engine import Engine

_URL_RE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|git@)")
_OUTPUT_TAIL = 20


class Builder:
    """One build (see the module docstring); use :meth:`run` once."""

    def __init__(
        self, engine: Engine, cache: BuildCache, options: BuildOptions, on_output: OutputCallback
    ) -> None:
        self.engine = engine
        self.store = engine.images
        self.cache = cache
        self.options = options
        self.emit = on_output
        self.tenant = options.run_as
        self.scope = options.tenant
        """Whose images FROM and COPY --from see and who owns the result (None: the operator)."""
        self.uid_base = engine.containers.id_ranges.range_for(self.tenant).base
        self.context = Path(options.context)
        self.step = 0
        self.total = 0
        self.cached = 0
        self.runs = 0
        self.keys: set[str] = set()
        self.used_args: set[str] = set()
        self.pin: Pin | None = None
        self.rules = IgnoreRules([])  # the context's .dockerignore, read by run()
        self.tree = SourceTree(self.context, beneath=True)  # the context as COPY reads it, set by run()
        self.states: dict[int, tuple[StageState, str]] = {}
        """Each built stage's final state and cache key, by stage index."""
        self._expired = threading.Event()
        self._cancelled = False  # set with _expired when options.cancel fires
        self._running: str | None = None  # the RUN container in progress, killed when time is up
        self._lock = threading.Lock()

    # -- the whole build ------------------------------------------------------------------------

    def run(self) -> BuildResult:
        """Build and tag the image. Raises InvalidSpec (bad Dockerfile or input), BuildFailed (a RUN
        failed), QuotaExceeded (a RUN went over the tenant's quota), ImageNotFound (unknown base)."""
        context_fd = self._open_context()
        try:
            return self._build()
        finally:
            os.close(context_fd)

    def _open_context(self) -> int:
        """Open the context directory once (beneath ``options.context_within`` when given) and from
        then on reach it only through that fd (``/proc/self/fd/N``): a rename or a symlink swapped in
        later changes nothing."""
        within = self.options.context_within
        try:
            if within is None:
                fd = beneath.open_root(self.context)
            else:
                base = beneath.open_root(within)
                try:
                    rel = os.path.relpath(self.context, within)
                    fd = beneath.open_dir(base, rel, what=f"the directory {within}")
                finally:
                    os.close(base)
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidSpec(f"build context {self.context} is not a directory") from None
        self.context = Path(f"/proc/self/fd/{fd}")
        self.tree = SourceTree(self.context, beneath=True)
        return fd

    def _build(self) -> BuildResult:
        tag = normalize_tag(self.options.tag)
        check_writable([], [tag], self.scope)  # before any work; a base image's name is refused at commit
        dockerfile = self._read_dockerfile()
        self.rules = self._read_ignore()
        self.tree = SourceTree(self.context, self.rules, beneath=True, limit=self.options.limits.context)
        global_args = self._global_args(dockerfile)
        target = self._target(dockerfile)
        stages = self._needed(dockerfile, target, global_args)
        self.total = sum(1 + len(s.instructions) for s in stages)
        self.pin = self.cache.pin()
        if self.options.cancel is not None:
            self.options.cancel.on_cancel(self._cancel)
        timer = None
        if self.options.time_limit is not None:
            timer = threading.Timer(self.options.time_limit, self._expire)
            timer.daemon = True
            timer.start()
        try:
            for stage in stages:
                self.states[stage.index] = self._build_stage(dockerfile, stage, global_args)
            unused = sorted(set(self.options.build_args) - self.used_args)
            if unused:
                self.emit("info", f"[warning] build args not consumed by any ARG: {', '.join(unused)}")
            final = self.states[target.index][0]
            if self.options.labels:
                final = final.copy()
                final.config["Labels"] = {**(final.config.get("Labels") or {}), **self.options.labels}
            image = self._commit(final, [tag], owner=self.scope)
            self.cache.reference(self.tenant, image.id, self.keys)
        finally:
            if timer is not None:
                timer.cancel()
            self.pin.release()
        self.emit("info", f"COMMIT {tag}")
        self.emit("info", f"--> {image.short_id}")
        return BuildResult(image, self.total, self.cached, self.runs)

    def _read_dockerfile(self) -> Dockerfile:
        """The Dockerfile, read inside the context (or, given as an absolute path by the operator or
        the panel, inside its own directory): no link out, a regular file, bounded in size."""
        path = self.options.dockerfile or Path("Dockerfile")
        root, rel, what = (
            (path.parent, path.name, f"the directory {path.parent}")
            if path.is_absolute()
            else (self.context, str(path), "the build context")
        )
        try:
            data = beneath.read_file(root, rel, what=what, limit=self.options.limits.dockerfile)
        except InvalidSpec as exc:
            raise InvalidSpec(f"cannot read the Dockerfile: {exc.message}; give its path with -f") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSpec(f"the Dockerfile {str(path)!r} is not UTF-8 text") from None
        return parse_dockerfile(text, str(path))

    def _read_ignore(self) -> IgnoreRules:
        """The context's ``.dockerignore`` (none when missing), read like the Dockerfile."""
        try:
            data = beneath.read_file(
                self.context,
                ".dockerignore",
                what="the build context",
                limit=self.options.limits.dockerignore,
            )
        except beneath.Missing:
            return IgnoreRules([])
        except InvalidSpec as exc:
            raise InvalidSpec(f"cannot read .dockerignore: {exc.message}") from None
        try:
            return IgnoreRules.from_text(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidSpec("the build context's .dockerignore is not UTF-8 text") from None

    def _global_args(self, df: Dockerfile) -> dict[str, str]:
        values: dict[str, str] = {}
        for inst in df.global_args:
            for name, value in self._arg_values(inst, values, {}):
                values[name] = value
        return values

    def _arg_values(
        self, inst: Instruction, env: dict[str, str], inherited: dict[str, str]
    ) -> Iterator[tuple[str, str]]:
        for raw in inst.args:
            name, eq, default = raw.partition("=")
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise inst.error(f"invalid argument name {name!r}")
            if name in self.options.build_args:
                self.used_args.add(name)
                yield name, self.options.build_args[name]
            elif eq:
                try:
                    yield name, process_word(default, env, "\\")
                except InvalidSpec as exc:
                    raise inst.error(exc.message) from None
            elif name in inherited:
                yield name, inherited[name]

    def _target(self, df: Dockerfile) -> Stage:
        if self.options.target is None:
            return df.stages[-1]
        stage = df.stage(self.options.target)
        if stage is None:
            names = ", ".join(s.label for s in df.stages)
            raise InvalidSpec(f"no stage {self.options.target!r} in the Dockerfile (stages: {names})")
        return stage

    def _stage_ref(self, df: Dockerfile, ref: str, current: Stage, inst: Instruction) -> Stage | None:
        """The earlier stage ``ref`` names, None for an image; InvalidSpec for itself or a later stage."""
        stage = df.stage(ref)
        if stage is None:
            return None
        if stage.index >= current.index:
            raise inst.error(
                f"stage {ref!r} is {'this stage' if stage is current else 'a later stage'}; "
                "a stage can only use earlier stages (this would be a cycle)"
            )
        return stage

    def _needed(self, df: Dockerfile, target: Stage, global_args: dict[str, str]) -> list[Stage]:
        needed: set[int] = set()
        todo = deque([target])
        while todo:
            stage = todo.popleft()
            if stage.index in needed:
                continue
            needed.add(stage.index)
            base = process_word(stage.base, global_args)
            first = Instruction("FROM", stage.line, (stage.base,), {}, False, f"FROM {stage.base}")
            dep = self._stage_ref(df, base, stage, first) if df.stage(base) is not stage else None
            if dep is not None:
                todo.append(dep)
            for inst in stage.instructions:
                if inst.name == "COPY" and "from" in inst.flags:
                    dep = self._stage_ref(df, inst.flags["from"], stage, inst)
                    if dep is not None:
                        todo.append(dep)
        return [s for s in df.stages if s.index in needed]

    # -- one stage ------------------------------------------------------------------------------

    def _cancel(self) -> None:
        """The build was cancelled: stop it like an expired one, saying so."""
        self._cancelled = True
        self._expire()

    def _expire(self) -> None:
        """The time limit is up: stop the RUN in progress (the build then ends at its next check)."""
        with self._lock:
            self._expired.set()
            running = self._running
        if running is not None:
            with contextlib.suppress(EngineError):
                self.engine.kill(running)

    def _check_time(self) -> None:
        if self._cancelled:
            raise BuildCancelled("the build was cancelled; its RUN step was stopped and nothing was kept")
        if self._expired.is_set():
            raise BuildTimedOut(
                f"the build ran longer than its time limit of {self.options.time_limit:g} seconds and "
                "was stopped; make it faster or ask an admin to raise the tenant's build time limit"
            )

    def _header(self, text: str) -> None:
        self._check_time()
        self.step += 1
        self.emit("step", f"STEP {self.step}/{self.total}: {text}")

    def _build_stage(
        self, df: Dockerfile, stage: Stage, global_args: dict[str, str]
    ) -> tuple[StageState, str]:
        self._header(f"FROM {stage.base}" + (f" AS {stage.name}" if stage.name else ""))
        state, key = self._from(df, stage, global_args)
        args: dict[str, str] = {}
        cmd_set = False
        for inst in stage.instructions:
            self._header(inst.text)
            env = {**args, **env_dict(state.config)}
            if inst.name == "ARG":
                values = list(self._arg_values(inst, env, global_args))
                args.update(values)
                text = "ARG " + " ".join(f"{k}={v}" for k, v in values)
                key = step_key(self.tenant, key, text)
                state.history.append(_history(text, empty=True))
            elif inst.name == "RUN":
                text = self._run_text(state, inst, args)
                state, key = self._cached(
                    key, text, "", state, functools.partial(self._run, inst=inst, args=dict(args))
                )
            elif inst.name in ("COPY", "ADD"):
                state, key = self._copy(df, stage, inst, state, key, env)
            else:
                text = apply_metadata(state.config, inst, env, df.escape, cmd_set=cmd_set)
                cmd_set = cmd_set or inst.name == "CMD"
                key = step_key(self.tenant, key, text)
                state.history.append(_history(text, empty=True))
        return state, key

    def _from(self, df: Dockerfile, stage: Stage, global_args: dict[str, str]) -> tuple[StageState, str]:
        base = process_word(stage.base, global_args)
        if not base:
            raise InvalidSpec(
                f"Dockerfile line {stage.line}: FROM: {stage.base!r} expands to an empty name; "
                "give the ARG a default or pass --build-arg"
            )
        if base == "scratch":
            return StageState(), step_key(self.tenant, "", "FROM scratch")
        earlier = df.stage(base)
        if earlier is not None and earlier.index < stage.index:
            state, key = self.states[earlier.index]
            return state.copy(), key
        try:
            image = self.store.resolve(base, tenant=self.scope)
        except NotFound as exc:
            hint = " (or the name of an earlier stage)" if self.scope is not None else ""
            raise InvalidSpec(f"Dockerfile line {stage.line}: FROM: {exc}{hint}") from None
        return self._image_state(image), step_key(self.tenant, "", f"FROM {image.id}")

    def _image_state(self, image: Image) -> StageState:
        manifest = parse_manifest(self.store.blobs.read_bytes(image.digest))
        raw = parse_config(self.store.blobs.read_bytes(image.id)).raw
        layers = [
            LayerInfo(la.digest, diff_id, la.media_type, la.size)
            for la, diff_id in zip(manifest.layers, image.layers, strict=True)
        ]
        return StageState(layers, dict(raw.get("config") or {}), list(raw.get("history") or []))

    # -- the cache ------------------------------------------------------------------------------

    def _cached(
        self,
        parent: str,
        text: str,
        content: str,
        state: StageState,
        make: Callable[[StageState], StageState],
    ) -> tuple[StageState, str]:
        """The state after step ``text`` below ``parent``: from the cache, or ``make(copy of state)``."""
        key = step_key(self.tenant, parent, text, content)
        assert self.pin is not None
        self.pin.add(keys=[key])
        self.keys.add(key)
        hit = None if self.options.no_cache else self.cache.lookup(self.tenant, key)
        if hit is not None:
            self.cached += 1
            self.pin.add(digests=[la.digest for la in hit.layers])
            self.emit("info", "--> Using cache " + key[:12])
            return hit, key
        result = make(state.copy())
        self.cache.store(self.tenant, key, result)
        return result, key

    def _add_layer(self, state: StageState, upper: Path, text: str) -> StageState:
        """Append the diff of ``upper`` to ``state`` as a layer (or an empty-layer history entry)."""
        assert self.pin is not None
        with self.store.blobs.writer() as writer:
            stats = write_layer(upper, writer, self.uid_base)  # type: ignore[arg-type]
            staged = writer.finish()
            if stats.entries == 0 and stats.whiteouts == 0:
                writer.discard()
                state.history.append(_history(text, empty=True))
                return state
            self.pin.add(digests=[staged.digest])
            self.store.blobs.commit(staged)
        state.layers.append(LayerInfo(staged.digest, staged.digest, MT_LAYER_TAR, staged.size))
        state.history.append(_history(text))
        self.emit("info", f"--> layer {staged.digest[7:19]} ({staged.size} bytes)")
        return state

    def _lowers(self, state: StageState) -> list[Path]:
        return [
            self.store.unpacked_layer(LayerRef(la.media_type, la.digest, la.size), la.diff_id, self.uid_base)
            for la in state.layers
        ]

    # -- RUN ------------------------------------------------------------------------------------

    def _run_env(self, state: StageState, args: dict[str, str]) -> list[str]:
        env = env_dict(state.config)
        return [f"{k}={v}" for k, v in sorted(args.items()) if k not in env]

    def _run_text(self, state: StageState, inst: Instruction, args: dict[str, str]) -> str:
        argv = shell_form(state.config, inst)
        return f"RUN {json.dumps(argv)} {json.dumps(self._run_env(state, args))}"

    def _run(self, state: StageState, inst: Instruction, args: dict[str, str]) -> StageState:
        if not state.layers:
            raise inst.error("the stage has no files yet (FROM scratch); COPY a program in before RUN")
        self.runs += 1
        argv = shell_form(state.config, inst)
        with ExitStack() as cleanup:
            temp = self._commit(
                state, [], note=f"build {self.pin.id if self.pin else ''} step {self.step}", owner=self.tenant
            )
            cleanup.callback(self.store.remove, temp.id, force=True)
            spec = ContainerSpec(
                image=temp.id,
                command=tuple(argv),
                entrypoint=(),
                tenant=self.tenant,
                env=tuple(self._run_env(state, args)),
                user=str(state.config.get("User") or "") or None,
                workdir=str(state.config.get("WorkingDir") or "") or None,
                network="none",
                resources=capped(self.options.run_limits, self.engine.tenant_quota(self.tenant)),
                labels={BUILD_LABEL: self.pin.id if self.pin else ""},
            )
            try:
                container = self.engine.create(spec)
            except InvalidSpec as exc:
                raise inst.error(exc.message) from None
            except EngineError as exc:
                raise BuildFailed(f"Dockerfile line {inst.line}: RUN could not start: {exc}") from None
            cleanup.callback(self.engine.remove, container.id, force=True)
            tail: deque[str] = deque(maxlen=_OUTPUT_TAIL)
            pid_hits = self._pid_limit_hits(container.cgroup_path)
            with self._lock:
                self._check_time()
                self._running = container.id
            try:
                self.engine.start(container.id)
                if self._expired.is_set():  # the limit passed while it started
                    with contextlib.suppress(EngineError):
                        self.engine.kill(container.id)
                for line in self.engine.logs(container.id, follow=True):
                    tail.append(line.text)
                    self.emit(line.stream, line.text)
                done = self.engine.wait(container.id)
            finally:
                with self._lock:
                    self._running = None
            self._check_time()
            output = "\n".join(tail)
            if done.status == "oom-killed":
                raise QuotaExceeded(
                    f"Dockerfile line {inst.line}: RUN was stopped: it went over its memory limit "
                    f"({spec.resources.memory} bytes: the build limit, capped by tenant {self.tenant!r}'s "
                    f"quota) or the tenant's memory quota; raise them or use less memory.\n{output}"
                )
            if done.exit_code != 0 and self._pid_limit_hits(container.cgroup_path) > pid_hits:
                raise QuotaExceeded(
                    f"Dockerfile line {inst.line}: RUN failed (exit code {done.exit_code}) after hitting "
                    f"its process limit ({spec.resources.pids}: the build limit, capped by tenant "
                    f"{self.tenant!r}'s quota) or the tenant's process quota; raise them or start "
                    f"fewer processes.\n{output}"
                )
            if done.exit_code != 0:
                raise BuildFailed(
                    f"Dockerfile line {inst.line}: RUN {inst.text.partition(' ')[2]!r} failed with exit code "
                    f"{done.exit_code}; its last output:\n{output}"
                )
            upper = self.engine.containers.store.directory(container.id) / "upper"
            return self._add_layer(state, upper, inst.text)
        raise AssertionError("unreachable")  # pragma: no cover

    def _pid_limit_hits(self, container_cgroup: str) -> int:
        """How often a fork failed on a pids limit in the tenant's or the container's cgroup (``pids.events``;
        depending on the kernel the event is counted where the limit is or where the fork was)."""
        hits = 0
        for cgroup in (self.engine.containers.quotas.cgroup(self.tenant), container_cgroup):
            for directory in host_driver().dirs(cgroup):
                with contextlib.suppress(OSError, ValueError):
                    for line in (directory / "pids.events").read_text().splitlines():
                        name, _, value = line.partition(" ")
                        hits += int(value) if name == "max" else 0
        return hits

    # -- COPY and ADD ---------------------------------------------------------------------------

    def _copy(
        self,
        df: Dockerfile,
        stage: Stage,
        inst: Instruction,
        state: StageState,
        key: str,
        env: dict[str, str],
    ) -> tuple[StageState, str]:
        try:
            words = [process_word(w, env, df.escape) for w in inst.args]
            chown = process_word(inst.flags["chown"], env, df.escape) if "chown" in inst.flags else ""
        except InvalidSpec as exc:
            raise inst.error(exc.message) from None
        patterns, dest = words[:-1], words[-1]
        chmod = _chmod(inst)
        if inst.name == "ADD":
            for p in patterns:
                if _URL_RE.match(p):
                    raise inst.error(
                        f"remote source {p!r} is refused: hosts may have no internet access; "
                        "download it into the build context and ADD or COPY it from there"
                    )
        as_dir = dest.endswith(("/", "/.")) or dest == "."
        dest = posixpath.normpath(posixpath.join(str(state.config.get("WorkingDir") or "/"), dest))
        dest = dest.rstrip("/") + "/" if as_dir else dest
        text = (
            f"{inst.name} --chown={chown} --chmod={inst.flags.get('chmod', '')} {json.dumps(patterns)} {dest}"
        )
        force_dir = any(c in p for p in patterns for c in "*?[")
        source_ref = inst.flags.get("from")
        with ExitStack() as stack:
            if source_ref is None:
                sources = self._resolve(self.tree, patterns, inst)
                content = content_hash(sources)
            else:
                src_state = self._source_state(df, stage, inst, process_word(source_ref, env))
                content = "from " + " ".join(la.diff_id for la in src_state.layers)
                text += f" --from={content}"
                sources = []

            def make(s: StageState) -> StageState:
                nonlocal sources
                if source_ref is not None:
                    ws_src = stack.enter_context(
                        Workspace(self.engine.paths.tmp, self._lowers(src_state), self.uid_base)
                    )
                    sources = self._resolve(
                        SourceTree(ws_src.rootfs, what=f"stage {source_ref!r}"), patterns, inst
                    )
                with Workspace(self.engine.paths.tmp, self._lowers(s), self.uid_base) as ws:
                    owner = self._owner(ws.rootfs, chown, inst)
                    root = (self.uid_base, self.uid_base)
                    try:
                        if inst.name == "ADD":
                            self._add(ws.rootfs, sources, dest, owner, root, chmod, force_dir, stack)
                        else:
                            copy_sources(
                                ws.rootfs,
                                sources,
                                dest,
                                owner=owner,
                                root_owner=root,
                                chmod=chmod,
                                force_dir=force_dir,
                            )
                    except InvalidSpec as exc:
                        raise inst.error(exc.message) from None
                    return self._add_layer(s, ws.upper, inst.text)

            return self._cached(key, text, content, state, make)

    def _resolve(self, tree: SourceTree, patterns: list[str], inst: Instruction) -> list[Any]:
        try:
            return tree.resolve(patterns, f"Dockerfile line {inst.line}: {inst.name}")
        except InvalidSpec as exc:
            raise InvalidSpec(exc.message) from None

    def _source_state(self, df: Dockerfile, stage: Stage, inst: Instruction, ref: str) -> StageState:
        earlier = self._stage_ref(df, ref, stage, inst)
        if earlier is not None:
            return self.states[earlier.index][0]
        try:
            return self._image_state(self.store.resolve(ref, tenant=self.scope))
        except NotFound:
            if self.scope is None:
                raise inst.error(f"--from={ref}: no stage and no image of that name") from None
            raise inst.error(
                f"--from={ref}: no earlier stage and no image of that name for tenant {self.scope!r}; "
                f"copy from an earlier stage, a base image or one of the tenant's own images "
                f"({self.scope}/<name>:<tag>)"
            ) from None

    def _owner(self, rootfs: Path, chown: str, inst: Instruction) -> tuple[int, int]:
        if not chown:
            return (self.uid_base, self.uid_base)
        try:
            user = resolve_user(rootfs, chown)
        except InvalidSpec as exc:
            raise inst.error(f"--chown: {exc.message}") from None
        return (self.uid_base + user.uid, self.uid_base + user.gid)

    def _add(
        self,
        rootfs: Path,
        sources: list[Any],
        dest: str,
        owner: tuple[int, int],
        root: tuple[int, int],
        chmod: int | None,
        force_dir: bool,
        stack: ExitStack,
    ) -> None:
        """ADD: local tar archives (plain, gzip, bzip2, xz) are unpacked into ``dest``; the rest is copied."""
        plain = []
        for source in sources:
            archive = None if source.is_dir else _archive_compression(source.entries[0])
            if archive is None:
                plain.append(source)
                continue
            scratch = Path(tempfile.mkdtemp(dir=self.engine.paths.tmp, prefix=TMP_PREFIX + "add-"))
            stack.callback(remove_tree, scratch)
            with os.fdopen(source.entries[0].open(), "rb") as f:
                stream = Bounded(decompressed(f, archive), self.options.limits.context, f"ADD {source.name}")
                extract_layer(stream, scratch, uid_base=0, chown=False, whiteouts=False)
            unpacked = SourceTree(scratch, what=f"archive {source.name}").resolve(["."], "ADD")
            copy_sources(rootfs, unpacked, dest.rstrip("/") + "/", owner=owner, root_owner=root, chmod=chmod)
        if plain:
            copy_sources(rootfs, plain, dest, owner=owner, root_owner=root, chmod=chmod, force_dir=force_dir)

    # -- images ---------------------------------------------------------------------------------

    def _commit(
        self, state: StageState, tags: list[str], note: str = "", *, owner: str | None = None
    ) -> Image:
        """Store ``state`` as an image (tagged ``tags``; an untagged, uniquely noted one for RUN).

        The tags belong to ``owner`` (None: the base set). A RUN step's image is stored for
        the tenant the build runs as (``owner`` is that tenant), so its container can use it.
        """
        history = list(state.history)
        if note:
            history.append(_history(f"{note} {secrets.token_hex(8)}", empty=True))
        config_bytes = canonical_json(
            {
                "architecture": host_architecture(),
                "os": "linux",
                "created": utc_now_iso(),
                "config": {k: v for k, v in state.config.items() if v not in (None, [], {})},
                "rootfs": {"type": "layers", "diff_ids": [la.diff_id for la in state.layers]},
                "history": history,
            }
        )
        layers = [
            StagedLayer(
                blob=StagedBlob(la.digest, la.size, self.store.blobs.path(la.digest)),
                media_type=la.media_type,
                diff_id=la.diff_id,
                uncompressed_size=la.size,
                has_bin_sh=False,
            )
            for la in state.layers
        ]
        with Staging(self.store.blobs) as staging:
            staged = make_staged_image(staging, config_bytes, parse_config(config_bytes), layers, tags)
            return self.store.commit_staged([staged], staging, tenant=owner)[0]


def _history(text: str, *, empty: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"created": utc_now_iso(), "created_by": text, "comment": "hpctl build"}
    if empty:
        entry["empty_layer"] = True
    return entry


def _chmod(inst: Instruction) -> int | None:
    value = inst.flags.get("chmod")
    if value is None:
        return None
    if not re.match(r"^[0-7]{3,4}$", value):
        raise inst.error(f"--chmod={value}: use octal permissions such as 755")
    return int(value, 8)


def _archive_compression(entry: Entry) -> Compression | None:
    """The compression of a local tar archive ``entry``, or None when it is not a tar archive."""
    if not entry.is_file:
        return None
    with os.fdopen(entry.open(), "rb") as f:
        kind = sniff(f.read(6))
        if kind is Compression.NONE:
            f.seek(0)
            with contextlib.suppress(OSError, tarfile.TarError):
                return Compression.NONE if tarfile.is_tarfile(f) else None
            return None
    return kind if kind in (Compression.GZIP, Compression.BZIP2, Compression.XZ) else None

"""From a validated compose document to the :mod:`engine.compose.model`: every syntax normalized.

Problems are collected, not raised one at a time, so one report lists everything wrong.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import posixpath
import shlex
from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Any, TypeVar

from engine.build import beneath
from engine.build.beneath import Missing
from engine.build.config import go_duration_ns
from engine.cgroups.resources import parse_bytes
from engine.compose.interpolate import InterpolationError, Lookup, parse_env_file
from engine.compose.model import (
    BuildDef,
    HealthcheckDef,
    MountDef,
    NetworkDef,
    PortDef,
    SecretDef,
    SecretRef,
    Service,
    VolumeDef,
)
from engine.compose.problems import Problem
from engine.compose.support import SECURITY
from engine.compose.yamlload import Document, Path
from engine.errors import InvalidSpec
from engine.runtime.process import normalize_signal

T = TypeVar("T")

MAX_ENV_FILE = 1024 * 1024
MAX_REPLICAS = 100
RESTART = {"no", "always", "on-failure", "unless-stopped"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
HOST_BINDS = "host bind mounts are refused: " + SECURITY + " (the host's files); use a named volume or tmpfs"


class _Invalid(Exception):
    """One value that cannot be translated; becomes a Problem at the current path."""


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", ""):
        return False
    raise _Invalid(f"{value!r} is not a boolean: use true or false")


def _int(value: Any, low: int, high: int, what: str) -> int:
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else -1
    except ValueError:
        raise _Invalid(f"{what} {value!r} is not a whole number") from None
    if not low <= number <= high:
        raise _Invalid(f"{what} {value!r} must be between {low} and {high}")
    return number


def _seconds(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    nanos = go_duration_ns(str(value).strip())
    if nanos is None:
        raise _Invalid(f"invalid duration {value!r}: use e.g. 30s, 1m30s or 500ms")
    return nanos / 1e9


def _bytes(value: Any) -> int:
    try:
        return parse_bytes(str(value))
    except InvalidSpec as e:
        raise _Invalid(str(e)) from None


def _pairs(value: Any, lookup: Lookup | None = None) -> dict[str, str]:
    """A list_or_dict (``KEY=VAL`` list or mapping) as a dict; a bare key reads ``lookup``."""
    result: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if item is None:
                found = lookup(key) if lookup else None
                if found is not None:
                    result[key] = found
                elif lookup is None:
                    result[key] = ""
            else:
                result[key] = _text(item)
    elif isinstance(value, list):
        for item in value:
            key, eq, val = str(item).partition("=")
            if eq:
                result[key] = val
            elif lookup is not None:
                found = lookup(key)
                if found is not None:
                    result[key] = found
            else:
                result[key] = ""
    return result


def _argv(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return tuple(_text(v) for v in value)
    try:
        return tuple(shlex.split(str(value)))
    except ValueError as e:
        raise _Invalid(f"cannot split {value!r} into words: {e}") from None


def _port_range(text: str, what: str) -> list[int]:
    low, dash, high = text.partition("-")
    first = _int(low, 1, 65535, what)
    last = _int(high, 1, 65535, what) if dash else first
    if last < first:
        raise _Invalid(f"{what} range {text!r} runs backwards")
    return list(range(first, last + 1))


def _host_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise _Invalid(f"{text!r} is not an IP address") from None


def _long_port(value: dict[str, Any]) -> PortDef:
    protocol = _text(value.get("protocol") or "tcp").lower()
    if protocol not in ("tcp", "udp"):
        raise _Invalid(f"protocol {protocol!r}: use tcp or udp")
    published = value.get("published")
    host_ip = value.get("host_ip")
    return PortDef(
        target=_int(value.get("target"), 1, 65535, "target port"),
        published=None if published is None else _int(published, 1, 65535, "published port"),
        protocol=protocol,
        host_ip=_host_ip(str(host_ip)) if host_ip else None,
    )


def parse_port(value: Any) -> list[PortDef]:
    """One ``ports:`` item (number, ``[IP:][HOST:]CONTAINER[/PROTO]`` with ranges, or mapping)."""
    if isinstance(value, dict):
        return [_long_port(value)]
    text = _text(value).strip()
    body, _, protocol = text.partition("/")
    protocol = (protocol or "tcp").lower()
    if protocol not in ("tcp", "udp"):
        raise _Invalid(f"port {text!r}: protocol must be tcp or udp")
    host_ip: str | None = None
    if body.startswith("["):  # [::1]:80:80
        end = body.find("]")
        host_ip, body = _host_ip(body[: end + 1]), body[end + 2 :]
    parts = body.split(":")
    if len(parts) == 3:
        host_ip, parts = _host_ip(parts[0]), parts[1:]
    if len(parts) > 2 or not parts[-1]:
        raise _Invalid(f"port {text!r}: use [IP:][HOST:]CONTAINER[/udp], e.g. 8080:80 or 80")
    targets = _port_range(parts[-1], "container port")
    published: list[int | None] = [None] * len(targets)
    if len(parts) == 2 and parts[0]:
        hosts = _port_range(parts[0], "host port")
        if len(hosts) != len(targets):
            raise _Invalid(f"port {text!r}: the host and container ranges differ in length")
        published = list(hosts)
    return [PortDef(t, p, protocol, host_ip) for t, p in zip(targets, published, strict=True)]


def parse_expose(value: Any) -> list[int]:
    """One ``expose:`` item: ``80``, ``"80/tcp"``, ``"8000-8010"``."""
    body = _text(value).partition("/")[0]
    return _port_range(body, "exposed port")


def read_env_file(base_dir: FsPath, relative: str, lookup: Lookup) -> dict[str, str]:
    """Parse the env file ``relative`` inside ``base_dir``: opened beneath it (a '..' or a symlink
    out is refused as InvalidSpec), a regular file of at most :data:`MAX_ENV_FILE` bytes."""
    hint = "keep it under the directory of the compose file"
    data = beneath.read_file(base_dir, relative, what="the project directory", limit=MAX_ENV_FILE, hint=hint)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSpec(f"{relative!r} is not UTF-8 text") from None
    return parse_env_file(text, lookup)


class Translator:
    """Builds the model of one document; ``problems`` collects everything wrong."""

    def __init__(
        self,
        doc: Document,
        *,
        lookup: Lookup,
        base_dir: FsPath | None,
        allow_host_binds: bool,
    ) -> None:
        self.doc = doc
        self.lookup = lookup
        self.base_dir = base_dir
        self.allow_host_binds = allow_host_binds
        self.problems: list[Problem] = []

    def problem(self, path: Path, message: str) -> None:
        self.problems.append(self.doc.problem(path, message))

    def field(self, path: Path, parse: Callable[[], T], default: T) -> T:
        """``parse()``, or ``default`` with a problem at ``path`` when it raises _Invalid."""
        try:
            return parse()
        except _Invalid as e:
            self.problem(path, str(e))
            return default

    # ---- paths -----------------------------------------------------------------------------

    def confine(self, path: Path, relative: str, what: str, *, within: FsPath | None = None) -> FsPath | None:
        """``relative`` resolved (symlinks followed) inside the base dir, else a problem."""
        if self.base_dir is None:
            self.problem(path, f"{what} needs the compose file's directory; none was given")
            return None
        root = self.base_dir.resolve()
        try:
            resolved = ((within or root) / relative).resolve(strict=True)
        except FileNotFoundError:
            self.problem(path, f"{what} {relative!r} does not exist in the project directory")
            return None
        except (OSError, RuntimeError) as e:
            self.problem(path, f"{what} {relative!r} cannot be resolved: {e}")
            return None
        if not resolved.is_relative_to(root):
            self.problem(
                path,
                f"{what} {relative!r} leads out of the project directory "
                "(through '..' or a symbolic link pointing outside); keep it under the directory "
                "of the compose file",
            )
            return None
        return resolved

    def read_env_file(self, path: Path, relative: str, required: bool) -> dict[str, str]:
        """An env_file's variables, read beneath the base dir (race-free: :mod:`engine.build.beneath`)."""
        if self.base_dir is None:
            self.problem(path, "env_file needs the compose file's directory; none was given")
            return {}
        try:
            return read_env_file(self.base_dir, relative, self.lookup)
        except Missing as e:
            if required:
                self.problem(path, f"env_file: {e}")
        except (InvalidSpec, InterpolationError) as e:
            self.problem(path, f"env_file: {e}")
        return {}

    # ---- services --------------------------------------------------------------------------

    def service(self, name: str, spec: dict[str, Any]) -> Service:
        p: Path = ("services", name)
        build = self.build((*p, "build"), spec["build"]) if "build" in spec else None
        image = _text(spec["image"]) if spec.get("image") is not None else None
        if image is None and "build" not in spec:
            self.problem(p, "a service needs image: or build:")
        deploy = spec.get("deploy") or {}
        limits = (deploy.get("resources") or {}).get("limits") or {}
        lp: Path = (*p, "deploy", "resources", "limits")
        return Service(
            name=name,
            image=image,
            build=build,
            command=self.field((*p, "command"), lambda: _argv(spec.get("command")), None),
            entrypoint=self.field((*p, "entrypoint"), lambda: _argv(spec.get("entrypoint")), None),
            environment=self.environment(p, spec),
            ports=self.ports(p, spec.get("ports") or []),
            expose=self.expose(p, spec.get("expose") or []),
            volumes=self.mounts(p, spec.get("volumes") or []),
            networks=self.service_networks(p, spec.get("networks")),
            depends_on=self.depends_on(p, spec.get("depends_on")),
            healthcheck=self.healthcheck((*p, "healthcheck"), spec.get("healthcheck")),
            restart=self.field((*p, "restart"), lambda: self.restart(spec.get("restart")), "no"),
            replicas=self.field(
                (*p, "deploy", "replicas"),
                lambda: _int(deploy.get("replicas", 1), 0, MAX_REPLICAS, "replicas"),
                1,
            ),
            cpus=self.field((*lp, "cpus"), lambda: self.cpus(limits.get("cpus")), None),
            memory_bytes=self.field(
                (*lp, "memory"), lambda: _bytes(limits["memory"]) if "memory" in limits else None, None
            ),
            pids=self.field(
                (*lp, "pids"),
                lambda: _int(limits["pids"], 1, 1 << 22, "pids") if "pids" in limits else None,
                None,
            ),
            secrets=self.secret_refs(p, spec.get("secrets") or []),
            labels=_pairs(spec.get("labels")),
            user=_text(spec["user"]) if spec.get("user") is not None else None,
            working_dir=self.field((*p, "working_dir"), lambda: self.abspath(spec.get("working_dir")), None),
            stop_signal=self.field((*p, "stop_signal"), lambda: self.signal(spec.get("stop_signal")), None),
            stop_grace_period=self.field(
                (*p, "stop_grace_period"),
                lambda: _seconds(spec["stop_grace_period"]) if "stop_grace_period" in spec else None,
                None,
            ),
            init=self.field((*p, "init"), lambda: _bool(spec.get("init", False)), False),
            line=self.doc.line(p) or 0,
        )

    @staticmethod
    def abspath(value: Any) -> str | None:
        if value is None:
            return None
        text = _text(value)
        if not text.startswith("/"):
            raise _Invalid(f"{text!r} must be an absolute path")
        return text

    @staticmethod
    def signal(value: Any) -> str | None:
        if value is None:
            return None
        try:
            return normalize_signal(_text(value))
        except InvalidSpec as e:
            raise _Invalid(str(e)) from None

    @staticmethod
    def cpus(value: Any) -> float | None:
        if value is None:
            return None
        try:
            cpus = float(value)
        except ValueError:
            raise _Invalid(f"cpus {value!r} is not a number") from None
        if not 0.01 <= cpus <= 1024:
            raise _Invalid(f"cpus {value!r} must be between 0.01 and 1024")
        return cpus

    @staticmethod
    def restart(value: Any) -> str:
        text = _text(value) if value is not None else "no"
        policy, _, count = text.partition(":")
        if policy not in RESTART or (count and (policy != "on-failure" or not count.isdigit())):
            raise _Invalid(f"restart {text!r}: use no, always, on-failure[:N] or unless-stopped")
        return text

    def build(self, path: Path, value: Any) -> BuildDef | None:
        spec = {"context": value} if isinstance(value, str) else dict(value)
        context = _text(spec.get("context") or ".")
        if "://" in context or context.startswith(("git@", "github.com/")):
            self.problem(
                (*path, "context") if isinstance(value, dict) else path,
                "remote build contexts are not supported",
            )
            return None
        where = (*path, "context") if isinstance(value, dict) and "context" in value else path
        root = self.confine(where, context, "build context")
        if root is None:
            return None
        if not root.is_dir():
            self.problem(where, f"build context {context!r} is not a directory")
            return None
        dockerfile = _text(spec.get("dockerfile") or "Dockerfile")
        found = self.confine((*path, "dockerfile"), dockerfile, "dockerfile", within=root)
        if found is None:
            return None
        return BuildDef(
            context=str(root),
            dockerfile=dockerfile,
            args=_pairs(spec.get("args"), self.lookup),
            target=_text(spec["target"]) if spec.get("target") else None,
        )

    def environment(self, path: Path, spec: dict[str, Any]) -> dict[str, str]:
        result: dict[str, str] = {}
        files = spec.get("env_file")
        items = [files] if isinstance(files, str) else list(files or [])
        for i, item in enumerate(items):
            where = (*path, "env_file") if isinstance(files, str) else (*path, "env_file", i)
            if isinstance(item, dict):
                required = self.field(where, functools.partial(_bool, item.get("required", True)), True)
                result.update(self.read_env_file(where, _text(item.get("path")), required))
            else:
                result.update(self.read_env_file(where, _text(item), True))
        result.update(_pairs(spec.get("environment"), self.lookup))
        return result

    def ports(self, path: Path, items: list[Any]) -> tuple[PortDef, ...]:
        result: list[PortDef] = []
        for i, item in enumerate(items):
            result += self.field((*path, "ports", i), functools.partial(parse_port, item), [])
        return tuple(result)

    def expose(self, path: Path, items: list[Any]) -> tuple[int, ...]:
        result: list[int] = []
        for i, item in enumerate(items):
            result += self.field((*path, "expose", i), functools.partial(parse_expose, item), [])
        return tuple(dict.fromkeys(result))

    def mounts(self, path: Path, items: list[Any]) -> tuple[MountDef, ...]:
        result: list[MountDef] = []
        for i, item in enumerate(items):
            mount = self.field((*path, "volumes", i), functools.partial(self.mount, item), None)
            if mount is not None and mount.type == "bind":
                mount = self.bind((*path, "volumes", i), mount)
            if mount is not None:
                result.append(mount)
        targets = [m.target for m in result]
        for target in {t for t in targets if targets.count(t) > 1}:
            self.problem((*path, "volumes"), f"two mounts at {target!r}")
        return tuple(result)

    def mount(self, value: Any) -> MountDef:
        if isinstance(value, dict):
            kind = _text(value.get("type"))
            if kind not in ("volume", "tmpfs", "bind"):
                raise _Invalid(f"mount type {kind!r} is refused: use volume or tmpfs")
            source = _text(value["source"]) if value.get("source") else None
            if kind == "tmpfs" and source:
                raise _Invalid("a tmpfs mount takes no source")
            if kind == "bind" and not source:
                raise _Invalid("a bind mount needs a source")
            tmpfs = value.get("tmpfs") or {}
            if tmpfs and kind != "tmpfs":
                raise _Invalid("tmpfs: options only go with type: tmpfs")
            return MountDef(
                type=kind,
                source=source,
                target=self.target(value.get("target")),
                read_only=_bool(value.get("read_only", False)),
                tmpfs_size=_bytes(tmpfs["size"]) if "size" in tmpfs else None,
            )
        parts = _text(value).split(":")
        if len(parts) > 3:
            raise _Invalid(f"volume {value!r}: use [SOURCE:]TARGET[:ro]")
        if len(parts) == 1:
            return MountDef("volume", None, self.target(parts[0]))
        source, target = parts[0], parts[1]
        read_only = False
        if len(parts) == 3:
            for option in parts[2].split(","):
                if option not in ("ro", "rw"):
                    raise _Invalid(f"volume option {option!r} is not supported: use ro or rw")
                read_only = option == "ro"
        kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        return MountDef(kind, source, self.target(target), read_only)

    @staticmethod
    def target(value: Any) -> str:
        text = _text(value)
        if not text.startswith("/"):
            raise _Invalid(f"mount target {text!r} must be an absolute path in the container")
        return posixpath.normpath(text)

    def bind(self, path: Path, mount: MountDef) -> MountDef | None:
        if not self.allow_host_binds:
            self.problem(path, HOST_BINDS)
            return None
        source = os.path.expanduser(mount.source or "")
        if not source.startswith("/"):
            if self.base_dir is None:
                self.problem(path, "a relative bind source needs the compose file's directory")
                return None
            source = str((self.base_dir / source).resolve())
        return MountDef("bind", source, mount.target, mount.read_only)

    def service_networks(self, path: Path, value: Any) -> dict[str, tuple[str, ...]]:
        if not value:
            return {"default": ()}
        if isinstance(value, list):
            return {_text(n): () for n in value}
        result: dict[str, tuple[str, ...]] = {}
        for net, spec in value.items():
            aliases = (spec or {}).get("aliases") or []
            result[net] = tuple(_text(a) for a in aliases)
        return result

    def depends_on(self, path: Path, value: Any) -> dict[str, str]:
        if not value:
            return {}
        if isinstance(value, list):
            return {_text(n): "service_started" for n in value}
        result = {}
        for name, spec in value.items():
            spec = spec or {}
            required = self.field(
                (*path, "depends_on", name, "required"),
                functools.partial(_bool, spec.get("required", True)),
                True,
            )
            if not required:
                self.problem(
                    (*path, "depends_on", name, "required"),
                    "required: false is not supported: every dependency is required",
                )
            result[name] = _text(spec.get("condition") or "service_started")
        return result

    def healthcheck(self, path: Path, value: Any) -> HealthcheckDef | None:
        if value is None:
            return None
        if self.field((*path, "disable"), lambda: _bool(value.get("disable", False)), False):
            return HealthcheckDef(disabled=True)
        test = value.get("test")
        shell = False
        argv: tuple[str, ...] = ()
        if isinstance(test, str):
            shell, argv = True, (test,)
        elif isinstance(test, list) and test:
            kind, rest = _text(test[0]), tuple(_text(t) for t in test[1:])
            if kind == "NONE":
                return HealthcheckDef(disabled=True)
            if kind == "CMD-SHELL":
                shell, argv = True, (" ".join(rest),)
            elif kind == "CMD":
                argv = rest
            else:
                self.problem((*path, "test"), "test must start with CMD, CMD-SHELL or NONE")
            if not rest:
                self.problem((*path, "test"), f"{kind} needs a command")
        elif test is not None:
            self.problem((*path, "test"), "test must be a string or a list")

        def seconds(key: str) -> float | None:
            return self.field((*path, key), lambda: _seconds(value[key]) if key in value else None, None)

        return HealthcheckDef(
            test=argv,
            shell=shell,
            interval=seconds("interval"),
            timeout=seconds("timeout"),
            start_period=seconds("start_period"),
            retries=self.field(
                (*path, "retries"),
                lambda: _int(value["retries"], 1, 1000, "retries") if "retries" in value else None,
                None,
            ),
        )

    def secret_refs(self, path: Path, items: list[Any]) -> tuple[SecretRef, ...]:
        result: list[SecretRef] = []
        for i, item in enumerate(items):
            source = _text(item.get("source") if isinstance(item, dict) else item)
            target = _text(item.get("target") or source) if isinstance(item, dict) else source
            target = target if target.startswith("/") else f"/run/secrets/{target}"
            if not source:
                self.problem((*path, "secrets", i), "a secret needs a source")
                continue
            result.append(SecretRef(source, posixpath.normpath(target)))
        return tuple(result)

    # ---- top level -------------------------------------------------------------------------

    def network(self, name: str, spec: Any) -> NetworkDef:
        spec = spec or {}
        p: Path = ("networks", name)
        driver = _text(spec.get("driver") or "bridge")
        if driver != "bridge":
            self.problem(
                (*p, "driver"), f"driver {driver!r} is refused: use bridge (hosts are joined automatically)"
            )
        return NetworkDef(
            name=name,
            external=self.field((*p, "external"), lambda: self.external(spec.get("external")), False),
            internal=self.field((*p, "internal"), lambda: _bool(spec.get("internal", False)), False),
            labels=_pairs(spec.get("labels")),
        )

    @staticmethod
    def external(value: Any) -> bool:
        if isinstance(value, dict):
            raise _Invalid("external: takes true or false here (external names are not supported)")
        return _bool(value or False)

    def volume(self, name: str, spec: Any) -> VolumeDef:
        spec = spec or {}
        return VolumeDef(
            name=name,
            external=self.field(
                ("volumes", name, "external"), lambda: self.external(spec.get("external")), False
            ),
            labels=_pairs(spec.get("labels")),
        )

    def secret(self, name: str, spec: Any) -> SecretDef:
        p: Path = ("secrets", name)
        external = self.field((*p, "external"), lambda: self.external(spec.get("external")), False)
        file = spec.get("file")
        if external == bool(file):
            self.problem(p, "a secret needs exactly one of file: or external: true")
            return SecretDef(name, external)
        if file:
            resolved = self.confine((*p, "file"), _text(file), "secret file")
            if resolved is not None and not resolved.is_file():
                self.problem((*p, "file"), f"secret file {file!r} is not a regular file")
            return SecretDef(name, False, str(resolved) if resolved else None)
        return SecretDef(name, True)

"""Run a compose :class:`Project` on the engine directly: what ``hpctl compose`` does.

Everything a project makes carries labels (:data:`LABEL_PROJECT`, ...), so ``up`` again finds
it: a service whose digest (:func:`service_digest` plus its image id) is unchanged keeps its
containers; a changed one is recreated; one gone from the file is removed. Containers are
``<project>-<service>-<n>``; networks and volumes ``<project>_<key>`` (external ones by key).
Services start in :func:`start_order` waves; ``depends_on`` conditions are waited for with
the Docker API's health probe (:func:`engine.dockerapi.health.probe`).
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from engine.build.model import BuildOptions
from engine.cgroups.resources import Resources, parse_cpus
from engine.compose.digest import service_digest
from engine.compose.graph import start_order
from engine.compose.model import HealthcheckDef, Project, Service
from engine.dockerapi import health
from engine.dockerapi.create import DEFAULT_TMPFS_SIZE, Healthcheck
from engine.dockerapi.record import HealthState
from engine.engine import Engine
from engine.errors import EngineError, ImageNotFound, InvalidSpec, NotFound
from engine.networks.manager import validate_network_name
from engine.networks.model import Network, NetworkJoin, PortMapping
from engine.networks.ports import free_port
from engine.runtime.model import DEFAULT_TENANT, Container, ContainerSpec, SecretFile
from engine.volumes.model import Volume
from engine.volumes.spec import MountSpec

LABEL_PROJECT = "org.hostpanel.compose.project"
LABEL_SERVICE = "org.hostpanel.compose.service"
LABEL_NUMBER = "org.hostpanel.compose.number"
LABEL_DIGEST = "org.hostpanel.compose.digest"
LABEL_KEY = "org.hostpanel.compose.key"  # a network's or volume's key in the file

DEFAULT_STOP_TIMEOUT = 10
PARALLEL = 4  # services of one start-order wave created at once
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
_SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

Say = Callable[[str], None]


class DependencyFailed(EngineError):
    """A ``depends_on`` condition can no longer hold (exited, unhealthy, timed out)."""


def project_name(text: str) -> str:
    """A project name as compose normalizes a directory name: lowercase, ``[a-z0-9_-]``."""
    name = re.sub(r"[^a-z0-9_-]", "", text.lower()).lstrip("_-")
    if not _SLUG_RE.match(name):
        raise InvalidSpec(
            f"invalid project name {text!r}: use 1-41 lowercase letters, digits, '-' or '_' (-p NAME)"
        )
    return name


def to_docker_check(check: HealthcheckDef) -> Healthcheck:
    """The Docker API's form of a compose healthcheck (durations in nanoseconds, 0 = default)."""

    def ns(seconds: float | None) -> int:
        return int(seconds * 1e9) if seconds else 0

    test = ("CMD-SHELL", *check.test) if check.shell else ("CMD", *check.test)
    return Healthcheck(
        test=test,
        interval=ns(check.interval),
        timeout=ns(check.timeout),
        retries=check.retries or 0,
        start_period=ns(check.start_period),
    )


def wait_healthy(engine: Engine, container: Container, check: HealthcheckDef, deadline: float) -> None:
    """Probe ``container`` until a check passes; DependencyFailed when it exits, turns
    unhealthy (``retries`` failures in a row after the start period) or ``deadline`` passes."""
    docker_check = to_docker_check(check)
    state = HealthState()
    began = time.monotonic()
    retries = check.retries or health.DEFAULT_RETRIES
    interval = check.interval or health.DEFAULT_INTERVAL
    start_period = check.start_period or 0.0
    while True:
        current = engine.get(container.id)
        if not current.is_running:
            raise DependencyFailed(
                f"{current.name} exited (code {current.exit_code}) before its healthcheck passed"
            )
        entry = health.probe(engine, container.id, docker_check)
        if entry["ExitCode"] == 0:
            return
        in_start_period = time.monotonic() - began < start_period
        if not in_start_period:
            state.record(entry, retries)
        if state.status == "unhealthy":
            output = str(entry.get("Output", "")).strip()[-200:]
            raise DependencyFailed(f"{current.name} is unhealthy after {retries} failed checks: {output}")
        pause = min(interval, health.DEFAULT_START_INTERVAL) if in_start_period else interval
        if time.monotonic() + pause > deadline:
            raise DependencyFailed(f"{current.name} was not healthy in time")
        time.sleep(pause)


@dataclass
class _Prepared:
    """What ``up`` resolved before changing anything."""

    images: dict[str, str] = field(default_factory=dict)  # service -> image id
    refs: dict[str, str] = field(default_factory=dict)  # service -> image reference to run
    secrets: dict[str, bytes] = field(default_factory=dict)
    new_networks: list[str] = field(default_factory=list)  # keys
    new_volumes: list[str] = field(default_factory=list)


class Deployment:
    """One compose project on ``engine``, for ``tenant`` (the operator's ``default``)."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        *,
        tenant: str = DEFAULT_TENANT,
        say: Say = lambda _text: None,
    ) -> None:
        self.engine = engine
        self.name = project_name(name)
        self.tenant = tenant
        self.say = say

    # ---- what the project has --------------------------------------------------------------

    def containers(self, service: str | None = None) -> list[Container]:
        """The project's containers (of ``service``), by service then number."""
        found = [
            c
            for c in self.engine.list(all=True)
            if c.labels.get(LABEL_PROJECT) == self.name
            and (service is None or c.labels.get(LABEL_SERVICE) == service)
        ]
        return sorted(
            found, key=lambda c: (c.labels.get(LABEL_SERVICE, ""), int(c.labels.get(LABEL_NUMBER, 0)))
        )

    def networks(self) -> list[Network]:
        """The networks the project made."""
        return [n for n in self.engine.network_list(self.tenant) if n.labels.get(LABEL_PROJECT) == self.name]

    def volumes(self) -> list[Volume]:
        """The volumes the project made."""
        return [v for v in self.engine.volume_list(self.tenant) if v.labels.get(LABEL_PROJECT) == self.name]

    def network_name(self, project: Project, key: str) -> str:
        """The engine network of ``networks.<key>``."""
        return key if project.networks[key].external else f"{self.name}_{key}"

    def volume_name(self, project: Project, key: str) -> str:
        """The engine volume of ``volumes.<key>``."""
        return key if project.volumes[key].external else f"{self.name}_{key}"

    # ---- up --------------------------------------------------------------------------------

    def up(self, project: Project, *, timeout: float = 300.0, build: bool = False) -> None:
        """Create or update everything ``project`` describes, in depends_on order.

        A ``build:`` service's image is built when missing, or always with ``build`` (like
        ``docker compose up --build``); a new image recreates the service's containers.

        Everything that can be checked is checked before the first change (names, external
        networks and volumes, secret files, images pulled or built). Raises EngineError
        subclasses; DependencyFailed when a condition cannot hold.
        """
        deadline = time.monotonic() + timeout
        prepared = self._prepare(project, build)
        self._create_networks_and_volumes(project, prepared)
        for container in self.containers():
            if container.labels.get(LABEL_SERVICE) not in project.services:
                self.say(f"removing {container.name} (service gone from the file)")
                self._remove(container)
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            for wave in start_order(project):  # the services of a wave come up side by side
                futures = [
                    pool.submit(self._bring_up, project, project.services[name], prepared, deadline)
                    for name in wave
                ]
                failures = [e for e in (f.exception() for f in futures) if e is not None]
                if failures:
                    raise failures[0]
        for name, service in project.services.items():
            if service.restart != "no":
                self.say(f"note: {name}: restart: {service.restart} is not enforced by hpctl compose")

    def _bring_up(self, project: Project, service: Service, prepared: _Prepared, deadline: float) -> None:
        self._wait_for_dependencies(project, service, deadline)
        self._converge(project, service, prepared)

    def _prepare(self, project: Project, build: bool) -> _Prepared:
        prepared = _Prepared()
        for key, net in project.networks.items():
            name = self.network_name(project, key)
            if net.external:
                self.engine.network(name)  # NotFound names it
            else:
                try:
                    validate_network_name(name)
                except InvalidSpec as e:
                    raise InvalidSpec(f"networks.{key}: {e}") from None
        for key, vol in project.volumes.items():
            if vol.external:
                self.engine.volume(self.volume_name(project, key))
        for key, secret in project.secrets.items():
            if secret.external or secret.file is None:
                raise InvalidSpec(
                    f"secrets.{key}: hpctl compose reads secrets from file:; "
                    "external secrets are the panel's tenant secrets"
                )
            prepared.secrets[key] = Path(secret.file).read_bytes()
        for service in project.services.values():
            for ref in service.secrets:
                parent, base = posixpath.split(ref.target)
                if parent != "/run/secrets" or not _SECRET_NAME_RE.match(base):
                    raise InvalidSpec(
                        f"services.{service.name}.secrets: target {ref.target!r} is not supported: "
                        "secrets are files /run/secrets/<name>"
                    )
        networks = {n.name: n.labels for n in self.engine.network_list(self.tenant)}
        ours = {k: self.network_name(project, k) for k, n in project.networks.items() if not n.external}
        prepared.new_networks = self._to_create("networks", ours, networks)
        volumes = {v.name: v.labels for v in self.engine.volume_list(self.tenant)}
        ours = {k: self.volume_name(project, k) for k, v in project.volumes.items() if not v.external}
        prepared.new_volumes = self._to_create("volumes", ours, volumes)
        for service in project.services.values():
            prepared.refs[service.name], prepared.images[service.name] = self._image(service, build)
        return prepared

    def _image(self, service: Service, build: bool) -> tuple[str, str]:
        if service.build is not None:
            tag = service.image or f"{self.name}-{service.name}:latest"
            if not build:
                with contextlib.suppress(ImageNotFound):
                    return tag, self.engine.image(tag).id
            self.say(f"building {tag}")
            result = self.engine.build(
                BuildOptions(
                    context=Path(service.build.context),
                    tag=tag,
                    dockerfile=Path(service.build.dockerfile),
                    build_args=dict(service.build.args),
                    target=service.build.target,
                    context_within=Path(service.build.context),
                )
            )
            return tag, result.image.id
        assert service.image is not None
        try:
            return service.image, self.engine.image(service.image).id
        except ImageNotFound:
            self.say(f"pulling {service.image}")
            report = self.engine.pull(service.image)
            return service.image, report.image_id

    def _to_create(
        self, section: str, keys: dict[str, str], existing: dict[str, dict[str, str]]
    ) -> list[str]:
        """The keys (of ``{key: engine name}``) whose network or volume must be made; raises
        InvalidSpec for one that exists and is not this project's."""
        missing = []
        for key, name in keys.items():
            if name not in existing:
                missing.append(key)
            elif existing[name].get(LABEL_PROJECT) != self.name:
                raise InvalidSpec(f"{section}.{key}: {name!r} exists and is not this project's")
        return missing

    def _create_networks_and_volumes(self, project: Project, prepared: _Prepared) -> None:
        for key in prepared.new_networks:
            name = self.network_name(project, key)
            self.say(f"creating network {name}")
            labels = {**project.networks[key].labels, LABEL_PROJECT: self.name, LABEL_KEY: key}
            internal = project.networks[key].internal
            self.engine.network_create(name, tenant=self.tenant, internal=internal, labels=labels)
        for key in prepared.new_volumes:
            name = self.volume_name(project, key)
            self.say(f"creating volume {name}")
            labels = {**project.volumes[key].labels, LABEL_PROJECT: self.name, LABEL_KEY: key}
            self.engine.volume_create(name, tenant=self.tenant, labels=labels)

    def _wait_for_dependencies(self, project: Project, service: Service, deadline: float) -> None:
        for dep, condition in service.depends_on.items():
            containers = self.containers(dep)
            if condition == "service_healthy":
                check = project.services[dep].healthcheck
                assert check is not None  # load_project refuses service_healthy without one
                for container in containers:
                    self.say(f"waiting for {container.name} to be healthy")
                    wait_healthy(self.engine, container, check, deadline)
            elif condition == "service_completed_successfully":
                for container in containers:
                    self.say(f"waiting for {container.name} to complete")
                    done = self.engine.wait(container.id, timeout=max(deadline - time.monotonic(), 0.1))
                    if done.is_running:
                        raise DependencyFailed(f"{container.name} did not complete in time")
                    if done.exit_code != 0:
                        raise DependencyFailed(
                            f"{service.name} depends on {dep} completing successfully; "
                            f"{container.name} exited with code {done.exit_code}"
                        )

    def digest(self, service: Service, image_id: str) -> str:
        """The label value that decides whether a container is kept: its spec and its image."""
        return hashlib.sha256(f"{service_digest(service)}\n{image_id}".encode()).hexdigest()

    def _converge(self, project: Project, service: Service, prepared: _Prepared) -> None:
        digest = self.digest(service, prepared.images[service.name])
        current = {int(c.labels.get(LABEL_NUMBER, 0)): c for c in self.containers(service.name)}
        for number, container in sorted(current.items()):
            if number > service.replicas:
                self.say(f"removing {container.name} (scaled down)")
                self._remove(container)
        for number in range(1, service.replicas + 1):
            old = current.get(number)
            if old is not None and old.labels.get(LABEL_DIGEST) == digest:
                if not old.is_running:
                    self.say(f"starting {old.name}")
                    self.engine.start(old.id)
                continue
            if old is not None:
                self.say(f"recreating {old.name}")
                self._remove(old)
            spec = self.container_spec(project, service, number, digest, prepared)
            self.say(f"creating {spec.name}")
            self.engine.run(spec)

    def container_spec(
        self, project: Project, service: Service, number: int, digest: str, prepared: _Prepared
    ) -> ContainerSpec:
        """The engine spec of replica ``number`` of ``service``."""
        mounts: list[MountSpec] = []
        for mount in service.volumes:
            if mount.type == "tmpfs":
                mounts.append(MountSpec("tmpfs", mount.target, size=mount.tmpfs_size or DEFAULT_TMPFS_SIZE))
            elif mount.type == "bind":
                mounts.append(MountSpec("bind", mount.target, mount.source or "", mount.read_only))
            else:
                source = (
                    self.volume_name(project, mount.source)
                    if mount.source is not None
                    else self._anonymous_volume(service, number, mount.target)
                )
                mounts.append(MountSpec("volume", mount.target, source, mount.read_only))
        ports = tuple(
            PortMapping(
                host_port=p.published or free_port(p.protocol, p.host_ip or "0.0.0.0"),
                container_port=p.target,
                protocol=p.protocol,
                host_ip=p.host_ip or "0.0.0.0",
            )
            for p in service.ports
        )
        return ContainerSpec(
            image=prepared.refs[service.name],
            command=service.command or (),
            entrypoint=service.entrypoint,
            name=f"{self.name}-{service.name}-{number}",
            tenant=self.tenant,
            env=tuple(f"{k}={v}" for k, v in service.environment.items()),
            workdir=service.working_dir,
            user=service.user,
            init=service.init,
            stop_signal=service.stop_signal,
            stop_timeout=round(service.stop_grace_period)
            if service.stop_grace_period is not None
            else DEFAULT_STOP_TIMEOUT,
            labels={
                **service.labels,
                LABEL_PROJECT: self.name,
                LABEL_SERVICE: service.name,
                LABEL_NUMBER: str(number),
                LABEL_DIGEST: digest,
            },
            resources=Resources(
                memory=service.memory_bytes,
                cpu_quota=parse_cpus(str(service.cpus)) if service.cpus else None,
                pids=service.pids,
            ),
            networks=tuple(
                NetworkJoin(self.network_name(project, key), tuple(dict.fromkeys((service.name, *aliases))))
                for key, aliases in service.networks.items()
            ),
            ports=ports,
            allow_privileged=any(m.kind == "bind" for m in mounts),
            mounts=tuple(mounts),
            secrets=tuple(
                SecretFile(posixpath.basename(ref.target), prepared.secrets[ref.source])
                for ref in service.secrets
            ),
        )

    def _anonymous_volume(self, service: Service, number: int, target: str) -> str:
        name = f"{self.name}_{service.name}-{number}_{hashlib.sha256(target.encode()).hexdigest()[:12]}"
        try:
            self.engine.volume(name)
        except NotFound:
            self.engine.volume_create(
                name, tenant=self.tenant, labels={LABEL_PROJECT: self.name, LABEL_KEY: ""}
            )
        return name

    def _remove(self, container: Container) -> None:
        if container.is_running:
            self.engine.stop(container.id)
        self.engine.remove(container.id, force=True)

    # ---- down ------------------------------------------------------------------------------

    def down(self, *, volumes: bool = False) -> None:
        """Stop and remove the project's containers and networks (and volumes with ``volumes``)."""
        containers = self.containers()
        for container in containers:
            self.say(f"removing {container.name}")
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            list(pool.map(self._remove, containers))
        for network in self.networks():
            self.say(f"removing network {network.name}")
            self.engine.network_remove(network.name)
        if volumes:
            for volume in self.volumes():
                self.say(f"removing volume {volume.name}")
                self.engine.volume_remove(volume.name)

"""An in-memory stand-in for engine.Engine, enough for reconcile's logic (no root needed)."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from engine.cgroups.resources import Resources
from engine.errors import Conflict, ContainerNotFound, ImageNotFound, LimitsNotSet, NotFound, VolumeNotFound
from engine.networks.model import RemoteEndpoint
from engine.runtime.model import Container, ContainerSpec, ExecSpec
from engine.runtime.tenant_disks import TenantDisk
from engine.volumes.model import Volume

_ids = itertools.count(1)
T = TypeVar("T")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeProcess:
    def __init__(self, code: int) -> None:
        self.code = code

    def wait(self, timeout: float | None = None) -> int:
        return self.code

    def kill(self) -> None:
        pass


class FakeImages:
    def __init__(self) -> None:
        self.references = {"busybox:latest"}
        self.imported: list[tuple[Path, str]] = []
        self.contents: dict[str, bytes] = {}  # reference -> the archive's bytes as imported

    def import_archive(
        self, path: Path, reference: str | None = None, *, tenant: str | None = None
    ) -> list[str]:
        assert reference is not None and tenant is not None and reference.startswith(f"{tenant}/")
        self.imported.append((path, reference))
        self.contents[reference] = Path(path).read_bytes()
        self.references.add(reference)
        return [reference]


@dataclass
class FakeOverlay:
    name: str
    tenant: str
    subnet: str
    vni: int
    peers: list[str]
    ip_range: str
    labels: dict[str, str]
    remote: tuple[RemoteEndpoint, ...] = ()
    given: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]


class FakeEngine:
    def __init__(self) -> None:
        self.containers: dict[str, Container] = {}
        self.specs: dict[str, ContainerSpec] = {}
        self.runs = 0
        self.execs: list[tuple[str, ...]] = []
        self.exec_exit_code = 0
        self.images = FakeImages()
        self.volumes: dict[str, Volume] = {}
        self.egress: dict[str, tuple[str, ...]] = {}  # tenant -> allow-list
        self.egress_sets = 0
        self.protected: dict[str, tuple[str, ...]] = {}
        self.protected_sets = 0
        self.egress_at_run: dict[str, tuple[str, ...]] = {}  # container id -> its tenant's list then
        self.quotas: dict[str, Resources] = {}
        self.disks: dict[str, int] = {}  # like an engine that requires tenant limits
        self.nets: dict[str, FakeOverlay] = {}  # overlay networks by engine name
        self.ensures = 0
        self.remote_sets = 0
        self.networks = self  # engine.networks.remote_endpoints

    def network(self, name: str) -> FakeOverlay:
        if name not in self.nets:
            raise NotFound(f"no such network: {name}")
        return self.nets[name]

    def network_ensure_overlay(self, name: str, **o: Any) -> FakeOverlay:
        self.ensures += 1
        if name in self.nets:
            net = self.nets[name]
            assert (net.subnet, net.vni, net.tenant) == (o["subnet"], o["vni"], o["tenant"])
            net.peers = list(o["peers"])
        else:
            self.nets[name] = net = FakeOverlay(
                name, o["tenant"], o["subnet"], o["vni"], list(o["peers"]), o["ip_range"], o["labels"]
            )
        return net

    def network_set_remote(self, name: str, entries: Sequence[RemoteEndpoint]) -> None:
        self.remote_sets += 1
        self.network(name).remote = tuple(entries)

    def remote_endpoints(self, name: str) -> tuple[RemoteEndpoint, ...]:
        return self.network(name).remote

    def network_list(self, tenant: str | None = None) -> list[FakeOverlay]:
        return list(self.nets.values())

    def network_remove(self, name: str) -> FakeOverlay:
        return self.nets.pop(name)

    def tenant_quota(self, tenant: str) -> Resources:
        return self.quotas.get(tenant, Resources())

    def set_tenant_quota(self, tenant: str, quota: Resources) -> Resources:
        self.quotas[tenant] = quota
        return quota

    def tenant_storage(self, tenant: str) -> TenantDisk:
        if tenant not in self.disks:
            raise NotFound(f"tenant {tenant} has no root file system disk on this host")
        return TenantDisk(tenant, self.disks[tenant], 0, False)

    def set_tenant_storage(self, tenant: str, size: int) -> TenantDisk:
        self.disks[tenant] = size
        return self.tenant_storage(tenant)

    def egress_protected(self) -> dict[str, tuple[str, ...]]:
        return dict(self.protected)

    def set_egress_protected(self, entries: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
        self.protected_sets += 1
        self.protected = {a: tuple(p) for a, p in entries.items()}
        return dict(self.protected)

    def tenant_egress_allow(self, tenant: str) -> tuple[str, ...]:
        return self.egress.get(tenant, ())

    def set_tenant_egress_allow(self, tenant: str, cidrs: tuple[str, ...]) -> tuple[str, ...]:
        self.egress_sets += 1
        self.egress[tenant] = tuple(cidrs)
        return self.egress[tenant]

    def image(self, reference: str, *, tenant: str | None = None) -> str:
        if reference not in self.images.references:
            raise ImageNotFound(f"no image {reference}")
        return reference

    def list(self, *, all: bool = False) -> list[Container]:
        return [c for c in self.containers.values() if all or c.is_running]

    def get(self, ref: str) -> Container:
        for c in self.containers.values():
            if ref in (c.id, c.name):
                return c
        raise ContainerNotFound(f"no container {ref}")

    def run(self, spec: ContainerSpec) -> Container:
        if spec.labels and spec.tenant not in self.quotas:  # the agent's (an operator's own has no labels)
            raise LimitsNotSet(f"tenant {spec.tenant} has no resource quota on this host")
        if any(c.name == spec.name for c in self.containers.values()):
            raise Conflict(f"name {spec.name} in use")
        cid = f"{next(_ids):064x}"
        c = Container(
            id=cid,
            name=spec.name or cid[:12],
            tenant=spec.tenant,
            image=spec.image,
            image_id="sha256:x",
            command=list(spec.command),
            status="running",
            created=_now(),
            started_at=_now(),
            labels=dict(spec.labels),
            env=list(spec.env),
        )
        self.containers[cid] = c
        self.specs[cid] = spec
        self.egress_at_run[cid] = self.egress.get(spec.tenant, ())
        self.runs += 1
        self.containers[cid] = c = replace(c, networks=self._attachments(spec))
        return c

    def _attachments(self, spec: ContainerSpec) -> list[dict[str, Any]]:
        """Overlay networks give each container the next address of the host's range."""
        attachments = []
        for join in spec.networks:
            net = self.nets.get(join.name)
            if net is None:
                assert join.name == "bridge"
                continue
            ip = ipaddress.IPv4Network(net.ip_range)[next(net.given)]
            attachments.append({"network": join.name, "ip_address": str(ip), "aliases": list(join.aliases)})
        return attachments

    def start(self, ref: str) -> Container:
        c = self.get(ref)
        if c.is_running:
            raise Conflict("running")
        self.containers[c.id] = c = replace(
            c, status="running", started_at=_now(), finished_at="", exit_code=None
        )
        return c

    def stop(self, ref: str, timeout: int | None = None) -> Container:
        c = self.get(ref)
        self.containers[c.id] = c = replace(c, status="exited", exit_code=143, finished_at=_now())
        return c

    def restart(self, ref: str, timeout: int | None = None) -> Container:
        self.stop(ref)
        return self.start(ref)

    def remove(self, ref: str, *, force: bool = False) -> Container:
        c = self.get(ref)
        del self.containers[c.id]
        return c

    def exec(self, ref: str, spec: ExecSpec, **streams: object) -> FakeProcess:
        c = self.get(ref)
        if not c.is_running:
            raise Conflict("not running")
        self.execs.append(spec.command)
        return FakeProcess(self.exec_exit_code)

    def volume(self, name: str) -> Volume:
        if name not in self.volumes:
            raise VolumeNotFound(f"no volume {name}")
        return self.volumes[name]

    def volume_create(
        self,
        name: str,
        *,
        tenant: str = "default",
        size: int | None = None,
        labels: dict[str, str] | None = None,
    ) -> Volume:
        self.volumes[name] = Volume(
            name=name,
            tenant=tenant,
            driver="ext4",
            size=size or 0,
            uid_base=0,
            created=_now(),
            labels=labels or {},
        )
        return self.volumes[name]

    def volume_list(self, tenant: str | None = None) -> list[Volume]:
        return [v for v in self.volumes.values() if tenant is None or v.tenant == tenant]

    def volume_remove(self, name: str, *, force: bool = False) -> Volume:
        """As the engine's: a Conflict while a container (running or not) mounts it, unless ``force``."""
        users = [
            cid
            for cid in self.containers
            if cid in self.specs
            and any(m.kind == "volume" and m.source == name for m in self.specs[cid].mounts)
        ]
        if users and not force:
            raise Conflict(f"volume {name!r} is in use by container(s) {', '.join(u[:12] for u in users)}")
        return self.volumes.pop(name)

    def crash(self, ref: str, exit_code: int = 1) -> None:
        c = self.get(ref)
        self.containers[c.id] = replace(c, status="exited", exit_code=exit_code, finished_at=_now())


class NetEngine(FakeEngine):
    """FakeEngine whose network namespace is this process's (a probe connects to 127.0.0.1)."""

    def in_network_namespace(self, cid: str, fn: Callable[[], T], timeout: float) -> T:
        assert cid in self.containers
        return fn()

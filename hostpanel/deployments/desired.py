"""What a host should run: its replicas' container specs, as one JSON document, and the engine
spec made from one entry of it.

One path for every agent. :func:`replica_document` turns a placed replica into plain data (no
secret value: only the secrets' names, the host fetches them sealed to its own key); the
internal API serves :func:`host_document` (``GET /internal/v1/host/desired``) to an enrolled
agent, which has no database; an agent that is not enrolled builds the same document from its
rows. Both make the engine spec with :func:`container_spec`.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import logging
import socket
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from engine.cgroups.resources import CPU_PERIOD_US, Resources
from engine.networks.model import NetworkJoin, PortMapping
from engine.runtime.model import ContainerSpec, SecretFile
from engine.volumes.spec import MountSpec
from hostpanel.deployments.host_images import document_archives
from hostpanel.deployments.models import App, Release, Replica
from hostpanel.deployments.networking import names_of, overlay_state
from hostpanel.errors import InvalidRequest, ServiceError
from hostpanel.hosts import fencing, lifecycle
from hostpanel.hosts.models import Host
from hostpanel.hosts.services import pending_purges
from hostpanel.networks.models import Network
from hostpanel.networks.services import host_range
from hostpanel.registry.services import agent_pull_token, pull_source
from hostpanel.secrets.models import Secret
from hostpanel.tenants.limits import quota_limits
from hostpanel.tenants.models import Quota
from hostpanel.volumes import held
from hostpanel.volumes.models import Volume

log = logging.getLogger(__name__)

# Sent (``host=``) after a host's report was written: the edge publishes its routing table if
# replicas changed (hostpanel/edge/apps.py).
replicas_reported = Signal()
# Sent (``host=``) after a host's agent started (``POST host/start``, committed): the edge sends it
# the last published routing table (hostpanel/edge/apps.py).
agent_started = Signal()
# Sent (``host=``) as a host's document is made: each receiver answers a dict of fields to add,
# what an app above deployments tells the host (usage: ``usage_tenants``, hostpanel/usage/apps.py).
document_fields = Signal()

LABEL_TENANT = "org.hostpanel.tenant"
LABEL_APP = "org.hostpanel.app"
LABEL_REPLICA = "org.hostpanel.replica"
LABEL_RELEASE = "org.hostpanel.release"
LABEL_SPEC = "org.hostpanel.spec"  # digest of what the container was made from
# on a container: the tenant networks it joined, "name=engine name" comma-separated
LABEL_NETWORKS = "org.hostpanel.networks"

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def release_digest(release: Release, ports: list[dict[str, Any]]) -> str:
    """A digest of what shapes the container: the release (not replicas or restart policy), host
    ports and, with secrets, their versions (``updated_at``, never the values): a replaced value
    rolls the app's containers onto it. Scaling, or a rollback to an identical spec, keeps them."""
    fields: dict[str, Any] = {**release.container_shape(), "published": ports}
    if release.secrets:
        versions = Secret.objects.filter(
            tenant__apps__releases=release, name__in=[s["name"] for s in release.secrets]
        ).values_list("name", "updated_at")
        fields["secret_versions"] = sorted((name, updated.isoformat()) for name, updated in versions)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def host_digest(digest: str, boot_bound: bool) -> str:
    """The spec label on this host: with secrets (``boot_bound``) this host's boot is part of it,
    so after a reboot (the engine keeps secrets only in memory) the containers are made anew.
    Runs on the host (its boot id)."""
    if not boot_bound:
        return digest
    boot = BOOT_ID.read_text().strip()
    return hashlib.sha256(f"{digest}:{boot}".encode()).hexdigest()[:32]


def replica_networks(replica: Replica) -> list[Network]:
    """The tenant networks the replica's release joins, in its order (InvalidRequest for a name the
    tenant no longer has: a network is not deleted while an app uses it)."""
    names = [str(j["name"]) for j in replica.release.networks or []]
    if not names:
        return []
    found = {n.name: n for n in Network.objects.filter(tenant_id=replica.app.tenant_id, name__in=names)}
    missing = [n for n in names if n not in found]
    if missing:
        raise InvalidRequest(
            f"the tenant has no network(s) {', '.join(missing)} any more; deploy without them"
        )
    return [found[n] for n in names]


def volume_entries(replica: Replica) -> list[dict[str, Any]]:
    """The release's volume mounts, each with what its host needs to create the volume the first
    time (its panel id, size cap and the proof that the host was given it, :func:`held.proof`, with
    which it asks whether it was deleted later; None for a volume the tenant no longer has)."""
    tenant = replica.app.tenant
    names = [v["name"] for v in replica.release.volumes]
    rows = {v.name: v for v in Volume.objects.filter(tenant=tenant, name__in=names)} if names else {}
    return [
        {
            "source": f"{tenant.slug}.{v['name']}",
            "target": v["path"],
            "read_only": bool(v.get("read_only", False)),
            "id": rows[v["name"]].pk if v["name"] in rows else None,
            "size": rows[v["name"]].size_bytes if v["name"] in rows else None,
            "proof": held.proof(rows[v["name"]].pk) if v["name"] in rows else None,
        }
        for v in replica.release.volumes
    ]


def wanted_running(replica: Replica, host: Host | None = None) -> bool:
    """Whether the replica's container should run (its app is not stopped, no stop was asked
    for, its host is not evacuated)."""
    out = host is not None and lifecycle.out_of_service(host.lifecycle)
    return not (replica.app.state == App.State.STOPPED or replica.stop_requested or out)


def replica_document(replica: Replica) -> dict[str, Any]:
    """The replica's container spec as plain data: everything but the secrets' values."""
    release, app = replica.release, replica.app
    tenant = app.tenant
    networks = replica_networks(replica)
    bridge = "bridge" if replica.ports or release.network == "bridge" else "none"
    return {
        "replica": replica.pk,
        "generation": replica.generation,
        "name": replica.container_name,
        "hostname": f"{app.name}-{replica.index}",
        "tenant": tenant.slug,
        "app": app.pk,
        "release": release.pk,
        "running": wanted_running(replica, replica.host),
        "image": release.image,
        "command": list(release.command),
        "entrypoint": None if release.entrypoint is None else list(release.entrypoint),
        "workdir": release.working_dir or None,
        "user": release.user or None,
        "init": release.init,
        "stop_signal": release.stop_signal or None,
        "stop_timeout": release.stop_grace_seconds,
        "env": [f"{k}={v}" for k, v in sorted(release.env.items())],
        "secrets": [{"name": s["name"], "env": s.get("env") or ""} for s in release.secrets],
        "resources": {
            "memory": release.memory_bytes,
            "cpu_quota": release.cpu_millis * CPU_PERIOD_US // 1000,
            "pids": release.pids,
        },
        "volumes": volume_entries(replica),
        "tmpfs": [{"target": t["path"], "size": t["size_bytes"]} for t in release.tmpfs],
        "network": bridge,
        "networks": [
            {"name": n.name, "engine_name": n.engine_name, "aliases": names_of(replica, n.name)}
            for n in networks
        ],
        "ports": [
            {"host_port": p["host_port"], "container_port": p["container_port"], "protocol": p["protocol"]}
            for p in replica.ports
        ],
        "restart_policy": release.restart_policy,
        "restart_max_retries": release.restart_max_retries,
        "restart_generation": app.restart_generation,  # above the recorded one: restart the app's containers
        "health_check": release.health_check or None,
        "http_port": release.http_port,
        "recorded": recorded_state(replica),
        "labels": {
            **release.labels,  # the tenant's own (never org.hostpanel.*: process.check_labels)
            LABEL_TENANT: tenant.slug,
            LABEL_APP: str(app.pk),
            LABEL_REPLICA: str(replica.pk),
            LABEL_RELEASE: str(release.pk),
            fencing.LABEL_GENERATION: str(replica.generation),
            **({LABEL_NETWORKS: ",".join(f"{n.name}={n.engine_name}" for n in networks)} if networks else {}),
        },
        "digest": release_digest(release, replica.ports),
        "boot_bound": bool(release.secrets),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def recorded_state(replica: Replica) -> dict[str, Any]:
    """What the panel records of the replica's state, restarts and health, as its host last reported
    them (:data:`REPORTED_FIELDS`): the agent decides its restart back-off and health checks from
    these."""
    return {
        "state": replica.state,
        "restart_count": replica.restart_count,
        "crash_streak": replica.crash_streak,
        "next_restart_at": _iso(replica.next_restart_at),
        "health": replica.health,
        "health_failures": replica.health_failures,
        "health_checked_at": _iso(replica.health_checked_at),
        "ready": replica.ready,
        "addresses": replica.network_addresses,
        "restart_generation": replica.restart_generation,
        "restart_requested": replica.restart_requested,  # taken with POST host/claim (restart: true)
    }


def container_spec(doc: dict[str, Any], values: dict[str, str]) -> ContainerSpec:
    """The engine spec of one entry of the document, with its secrets' plain ``values`` (opened on
    the host). Tenants can set nothing privileged: only these fields exist."""
    names = list(dict.fromkeys(s["name"] for s in doc["secrets"]))
    env = list(doc["env"]) + [f"{s['env']}={values[s['name']]}" for s in doc["secrets"] if s["env"]]
    bridge = doc["network"]
    joins = tuple(NetworkJoin(n["engine_name"], tuple(n["aliases"])) for n in doc["networks"])
    return ContainerSpec(
        image=doc["image"],
        command=tuple(doc["command"]),
        entrypoint=None if doc["entrypoint"] is None else tuple(doc["entrypoint"]),
        workdir=doc["workdir"],
        user=doc["user"],
        init=doc["init"],
        stop_signal=doc["stop_signal"],
        stop_timeout=doc["stop_timeout"],
        name=doc["name"],
        tenant=doc["tenant"],
        env=tuple(env),
        hostname=doc["hostname"],
        resources=Resources(**doc["resources"]),
        mounts=tuple(
            MountSpec(kind="volume", source=v["source"], target=v["target"], read_only=v["read_only"])
            for v in doc["volumes"]
        )
        + tuple(MountSpec(kind="tmpfs", target=t["target"], size=t["size"]) for t in doc["tmpfs"]),
        network=bridge,
        # "bridge" (the tenant's per-host bridge: outbound traffic, published ports) first, as it
        # gives the default route; then the tenant networks, carried across hosts
        networks=((NetworkJoin(bridge),) if bridge == "bridge" else ()) + joins if joins else (),
        ports=tuple(PortMapping(**p) for p in doc["ports"]),
        secrets=tuple(SecretFile(name=name, data=values[name].encode()) for name in names),
        labels={**doc["labels"], LABEL_SPEC: host_digest(doc["digest"], doc["boot_bound"])},
    )


def tenant_entry(quota: Quota) -> dict[str, Any]:
    """What a host applies of a tenant of its replicas: its limits and egress allow-list."""
    return {"limits": quota_limits(quota), "egress_allow": list(quota.egress_allow or [])}


def host_document(host: Host) -> dict[str, Any]:
    """What ``host`` should run: its placed replicas' specs, its tenants' limits and egress
    allow-lists and its protected hosts, where it gets their images (``images``: the registry's,
    ``archives``: uploaded ones, :mod:`host_images`), the deleted tenants it should purge now
    (``purge_tenants``: :func:`hosts.services.pending_purges`), and what the apps above add
    (:data:`document_fields`); nothing of any other host's replicas or purges."""
    replicas = Replica.objects.filter(host=host).select_related("app", "app__tenant", "release", "host")
    entries, problems = [], []
    networks: dict[str, dict[str, Any]] = {}
    for replica in replicas.order_by("pk"):
        try:
            entries.append(replica_document(replica))
        except InvalidRequest as exc:
            problems.append({"replica": replica.pk, "generation": replica.generation, "message": str(exc)})
            continue
        for network in replica_networks(replica):
            if network.engine_name not in networks:
                networks[network.engine_name] = _overlay_or_error(network, host)
    slugs = {e["tenant"] for e in entries}
    quotas = Quota.objects.filter(tenant__slug__in=slugs).select_related("tenant")
    extra: dict[str, Any] = {}
    for _, fields in document_fields.send(sender=Host, host=host):
        extra.update(fields)
    return {
        **extra,
        "host": host.name,
        "out_of_service": lifecycle.out_of_service(host.lifecycle),
        "replicas": entries,
        "unplaceable": problems,
        "tenants": {
            q.tenant.slug: {"limits": quota_limits(q), "egress_allow": list(q.egress_allow or [])}
            for q in quotas
        },
        "protected": protected_hosts(host),
        "networks": networks,
        "purge_tenants": pending_purges(host),
        **image_sources(host, {e["image"] for e in entries}),
        "archives": document_archives(entries),  # uploaded ones: GET /internal/v1/images/archive
    }


def _overlay_or_error(network: Network, host: Host) -> dict[str, Any]:
    """The host's engine network of ``network`` (:func:`networking.overlay_state`), or why it cannot
    have one (``{"engine_name": ..., "error": ...}``: its replicas on that network fail with it)."""
    try:
        return overlay_state(network, host)
    except ServiceError as exc:
        return {"engine_name": network.engine_name, "error": str(exc)}


def image_sources(host: Host, references: set[str]) -> dict[str, Any]:
    """Where the host pulls those of ``references`` the panel's registry holds, with its pull
    token (only when there is one to pull)."""
    sources = {ref: asdict(source) for ref in sorted(references) if (source := pull_source(ref)) is not None}
    return {"images": sources, "pull_token": agent_pull_token(host) if sources else ""}


@functools.lru_cache(maxsize=256)
def _addresses_of(name: str) -> tuple[str, ...]:
    """The non-loopback addresses ``name`` (an address or a host name) stands for; resolved once."""
    try:
        found = {ipaddress.ip_address(name)}
    except ValueError:
        try:
            found = {ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(name, None)}
        except (OSError, UnicodeError, ValueError):
            log.warning("cannot resolve %r to protect it from containers", name)
            return ()
    return tuple(sorted(str(a) for a in found if not (a.is_loopback or a.is_unspecified)))


def protected_hosts(host: Host) -> dict[str, list[str]]:
    """What containers on ``host`` may reach of the control plane and the pool's other hosts.

    The panel's Redis and database hosts and every other host of the pool,
    each with only the ports published there (other tenants' public
    services); everything else on them stays closed.
    """
    entries: dict[str, set[str]] = {}
    for url_host in (urlsplit(settings.REDIS_URL).hostname, settings.DATABASES["default"].get("HOST")):
        for address in _addresses_of(url_host) if url_host else ():
            entries.setdefault(address, set())
    others = {h.pk: _addresses_of(h.address) for h in Host.objects.exclude(pk=host.pk).exclude(address="")}
    for address in (a for addresses in others.values() for a in addresses):
        entries.setdefault(address, set())
    for replica in Replica.objects.filter(host_id__in=others).exclude(ports=[]).only("host_id", "ports"):
        for address in others[replica.host_id]:
            entries[address] |= {f"{p['host_port']}/{p['protocol']}" for p in replica.ports}
    return {address: sorted(ports) for address, ports in entries.items()}


UPDATE_CLAIM_SECONDS = 120.0


def claim_update(replica: Replica) -> bool:
    """Rolling replacement: claim the right to replace this replica's running container.

    Only one replica of an app is replaced at a time, across all hosts (the
    app row is locked while claiming); a claim older than UPDATE_CLAIM_SECONDS
    (its agent died) no longer blocks the others. Agents ask for it with
    ``POST /internal/v1/host/claim``.
    """
    now = timezone.now()
    with transaction.atomic():
        App.objects.select_for_update().filter(pk=replica.app_id).first()
        busy = (
            Replica.objects.filter(app_id=replica.app_id, state=Replica.State.UPDATING)
            .exclude(pk=replica.pk)
            .filter(updated_at__gte=now - timedelta(seconds=UPDATE_CLAIM_SECONDS))
            .exists()
        )
        if busy:
            return False
        Replica.objects.filter(pk=replica.pk).update(state=Replica.State.UPDATING, updated_at=now)
    return True


def claim_restart(replica: Replica) -> bool:
    """Take the request to restart this one container (so it is done once, and a request made while
    restarting is kept for the next reconcile): the agent's ``POST /internal/v1/host/claim`` with
    ``restart: true``."""
    taken = Replica.objects.filter(pk=replica.pk, restart_requested=True).update(restart_requested=False)
    replica.restart_requested = False
    return bool(taken)


REPORTED_STATES = (
    Replica.State.RUNNING,
    Replica.State.STOPPED,
    Replica.State.EXITED,
    Replica.State.FAILED,
    Replica.State.BACKOFF,
)
REPORTED_FIELDS = (
    "state",
    "engine_id",
    "exit_code",
    "started_at",
    "finished_at",
    "message",
    "restart_count",
    "crash_streak",
    "next_restart_at",
    "health",
    "health_failures",
    "health_checked_at",
    "ready",
    "restart_generation",  # the app's restart this host did (never above the app's own)
)


def _check_addresses(host: Host, entry: dict[str, Any]) -> None:
    """InvalidRequest unless each reported address of the entry's replica is on a tenant network
    its release joins, inside the slice of that network's subnet its host gives out. A replica not
    placed on ``host`` at that generation is not checked (its entry is ignored)."""
    replica = (
        Replica.objects.filter(pk=entry["replica"], host=host, generation=entry["generation"])
        .select_related("app__tenant", "release")
        .first()
    )
    if replica is None:
        return
    joined = {n.name: n for n in replica_networks(replica)}
    for name, address in entry["addresses"].items():
        network = joined.get(name)
        if network is None:
            raise InvalidRequest(f"replica {replica.pk}: it is on no tenant network {name!r}")
        if ipaddress.IPv4Address(address) not in ipaddress.IPv4Network(host_range(network, host.pk)):
            raise InvalidRequest(
                f"replica {replica.pk}: {address} is not in this host's slice of network {name!r}"
            )


def _unchanged(row: Replica, entry: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether the report ``entry`` (its ``values`` to write) would change nothing of ``row``, the
    replica as it is placed on the reporting host now."""
    if row.generation != entry["generation"]:
        return False
    if values.get("restart_generation", 0) > row.app.restart_generation:
        return False  # refused by the update's own condition
    return all(getattr(row, key) == value for key, value in values.items())


def apply_report(host: Host, entries: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """Write the states ``host`` reports of its replicas (``POST /internal/v1/host/report``).

    Each entry is written only to a replica placed on ``host`` now, at the reported generation
    (one moved or placed anew meanwhile is left alone): a host can never write another host's
    replica. Tenant network addresses must lie on the replica's networks, in this host's slice
    (InvalidRequest, and nothing is written); an entry claiming an app restart the app never asked
    for (``restart_generation`` above the app's) is ignored. Returns (the ids written, the ids
    ignored)."""
    written: list[int] = []
    ignored: list[int] = []
    for entry in entries:
        if "addresses" in entry:
            _check_addresses(host, entry)  # all refused before any is written
    rows = {
        r.pk: r
        for r in Replica.objects.filter(pk__in=[e["replica"] for e in entries], host=host).select_related(
            "app"
        )
    }
    for entry in entries:
        values = {k: entry[k] for k in REPORTED_FIELDS if k in entry}
        if "addresses" in entry:
            values["addresses"] = (
                {"host": host.pk, "networks": entry["addresses"]} if entry["addresses"] else {}
            )
        row = rows.get(entry["replica"])
        if row is not None and _unchanged(row, entry, values):
            written.append(entry["replica"])  # a steady state costs no write
            continue
        values["updated_at"] = timezone.now()
        mine = Replica.objects.filter(pk=entry["replica"], host=host, generation=entry["generation"])
        if "restart_generation" in entry:
            mine = mine.filter(app__restart_generation__gte=entry["restart_generation"])
        done = mine.update(**values)
        (written if done else ignored).append(entry["replica"])
    replicas_reported.send(sender=Host, host=host)
    return written, ignored

"""What HostPanel takes from a compose file, and why it refuses the rest.

The schema accepts far more than we run. Every key the spec allows but we do not support is
refused, all of them in one report, each with its line and a reason; security-relevant ones say
so. ``x-*`` extension keys are allowed anywhere the spec allows them, and ignored (per spec).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.compose.problems import Problem
from engine.compose.yamlload import Document, Path

# Allowed keys per structural mapping: a nested dict is the keys allowed under that key.
Tree = Mapping[str, "Tree | None"]

SERVICE: Tree = {
    "image": None,
    "build": {"context": None, "dockerfile": None, "args": None, "target": None},
    "command": None,
    "entrypoint": None,
    "environment": None,
    "env_file": None,
    "ports": None,
    "expose": None,
    "volumes": None,
    "networks": None,
    "depends_on": None,
    "healthcheck": {
        "test": None,
        "interval": None,
        "timeout": None,
        "start_period": None,
        "retries": None,
        "disable": None,
    },
    "restart": None,
    "deploy": {"replicas": None, "resources": {"limits": {"cpus": None, "memory": None, "pids": None}}},
    "secrets": None,
    "labels": None,
    "user": None,
    "working_dir": None,
    "stop_signal": None,
    "stop_grace_period": None,
    "init": None,
}
# Keys inside list items and per-name mappings of a service.
PORT_KEYS = {"target", "published", "protocol", "host_ip"}
MOUNT_KEYS = {"type", "source", "target", "read_only", "tmpfs"}
TMPFS_KEYS = {"size"}
SERVICE_NETWORK_KEYS = {"aliases"}
DEPENDS_KEYS = {"condition", "required"}
SECRET_REF_KEYS = {"source", "target"}
ENV_FILE_KEYS = {"path", "required"}

TOP: Tree = {
    "version": None,
    "name": None,
    "services": None,
    "networks": None,
    "volumes": None,
    "secrets": None,
}
NETWORK: Tree = {"external": None, "internal": None, "labels": None, "driver": None}
VOLUME: Tree = {"external": None, "labels": None}
SECRET: Tree = {"file": None, "external": None}

SECURITY = "security: it would weaken the container's isolation from the host or other tenants"
REASONS = {
    "privileged": SECURITY + " (full root on the host)",
    "cap_add": SECURITY + " (extra kernel capabilities)",
    "devices": SECURITY + " (host devices)",
    "device_cgroup_rules": SECURITY + " (host devices)",
    "network_mode": SECURITY + " (another namespace's network); use networks:",
    "pid": SECURITY + " (another PID namespace)",
    "ipc": SECURITY + " (another IPC namespace)",
    "uts": SECURITY + " (the host's UTS namespace)",
    "userns_mode": SECURITY + " (user namespace remapping is the engine's)",
    "security_opt": SECURITY + " (seccomp/AppArmor profiles are the engine's)",
    "sysctls": SECURITY + " (kernel parameters)",
    "cgroup": SECURITY + " (the host's cgroup namespace)",
    "cgroup_parent": SECURITY + " (cgroup placement is the engine's)",
    "volumes_from": SECURITY + " (another container's mounts)",
    "use_api_socket": SECURITY + " (the engine's API socket inside the container)",
    "runtime": SECURITY + " (the OCI runtime is the engine's)",
    "oom_kill_disable": SECURITY + " (it lets one container exhaust host memory)",
    "gpus": "not supported: no GPU access",
    "external_links": "not supported: services reach each other by name on their networks",
    "links": "not supported: services reach each other by name on their networks",
    "container_name": "not supported: containers are named <project>-<service>-<n>",
    "scale": "not supported: use deploy.replicas",
    "cpus": "not supported here: use deploy.resources.limits.cpus",
    "mem_limit": "not supported here: use deploy.resources.limits.memory",
    "pids_limit": "not supported here: use deploy.resources.limits.pids",
    "tmpfs": "not supported here: use volumes: with type: tmpfs",
    "extends": "not supported: merge the files into one before deploying",
    "include": "not supported: merge the files into one before deploying",
    "profiles": "not supported: every service of the file is deployed",
    "configs": "not supported: use secrets:",
    "models": "not supported: no model runner",
    "provider": "not supported: no service providers",
    "build.privileged": SECURITY + " (a privileged build)",
    "build.entitlements": SECURITY + " (build entitlements)",
    "build.network": SECURITY + " (builds run without network choices)",
    "build.ssh": SECURITY + " (the host's SSH agent or keys)",
    "build.secrets": "not supported: build secrets",
    "build.additional_contexts": "not supported: one context per build",
    "build.dockerfile_inline": "not supported: put the Dockerfile in the context",
    "deploy.placement": "not supported: the panel places replicas",
    "deploy.mode": "not supported: services are replicated (deploy.replicas)",
    "deploy.resources.reservations": "not supported: only limits",
    "healthcheck.start_interval": "not supported: only interval, timeout, start_period and retries",
    "networks.driver_opts": SECURITY + " (driver options are the engine's)",
    "networks.ipam": "not supported: addresses are assigned by the engine",
    "networks.name": "not supported: the network is named <project>_<key>; external networks by key",
    "volumes.name": "not supported: the volume is named <project>_<key>; external volumes by key",
    "volumes.driver": "not supported: volumes are the engine's local volumes",
    "volumes.driver_opts": SECURITY + " (driver options can mount host paths)",
    "secrets.environment": "not supported: use file: or an external (tenant) secret",
}
GENERIC = "not supported by HostPanel"


def reason(key: str, context: str = "") -> str:
    """Why ``key`` (under ``context``, e.g. 'build') is refused."""
    if context:
        found = REASONS.get(f"{context}.{key}")
        if found:
            return found
        return GENERIC
    return REASONS.get(key, GENERIC)


class _Checker:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def refuse(self, path: Path, key: str, context: str = "") -> None:
        self.problems.append(self.doc.problem((*path, key), f"{key!r} is refused: {reason(key, context)}"))

    def tree(self, value: Any, allowed: Tree, path: Path, context: str = "") -> None:
        if not isinstance(value, dict):
            return
        for key, sub in value.items():
            if key.startswith("x-"):
                continue
            if key not in allowed:
                self.refuse(path, key, context)
            elif allowed[key] is not None:
                inner = allowed[key]
                assert inner is not None
                self.tree(sub, inner, (*path, key), f"{context}.{key}" if context else key)

    def keys(self, value: Any, allowed: set[str], path: Path, context: str) -> None:
        if isinstance(value, dict):
            for key in value:
                if not key.startswith("x-") and key not in allowed:
                    self.refuse(path, key, context)

    def items(self, value: Any, allowed: set[str], path: Path, context: str) -> None:
        if isinstance(value, list):
            for i, item in enumerate(value):
                self.keys(item, allowed, (*path, i), context)

    def named(self, value: Any, allowed: set[str], path: Path, context: str) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                self.keys(item, allowed, (*path, name), context)

    def service(self, name: str, spec: Any) -> None:
        path: Path = ("services", name)
        self.tree(spec, SERVICE, path)
        if not isinstance(spec, dict):
            return
        self.items(spec.get("ports"), PORT_KEYS, (*path, "ports"), "ports")
        self.items(spec.get("volumes"), MOUNT_KEYS, (*path, "volumes"), "volumes")
        for i, mount in enumerate(spec.get("volumes") or []):
            if isinstance(mount, dict):
                self.keys(mount.get("tmpfs"), TMPFS_KEYS, (*path, "volumes", i, "tmpfs"), "tmpfs")
        self.named(spec.get("networks"), SERVICE_NETWORK_KEYS, (*path, "networks"), "service networks")
        self.named(spec.get("depends_on"), DEPENDS_KEYS, (*path, "depends_on"), "depends_on")
        self.items(spec.get("secrets"), SECRET_REF_KEYS, (*path, "secrets"), "service secrets")
        self.items(spec.get("env_file"), ENV_FILE_KEYS, (*path, "env_file"), "env_file")


def check(doc: Document) -> list[Problem]:
    """Every key the spec allows that HostPanel does not support, each with its line and reason."""
    checker = _Checker(doc)
    data = doc.data
    checker.tree(data, TOP, ())
    services = data.get("services")
    if isinstance(services, dict):
        for name, spec in services.items():
            checker.service(name, spec)
    for section, allowed in (("networks", NETWORK), ("volumes", VOLUME), ("secrets", SECRET)):
        block = data.get(section)
        if isinstance(block, dict):
            for name, spec in block.items():
                checker.tree(spec, allowed, (section, name), section)
    return checker.problems

"""Daemon endpoints: ``/_ping``, ``/version``, ``/info``."""

from __future__ import annotations

import os
import platform
from typing import TYPE_CHECKING

from engine.dockerapi import API_VERSION, MIN_API_VERSION
from engine.dockerapi.http import Request, Response, Router, json_response

if TYPE_CHECKING:
    from engine.engine import Engine

SERVER_VERSION = "0.1.0-hostpanel"


def ping(request: Request) -> Response:
    """``GET``/``HEAD /_ping``: ``OK``, with the headers clients negotiate from."""
    headers = {
        "Builder-Version": "1",
        "Cache-Control": "no-cache, no-store, must-revalidate",
        "Pragma": "no-cache",
    }
    return Response(body=b"OK", content_type="text/plain; charset=utf-8", headers=headers)


def version(request: Request) -> Response:
    """``GET /version``: the server's version and the API versions it speaks."""
    uname = platform.uname()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine)
    details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": arch}
    return json_response(
        {
            "Platform": {"Name": "HostPanel Engine"},
            "Components": [{"Name": "Engine", "Version": SERVER_VERSION, "Details": details}],
            "Version": SERVER_VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": "",
            "Os": "linux",
            "Arch": arch,
            "KernelVersion": uname.release,
            "BuildTime": "",
        }
    )


def info_document(
    *, id: str, name: str, containers: int, running: int, paused: int, images: int, root: str
) -> dict[str, object]:
    """The ``/info`` body for these counts (the operator's engine, or one tenant's share of the panel)."""
    return {
        "ID": id,
        "Name": name,
        "Containers": containers,
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": containers - running - paused,
        "Images": images,
        "Driver": "overlay",
        "DockerRootDir": root,
        "OperatingSystem": "HostPanel",
        "OSType": "linux",
        "Architecture": platform.machine(),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "KernelVersion": platform.release(),
        "ServerVersion": SERVER_VERSION,
        "CgroupDriver": "cgroupfs",
        "DefaultRuntime": "crun",
        "Runtimes": {"crun": {"path": "crun"}},
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=userns", "name=no-new-privileges"],
        "Labels": [],
        "Warnings": [],
    }


def register_handshake(router: Router) -> None:
    """Add ``/_ping`` and ``/version`` (the same for every door) to ``router``."""
    router.add("GET", "/_ping", ping)
    router.add("GET", "/version", version)


def register(router: Router, engine: Engine) -> None:
    """Add the daemon endpoints for ``engine`` to ``router``."""
    register_handshake(router)

    @router.route("GET", "/info")
    def info(request: Request) -> Response:
        containers = engine.list(all=True)
        return json_response(
            info_document(
                id=engine.instance,
                name=platform.node(),
                containers=len(containers),
                running=sum(1 for c in containers if c.status == "running"),
                paused=sum(1 for c in containers if c.status == "paused"),
                images=len(engine.images.list()),
                root=str(engine.paths.root),
            )
        )

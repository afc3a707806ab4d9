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


def register(router: Router, engine: Engine) -> None:
    """Add the daemon endpoints for ``engine`` to ``router``."""

    @router.route("GET", "/_ping")
    def ping(request: Request) -> Response:
        headers = {
            "Builder-Version": "1",
            "Cache-Control": "no-cache, no-store, must-revalidate",
            "Pragma": "no-cache",
        }
        return Response(body=b"OK", content_type="text/plain; charset=utf-8", headers=headers)

    @router.route("GET", "/version")
    def version(request: Request) -> Response:
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

    @router.route("GET", "/info")
    def info(request: Request) -> Response:
        containers = engine.list(all=True)
        running = sum(1 for c in containers if c.status == "running")
        paused = sum(1 for c in containers if c.status == "paused")
        return json_response(
            {
                "ID": engine.instance,
                "Name": platform.node(),
                "Containers": len(containers),
                "ContainersRunning": running,
                "ContainersPaused": paused,
                "ContainersStopped": len(containers) - running - paused,
                "Images": len(engine.images.list()),
                "Driver": "overlay",
                "DockerRootDir": str(engine.paths.root),
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
        )

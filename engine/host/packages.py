"""The Debian packages every HostPanel host needs, and installing the missing ones.

This is the one list: the Makefile calls ``python3 -m engine.host.packages
--install`` before the virtualenv exists, and ``hpctl host setup`` calls
:func:`ensure_packages`. Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from engine.errors import HostNotReady

REQUIRED_PACKAGES: tuple[str, ...] = (
    "crun",  # the OCI runtime that starts every container
    "conmon",  # per-container monitor: keeps stdio, the log file and the exit code
    "busybox-static",  # the base image's userland and the smoke-test container
    "iproute2",  # `ip`, for inspecting and debugging container networks
    "nftables",  # firewall between tenant networks, port publishing
    "debootstrap",  # building the Debian base image
    "redis-server",  # Celery broker and Channels layer (redis-cli too)
    "postgresql",  # PostgreSQL 15: `make test` runs the panel's tests on a private one (tests/pgserver.py)
    "catatonit",  # minimal init for `hpctl run --init`
    "tini",  # alternative init, same purpose
    "e2fsprogs",  # mkfs.ext4 for size-limited loop volumes
    "btrfs-progs",  # btrfs pools with qgroup-limited volumes
    "util-linux",  # mount, unshare, nsenter, losetup
    "procps",  # ps, pkill-free process inspection in tests and scripts
    "ca-certificates",  # TLS to package mirrors and registries
    "skopeo",  # independent registry client: cross-checks hpctl push/pull in tests and bench
    "docker-registry",  # the reference registry (CNCF distribution): a second real server for registry tests
    "chromium",  # headless browser the dashboard's Playwright tests drive (tests/browser)
    "caddy",  # the edge proxy: <app>-<tenant>.<apps domain> and custom domains, TLS (make run starts it)
    "wrk",  # HTTP load generator of the benches (bench/api_load.py, bench/proxy.py)
    "git",  # shallow clones of a build context from a git repository on the host (builds with git_url)
    "gcc",  # builds `hpctl`, the operator daemon's thin client in C (engine/cli/hpctl.c; make install)
    "libc6-dev",  # its headers
    # The stock docker CLI (20.10) the Docker API's tests drive when the machine has no newer one;
    # its dockerd is never started (policy-rc.d while apt runs; nothing here enables it).
    "docker.io",
    # docker-compose 1.29: a system python tool on Debian's python3-docker (not our venv) that the
    # Docker API's compose tests drive; it ships no daemon, so nothing starts.
    "docker-compose",
)
"""Debian 12 packages a host needs (apt names)."""

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
_POLICY_RC = Path("/usr/sbin/policy-rc.d")

Runner = Callable[[Sequence[str]], None]
StatusQuery = Callable[[Sequence[str]], set[str]]


def required_packages() -> tuple[str, ...]:
    """The packages to install on this host.

    ``python3-venv`` joins the list when this Python is Debian's own and lacks
    ``ensurepip`` (Debian splits venv support out of python3).
    """
    extra: tuple[str, ...] = ()
    if sys.base_prefix == "/usr":
        try:
            import ensurepip  # noqa: F401
        except ImportError:
            extra = ("python3-venv",)
    return REQUIRED_PACKAGES + extra


def installed_packages(names: Sequence[str]) -> set[str]:
    """The subset of ``names`` that dpkg reports as installed."""
    if not names or shutil.which("dpkg-query") is None:
        return set()
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\\n", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    found: set[str] = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == "installed":
            found.add(parts[0].split(":")[0])
    return found


def missing_packages(names: Sequence[str] | None = None, query: StatusQuery | None = None) -> list[str]:
    """The packages from ``names`` (default: :func:`required_packages`) not installed yet.

    ``query`` (default: :func:`installed_packages`) says which are installed.
    """
    wanted = list(names if names is not None else required_packages())
    have = (query or installed_packages)(wanted)
    return [n for n in wanted if n not in have]


def apt_commands(missing: Iterable[str]) -> list[list[str]]:
    """The commands that install ``missing``: ``apt-get update``, then ``apt-get install``.

    Empty when nothing is missing, so an installed host never touches apt.
    """
    pkgs = list(missing)
    if not pkgs:
        return []
    return [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *pkgs],
    ]


def _run(cmd: Sequence[str]) -> None:
    print("+ " + " ".join(cmd), flush=True)
    try:
        subprocess.run(list(cmd), check=True, env={**os.environ, **APT_ENV})
    except FileNotFoundError as exc:
        raise HostNotReady(f"{cmd[0]} not found: HostPanel hosts run Debian 12 with apt") from exc
    except subprocess.CalledProcessError as exc:
        raise HostNotReady(
            f"`{' '.join(cmd)}` failed with exit code {exc.returncode}; fix apt (mirror, "
            "locks, disk space) and run `make install` again"
        ) from exc


def install_packages(missing: Sequence[str], run: Runner = _run) -> list[str]:
    """Install ``missing`` with apt; return what was installed.

    Daemons in the new packages (redis-server) are not started by the
    package scripts: a temporary ``policy-rc.d`` denies it when the host has
    none of its own; `make run` starts Redis where it is wanted. Raises
    HostNotReady when not root or when apt fails.
    """
    cmds = apt_commands(missing)
    if not cmds:
        return []
    if os.geteuid() != 0:
        raise HostNotReady(
            f"missing packages: {' '.join(missing)}; run as root (`sudo make install`) to install them"
        )
    created_policy = False
    if not _POLICY_RC.exists():
        _POLICY_RC.write_text("#!/bin/sh\n# written by hpctl host setup while apt runs\nexit 101\n")
        _POLICY_RC.chmod(0o755)
        created_policy = True
    try:
        for cmd in cmds:
            run(cmd)
    finally:
        if created_policy:
            _POLICY_RC.unlink(missing_ok=True)
    return list(missing)


def ensure_packages(dry_run: bool = False, query: StatusQuery | None = None) -> list[str]:
    """Install the required packages that are missing; return their names.

    With ``dry_run`` only report them. Raises HostNotReady when apt fails.
    """
    missing = missing_packages(query=query)
    if dry_run or not missing:
        return missing
    return install_packages(missing)


def main(argv: Sequence[str] | None = None) -> int:
    """``python3 -m engine.host.packages [--list|--missing|--plan|--install]``."""
    parser = argparse.ArgumentParser(prog="python3 -m engine.host.packages", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="print every required package")
    group.add_argument("--missing", action="store_true", help="print the missing packages")
    group.add_argument("--plan", action="store_true", help="print the apt commands that would run")
    group.add_argument("--install", action="store_true", help="install the missing packages (default)")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(required_packages()))
        return 0
    missing = missing_packages()
    if args.missing:
        if missing:
            print("\n".join(missing))
        return 0
    if args.plan:
        for cmd in apt_commands(missing):
            print(" ".join(cmd))
        return 0
    try:
        installed = install_packages(missing)
    except HostNotReady as exc:
        print(f"hpctl: {exc}", file=sys.stderr)
        return exc.exit_code
    if installed:
        print(f"installed {len(installed)} package(s): {' '.join(installed)}")
    else:
        print(f"system packages: all {len(required_packages())} present")
    return 0


if __name__ == "__main__":
    sys.exit(main())

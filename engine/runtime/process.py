"""Decide what process a container runs, from its spec and its image (validation lives here)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from engine.errors import CommandNotFound, InvalidSpec
from engine.images.model import Image
from engine.runtime.model import ContainerSpec
from engine.runtime.oci_spec import ProcessSpec
from engine.runtime.rootpath import find_command
from engine.runtime.users import resolve_user

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_HOSTNAME = re.compile(r"^(?=.{1,63}$)[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$")


def validate_env(env: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Check every entry is KEY=VALUE with a sane key; raise InvalidSpec naming the bad one."""
    for item in env:
        key, sep, _value = item.partition("=")
        if not sep or not _ENV_KEY.match(key):
            raise InvalidSpec(
                f"invalid environment variable {item!r}: expected KEY=VALUE with a key of "
                "letters, digits and '_' not starting with a digit"
            )
        if "\0" in item:
            raise InvalidSpec(f"invalid environment variable {key!r}: contains a NUL byte")
    return tuple(env)


def validate_workdir(workdir: str) -> str:
    """An absolute path without NUL; raise InvalidSpec otherwise."""
    if not workdir.startswith("/") or "\0" in workdir:
        raise InvalidSpec(f"invalid working directory {workdir!r}: it must be an absolute path like /app")
    return workdir


def validate_hostname(hostname: str) -> str:
    """A single DNS label; raise InvalidSpec otherwise."""
    if not _HOSTNAME.match(hostname):
        raise InvalidSpec(f"invalid hostname {hostname!r}: use up to 63 letters, digits and '-'")
    return hostname


def normalize_signal(name: str) -> str:
    """'TERM', 'SIGTERM' or '15' as 'SIGTERM'; raise InvalidSpec for unknown signals."""
    value = name.strip().upper()
    if value.isdigit():
        try:
            return signal.Signals(int(value)).name
        except ValueError:
            raise InvalidSpec(f"unknown signal {name!r}") from None
    if not value.startswith("SIG"):
        value = "SIG" + value
    if value not in signal.Signals.__members__:
        raise InvalidSpec(f"unknown signal {name!r}: use a name like SIGTERM or a number like 15")
    return value


def merge_env(*layers: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Later KEY=VALUE entries win, in order of first appearance."""
    merged: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            key, _, value = item.partition("=")
            merged[key] = value
    return merged


def resolve_process(
    spec: ContainerSpec, image: Image, rootfs: Path, hostname: str, init_path: str | None
) -> ProcessSpec:
    """The process to run: argv, env, cwd and ids, checked against the mounted rootfs.

    Raises InvalidSpec for a missing command or a bad user, CommandNotFound
    when the executable is not in the image.
    """
    entrypoint = spec.entrypoint if spec.entrypoint is not None else image.config.entrypoint
    command = spec.command or (image.config.cmd if spec.entrypoint is None else ())
    argv = tuple(entrypoint) + tuple(command)
    if not argv:
        raise InvalidSpec(
            f"no command to run: image {spec.image!r} has no Cmd or Entrypoint; give one after the image name"
        )
    user = resolve_user(rootfs, spec.user if spec.user is not None else image.config.user)
    env = merge_env(
        (f"PATH={DEFAULT_PATH}",), image.config.env, (f"HOSTNAME={hostname}", f"HOME={user.home}"), spec.env
    )
    executable = find_command(rootfs, argv[0], env)
    if executable is None:
        raise CommandNotFound(
            f"executable {argv[0]!r} not found in image {spec.image!r} "
            f"(searched {'the path' if '/' in argv[0] else 'PATH=' + env.get('PATH', '')}); "
            "check the command or the image"
        )
    if init_path:
        argv = (init_path, "--", *argv)
    cwd = validate_workdir(spec.workdir or image.config.working_dir or "/")
    return ProcessSpec(
        args=argv,
        env=tuple(f"{k}={v}" for k, v in env.items()),
        cwd=cwd,
        uid=user.uid,
        gid=user.gid,
        additional_gids=user.additional_gids,
    )

"""Run a function inside a container's network namespace (the seam health probes go through).

A health probe must see the network as the container sees it: from inside the
container's network namespace, ``127.0.0.1`` is the container itself, and any
other address is reached through the container's own interfaces and egress
rules, never from the host side. So the host's loopback services (the panel,
Redis, ...) are out of a probe's reach whatever the tenant's app answers.

The switch is ``setns(2)`` with ``CLONE_NEWNET``, which changes the network
namespace of the calling *thread* only. Each call starts a fresh thread that
enters the namespace, runs the function and ends, so no thread of the agent
ever goes back to work in another namespace. Only the network namespace is
entered: files, mounts and processes stay the caller's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from engine.errors import EngineError, InvalidSpec, RuntimeFailure

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
# Extra seconds granted to the thread past the function's own timeout before the caller gives up.
JOIN_GRACE = 1.0

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class NetnsTimeout(EngineError):
    """The function did not return within its time inside the namespace."""


def setns_net(fd: int) -> None:
    """Move the calling thread into the network namespace open at ``fd`` (the kernel touch)."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise RuntimeFailure(f"cannot enter the container's network namespace: {os.strerror(err)}")


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@dataclass
class _Outcome(Generic[T]):
    value: list[T] = field(default_factory=list)
    error: list[BaseException] = field(default_factory=list)


def run_in_netns(
    netns: Path,
    fn: Callable[[], T],
    *,
    timeout: float,
    enter: Callable[[int], None] = setns_net,
) -> T:
    """Return ``fn()`` run in a new thread that first enters the network namespace at ``netns``.

    ``netns`` is a namespace file (``/proc/<pid>/ns/net`` or a bind mount of
    one). A namespace that is the caller's own (the host's, for the agent) is
    refused with InvalidSpec: a probe never runs on the host side. ``fn`` must
    bound its own time; the caller waits ``timeout`` (+ JOIN_GRACE) seconds and
    then raises NetnsTimeout (the thread ends when ``fn`` does). Errors raised
    by ``fn`` are re-raised here. ``enter`` is the kernel seam (tests may fake it).
    """
    outcome: _Outcome[T] = _Outcome()

    def body() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            outcome.error.append(RuntimeFailure(f"no network namespace at {netns}: {exc.strerror}"))
            return
        try:
            # This new thread still shares the caller's namespace: refuse to "enter" that one.
            if _same_file(os.fstat(fd), os.stat("/proc/thread-self/ns/net")):
                raise InvalidSpec("refusing to probe from the host's own network namespace")
            enter(fd)
        except BaseException as exc:
            outcome.error.append(exc)
            return
        finally:
            os.close(fd)
        try:
            outcome.value.append(fn())
        except BaseException as exc:
            outcome.error.append(exc)

    thread = threading.Thread(target=body, name=f"netns:{netns.name}", daemon=True)
    thread.start()
    thread.join(timeout + JOIN_GRACE)
    if thread.is_alive():
        raise NetnsTimeout(f"no answer within {timeout:g} s")
    if outcome.error:
        raise outcome.error[0]
    return outcome.value[0]

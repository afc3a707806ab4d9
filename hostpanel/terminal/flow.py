"""Flow control of a terminal's output and a copy's chunks over Redis pub/sub.

A host's layer (hostpanel/hosts/layer.py) is pub/sub: there is no "channel full" that would make
a sender wait, and what a receiving process has not handled yet waits in its memory. So the
receiver acknowledges what it has handed on (``exec.ack`` / ``copy.ack`` with ``bytes``), every
ACK_EVERY bytes (:class:`Acks`), and the sender keeps at most WINDOW_BYTES unacknowledged
(:class:`Window`): a browser, a Docker client or a host that stops taking makes the sender wait
(a relay then stops reading the pty, which fills, and the process blocks, as on a full channel),
and ends the session after the sender's patience (STALL_SECONDS). What the receiving side holds
is at most one window and a message.
"""

from __future__ import annotations

import asyncio
from typing import Any

WINDOW_BYTES = 256 * 1024
ACK_EVERY = WINDOW_BYTES // 4  # at most the window: a waiting sender always gets its ack


class Window:
    """The sender's count of bytes sent and not yet acknowledged (used on one event loop)."""

    def __init__(self, size: int = WINDOW_BYTES) -> None:
        self.size = size
        self.unacked = 0
        self._room = asyncio.Event()
        self._room.set()

    def sent(self, count: int) -> None:
        """``count`` more bytes went out."""
        self.unacked += count
        if self.unacked >= self.size:
            self._room.clear()

    def acked(self, count: int) -> None:
        """The receiver handed ``count`` bytes on."""
        self.unacked = max(0, self.unacked - count)
        if self.unacked < self.size:
            self._room.set()

    async def room(self, patience: float) -> bool:
        """Wait until less than a window is unacknowledged; False when that took over ``patience`` s."""
        try:
            await asyncio.wait_for(self._room.wait(), patience)
        except TimeoutError:
            return False
        return True


class Acks:
    """The receiver's count of bytes handed on and not yet acknowledged."""

    def __init__(self, every: int = ACK_EVERY) -> None:
        self.every = every
        self.pending = 0

    def took(self, count: int) -> int:
        """``count`` more bytes handed on; how many to acknowledge now (0: not yet)."""
        self.pending += count
        if self.pending < self.every:
            return 0
        count, self.pending = self.pending, 0
        return count


def acked_bytes(message: dict[str, Any], kind: str) -> int | None:
    """The byte count of an ack message of type ``kind`` (``exec.ack``, ``copy.ack``); None if it is
    not one, or not well formed."""
    count = message.get("bytes")
    if message.get("type") != kind or not isinstance(count, int) or isinstance(count, bool) or count < 0:
        return None
    return count

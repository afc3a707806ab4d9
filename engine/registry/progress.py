"""Progress of a pull or push, blob by blob, and the transfer log of the whole operation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BlobProgress:
    """One step of one blob's transfer.

    ``status`` is ``exists`` (already there, not transferred), ``mounted``
    (linked from another repository of the registry), ``transferring``
    (``done`` of ``total`` bytes so far) or ``complete``.
    """

    digest: str
    status: str
    done: int
    total: int
    kind: str = "layer"


ProgressCallback = Callable[[BlobProgress], None]


@dataclass
class TransferReport:
    """What a pull or push did: which blobs went over the network and which were skipped."""

    reference: str
    manifest_digest: str = ""
    image_id: str = ""
    transferred: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    bytes_transferred: int = 0


class Tracker:
    """Forwards progress to an optional callback and keeps the :class:`TransferReport`."""

    def __init__(self, report: TransferReport, callback: ProgressCallback | None) -> None:
        self.report = report
        self.callback = callback

    def emit(self, event: BlobProgress) -> None:
        """Pass ``event`` to the callback, if any."""
        if self.callback is not None:
            self.callback(event)

    def skipped(self, digest: str, size: int, kind: str) -> None:
        """Record a blob that was already there."""
        self.report.skipped.append(digest)
        self.emit(BlobProgress(digest, "exists", size, size, kind))

    def mounted(self, digest: str, size: int, kind: str) -> None:
        """Record a blob mounted from another repository."""
        self.report.mounted.append(digest)
        self.emit(BlobProgress(digest, "mounted", size, size, kind))

    def completed(self, digest: str, size: int, kind: str) -> None:
        """Record a blob that went over the network."""
        self.report.transferred.append(digest)
        self.report.bytes_transferred += size
        self.emit(BlobProgress(digest, "complete", size, size, kind))

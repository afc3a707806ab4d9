"""Write conmon k8s-file records by hand (real files for the follower tests)."""

from __future__ import annotations

from pathlib import Path


def stamp(i: int) -> str:
    return f"2026-11-29T18:00:{i // 1_000_000_000:02d}.{i % 1_000_000_000:09d}+00:00"


def append(log: Path, records: list[tuple[int, str, str]]) -> None:
    """Append records (time index, stream, text) as whole (F) lines."""
    with log.open("ab") as f:
        for t, stream, text in records:
            f.write(f"{stamp(t)} {stream} F {text}\n".encode())

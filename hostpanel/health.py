"""The health check behind ``/healthz``: database and engine root, nothing that needs root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections

from engine.host.status import engine_root_status


def database_ok(alias: str = "default") -> bool:
    """Whether the database answers a trivial query."""
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        return False
    return True


def engine_status() -> dict[str, Any]:
    """This machine's engine root: where it is and whether `hpctl host setup` created it."""
    status = engine_root_status(Path(settings.HOSTPANEL_ENGINE_ROOT)).to_dict()
    status["instance"] = settings.HOSTPANEL_ENGINE_INSTANCE
    return status


def health() -> tuple[dict[str, Any], bool]:
    """The health document and whether the panel is healthy (the database answers)."""
    db = database_ok()
    doc = {
        "status": "ok" if db else "error",
        "database": "ok" if db else "unreachable",
        "engine": engine_status(),
    }
    return doc, db

"""Container endpoints of a running container: pause, unpause, rename, top.

``stats`` lives in :mod:`engine.dockerapi.stats`, the event stream in :mod:`engine.dockerapi.events`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from engine.dockerapi.http import APIError, Request, Response, Router, json_response, no_content
from engine.dockerapi.lifecycle import find_container
from engine.errors import Conflict
from engine.runtime.model import ALIVE
from engine.runtime.procfs import TOP_TITLES, ProcessRow

if TYPE_CHECKING:
    from engine.engine import Engine

_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # as dockerd: two characters at least
PS_ARGS = ("", "-ef", "ef", "-f", "-e")
"""The ``ps_args`` we answer: they all mean the `ps -ef` columns (anything else is a 400)."""


def top_json(rows: list[ProcessRow]) -> dict[str, Any]:
    """``GET /containers/{id}/top``'s answer: the titles and one list of strings per process."""
    return {"Titles": list(TOP_TITLES), "Processes": [r.columns() for r in rows]}


def check_ps_args(request: Request) -> None:
    """A 400 naming ``ps_args`` unless they ask for the `ps -ef` columns we answer."""
    ps_args = request.arg("ps_args").strip()
    if ps_args not in PS_ARGS:
        raise APIError(
            400,
            f"ps_args {ps_args!r} are not supported: top shows the `ps -ef` columns "
            f"({' '.join(TOP_TITLES)}); leave ps_args out",
        )


def new_name(raw: str) -> str:
    """The ``name`` of a rename without its leading '/'; a 400 in dockerd's words when bad."""
    if not raw or raw == "/":
        raise APIError(400, "Neither old nor new names may be empty")
    if not _NAME_RE.match(raw):
        raise APIError(400, f"Invalid container name ({raw}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return raw.lstrip("/")


def register(router: Router, engine: Engine) -> None:
    """Add pause, unpause, rename and top for ``engine`` to ``router``."""

    @router.route("POST", "/containers/{id}/pause")
    def pause(request: Request) -> Response:
        container = find_container(engine, request.params["id"])
        if container.status == "paused":
            raise APIError(409, f"Container {container.id} is already paused")
        if container.status != "running":
            raise APIError(409, f"Container {container.id} is not running")
        engine.pause(container.id)
        return no_content()

    @router.route("POST", "/containers/{id}/unpause")
    def unpause(request: Request) -> Response:
        container = find_container(engine, request.params["id"])
        if container.status != "paused":
            raise APIError(409, f"Container {container.id} is not paused")
        engine.unpause(container.id)
        return no_content()

    @router.route("POST", "/containers/{id}/rename")
    def rename(request: Request) -> Response:
        container = find_container(engine, request.params["id"])
        name = new_name(request.arg("name"))
        try:
            engine.rename(container.id, name)
        except Conflict:
            owner = find_container(engine, name)
            raise APIError(
                409,
                f'Conflict. The container name "/{name}" is already in use by container "{owner.id}". '
                "You have to remove (or rename) that container to be able to reuse that name.",
            ) from None
        return no_content()

    @router.route("GET", "/containers/{id}/top")
    def top(request: Request) -> Response:
        container = find_container(engine, request.params["id"])
        check_ps_args(request)
        if container.status not in ALIVE:
            raise APIError(409, f"Container {container.id} is not running")
        return json_response(top_json(engine.top(container.id)))

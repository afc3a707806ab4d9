"""Finding a request's container: only inside the identity's tenant (else ``No such container``)."""

from __future__ import annotations

import select
import socket

from engine.dockerapi.http import APIError, Request
from hostpanel.deployments.models import Replica
from hostpanel.dockerapi.identity import Identity
from hostpanel.dockerapi.models import DockerContainer


def identity_of(request: Request) -> Identity:
    identity = request.identity
    assert isinstance(identity, Identity), "the door authenticates every request before routing"
    return identity


def find(identity: Identity, ref: str) -> DockerContainer:
    """The tenant's container called ``ref`` (its name, id or a unique id prefix); 404 otherwise."""
    ref = ref.lstrip("/")
    rows = DockerContainer.objects.filter(tenant=identity.tenant).select_related(
        "app", "app__current_release", "app__tenant"
    )
    found = rows.filter(name=ref).first() or rows.filter(docker_id=ref).first()
    if found is None and ref and all(c in "0123456789abcdef" for c in ref):
        prefixed = list(rows.filter(docker_id__startswith=ref)[:2])
        if len(prefixed) > 1:
            raise APIError(400, f"multiple containers found with provided prefix: {ref}")
        found = prefixed[0] if prefixed else None
    if found is None:
        raise APIError(404, f"No such container: {ref}")
    return found


def replica_of(container: DockerContainer) -> Replica | None:
    return Replica.objects.filter(app=container.app).select_related("host").order_by("index").first()


def client_gone(connection: socket.socket) -> bool:
    """Whether the client of a request that sends nothing more (wait, ``logs -f``) went away: its
    connection turned readable (a FIN, a reset or TLS's close) while the answer waits."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)

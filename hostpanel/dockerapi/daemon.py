"""``/info`` for a tenant: the counts of its own containers and images (``/_ping`` and
``/version`` are the engine's, shared with the operator's socket)."""

from __future__ import annotations

from django.db.models import Q

from engine.dockerapi import system
from engine.dockerapi.http import Request, Response, Router, json_response
from hostpanel.deployments.models import Replica
from hostpanel.dockerapi.identity import Identity
from hostpanel.dockerapi.models import DockerContainer
from hostpanel.images.models import Image


def register(router: Router) -> None:
    """Add ``/info`` (tenant-scoped) to ``router``."""
    router.add("GET", "/info", info)


def info(request: Request) -> Response:
    """``GET /info``: the tenant's containers (by state) and the images it may run."""
    identity: Identity = request.identity
    tenant = identity.tenant
    total = DockerContainer.objects.filter(tenant=tenant).count()
    running = Replica.objects.filter(
        app__docker__tenant=tenant, app__state="running", state="running"
    ).count()
    images = Image.objects.filter(Q(tenant=None) | Q(tenant=tenant)).count()
    document = system.info_document(
        id=f"hostpanel-{tenant.slug}",
        name=f"hostpanel ({tenant.slug})",
        containers=total,
        running=running,
        paused=0,
        images=images,
        root="",
    )
    return json_response(
        document | {"Labels": [f"hostpanel.tenant={tenant.slug}", f"hostpanel.role={identity.role}"]}
    )

"""``/info`` and ``/system/df`` for a tenant: its own containers, images and volumes (``/_ping`` and
``/version`` are the engine's, shared with the operator's socket)."""

from __future__ import annotations

from django.db.models import Q

from engine.dockerapi import system
from engine.dockerapi.http import Request, Response, Router, json_response
from hostpanel.deployments.models import Replica
from hostpanel.dockerapi import images, volumes
from hostpanel.dockerapi.containers import container_items
from hostpanel.dockerapi.identity import Identity
from hostpanel.dockerapi.models import DockerContainer
from hostpanel.images.models import Image
from hostpanel.volumes.models import Volume


def register(router: Router) -> None:
    """Add ``/info`` (tenant-scoped) to ``router``."""
    router.add("GET", "/info", info)
    router.add("GET", "/system/df", disk_usage)


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


def disk_usage(request: Request) -> Response:
    """``GET /system/df``: the tenant's images (base ones included, as ``docker images`` lists them),
    containers and volumes. Sizes are the panel's: an image's stored archive, a volume's size cap
    (its use on the hosts is not gathered here: ``UsageData.Size`` is -1, Docker's "not computed");
    a container's writable layer is not measured; the build cache is the hosts' (not listed)."""
    identity: Identity = request.identity
    tenant = identity.tenant
    image_items = images.summaries(tenant)
    containers = [
        {**item, "SizeRw": 0, "SizeRootFs": 0} for item in container_items(tenant, {}, show_all=True)
    ]
    users = volumes.users_of(tenant)
    volume_items = [
        volumes.volume_json(v, (-1, users.get(v.name, 0))) for v in Volume.objects.filter(tenant=tenant)
    ]
    return json_response(
        {
            "LayersSize": sum(i["Size"] for i in image_items),
            "Images": image_items,
            "Containers": containers,
            "Volumes": volume_items,
            "BuildCache": [],
        }
    )

"""Networks: the tenant's networks (list, create, delete) and one network's member apps and addresses."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from hostpanel.dashboard.access import page, run_action, tenant_context
from hostpanel.deployments.networking import addresses_by_host, network_members
from hostpanel.errors import Forbidden, NotFound, ServiceError
from hostpanel.networks import services as networks


def _list_context(request: HttpRequest, slug: str) -> dict[str, object]:
    ctx = tenant_context(request, slug)
    return ctx.template_context() | {
        "networks": networks.visible_networks(ctx.actor, ctx.tenant),
        "section": "networks",
    }


@page
def network_list(request: HttpRequest, slug: str) -> HttpResponse:
    return render(request, "dashboard/networks.html", _list_context(request, slug))


@page
@require_POST
def network_create(request: HttpRequest, slug: str) -> HttpResponse:
    ctx = tenant_context(request, slug)
    name = request.POST.get("name", "").strip()
    try:
        network = networks.create_network(ctx.actor, ctx.tenant, name)
    except (NotFound, Forbidden):
        raise
    except ServiceError as exc:
        context = _list_context(request, slug) | {"error": exc.message, "name": name}
        return render(request, "dashboard/networks.html", context, status=exc.status)
    return redirect("dashboard:network", slug, network.name)


@page
def network_detail(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    ctx = tenant_context(request, slug)
    network = networks.get_network(ctx.actor, ctx.tenant, name)
    members = network_members(network)
    context = ctx.template_context() | {
        "network": network,
        "members": members,
        "hosts": addresses_by_host(members),
        "section": "networks",
    }
    return render(request, "dashboard/network.html", context)


@page
@require_POST
def network_delete(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    ctx = tenant_context(request, slug)
    network = networks.get_network(ctx.actor, ctx.tenant, name)

    def delete() -> str:
        networks.delete_network(ctx.actor, network)
        return f"Network {name!r} deleted."

    run_action(request, delete)
    return redirect("dashboard:networks", slug)

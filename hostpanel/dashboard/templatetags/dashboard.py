"""Template helpers of the dashboard: the tenant switcher's list, amounts in units, commands quoted."""

from __future__ import annotations

from typing import Any

from django import template

from hostpanel.dashboard.access import switchable_tenants
from hostpanel.deployments.changes import command_text
from hostpanel.tenants import units

register = template.Library()


@register.simple_tag(takes_context=True)
def tenants_of_user(context: dict[str, Any]) -> list[Any]:
    """The tenants the signed-in user may switch to."""
    request = context.get("request")
    return switchable_tenants(request) if request is not None else []


@register.filter
def amount(value: int, resource: str) -> str:
    """A quota amount of ``resource`` as a person reads it (sizes in MiB/GiB, CPU in cores)."""
    return units.amount(resource, value)


@register.filter
def size(value: int) -> str:
    """Bytes in binary units (``128 MiB``), as the quota messages say them."""
    return units.size(value)


@register.filter
def shell_quoted(command: list[str]) -> str:
    """A command quoted as it will run (``sh -c 'echo hi'``); empty: the image's own."""
    return command_text(command)

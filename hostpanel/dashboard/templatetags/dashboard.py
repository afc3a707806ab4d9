"""Template helpers of the dashboard: the tenant switcher's list and quota amounts."""

from __future__ import annotations

from typing import Any

from django import template
from django.template.defaultfilters import filesizeformat

from hostpanel.dashboard.access import switchable_tenants

register = template.Library()


@register.simple_tag(takes_context=True)
def tenants_of_user(context: dict[str, Any]) -> list[Any]:
    """The tenants the signed-in user may switch to."""
    request = context.get("request")
    return switchable_tenants(request) if request is not None else []


@register.filter
def amount(value: int, is_bytes: bool) -> str:
    """A quota amount as a person reads it (bytes as KB/MB/GB)."""
    return str(filesizeformat(value)) if is_bytes else str(value)

"""The internal API's usage door for host agents (issue 15: they hold no database).

``POST /internal/v1/host/usage`` (host token): one collection of the calling host's engine
(hostpanel/agent/usage.py): each tenant's cumulative counters and storage (or its storage only: an
entry without counters), each app container's counters. It is written with
:func:`services.record_host_report` -> :func:`services.record_sample`,
and only for the tenants and apps the host may speak for; the rest is listed under ``ignored``.

Which tenants a host samples comes with its desired document (``GET host/desired``, field
``usage_tenants``: :func:`services.usage_tenants`): the tenants with replicas placed on it plus those
with a usage cursor there, so a tenant whose apps moved away is billed up to its last sample;
and the tenants whose storage only it reports (field ``storage_tenants``:
:func:`services.storage_tenant_ids`, e.g. those that built there: their build cache there counts
against their storage quota). The panel names them (not the host's engine) because the panel
decides what a host may report: the same sets bound what this door writes.

Everything in the body is hostile input: unknown fields are refused, numbers are finite,
non-negative and bounded, lists are bounded and hold each tenant or container once.
"""

from __future__ import annotations

from typing import Any

from django.urls import path
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from engine.cgroups.usage import Usage
from hostpanel.hosts.internal import HostView, valid_body
from hostpanel.tenants.models import SLUG_RE
from hostpanel.usage import services

MAX_CPU_SECONDS = 1e11  # cumulative, one engine record: 3,000 core-years
MAX_MEMORY_BYTE_SECONDS = 1e24  # about a PiB held for 30 years
MAX_BYTES = 2**53  # 8 PiB, and exact in a float
MAX_TENANTS = 1000
MAX_CONTAINERS = 5000
CONTAINER_ID_RE = r"^[A-Za-z0-9_.-]{1,64}$"


class StrictSerializer(serializers.Serializer):
    """A serializer that refuses fields it does not know (a list entry's too)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and (unknown := sorted(set(data) - set(self.fields))):
            raise serializers.ValidationError({"unknown": [f"unknown field(s): {', '.join(unknown)}"]})
        return super().to_internal_value(data)


class CountersSerializer(StrictSerializer):
    cpu_seconds = serializers.FloatField(min_value=0, max_value=MAX_CPU_SECONDS)
    memory_byte_seconds = serializers.FloatField(min_value=0, max_value=MAX_MEMORY_BYTE_SECONDS)
    disk_bytes = serializers.IntegerField(min_value=0, max_value=MAX_BYTES)


COUNTERS = ("cpu_seconds", "memory_byte_seconds", "disk_bytes")


class TenantUsageSerializer(CountersSerializer):
    """A tenant's counters and storage, or its storage only (no counters at all: a tenant of
    ``storage_tenants`` whose usage the host does not sample)."""

    tenant = serializers.RegexField(SLUG_RE, max_length=63)
    rootfs_bytes = serializers.IntegerField(min_value=0, max_value=MAX_BYTES)
    build_cache_bytes = serializers.IntegerField(min_value=0, max_value=MAX_BYTES)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in COUNTERS:
            self.fields[name].required = False

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in COUNTERS if name in attrs]
        if given and len(given) != len(COUNTERS):
            missing = ", ".join(name for name in COUNTERS if name not in attrs)
            raise serializers.ValidationError(
                {"counters": [f"all of {', '.join(COUNTERS)} or none (storage only); missing: {missing}"]}
            )
        return attrs


class ContainerUsageSerializer(CountersSerializer):
    container = serializers.RegexField(CONTAINER_ID_RE, max_length=64)
    tenant = serializers.RegexField(SLUG_RE, max_length=63)
    app = serializers.IntegerField(min_value=1, max_value=2**63 - 1)


def _once(entries: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    keys = [entry[key] for entry in entries]
    if len(set(keys)) != len(keys):
        raise serializers.ValidationError(f"each {key} at most once")
    return entries


class HostUsageSerializer(serializers.Serializer):
    tenants = TenantUsageSerializer(many=True, max_length=MAX_TENANTS)
    containers = ContainerUsageSerializer(many=True, max_length=MAX_CONTAINERS)

    def validate_tenants(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _once(value, "tenant")

    def validate_containers(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _once(value, "container")


def _counters(entry: dict[str, Any]) -> Usage:
    """The counters of an entry as the engine's usage record (what the services take)."""
    return Usage(
        cpu_seconds=entry["cpu_seconds"],
        memory_byte_seconds=entry["memory_byte_seconds"],
        disk_bytes=entry["disk_bytes"],
    )


def sample_of(body: dict[str, Any]) -> services.HostSample:
    """The validated body as the services take it."""
    return services.HostSample(
        tenants=[
            services.TenantReading(
                t["tenant"],
                _counters(t) if "cpu_seconds" in t else None,
                t["rootfs_bytes"],
                t["build_cache_bytes"],
            )
            for t in body["tenants"]
        ],
        containers=[
            services.ContainerReading(c["container"], c["tenant"], str(c["app"]), _counters(c))
            for c in body["containers"]
        ],
    )


class HostUsage(HostView):
    def post(self, request: Request) -> Response:
        body = valid_body(request, HostUsageSerializer, "usage")
        return Response(services.record_host_report(request.user, sample_of(body)))


urlpatterns = [
    path("host/usage", HostUsage.as_view(), name="internal-host-usage"),
]

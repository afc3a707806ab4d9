"""The internal API's replica doors for enrolled host agents (under /internal/v1/, host token).

``GET replicas/<id>/secrets``: the secrets of a replica placed on the calling host, each value
sealed to that host's own X25519 public key and bound to the replica and the secret's name
(:mod:`hostpanel.secrets.sealing`). Another host's replica, or one not placed on the caller, is
``404 No such replica`` and reveals nothing (not even that it exists).

``GET host/desired``: what the calling host should run (:mod:`hostpanel.deployments.desired`):
its placed replicas' container specs, without secret values, and nothing of other hosts.
``POST host/report``: the states of its replicas, written only to those placed on it.
``POST host/start``: the agent starts: its address and capacity, and the
base images its engine holds (registered as base images);
then :data:`desired.agent_started` (the edge sends that host's queue the last routing table).
``POST host/claim``: the right to replace a running container of one of its replicas now (one
replica of an app at a time, across hosts: :func:`desired.claim_update`); with ``restart: true``,
the request to restart that one container, taken once (:func:`desired.claim_restart`).
``GET images/archive?reference=<ref>``: the uploaded archive of an image a replica placed on the
calling host runs (its tenant's own or a base image: :func:`host_images.host_archive`); any other
reference is ``404 No such image archive`` and reveals nothing of other tenants' images.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import FileResponse
from django.urls import path
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from hostpanel.deployments import desired, host_images, rollout
from hostpanel.deployments.models import Replica
from hostpanel.errors import InvalidRequest, NotFound
from hostpanel.hosts import services
from hostpanel.hosts.internal import HostView, host_body, refuse_unknown, valid_body
from hostpanel.hosts.models import Host
from hostpanel.images.services import normalize, register_base_images
from hostpanel.secrets.services import sealed_values


class ReplicaSecrets(HostView):
    def get(self, request: Request, replica_id: int) -> Response:
        host: Host = request.user
        replica = (
            Replica.objects.filter(pk=replica_id, host=host).select_related("release", "app__tenant").first()
        )
        if replica is None:
            raise NotFound(f"No such replica: {replica_id}")
        names = list(dict.fromkeys(s["name"] for s in replica.release.secrets))
        sealed = sealed_values(replica.app.tenant, names, host.credential.public_key, replica.pk)
        return Response({"replica": replica.pk, "release": replica.release_id, "secrets": sealed})


class Desired(HostView):
    def get(self, request: Request) -> Response:
        return Response(desired.host_document(request.user))


COUNT_MAX = 2**31 - 1  # a PositiveIntegerField's bound on every database
HEALTH_STATES = ("", "starting", "healthy", "unhealthy")
ADDRESSES_MAX = 64  # tenant networks one replica reports addresses on
NAME_MAX = 100


class JSONBooleanField(serializers.BooleanField):
    """``true`` or ``false`` only (DRF's own also takes "yes", "on", 1, ...)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class ReplicaStateSerializer(serializers.Serializer):
    """One replica's state as its host reports it: what it runs, its restarts (the back-off the agent
    keeps with the panel, :mod:`hostpanel.agent.remote`) and its health checks' and readiness probe's
    results. Only a running replica can be ready (the edge routes to it)."""

    replica = serializers.IntegerField(min_value=1)
    generation = serializers.IntegerField(min_value=0)
    state = serializers.ChoiceField(choices=[str(s) for s in desired.REPORTED_STATES])
    engine_id = serializers.CharField(max_length=64, allow_blank=True, required=False)
    exit_code = serializers.IntegerField(allow_null=True, required=False)
    started_at = serializers.DateTimeField(allow_null=True, required=False)
    finished_at = serializers.DateTimeField(allow_null=True, required=False)
    message = serializers.CharField(max_length=2000, allow_blank=True, required=False)  # agent/remote.py
    restart_count = serializers.IntegerField(min_value=0, max_value=COUNT_MAX, required=False)
    crash_streak = serializers.IntegerField(min_value=0, max_value=COUNT_MAX, required=False)
    next_restart_at = serializers.DateTimeField(allow_null=True, required=False)
    health = serializers.ChoiceField(choices=HEALTH_STATES, required=False)
    health_failures = serializers.IntegerField(min_value=0, max_value=COUNT_MAX, required=False)
    health_checked_at = serializers.DateTimeField(allow_null=True, required=False)
    ready = JSONBooleanField(required=False)
    restart_generation = serializers.IntegerField(min_value=0, max_value=COUNT_MAX, required=False)
    # {tenant network name: its IPv4 address there}; checked against the replica in desired.apply_report
    addresses = serializers.DictField(
        child=serializers.IPAddressField(protocol="IPv4"), allow_empty=True, required=False
    )

    def validate_addresses(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > ADDRESSES_MAX or any(len(name) > NAME_MAX for name in value):
            raise serializers.ValidationError(
                f"at most {ADDRESSES_MAX} networks, names of at most {NAME_MAX} characters"
            )
        return value

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("ready") and data["state"] != "running":
            raise serializers.ValidationError({"ready": ["only a running replica can be ready"]})
        return data


class ReportSerializer(serializers.Serializer):
    replicas = ReplicaStateSerializer(many=True)


class Report(HostView):
    def post(self, request: Request) -> Response:
        body = valid_body(request, ReportSerializer, "report")
        for entry in request.data["replicas"]:
            refuse_unknown(entry, set(ReplicaStateSerializer().fields), "replicas")
        written, ignored = desired.apply_report(request.user, body["replicas"])
        apps = sorted(set(Replica.objects.filter(pk__in=written).values_list("app_id", flat=True)))
        rollout.advance_all(apps)  # a roll of an app here goes on as its new containers run
        return Response({"written": written, "ignored": ignored})


class StartSerializer(serializers.Serializer):
    address = serializers.CharField(max_length=255, allow_blank=True)
    cpu_millis = serializers.IntegerField(min_value=1)
    memory_bytes = serializers.IntegerField(min_value=1)
    disk_bytes = serializers.IntegerField(min_value=0)
    engine_root = serializers.CharField(max_length=500)
    engine_instance = serializers.CharField(max_length=100)
    base_images = serializers.ListField(
        child=serializers.CharField(max_length=255), max_length=500, required=False, default=list
    )


def _base_image(reference: str) -> str:
    try:
        return normalize(reference)
    except InvalidRequest as exc:
        raise InvalidRequest(f"base_images: {reference!r} is no image reference ({exc})") from exc


class Start(HostView):
    def post(self, request: Request) -> Response:
        body = valid_body(request, StartSerializer, "start")
        references = [_base_image(r) for r in body.pop("base_images")]  # a bad one: 400, nothing changed
        with transaction.atomic():
            host = services.register_host(request.user.name, **body)
            made = register_base_images(references)
        desired.agent_started.send(sender=Host, host=host)  # the edge sends it the last routing table
        return Response(host_body(host) | {"registered_images": [image.reference for image in made]})


class ClaimSerializer(serializers.Serializer):
    replica = serializers.IntegerField(min_value=1)
    generation = serializers.IntegerField(min_value=0)
    restart = JSONBooleanField(required=False, default=False)  # a restart asked on the panel, not an update


class Claim(HostView):
    def post(self, request: Request) -> Response:
        body = valid_body(request, ClaimSerializer, "claim")
        replica = Replica.objects.filter(
            pk=body["replica"], host=request.user, generation=body["generation"]
        ).first()
        if replica is None:
            raise NotFound(f"No such replica: {body['replica']}")
        claim = desired.claim_restart if body["restart"] else desired.claim_update
        return Response({"granted": claim(replica)})


class ImageArchive(HostView):
    def get(self, request: Request) -> FileResponse:
        refuse_unknown(request.query_params, {"reference"}, "query")
        references = request.query_params.getlist("reference")
        if len(references) != 1 or not references[0]:
            raise InvalidRequest("reference: give the one image reference whose archive to fetch")
        image = host_images.host_archive(request.user, references[0])
        missing = NotFound(f"No such image archive: {references[0][:300]!r}")
        if image is None:
            raise missing
        try:
            return FileResponse(open(image.archive, "rb"), content_type="application/x-tar")
        except FileNotFoundError:
            raise missing from None


urlpatterns = [
    path("images/archive", ImageArchive.as_view(), name="internal-image-archive"),
    path("host/claim", Claim.as_view(), name="internal-host-claim"),
    path("host/start", Start.as_view(), name="internal-host-start"),
    path("host/desired", Desired.as_view(), name="internal-host-desired"),
    path("host/report", Report.as_view(), name="internal-host-report"),
    path("replicas/<int:replica_id>/secrets", ReplicaSecrets.as_view(), name="internal-replica-secrets"),
]

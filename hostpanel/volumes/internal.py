"""The internal API's volume door for host agents (issue 15: they hold no database).

``POST /internal/v1/host/volumes`` (host token), ``{"volumes": {"<id>": "<proof>", ...}}``: the
panel volumes this host's engine holds (each labelled with the id and the proof its desired
document gave, :mod:`hostpanel.volumes.held`); the answer ``{"deleted": [id, ...], "ignored": [id,
...]}`` names those whose volume was deleted (the agent removes them unless a container still
uses one) and those ignored for a wrong proof (nothing is said of them). It writes nothing.
Unknown fields, ids that are no positive integers, proofs that are no 64 hex digits, or more than
:data:`VOLUMES_MAX` volumes are a 400.
"""

from __future__ import annotations

import re

from django.urls import path
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from hostpanel.hosts.internal import HostView, valid_body
from hostpanel.volumes import held

VOLUMES_MAX = 1000  # per request: the agent asks in batches of this many
ID_MAX = 2**63 - 1  # a BigAutoField's bound


class HeldSerializer(serializers.Serializer):
    volumes = serializers.DictField(
        child=serializers.RegexField(rf"^[0-9a-f]{{{held.PROOF_LENGTH}}}$", max_length=held.PROOF_LENGTH),
        allow_empty=True,
    )

    def validate_volumes(self, value: dict[str, str]) -> dict[int, str]:
        if len(value) > VOLUMES_MAX:
            raise serializers.ValidationError(f"at most {VOLUMES_MAX} volumes at a time")
        if bad := [key for key in value if not re.fullmatch(r"[1-9][0-9]{0,18}", key) or int(key) > ID_MAX]:
            raise serializers.ValidationError(f"not a volume id: {', '.join(repr(b[:32]) for b in bad[:5])}")
        return {int(key): proof for key, proof in value.items()}


class HeldVolumes(HostView):
    def post(self, request: Request) -> Response:
        body = valid_body(request, HeldSerializer, "volumes")
        deleted, ignored = held.deleted(body["volumes"])
        return Response({"deleted": deleted, "ignored": ignored})


urlpatterns = [
    path("host/volumes", HeldVolumes.as_view(), name="internal-host-volumes"),
]

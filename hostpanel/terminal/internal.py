"""The internal API's end of an exec session for enrolled host agents (no database).

``POST /internal/v1/exec/<audit id>/finished`` with ``Authorization: Bearer <host token>`` and
``{"exit_code": N or null, "reason": "..."}``: the agent's relay (hostpanel/agent/relay.py) reports
how a session it ran ended, and the panel completes its audit entry with the terminal's own rule
(:func:`services.finish_host_session`): only a session of a container placed on the calling host
(another host's, or none: 404), only once (409). An unknown field, a code outside -1..255 or a
reason longer than REASON_MAX is a 400; a revoked or unknown token (a tenant's too) a 401.
Nothing changes on a refusal.
"""

from __future__ import annotations

from django.urls import path
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from hostpanel.hosts.internal import HostView, StrictCharField, valid_body
from hostpanel.terminal import services

REASON_MAX = 500


class FinishedSerializer(serializers.Serializer):
    exit_code = serializers.IntegerField(min_value=-1, max_value=255, allow_null=True)
    reason = StrictCharField(max_length=REASON_MAX, allow_blank=True)

    def validate_exit_code(self, value: object) -> object:
        if isinstance(self.initial_data.get("exit_code"), bool | str | float):
            raise serializers.ValidationError("a JSON integer (the process's exit code) or null")
        return value


class Finished(HostView):
    def post(self, request: Request, audit_id: int) -> Response:
        body = valid_body(request, FinishedSerializer, "finished")
        services.finish_host_session(request.user, audit_id, body["exit_code"], body["reason"])
        return Response({"completed": audit_id})


urlpatterns = [
    path("exec/<int:audit_id>/finished", Finished.as_view(), name="internal-exec-finished"),
]

"""The internal API's routing-table door for enrolled host agents (under /internal/v1/, host token).

``GET host/routes?after=N``: the last published routing table if its generation is above ``N``
(what the caller serves), else ``204 No Content``. The agent asks at each of its reconciles, so a
table published while its host was marked down (tables are sent only to hosts that are up) or a
lost message reaches it within a reconcile interval. Every host gets the same table (as sent to all).
"""

from __future__ import annotations

from django.urls import path
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from hostpanel.edge import services
from hostpanel.hosts.internal import HostView


class RoutesQuery(serializers.Serializer):
    after = serializers.IntegerField(min_value=0, max_value=2**62, required=False, default=0)


class Routes(HostView):
    def get(self, request: Request) -> Response:
        query = RoutesQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        row = services.published()
        if row.generation <= query.validated_data["after"]:
            return Response(status=204)
        return Response(row.table)


urlpatterns = [path("host/routes", Routes.as_view(), name="internal-host-routes")]

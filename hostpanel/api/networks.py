"""``/api/v1/tenants/<t>/networks/``: the tenant's networks (create, list, inspect, delete)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from hostpanel.api.base import StrictModelSerializer, TenantScopedViewSet
from hostpanel.deployments.networking import addresses_by_host, network_members
from hostpanel.networks import services
from hostpanel.networks.models import NETWORK_NAME_RE, Network


class NetworkSerializer(StrictModelSerializer):
    name = serializers.RegexField(
        NETWORK_NAME_RE,
        help_text="1-63 lowercase letters, digits, '-' or '_'; unique in the tenant",
        error_messages={"invalid": "use 1-63 lowercase letters, digits, '-' or '_', starting with one"},
    )
    internal = serializers.BooleanField(
        required=False,
        default=False,
        help_text="kept for compatibility: every tenant network carries traffic between its apps only; "
        "an app's outbound traffic and published ports come from its `network: bridge`",
    )

    class Meta:
        model = Network
        fields = ["id", "name", "subnet", "vni", "internal", "is_default", "created_at"]
        read_only_fields = ["id", "subnet", "vni", "is_default", "created_at"]


class MemberReplicaSerializer(serializers.Serializer):
    container_name = serializers.CharField()
    host = serializers.CharField(allow_null=True)
    state = serializers.CharField()
    address = serializers.CharField(allow_null=True, help_text="null until its container started")


class MemberSerializer(serializers.Serializer):
    app = serializers.CharField()
    aliases = serializers.ListField(child=serializers.CharField(), help_text="names besides the app's")
    replicas = MemberReplicaSerializer(many=True)


class NetworkDetailSerializer(NetworkSerializer):
    members = MemberSerializer(many=True, help_text="the apps on the network: their names resolve on it")
    hosts = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="per host, the network's addresses given out there",
    )

    class Meta(NetworkSerializer.Meta):
        fields = [*NetworkSerializer.Meta.fields, "members", "hosts"]
        read_only_fields = [*NetworkSerializer.Meta.fields]


def _detail(network: Network) -> dict[str, Any]:
    members = network_members(network)
    return NetworkDetailSerializer(
        {
            **{f: getattr(network, f) for f in NetworkSerializer.Meta.fields},
            "members": [asdict(m) for m in members],
            "hosts": addresses_by_host(members),
        }
    ).data


class NetworkViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """The tenant's networks. Apps on a network reach each other by app name and aliases, on whichever
    host they run; every tenant has a ``default`` network that apps join unless they say otherwise."""

    queryset = Network.objects.select_related("tenant")
    serializer_class = NetworkSerializer
    lookup_field = "name"

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return Network.objects.none()
        return services.visible_networks(self.actor, self.tenant)

    def create(self, request: Request, tenant_slug: str) -> Response:
        serializer = NetworkSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        network = services.create_network(self.actor, self.tenant, data["name"], internal=data["internal"])
        return Response(NetworkSerializer(network).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=NetworkDetailSerializer)
    def retrieve(self, request: Request, tenant_slug: str, name: str) -> Response:
        return Response(_detail(services.get_network(self.actor, self.tenant, name)))

    def destroy(self, request: Request, tenant_slug: str, name: str) -> Response:
        services.delete_network(self.actor, services.get_network(self.actor, self.tenant, name))
        return Response(status=status.HTTP_204_NO_CONTENT)

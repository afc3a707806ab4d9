"""The internal API's replica doors for enrolled host agents (under /internal/v1/, host token).

``GET replicas/<id>/secrets``: the secrets of a replica placed on the calling host, each value
sealed to that host's own X25519 public key and bound to the replica and the secret's name
(:mod:`hostpanel.secrets.sealing`). Another host's replica, or one not placed on the caller, is
``404 No such replica`` and reveals nothing (not even that it exists).
"""

from __future__ import annotations

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response

from hostpanel.deployments.models import Replica
from hostpanel.errors import NotFound
from hostpanel.hosts.internal import HostView
from hostpanel.hosts.models import Host
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


urlpatterns = [
    path("replicas/<int:replica_id>/secrets", ReplicaSecrets.as_view(), name="internal-replica-secrets"),
]

from typing import Any

from django.apps import AppConfig


class EdgeConfig(AppConfig):
    """The edge proxy: the routing table the panel owns and the pieces each host agent runs."""

    name = "hostpanel.edge"
    label = "edge"
    verbose_name = "Edge proxy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A roll's switch (hostpanel/deployments/rollout.py) publishes the routing table at once.
        from hostpanel.deployments.rotation import rotation_changed
        from hostpanel.domains.signals import routing_changed

        rotation_changed.connect(_publish, dispatch_uid="edge-publish-on-rotation")
        # So does a domain verified or removed (hostpanel/domains/services.py).
        routing_changed.connect(_publish, dispatch_uid="edge-publish-on-domains")
        # And an enrolled agent's report of its replicas' states (hostpanel/deployments/desired.py).
        from hostpanel.deployments.desired import agent_started, replicas_reported

        replicas_reported.connect(_publish_for_host, dispatch_uid="edge-publish-on-report")
        # An agent that starts gets the last table.
        agent_started.connect(_send_to_host, dispatch_uid="edge-send-on-agent-start")


def _publish(sender: object, **kwargs: object) -> None:
    from hostpanel.edge.services import publish_routes

    publish_routes()


def _publish_for_host(sender: object, host: Any, **kwargs: object) -> None:
    from hostpanel.edge.services import publish_routes_after_reconcile

    publish_routes_after_reconcile(host)


def _send_to_host(sender: object, host: Any, **kwargs: object) -> None:
    from hostpanel.edge.services import send_routes_to

    send_routes_to(host)

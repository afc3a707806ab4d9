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

        rotation_changed.connect(_publish_on_rotation_change, dispatch_uid="edge-publish-on-rotation")


def _publish_on_rotation_change(sender: object, app_id: int, **kwargs: object) -> None:
    from hostpanel.edge.services import publish_routes

    publish_routes()

from django.apps import AppConfig


class EdgeConfig(AppConfig):
    """The edge proxy: the routing table the panel owns and the pieces each host agent runs."""

    name = "hostpanel.edge"
    label = "edge"
    verbose_name = "Edge proxy"
    default_auto_field = "django.db.models.BigAutoField"

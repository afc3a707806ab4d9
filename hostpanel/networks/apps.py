from django.apps import AppConfig


class NetworksConfig(AppConfig):
    """Tenants' networks: apps on one find each other by name, on whichever host they run."""

    name = "hostpanel.networks"
    label = "networks"
    verbose_name = "Networks"
    default_auto_field = "django.db.models.BigAutoField"

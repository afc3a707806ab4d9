from django.apps import AppConfig


class RegistryConfig(AppConfig):
    """The OCI Distribution registry served at /v2/."""

    name = "hostpanel.registry"
    label = "registry"
    verbose_name = "Registry"
    default_auto_field = "django.db.models.BigAutoField"

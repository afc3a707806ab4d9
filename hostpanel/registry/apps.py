from django.apps import AppConfig


class RegistryConfig(AppConfig):
    """The OCI Distribution registry served at /v2/."""

    name = "hostpanel.registry"
    label = "registry"
    verbose_name = "Registry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hostpanel.registry.services import stored_bytes
        from hostpanel.tenants import signals

        signals.stored_bytes.connect(stored_bytes, dispatch_uid="registry-stored-bytes")

from django.apps import AppConfig


class VolumesConfig(AppConfig):
    """Tenants' named volumes: size-capped, counted against the quota, mounted by apps."""

    name = "hostpanel.volumes"
    label = "volumes"
    verbose_name = "Volumes"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hostpanel.tenants import signals
        from hostpanel.volumes.services import stored_bytes

        signals.stored_bytes.connect(stored_bytes, dispatch_uid="volumes-stored-bytes")

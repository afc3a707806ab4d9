from django.apps import AppConfig


class VolumesConfig(AppConfig):
    """Tenants' named volumes: size-capped, counted against the quota, mounted by apps."""

    name = "hostpanel.volumes"
    label = "volumes"
    verbose_name = "Volumes"
    default_auto_field = "django.db.models.BigAutoField"

from django.apps import AppConfig


class ImagesConfig(AppConfig):
    """Image records, builds and the registry endpoints."""

    name = "hostpanel.images"
    label = "images"
    verbose_name = "Images"
    default_auto_field = "django.db.models.BigAutoField"

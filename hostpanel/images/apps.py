from django.apps import AppConfig


class ImagesConfig(AppConfig):
    """Image records, builds and the registry endpoints."""

    name = "hostpanel.images"
    label = "images"
    verbose_name = "Images"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hostpanel.images.services import forget_deleted_tenant
        from hostpanel.tenants import signals

        signals.tenant_gone.connect(forget_deleted_tenant, dispatch_uid="images-forget-tenant")

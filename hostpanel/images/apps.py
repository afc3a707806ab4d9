from django.apps import AppConfig


class ImagesConfig(AppConfig):
    """Image records, builds and the registry endpoints."""

    name = "hostpanel.images"
    label = "images"
    verbose_name = "Images"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hostpanel.images.services import forget_deleted_tenant, stored_bytes
        from hostpanel.tenants import signals

        signals.tenant_gone.connect(forget_deleted_tenant, dispatch_uid="images-forget-tenant")
        signals.stored_bytes.connect(stored_bytes, dispatch_uid="images-stored-bytes")

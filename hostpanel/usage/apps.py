from django.apps import AppConfig


class UsageConfig(AppConfig):
    """Resource usage per tenant (CPU-seconds, memory and disk GB-hours), hourly, with prices."""

    name = "hostpanel.usage"
    label = "usage"
    verbose_name = "Usage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hostpanel.deployments import desired
        from hostpanel.tenants import signals
        from hostpanel.usage.services import usage_tenants
        from hostpanel.usage.storage import stored_bytes

        signals.stored_bytes.connect(stored_bytes, dispatch_uid="usage-stored-bytes")
        desired.document_fields.connect(usage_tenants, dispatch_uid="usage-desired-tenants")

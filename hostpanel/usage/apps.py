from django.apps import AppConfig


class UsageConfig(AppConfig):
    """Resource usage per tenant (CPU-seconds, memory and disk GB-hours), hourly, with prices."""

    name = "hostpanel.usage"
    label = "usage"
    verbose_name = "Usage"
    default_auto_field = "django.db.models.BigAutoField"

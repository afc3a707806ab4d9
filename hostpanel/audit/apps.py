from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit log: who changed what, for which tenant, from where, with what result."""

    name = "hostpanel.audit"
    label = "audit"
    verbose_name = "Audit log"
    default_auto_field = "django.db.models.BigAutoField"

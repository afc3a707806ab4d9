from django.apps import AppConfig


class SecretsConfig(AppConfig):
    """Tenants' secrets, encrypted at rest with Fernet keys."""

    name = "hostpanel.secrets"
    label = "secrets"
    verbose_name = "Secrets"
    default_auto_field = "django.db.models.BigAutoField"

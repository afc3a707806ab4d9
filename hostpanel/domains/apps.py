from django.apps import AppConfig


class DomainsConfig(AppConfig):
    """Custom domains of apps (ownership proof, routing, certificates) and the TLS mode."""

    name = "hostpanel.domains"
    label = "domains"
    verbose_name = "Domains"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hostpanel.domains import checks  # noqa: F401  (registers the TLS mode check)

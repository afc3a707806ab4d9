from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The REST API: DRF routers, authentication and the OpenAPI schema."""

    name = "hostpanel.api"
    label = "api"
    verbose_name = "API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hostpanel.api import schema  # noqa: F401  (registers the schema extensions)

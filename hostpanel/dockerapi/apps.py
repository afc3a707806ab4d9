from django.apps import AppConfig


class DockerApiConfig(AppConfig):
    """The tenants' Docker Engine API door (client certificates, the TLS server, translation)."""

    name = "hostpanel.dockerapi"
    label = "dockerapi"
    verbose_name = "Docker API"
    default_auto_field = "django.db.models.BigAutoField"

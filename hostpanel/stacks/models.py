"""A stack: a compose file deployed as apps of one tenant, one app per service.

The stacks app sits above deployments, networks, volumes, secrets and builds: it
makes and changes their objects through their services, and nothing below imports it.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

# A stack's name prefixes its networks and volumes (``<stack>_<name>``, at most 63 characters).
STACK_NAME_RE = r"^[a-z0-9][a-z0-9-]{0,29}$"


class Stack(models.Model):
    """One compose file of a tenant, as deployed."""

    class Source(models.TextChoices):
        PASTE = "paste"
        UPLOAD = "upload"
        GIT = "git"

    class Status(models.TextChoices):
        DEPLOYING = "deploying"  # services wait for their builds or their dependencies
        RUNNING = "running"  # every service was started
        FAILED = "failed"  # see message

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="stacks")
    name = models.CharField(
        max_length=30, validators=[RegexValidator(STACK_NAME_RE, "use lowercase letters, digits and '-'")]
    )
    source = models.TextField(help_text="the compose file as given")
    source_kind = models.CharField(max_length=8, choices=Source.choices, default=Source.PASTE)
    # git: PATH[#REF][:DIR] of a repository under the tenant's build-context root, and the file in it
    git_url = models.CharField(max_length=1000, blank=True)
    git_file = models.CharField(max_length=255, blank=True)
    # upload of a project archive: where it was unpacked (env_file and build contexts are read there)
    project_dir = models.CharField(max_length=500, blank=True)
    env = models.JSONField(default=dict, blank=True, help_text="variables for ${VAR} interpolation")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DEPLOYING)
    message = models.TextField(blank=True)
    # when a stack waiting for builds or dependencies gives up (status failed)
    deadline = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="stack_name_per_tenant")]

    def __str__(self) -> str:
        return f"{self.tenant}/{self.name}"


class StackService(models.Model):
    """One service of a stack and the app that runs it (named as the service)."""

    class State(models.TextChoices):
        BUILDING = "building"  # its image is being built (no app yet)
        WAITING = "waiting"  # its app exists, stopped, until its dependencies meet their conditions
        STARTED = "started"  # its app was started
        FAILED = "failed"

    stack = models.ForeignKey(Stack, on_delete=models.CASCADE, related_name="services")
    name = models.CharField(max_length=40)
    app = models.OneToOneField(
        "deployments.App", null=True, blank=True, on_delete=models.SET_NULL, related_name="stack_service"
    )
    digest = models.CharField(max_length=64, help_text="engine.compose.service_digest of its definition")
    state = models.CharField(max_length=16, choices=State.choices, default=State.WAITING)
    # {"db": "service_healthy"}: what must hold before its app is started
    depends_on = models.JSONField(default=dict, blank=True)
    # the app's spec as translated, for a service whose app waits for its build
    spec = models.JSONField(default=dict, blank=True)
    build = models.ForeignKey(
        "builds.Build", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["stack", "name"]
        constraints = [models.UniqueConstraint(fields=["stack", "name"], name="service_name_per_stack")]

    def __str__(self) -> str:
        return f"{self.stack}/{self.name}"


class StackResource(models.Model):
    """A network or volume the stack made (``down`` removes the networks; volumes on request)."""

    class Kind(models.TextChoices):
        NETWORK = "network"
        VOLUME = "volume"

    stack = models.ForeignKey(Stack, on_delete=models.CASCADE, related_name="resources")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    name = models.CharField(max_length=63, help_text="the tenant network's or volume's name")

    class Meta:
        ordering = ["stack", "kind", "name"]
        constraints = [models.UniqueConstraint(fields=["stack", "kind", "name"], name="stack_resource_once")]

    def __str__(self) -> str:
        return f"{self.stack} {self.kind} {self.name}"

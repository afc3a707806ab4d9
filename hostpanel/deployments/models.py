"""Apps, their releases (immutable specs) and replicas (one container each)."""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from django.db import models

APP_NAME_RE = r"^[a-z0-9][a-z0-9-]{0,39}$"
# no, always, unless-stopped, on-failure or on-failure:N (the API schema documents this pattern)
RESTART_POLICY_RE = r"^(no|always|unless-stopped|on-failure(?::([0-9]{1,6}))?)$"
NETWORKS = ("none", "bridge")
# A release's process fields and their "not set" values (the image's own, Docker's defaults)
PROCESS_DEFAULTS: dict[str, Any] = {
    "entrypoint": None,
    "user": "",
    "working_dir": "",
    "stop_signal": "",
    "stop_grace_seconds": 10,
    "init": False,
    "labels": {},
    "tmpfs": [],
}  # tenants' containers: loopback only, or the tenant's own network


class App(models.Model):
    """A tenant's application: what runs is its current release, ``replicas`` times."""

    class State(models.TextChoices):
        RUNNING = "running"
        STOPPED = "stopped"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="apps")
    name = models.CharField(
        max_length=40, validators=[RegexValidator(APP_NAME_RE, "use lowercase letters, digits and '-'")]
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    current_release = models.ForeignKey(
        "Release", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Bumped by "restart"; each replica records the generation its container was restarted for.
    restart_generation = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="app_name_per_tenant")]

    def __str__(self) -> str:
        return f"{self.tenant}/{self.name}"


def container_name(app: App, index: int) -> str:
    """The deterministic engine name of a replica, so a retried start never duplicates it."""
    return f"{app.tenant.slug}-{app.name}-{index}"


class RestartPolicy(models.TextChoices):
    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"
    UNLESS_STOPPED = "unless-stopped"


class Release(models.Model):
    """One immutable version of an app's spec. Every change makes a new one."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="releases")
    version = models.PositiveIntegerField()
    image = models.CharField(max_length=255)
    command = models.JSONField(default=list, blank=True)
    env = models.JSONField(default=dict, blank=True)
    # [{"name": "db-password", "env": "DB_PASSWORD" | null}]
    secrets = models.JSONField(default=list, blank=True)
    # [{"container_port": 80, "protocol": "tcp"}]
    ports = models.JSONField(default=list, blank=True)
    # "none": loopback only; "bridge": the tenant's own network (outbound traffic, published ports)
    network = models.CharField(max_length=16, default="none")
    # [{"name": "data", "path": "/data"}] (named volumes of the tenant, never host paths)
    volumes = models.JSONField(default=list, blank=True)
    # The tenant networks it joins, in order: [{"name": "default", "aliases": ["database"]}]. On each,
    # the app's name and aliases resolve to its replicas from every member, on whichever host
    # (hostpanel/networks). Independent of "network" (outbound traffic and published ports).
    networks = models.JSONField(default=list, blank=True)
    replicas = models.PositiveIntegerField(default=1)
    cpu_millis = models.PositiveIntegerField(default=250)
    memory_bytes = models.PositiveBigIntegerField(default=128 * 1024**2)
    pids = models.PositiveIntegerField(default=128)
    restart_policy = models.CharField(
        max_length=16, choices=RestartPolicy.choices, default=RestartPolicy.ALWAYS
    )
    restart_max_retries = models.PositiveIntegerField(null=True, blank=True, help_text="on-failure:N")
    # The container port that serves HTTP: the edge proxy routes the app's hostnames to it, and a
    # roll waits for it (a TCP connect) when the release has no health check. Always also in ports.
    http_port = models.PositiveIntegerField(null=True, blank=True)
    # {"command": [...]} or {"http": {"port": 80, "path": "/"}}, plus interval/timeout/retries
    health_check = models.JSONField(null=True, blank=True)
    # How the process runs (compose's keys; issue 14). Empty: the image's own (entrypoint None).
    entrypoint = models.JSONField(null=True, blank=True, help_text="list of strings; [] clears the image's")
    user = models.CharField(max_length=65, blank=True)
    working_dir = models.CharField(max_length=255, blank=True)
    stop_signal = models.CharField(max_length=16, blank=True)
    stop_grace_seconds = models.PositiveIntegerField(default=10)
    init = models.BooleanField(default=False)
    # the tenant's own labels on the containers (org.hostpanel.* are the panel's, refused)
    labels = models.JSONField(default=dict, blank=True)
    # [{"path": "/tmp", "size_bytes": 67108864}]: memory-backed, counted in the replica's memory
    tmpfs = models.JSONField(default=list, blank=True)
    note = models.CharField(max_length=200, blank=True)
    # How rolling it out went (hostpanel/deployments/rollout.py): "" (made current without a
    # roll), rolling, live, failed (with the reason in status_message) or superseded.
    status = models.CharField(max_length=16, blank=True)
    status_message = models.TextField(blank=True)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["app", "-version"]
        constraints = [models.UniqueConstraint(fields=["app", "version"], name="release_version_per_app")]

    def __str__(self) -> str:
        return f"{self.app} v{self.version}"

    def container_shape(self) -> dict[str, Any]:
        """What shapes this release's containers (not replicas or restart policy): two releases of
        the same shape run in the same containers (the agent's spec digest; a roll's "no new
        containers needed")."""
        shape = {
            "image": self.image,
            "command": self.command,
            "env": self.env,
            "secrets": self.secrets,
            "ports": self.ports,
            "network": self.network,
            "volumes": self.volumes,
            "resources": [self.cpu_millis, self.memory_bytes, self.pids],
            "health_check": self.health_check,
            # the process fields only when set, so releases made before they existed keep their digest
            **{
                name: getattr(self, name)
                for name, default in PROCESS_DEFAULTS.items()
                if getattr(self, name) != default
            },
        }
        if self.networks:  # only when set: containers made before tenant networks keep their digest
            shape["networks"] = self.networks
        return shape

    @property
    def restart_policy_text(self) -> str:
        if self.restart_policy == RestartPolicy.ON_FAILURE and self.restart_max_retries is not None:
            return f"on-failure:{self.restart_max_retries}"
        return str(self.restart_policy)


class Replica(models.Model):
    """One desired container of an app, placed on a host; the agent reports its actual state here."""

    class State(models.TextChoices):
        PENDING = "pending"  # not placed on a host yet (nothing fits)
        STARTING = "starting"  # placed, the agent has not started it yet
        UPDATING = "updating"  # its container is being replaced by one of a new release
        RUNNING = "running"
        EXITED = "exited"  # stopped by itself, not restarted by policy
        BACKOFF = "backoff"  # crashed, waiting to be restarted
        STOPPED = "stopped"  # stopped on request
        FAILED = "failed"  # the engine refused to run it (see message)
        HOST_DOWN = "host-down"  # pinned (its volumes live on its host's disk) to a host that is down

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="replicas")
    index = models.PositiveIntegerField()
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="+")
    host = models.ForeignKey(
        "hosts.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="replicas"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    # Fencing (hosts/fencing.py): bumped at every placement; its container carries it as a label,
    # and a host runs a replica's container only while its generation is the replica's current one.
    generation = models.PositiveIntegerField(default=0)
    engine_id = models.CharField(max_length=64, blank=True)
    container_name = models.CharField(max_length=128)
    # published ports on the host: [{"container_port": 80, "protocol": "tcp", "host_port": 30001}]
    ports = models.JSONField(default=list, blank=True)
    # Its addresses on tenant networks, as the agent of ``host`` reported them when it started the
    # container: {"host": host id, "networks": {"default": "10.128.0.5"}} (see replica_addresses).
    addresses = models.JSONField(default=dict, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    restart_count = models.PositiveIntegerField(default=0)
    # crashes in a row (reset once a container ran long enough): the back-off exponent
    crash_streak = models.PositiveIntegerField(default=0)
    restart_generation = models.PositiveIntegerField(default=0)
    # One container's own buttons (the app's state and restart apply to all): stopped on request
    # until started again, and a restart asked for once (the agent clears it when it restarts).
    stop_requested = models.BooleanField(default=False)
    restart_requested = models.BooleanField(default=False)
    next_restart_at = models.DateTimeField(null=True, blank=True)
    health = models.CharField(max_length=16, blank=True, help_text="'', starting, healthy or unhealthy")
    health_failures = models.PositiveIntegerField(default=0)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True)
    # Rolling deploys (rollout.py): the roll that started this replica; whether it passed its
    # readiness gate (its health check, or a TCP connect to the release's http_port); and, once
    # it is taken out of the edge's rotation, until when it drains before it is stopped.
    rollout = models.ForeignKey(
        "Rollout", null=True, blank=True, on_delete=models.SET_NULL, related_name="replicas"
    )
    ready = models.BooleanField(default=False)
    drain_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["app", "index"]
        constraints = [models.UniqueConstraint(fields=["app", "index"], name="replica_index_per_app")]

    def __str__(self) -> str:
        return self.container_name

    @property
    def network_addresses(self) -> dict[str, str]:
        """{network name: address} of its running container on its current host; {} when it has
        none there yet (not started, or moved and not started on the new host)."""
        if not self.addresses or self.addresses.get("host") != self.host_id:
            return {}
        return dict(self.addresses.get("networks") or {})


class Rollout(models.Model):
    """One rolling change of an app's replicas to ``release`` (a deploy, a scale, a restart).

    Driven step by step by :func:`hostpanel.deployments.rollout.advance`: start a new
    replica (one of surge), wait until it is ready, take an old one out of the rotation,
    let it drain, stop it. The app's current release changes only when the roll succeeds.
    """

    class State(models.TextChoices):
        ROLLING = "rolling"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SUPERSEDED = "superseded"  # a newer change took over before this one finished

    class Kind(models.TextChoices):
        DEPLOY = "deploy"
        SCALE = "scale"
        RESTART = "restart"
        REVERT = "revert"  # back to the previous release after a roll failed half-way
        DRAIN = "drain"  # off a draining host (deployments/host_moves.py): same release, other hosts

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="rollouts")
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="rollouts")
    previous = models.ForeignKey(Release, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.DEPLOY)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ROLLING)
    # what it does now, in words ("waiting for replica 2 to become ready")
    phase = models.CharField(max_length=200, blank=True)
    message = models.TextField(blank=True)  # why it failed
    # the replicas that serve, as the edge was last told (so a change is published once)
    serving = models.JSONField(default=list, blank=True)
    step_deadline = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["app", "-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.app} {self.kind} to v{self.release.version}: {self.state}"
